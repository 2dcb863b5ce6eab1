"""Member accounts: sign-up, email verification, passwords, TOTP and recovery codes, reset.

No Flask here: the pages (hub/web/) call these in one database transaction each and turn
`Invalid` errors (their `slug` and `field`) into messages next to the form field. Passwords
are hashed (argon2: tens of milliseconds on purpose) before the transaction, not inside it,
so no write transaction (on SQLite: the database's write lock) waits on a hash.

Nothing here tells a caller whether an email has an account: `authenticate` spends the same
argon2 work on an unknown email, `sign_up` with a taken email mails its owner instead of
failing, and `request_reset` with an unknown one simply returns nothing to mail.
"""
from __future__ import annotations

import base64
import hmac
import re
import secrets
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Protocol, TypeVar

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from hub.crypto import seal, unseal
from hub.db import utcnow
from hub.digest import sha256_hex  # what the tables keep of a token or recovery code
from hub.errors import Invalid
from hub.identity import mail, ratelimit, signout
from hub.identity.account_models import AccountToken, MemberAccount, RecoveryCode
from hub.privacy import blind
from hub.programs.models import Member

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"
TOKEN_TTL = {VERIFY_EMAIL: timedelta(days=2), RESET_PASSWORD: timedelta(hours=1)}
PASSWORD_MIN, PASSWORD_MAX = 10, 128  # NIST SP 800-63B: length, no composition rules
NAME_MAX = 100
LOCALES = ("en", "id")
RECOVERY_CODES = 10
TOTP_ISSUER = "Coalition Hub"
TOTP_STEP = 30
TOTP_PURPOSE = "totp-secret"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")


class Passwords:
    """argon2id hashing (argon2-cffi's recommended parameters unless told otherwise)."""

    def __init__(self, hasher: PasswordHasher | None = None):
        self.hasher = hasher or PasswordHasher()

    @cached_property
    def _decoy(self) -> str:
        return self.hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches; with no stored hash, the same work against a decoy."""
        try:
            return self.hasher.verify(stored or self._decoy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)


def normalise_email(raw: str) -> str:
    """Trimmed and lower-cased; refused unless it looks like an address (the mail proves it)."""
    email = unicodedata.normalize("NFC", (raw or "").strip()).lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise Invalid("that is not an email address", slug="email-invalid", field="email")
    return email


def new_password_hash(passwords: Passwords, password: str) -> str:
    """The hash of a password being chosen (sign-up, reset), once it passes the rules."""
    check_password(password)
    return passwords.hash(password)


def check_password(password: str) -> None:
    if len(password or "") < PASSWORD_MIN:
        raise Invalid(f"a password needs at least {PASSWORD_MIN} characters", slug="password-short",
                      field="password")
    if len(password) > PASSWORD_MAX:
        raise Invalid(f"a password has at most {PASSWORD_MAX} characters", slug="password-long", field="password")


def _name(raw: str | None, field: str) -> str | None:
    name = unicodedata.normalize("NFC", (raw or "").strip())
    if len(name) > NAME_MAX or any(unicodedata.category(ch).startswith("C") for ch in name):
        raise Invalid(f"a name has at most {NAME_MAX} printable characters", slug="name-invalid", field=field)
    return name or None


def _issue_token(session: Session, account: MemberAccount, purpose: str, now: datetime) -> str:
    token = secrets.token_urlsafe(32)
    session.add(AccountToken(account_id=account.id, purpose=purpose, token_hash=sha256_hex(token),
                             expires_at=now + TOKEN_TTL[purpose], created_at=now))
    return token


def _spend_token(session: Session, token: str, purpose: str, now: datetime) -> MemberAccount:
    """The account of a live token of this purpose, marking it used (once: a conditional
    update, so two concurrent uses cannot both succeed)."""
    row = session.scalar(select(AccountToken).where(
        AccountToken.token_hash == sha256_hex(token or ""), AccountToken.purpose == purpose))
    spent = row is not None and session.execute(
        update(AccountToken)
        .where(AccountToken.id == row.id, AccountToken.used_at.is_(None), AccountToken.expires_at > now)
        .values(used_at=now)
    ).rowcount == 1
    if not spent:
        raise Invalid("this link is not valid: it was used, has expired or was never sent", slug="token-invalid")
    return session.get(MemberAccount, row.account_id)


def find(session: Session, email: str) -> MemberAccount | None:
    return session.scalar(select(MemberAccount).where(MemberAccount.email_index == blind.index("email", email)))


@dataclass(frozen=True)
class SignUp:
    email: str
    # The verification token to mail; None when the email already had an account (then its
    # owner is told by mail, and the caller answers exactly as for a new account).
    verify_token: str | None
    account_id: uuid.UUID | None


def sign_up(
    session: Session, *, email: str, password_hash: str,
    given_name: str | None = None, family_name: str | None = None, locale: str | None = None,
    now: datetime | None = None,
) -> SignUp:
    """A new account for a new coalition Member, its email not yet verified. The password was
    hashed by `new_password_hash` whether the email is taken or not: the same time taken.

    Members are created by partners too (enrolment), but an existing one proves who they
    are by linking their memberships (a later step), never by typing an email here.
    """
    now = now or utcnow()
    email = normalise_email(email)
    given, family = _name(given_name, "given_name"), _name(family_name, "family_name")
    if find(session, email) is not None:
        return SignUp(email, None, None)
    member = Member(id=uuid.uuid4(), created_at=now)
    session.add(member)
    session.flush()
    account = MemberAccount(
        id=uuid.uuid4(), member_id=member.id, email=email, password_hash=password_hash,
        password_changed_at=now, given_name=given, family_name=family,
        locale=locale if locale in LOCALES else None, created_at=now,
    )
    session.add(account)
    session.flush()
    return SignUp(email, _issue_token(session, account, VERIFY_EMAIL, now), account.id)


def verify_email(session: Session, token: str, *, now: datetime | None = None) -> MemberAccount:
    now = now or utcnow()
    account = _spend_token(session, token, VERIFY_EMAIL, now)
    if account.email_verified_at is None:
        account.email_verified_at = now
    return account


class PasswordHolder(Protocol):
    """Who logs in with an email and a password: a member's account, an ops user."""
    password_hash: str


