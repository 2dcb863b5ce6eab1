"""The account rules (hub/identity/accounts.py), on the test database."""
from __future__ import annotations

import logging
import secrets
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pyotp
import pytest
from argon2 import PasswordHasher
from hypothesis import given, settings as hsettings, strategies as st
from sqlalchemy import func, select

from hub.db import utcnow
from hub.errors import Invalid
from hub.identity import accounts, login, mail, ratelimit
from hub.identity.account_models import AccountToken, MemberAccount, OutgoingMail, RecoveryCode
from hub.identity.oidc.models import Grant
from hub.privacy import blind
from hub.programs.models import Member

# Cheap parameters: the rules are under test here, not argon2's cost.
FAST = accounts.Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
PASSWORD = "correct horse battery"


def _email() -> str:
    return f"user-{secrets.token_hex(5)}@example.com"


def _sign_up(db, email=None, **kw) -> accounts.SignUp:
    password_hash = FAST.hash(PASSWORD)
    return db.write(lambda s: accounts.sign_up(s, email=email or _email(), password_hash=password_hash, **kw))


def _account(db, account_id) -> MemberAccount:
    with db.read() as session:
        return session.get(MemberAccount, account_id)


def _count(db, model) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(model))


# --- emails and passwords ------------------------------------------------------------

local_parts = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._+-", min_size=1, max_size=20)
labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)


@given(local=local_parts, domain=st.lists(labels, min_size=2, max_size=3), pad=st.sampled_from(["", " ", "\t "]))
def test_an_email_is_normalised_to_one_spelling(local, domain, pad):
    address = f"{local}@{'.'.join(domain)}"
    assert accounts.normalise_email(pad + address.upper() + pad) == accounts.normalise_email(address) == address


@pytest.mark.parametrize("bad", ["", "plain", "a@b", "a b@c.com", "a@@b.com", "@b.com", "a@.com",
                                 "a@b.com" + "m" * 250, None])
def test_what_is_not_an_address_is_refused(bad):
    with pytest.raises(Invalid) as refused:
        accounts.normalise_email(bad)
    assert refused.value.slug == "email-invalid" and refused.value.extra["field"] == "email"


@given(st.text(max_size=9))
def test_short_passwords_are_refused(password):
    with pytest.raises(Invalid):
        accounts.check_password(password)


@hsettings(max_examples=20)
@given(st.text(min_size=10, max_size=128).filter(lambda p: len(p) >= 10))
def test_any_password_of_10_to_128_characters_is_accepted(password):
    accounts.check_password(password)


def test_a_password_over_128_characters_is_refused():
    with pytest.raises(Invalid) as refused:
        accounts.check_password("x" * 129)
    assert refused.value.slug == "password-long"


# --- sign-up and verification ----------------------------------------------------------

def test_sign_up_makes_a_member_and_an_unverified_account(db):
    done = _sign_up(db, "  New.Member@Example.COM ", given_name=" Sari ", locale="id")
    account = _account(db, done.account_id)
    assert done.email == account.email == "new.member@example.com"
    assert account.email_verified_at is None and account.given_name == "Sari" and account.locale == "id"
    assert account.password_hash.startswith("$argon2id$") and PASSWORD not in account.password_hash
    with db.read() as session:
        assert session.get(Member, account.member_id) is not None
        (token,) = session.scalars(select(AccountToken).where(AccountToken.account_id == account.id)).all()
    assert token.token_hash != done.verify_token and len(token.token_hash) == 64


def test_a_taken_email_makes_nothing_and_gives_no_token(db):
    first = _sign_up(db)
    members = _count(db, Member)
    again = _sign_up(db, first.email.upper())
    assert again.verify_token is None and again.account_id is None and again.email == first.email
    assert _count(db, Member) == members


def test_bad_sign_up_input_writes_nothing(db):
    before = (_count(db, Member), _count(db, MemberAccount), _count(db, AccountToken))
    for kwargs in ({"email": "nope"}, {"given_name": "x" * 101}, {"family_name": "bad\x00name"}):
        fields = {"email": _email(), "password_hash": "h", **kwargs}
        with pytest.raises(Invalid):
            db.write(lambda s: accounts.sign_up(s, **fields))
    with pytest.raises(Invalid) as refused:
        accounts.new_password_hash(FAST, "short")
    assert refused.value.extra["field"] == "password"
    assert (_count(db, Member), _count(db, MemberAccount), _count(db, AccountToken)) == before