Holder = TypeVar("Holder", bound=PasswordHolder)


def authenticate(session: Session, passwords: Passwords, email: str, password: str,
                 *, lookup: Callable[[Session, str], Holder | None] = find) -> Holder | None:
    """Who holds the email if the password is right, else None (unknown email or wrong
    password, indistinguishable, in time too). Only reads: see `rehash`. `lookup` finds who
    holds a normalised email: a member's account by default (hub.identity.ops_users looks up
    its users)."""
    try:
        account = lookup(session, normalise_email(email))
    except Invalid:
        account = None
    if not passwords.verify(account.password_hash if account else None, password or ""):
        return None
    return account


def rehash(session: Session, account: MemberAccount, new_hash: str) -> None:
    """Store the hash of the password just verified, made with the current parameters
    (argon2's advice on upgrading), unless the password changed meanwhile."""
    session.execute(
        update(MemberAccount)
        .where(MemberAccount.id == account.id, MemberAccount.password_hash == account.password_hash)
        .values(password_hash=new_hash)
    )


# --- the second factor ---------------------------------------------------------------

def _totp(account: MemberAccount) -> pyotp.TOTP:
    secret = unseal(TOTP_PURPOSE, account.totp_secret_sealed).decode()
    return pyotp.TOTP(secret, interval=TOTP_STEP)


def totp_enabled(account: MemberAccount) -> bool:
    return account.totp_enabled_at is not None


def confirm_password(passwords: Passwords, account: MemberAccount, password: str) -> str:
    """Check the account's current password (before a transaction: argon2 is slow on purpose):
    the hash it matched, the proof `begin_totp` takes. Raises Invalid if it is wrong."""
    if not passwords.verify(account.password_hash, password or ""):
        raise Invalid("that is not your password", slug="password-wrong", field="password")
    return account.password_hash


def begin_totp(session: Session, account: MemberAccount, password_proof: str) -> str:
    """A new secret for the member's app (replacing an unconfirmed one): its otpauth URI.
    The second factor is off until `confirm_totp` sees a code made from it.

    It takes the current password (`password_proof`, from `confirm_password`; refused if the
    password changed since), so that a browser left logged in is not enough to tie the
    account to someone else's app."""
    if not hmac.compare_digest(password_proof or "", account.password_hash):
        raise Invalid("that is not your password", slug="password-wrong", field="password")
    if totp_enabled(account):
        raise Invalid("two-step verification is already on", slug="totp-already-on")
    secret = pyotp.random_base32()
    account.totp_secret_sealed = seal(TOTP_PURPOSE, secret.encode())
    account.totp_last_step = None
    return pyotp.TOTP(secret, interval=TOTP_STEP).provisioning_uri(name=account.email, issuer_name=TOTP_ISSUER)


def pending_totp_uri(account: MemberAccount) -> str | None:
    """The otpauth URI of an enrolment not yet confirmed (to show it again)."""
    if totp_enabled(account) or account.totp_secret_sealed is None:
        return None
    return _totp(account).provisioning_uri(name=account.email, issuer_name=TOTP_ISSUER)


def accept_code(session: Session, account, code: str, now: datetime) -> bool:
    """Whether `code` is the app's code for now (or the step before or after, for clock
    drift) and newer than the last accepted one. The step is recorded by a conditional
    update, so a code is accepted once even by concurrent requests. `account`: a member's,
    or anything stored alike (an ops user: hub/identity/ops_users.py)."""
    if account.totp_secret_sealed is None:
        return False
    code = re.sub(r"\s", "", code or "")
    totp = _totp(account)
    current = int(now.timestamp()) // TOTP_STEP
    matched = None
    for step in (current - 1, current, current + 1):  # compare all three: no early exit
        if hmac.compare_digest(totp.at(step * TOTP_STEP).encode(), code.encode()):
            matched = step
    if matched is None:
        return False
    model = type(account)
    accepted = session.execute(
        update(model)
        .where(model.id == account.id, or_(model.totp_last_step.is_(None), model.totp_last_step < matched))
        .values(totp_last_step=matched)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if accepted:
        account.totp_last_step = matched
    return accepted


def second_factor_attempt(limiter: ratelimit.Limiter, account: MemberAccount,
                          ip: str | None = None) -> ratelimit.Attempt:
    """Count a code about to be checked (the caller takes it back with `succeeded()` if it is
    right; raises Limited): per account (5 per 5 minutes), per account and password for the
    day (SECOND_FACTOR_DAY) when the factor is on (a guess at a pending enrolment's code
    reaches nothing), and per client address when `ip` is given (the login step)."""
    also = []
    if totp_enabled(account):
        also.append((ratelimit.SECOND_FACTOR_DAY,
                     ratelimit.second_factor_subject(account.id, account.password_changed_at)))
    if ip is not None:
        also.append((ratelimit.SECOND_FACTOR_IP, ip))
    return limiter.attempt(ratelimit.SECOND_FACTOR_ACCOUNT, str(account.id), *also)


def second_factor_failed(session: Session, account: MemberAccount,
                         tries: ratelimit.Attempt, notice: Callable[[], tuple[str, str]]) -> bool:
    """After a wrong code (counted by `tries`): if it used up the account's allowance for the
    day, queue the notice mail to the member (`notice()`: subject and body, in the member's
    language), once per day since only one failure fills it. Whoever types codes has the
    password: the member should choose a new one. Whether a mail was queued."""
    if not tries.filled(ratelimit.SECOND_FACTOR_DAY):
        return False
    subject, body = notice()
    mail.send(session, to=account.email, subject=subject, body=body)
    return True


def confirm_totp(
    session: Session, account: MemberAccount, code: str, *, now: datetime | None = None
) -> list[str]:
    """Turn the second factor on with a first valid code: the new recovery codes (shown once)."""
    now = now or utcnow()
    if totp_enabled(account):
        raise Invalid("two-step verification is already on", slug="totp-already-on")
    if not accept_code(session, account, code, now):
        raise Invalid("that code is not right", slug="code-wrong", field="code")
    account.totp_enabled_at = now
    return _new_recovery_codes(session, account, now)


def check_second_factor(
    session: Session, account: MemberAccount, code: str, *, now: datetime | None = None
) -> bool:
    """A TOTP code, or else one unused recovery code (spent by this)."""
    if not totp_enabled(account):
        return False
    now = now or utcnow()
    return accept_code(session, account, code, now) or _spend_recovery_code(session, account, code, now)


def disable_totp(
    session: Session, account: MemberAccount, code: str, *, now: datetime | None = None
) -> None:
    """Turn the second factor off; it takes a current code (or recovery code), so that a
    browser left logged in is not enough."""
    if not totp_enabled(account):
        raise Invalid("two-step verification is off", slug="totp-off")
    if not check_second_factor(session, account, code, now=now):
        raise Invalid("that code is not right", slug="code-wrong", field="code")
    # The account's sessions and OIDC grants stay: turning the factor off takes a current
    # code, so whoever does it already holds the factor, and ending the member's other logins
    # would not keep them out (a password reset is what ends everything).
    _clear_totp(session, account, now or utcnow())


def _clear_totp(session: Session, account: MemberAccount, now: datetime) -> None:
    """The second factor off: its secret (even one not yet confirmed) and unused recovery codes."""
    account.totp_secret_sealed = None
    account.totp_enabled_at = None
    account.totp_last_step = None
    session.execute(update(RecoveryCode).where(RecoveryCode.account_id == account.id,
                                               RecoveryCode.used_at.is_(None)).values(used_at=now))


def regenerate_recovery_codes(
    session: Session, account: MemberAccount, code: str, *, now: datetime | None = None
) -> list[str]:
    """New recovery codes, the old ones void; takes a current code, like disabling."""
    now = now or utcnow()
    if not totp_enabled(account):
        raise Invalid("two-step verification is off", slug="totp-off")
    if not accept_code(session, account, code, now):
        raise Invalid("that code is not right", slug="code-wrong", field="code")
    return _new_recovery_codes(session, account, now)


def _normalise_recovery_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "").lower()