def test_a_verification_token_works_once_and_expires(db):
    done, late = _sign_up(db), _sign_up(db)
    account = db.write(lambda s: accounts.verify_email(s, done.verify_token))
    assert account.email_verified_at is not None
    for token in (done.verify_token, "made-up", ""):
        with pytest.raises(Invalid) as refused:
            db.write(lambda s: accounts.verify_email(s, token))
        assert refused.value.slug == "token-invalid"
    with pytest.raises(Invalid):
        db.write(lambda s: accounts.verify_email(s, late.verify_token, now=utcnow() + timedelta(days=3)))
    assert _account(db, late.account_id).email_verified_at is None


# --- passwords ---------------------------------------------------------------------------

def test_authenticate_by_any_spelling_of_the_email(db):
    done = _sign_up(db)
    with db.read() as session:
        assert accounts.authenticate(session, FAST, done.email.upper(), PASSWORD).id == done.account_id
        assert accounts.authenticate(session, FAST, done.email, PASSWORD + "x") is None
        assert accounts.authenticate(session, FAST, _email(), PASSWORD) is None
        assert accounts.authenticate(session, FAST, "not an email", PASSWORD) is None


def test_a_hash_with_old_parameters_is_upgraded_unless_the_password_changed(db):
    done = _sign_up(db)
    stronger = accounts.Passwords(PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))
    with db.read() as session:
        account = accounts.authenticate(session, stronger, done.email, PASSWORD)
    assert stronger.needs_rehash(account.password_hash)
    db.write(lambda s: accounts.rehash(s, account, stronger.hash(PASSWORD)))
    upgraded = _account(db, done.account_id).password_hash
    assert "m=2048,t=2" in upgraded and not stronger.needs_rehash(upgraded)
    db.write(lambda s: accounts.rehash(s, account, "stale"))  # made from the old hash: ignored
    assert _account(db, done.account_id).password_hash == upgraded


# --- the second factor ---------------------------------------------------------------

def _begin(db, done) -> str:
    proof = accounts.confirm_password(FAST, _account(db, done.account_id), PASSWORD)
    return db.write(lambda s: accounts.begin_totp(s, s.get(MemberAccount, done.account_id), proof))


def _enrol(db, done) -> tuple[pyotp.TOTP, list[str]]:
    uri = _begin(db, done)
    totp = pyotp.parse_uri(uri)
    now = utcnow() - timedelta(seconds=60)  # a past step, so that tests can use the current one
    codes = db.write(lambda s: accounts.confirm_totp(
        s, s.get(MemberAccount, done.account_id), totp.at(now), now=now))
    return totp, codes


def _second_factor(db, done, code, now=None) -> bool:
    return db.write(lambda s: accounts.check_second_factor(
        s, s.get(MemberAccount, done.account_id), code, now=now))


def test_totp_is_on_only_after_a_valid_code_and_its_secret_is_sealed(db):
    done = _sign_up(db)
    uri = _begin(db, done)
    totp = pyotp.parse_uri(uri)
    assert uri.startswith("otpauth://totp/") and "Coalition%20Hub" in uri
    account = _account(db, done.account_id)
    assert not accounts.totp_enabled(account) and totp.secret not in account.totp_secret_sealed
    assert accounts.pending_totp_uri(account) == uri
    assert not _second_factor(db, done, totp.now())  # not on yet
    with pytest.raises(Invalid):
        db.write(lambda s: accounts.confirm_totp(s, s.get(MemberAccount, done.account_id), "000000"))
    assert not accounts.totp_enabled(_account(db, done.account_id))
    codes = db.write(lambda s: accounts.confirm_totp(s, s.get(MemberAccount, done.account_id), totp.now()))
    assert len(codes) == 10 and len(set(codes)) == 10
    assert accounts.totp_enabled(_account(db, done.account_id))


def test_a_code_is_accepted_once_and_no_older_code_after_it(db):
    done = _sign_up(db)
    totp, _ = _enrol(db, done)
    now = utcnow()
    code = totp.at(now)
    assert _second_factor(db, done, code, now)
    assert not _second_factor(db, done, code, now)  # replay within its window
    assert not _second_factor(db, done, totp.at(now - timedelta(seconds=30)), now)  # the step before
    later = now + timedelta(seconds=30)
    assert _second_factor(db, done, totp.at(later), later)
    assert not _second_factor(db, done, "12345", later) and not _second_factor(db, done, "", later)


def test_a_code_from_the_next_step_is_accepted_for_clock_drift(db):
    done = _sign_up(db)
    totp, _ = _enrol(db, done)
    now = utcnow()
    assert _second_factor(db, done, totp.at(now + timedelta(seconds=30)), now)
    assert not _second_factor(db, done, totp.at(now + timedelta(seconds=90)), now)


def test_recovery_codes_are_stored_hashed_and_work_once(db):
    done = _sign_up(db)
    _, codes = _enrol(db, done)
    with db.read() as session:
        hashes = session.scalars(select(RecoveryCode.code_hash).where(
            RecoveryCode.account_id == done.account_id)).all()
    assert len(hashes) == 10 and not set(codes) & set(hashes)
    assert _second_factor(db, done, " " + codes[0].upper().replace("-", " ") + " ")
    assert not _second_factor(db, done, codes[0])
    with db.read() as session:
        assert accounts.recovery_codes_left(session, _account(db, done.account_id)) == 9


def test_regenerated_codes_void_the_old_ones_and_need_a_current_code(db):
    done = _sign_up(db)
    totp, old = _enrol(db, done)
    with pytest.raises(Invalid):
        db.write(lambda s: accounts.regenerate_recovery_codes(s, s.get(MemberAccount, done.account_id), "1"))
    new = db.write(lambda s: accounts.regenerate_recovery_codes(
        s, s.get(MemberAccount, done.account_id), totp.now()))
    assert not _second_factor(db, done, old[1])
    assert _second_factor(db, done, new[1])


def test_disabling_totp_needs_a_code_and_voids_the_recovery_codes(db):
    done = _sign_up(db)
    totp, codes = _enrol(db, done)
    with pytest.raises(Invalid) as refused:
        db.write(lambda s: accounts.disable_totp(s, s.get(MemberAccount, done.account_id), "000000"))
    assert refused.value.slug == "code-wrong"
    db.write(lambda s: accounts.disable_totp(s, s.get(MemberAccount, done.account_id), codes[0]))
    account = _account(db, done.account_id)
    assert not accounts.totp_enabled(account) and account.totp_secret_sealed is None
    with db.read() as session:
        assert accounts.recovery_codes_left(session, account) == 0


class _Clock:
    def __init__(self):
        self.now = 20_000 * 86_400.0  # the start of a day's window

    def __call__(self) -> float:
        return self.now


DAY, FIVE_MINUTES = ratelimit.SECOND_FACTOR_DAY, ratelimit.SECOND_FACTOR_ACCOUNT
NOTICE = ("someone is trying codes", "choose a new password")


def _guess_wrong(db, limiter, account_id) -> bool:
    """One wrong code at the login step, counted as the page counts it: whether the member was
    mailed. Raises Limited when refused."""
    account = _account(db, account_id)
    tries = accounts.second_factor_attempt(limiter, account, "10.0.0.1")
    assert not _second_factor(db, SimpleNamespace(account_id=account_id), "000000")
    return db.write(lambda s: accounts.second_factor_failed(s, account, tries, lambda: NOTICE))


def _use_up_the_day(db, limiter, clock, account_id) -> list[bool]:
    """DAY.limit wrong codes, as fast as the 5-minute rule lets them through: whether each
    mailed the member."""
    mailed = []
    while len(mailed) < DAY.limit:
        for _ in range(min(FIVE_MINUTES.limit, DAY.limit - len(mailed))):
            mailed.append(_guess_wrong(db, limiter, account_id))
        clock.now += FIVE_MINUTES.window  # a new 5-minute window each time
    return mailed


def _notices(db, email) -> list[str]:
    with db.read() as session:
        return [m.subject for m in mail.latest(session, to=email) if m.subject == NOTICE[0]]