def _new_recovery_codes(session: Session, account: MemberAccount, now: datetime) -> list[str]:
    session.execute(update(RecoveryCode).where(RecoveryCode.account_id == account.id,
                                               RecoveryCode.used_at.is_(None)).values(used_at=now))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()  # 80 bits, 16 characters
        codes.append("-".join(raw[i:i + 4] for i in range(0, 16, 4)))
        session.add(RecoveryCode(account_id=account.id, code_hash=sha256_hex(raw), created_at=now))
    session.flush()
    return codes


def _spend_recovery_code(session: Session, account: MemberAccount, code: str, now: datetime) -> bool:
    normalised = _normalise_recovery_code(code)
    if len(normalised) != 16:
        return False
    return session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.account_id == account.id, RecoveryCode.code_hash == sha256_hex(normalised),
               RecoveryCode.used_at.is_(None))
        .values(used_at=now)
    ).rowcount == 1


def recovery_codes_left(session: Session, account: MemberAccount) -> int:
    return len(session.scalars(select(RecoveryCode.id).where(
        RecoveryCode.account_id == account.id, RecoveryCode.used_at.is_(None))).all())


# --- password reset --------------------------------------------------------------------

def request_reset(session: Session, email: str, *, now: datetime | None = None) -> str | None:
    """A reset token to mail to `email`, or None when it has no account (the caller must
    answer the same either way). Raises Invalid only for what is not an address at all."""
    account = find(session, normalise_email(email))
    if account is None:
        return None
    return _issue_token(session, account, RESET_PASSWORD, now or utcnow())


def reset_password(
    session: Session, token: str, password_hash: str, *, now: datetime | None = None
) -> MemberAccount:
    """Set a new password (hashed by `new_password_hash`) with a mailed token: every other
    reset token, every login session and every OIDC grant of the account end with it (and the
    brands signed in during the sessions are told). The mail proved the address, so it is
    verified too.

    If the address had never been verified, the second factor (and its recovery codes) goes
    too: whoever set it up had not proved the mailbox, and may have signed up with someone
    else's address to keep a way in after its owner takes it back by this reset."""
    now = now or utcnow()
    account = _spend_token(session, token, RESET_PASSWORD, now)
    account.password_hash = password_hash
    account.password_changed_at = now
    if account.email_verified_at is None:
        account.email_verified_at = now
        _clear_totp(session, account, now)
    session.execute(
        update(AccountToken)
        .where(AccountToken.account_id == account.id, AccountToken.purpose == RESET_PASSWORD,
               AccountToken.used_at.is_(None))
        .values(used_at=now)
    )
    signout.end_all(session, account.id, now=now)
    return account