def test_wrong_codes_are_capped_per_day_and_the_member_is_mailed_once(db):
    """5 per 5 minutes alone would allow 1,440 guesses a day; the day's allowance stops them
    at DAY.limit, and the failure that uses it up mails the member (once)."""
    assert DAY.limit * 3 / 1_000_000 <= 1 / 30_000 and DAY.window == 86_400
    done = _sign_up(db)
    _enrol(db, done)
    clock = _Clock()
    limiter = ratelimit.Limiter(ratelimit.MemoryCounters(), clock=clock)
    assert _use_up_the_day(db, limiter, clock, done.account_id) == [False] * (DAY.limit - 1) + [True]
    assert _notices(db, done.email) == [NOTICE[0]]
    # Used up: refused in every later 5-minute window of the day, even a right code, and no
    # more mail.
    for _ in range(3):
        with pytest.raises(ratelimit.Limited) as refused:
            accounts.second_factor_attempt(limiter, _account(db, done.account_id), "10.0.0.1")
        assert refused.value.rule is DAY and refused.value.retry_after > 3600
        clock.now += FIVE_MINUTES.window
    assert len(_notices(db, done.email)) == 1
    # The next day, a new allowance (and a right code is never counted).
    clock.now = 20_001 * 86_400.0
    accounts.second_factor_attempt(limiter, _account(db, done.account_id)).succeeded()
    assert _guess_wrong(db, limiter, done.account_id) is False


def test_a_password_reset_gives_a_fresh_allowance_of_codes(db):
    """The member told by mail chooses a new password: they can log in at once (whoever knew
    the old one cannot reach the code step any more)."""
    done = _sign_up(db)
    _enrol(db, done)
    clock = _Clock()
    limiter = ratelimit.Limiter(ratelimit.MemoryCounters(), clock=clock)
    _use_up_the_day(db, limiter, clock, done.account_id)
    with pytest.raises(ratelimit.Limited):
        accounts.second_factor_attempt(limiter, _account(db, done.account_id))
    token = db.write(lambda s: accounts.request_reset(s, done.email))
    db.write(lambda s: accounts.reset_password(s, token, FAST.hash("a brand new password")))
    accounts.second_factor_attempt(limiter, _account(db, done.account_id)).succeeded()


def test_codes_of_a_pending_enrolment_do_not_use_the_days_allowance(db):
    """Before the factor is on, a wrong code reaches nothing: only the 5-minute rule counts."""
    done = _sign_up(db)
    _begin(db, done)
    clock = _Clock()
    limiter = ratelimit.Limiter(ratelimit.MemoryCounters(), clock=clock)
    for _ in range(DAY.limit * 2):
        account = _account(db, done.account_id)
        tries = accounts.second_factor_attempt(limiter, account)
        assert not db.write(lambda s: accounts.second_factor_failed(s, account, tries, lambda: NOTICE))
        clock.now += FIVE_MINUTES.window / FIVE_MINUTES.limit
    assert _notices(db, done.email) == []


def test_enrolment_needs_the_current_password(db):
    """A browser left logged in is not enough to put an attacker's app on the account."""
    done = _sign_up(db)
    with pytest.raises(Invalid) as refused:
        accounts.confirm_password(FAST, _account(db, done.account_id), "not the password")
    assert refused.value.slug == "password-wrong" and refused.value.extra["field"] == "password"
    proof = accounts.confirm_password(FAST, _account(db, done.account_id), PASSWORD)
    # A proof of a password that has changed since is refused.
    db.write(lambda s: setattr(s.get(MemberAccount, done.account_id), "password_hash", FAST.hash("changed password")))
    with pytest.raises(Invalid) as stale:
        db.write(lambda s: accounts.begin_totp(s, s.get(MemberAccount, done.account_id), proof))
    assert stale.value.slug == "password-wrong"
    assert _account(db, done.account_id).totp_secret_sealed is None


# --- password reset --------------------------------------------------------------------

def test_reset_sets_the_password_ends_every_session_and_works_once(db):
    done = _sign_up(db)
    account = _account(db, done.account_id)
    session_a, _ = db.write(lambda s: login.start(s, account, ("pwd",), ttl=timedelta(hours=1)))
    first = db.write(lambda s: accounts.request_reset(s, done.email.upper()))
    second = db.write(lambda s: accounts.request_reset(s, done.email))
    new_password = "a brand new password"
    db.write(lambda s: accounts.reset_password(s, second, FAST.hash(new_password)))
    with db.read() as session:
        assert login.load(session, session_a.session_id) is None
        assert accounts.authenticate(session, FAST, done.email, new_password) is not None
        assert accounts.authenticate(session, FAST, done.email, PASSWORD) is None
    assert _account(db, done.account_id).email_verified_at is not None  # the mail proved it
    for token in (second, first):  # used, and the other one voided with it
        with pytest.raises(Invalid):
            db.write(lambda s: accounts.reset_password(s, token, FAST.hash("yet another password")))


def _grant(session, account: MemberAccount) -> Grant:
    grant = Grant(client_id="brand", sector="sector", member_id=account.member_id, account_id=account.id,
                  session_id=uuid.uuid4(), subject=secrets.token_hex(8), scope="openid", claims={},
                  auth_time=utcnow(), amr="pwd")
    session.add(grant)
    session.flush()
    return grant


def test_reset_revokes_every_live_grant_of_the_account_only(db):
    done, other = _sign_up(db), _sign_up(db)
    mine = db.write(lambda s: [_grant(s, s.get(MemberAccount, done.account_id)).id for _ in range(2)])
    theirs = db.write(lambda s: _grant(s, s.get(MemberAccount, other.account_id)).id)
    token = db.write(lambda s: accounts.request_reset(s, done.email))
    db.write(lambda s: accounts.reset_password(s, token, FAST.hash("a brand new password")))
    with db.read() as session:
        assert all(session.get(Grant, g).revoked_at is not None for g in mine)
        assert session.get(Grant, theirs).revoked_at is None


def test_reset_of_an_unverified_account_clears_its_second_factor(db):
    """Whoever set up the second factor before the address was proved may have been an
    impostor who signed up with someone else's address; the reset proves the mailbox."""
    done = _sign_up(db)
    _enrol(db, done)
    token = db.write(lambda s: accounts.request_reset(s, done.email))
    db.write(lambda s: accounts.reset_password(s, token, FAST.hash("a brand new password")))
    account = _account(db, done.account_id)
    assert not accounts.totp_enabled(account) and account.totp_secret_sealed is None
    assert account.email_verified_at is not None
    with db.read() as session:
        assert accounts.recovery_codes_left(session, account) == 0


def test_reset_of_a_verified_account_keeps_its_second_factor(db):
    done = _sign_up(db)
    db.write(lambda s: setattr(s.get(MemberAccount, done.account_id), "email_verified_at", utcnow()))
    _enrol(db, done)
    token = db.write(lambda s: accounts.request_reset(s, done.email))
    db.write(lambda s: accounts.reset_password(s, token, FAST.hash("a brand new password")))
    account = _account(db, done.account_id)
    assert accounts.totp_enabled(account)
    with db.read() as session:
        assert accounts.recovery_codes_left(session, account) == 10


def test_reset_of_an_unknown_email_gives_nothing_and_expired_tokens_fail(db):
    assert db.write(lambda s: accounts.request_reset(s, _email())) is None
    done = _sign_up(db)
    token = db.write(lambda s: accounts.request_reset(s, done.email))
    new_hash = FAST.hash("a brand new password")
    with pytest.raises(Invalid) as refused:
        db.write(lambda s: accounts.reset_password(s, token, new_hash, now=utcnow() + timedelta(hours=2)))
    assert refused.value.slug == "token-invalid"
    db.write(lambda s: accounts.reset_password(s, token, new_hash))


# --- mail ------------------------------------------------------------------------------

def test_mail_is_sealed_at_rest_and_logged_without_its_body(db, caplog):
    to = _email()
    with caplog.at_level(logging.INFO, logger="hub.identity.mail"):
        db.write(lambda s: mail.send(s, to=to, subject="Hello", body="secret link https://x/y?token=abc"))
    with db.read() as session:
        (row,) = session.scalars(select(OutgoingMail).where(OutgoingMail.to_index == blind.index("email", to))).all()
        (message,) = mail.latest(session, to=to)
    assert "token=abc" not in row.body_sealed and message.body.endswith("token=abc")
    assert to not in caplog.text and "token" not in caplog.text and mail.redact(to) in caplog.text
