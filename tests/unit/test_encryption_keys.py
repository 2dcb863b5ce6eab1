"""The rules of envelope encryption and blind indexes (hub.privacy), on a database of their own."""
from __future__ import annotations

import base64
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import create_engine

from hub.privacy import blind, keyring
from hub.privacy.keyring import Keyring, MasterKeyError, SealError
from hub.privacy.models import DataKey

SECRET = "unit-test-secret-key"


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('keys') / 'keys.sqlite3'}")
    DataKey.__table__.create(engine)
    yield engine
    engine.dispose()


def _ring(engine, data_keys: str = "", index_key: str = "") -> Keyring:
    return Keyring(engine, keyring.parse_master_keys(data_keys, SECRET), keyring.index_key(index_key, SECRET))


@pytest.fixture(scope="module")
def ring(engine) -> Keyring:
    made = _ring(engine)
    made.ensure_key()
    return made


@settings(max_examples=50, deadline=None)
@given(plain=st.binary(max_size=300), purpose=st.text(min_size=1, max_size=40))
def test_sealed_values_open_to_what_was_sealed_and_never_show_it(ring, plain, purpose):
    sealed = ring.seal(purpose, plain)
    assert ring.unseal(purpose, sealed) == plain
    assert sealed != ring.seal(purpose, plain)  # a fresh nonce each time
    assert len(plain) < 4 or plain.hex() not in sealed and base64.urlsafe_b64encode(plain).decode() not in sealed


@settings(max_examples=30, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_a_changed_byte_is_refused(ring, position, bit):
    token = ring.seal("member_accounts.email", b"someone@example.com")
    head, body = token.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[position % len(raw)] ^= 1 << bit
    with pytest.raises(SealError):
        ring.unseal("member_accounts.email", f"{head}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}")


def test_a_value_moved_to_another_column_does_not_open(ring):
    token = ring.seal("member_accounts.email", b"someone@example.com")
    with pytest.raises(SealError, match="moved from elsewhere"):
        ring.unseal("member_accounts.given_name", token)
    with pytest.raises(SealError, match="not a sealed value"):
        ring.unseal("member_accounts.email", "gAAAAAB-an-old-fernet-token")


def test_old_data_keys_still_open_after_a_new_one(engine, ring):
    old = ring.seal("p", b"before")
    with engine.begin() as conn:
        newest = ring.create_key(conn)
    assert keyring.key_of(ring.seal("p", b"after")) == newest != keyring.key_of(old)
    fresh = _ring(engine)  # another process: loads the data keys from the database
    assert fresh.unseal("p", old) == b"before"


def test_master_keys_are_parsed_strictly():
    first, second = _key(), _key()
    keys = keyring.parse_master_keys(f"k2:{first}, k1:{second},derived", SECRET)
    assert list(keys) == ["k2", "k1", "derived"] and keys["k2"] == base64.b64decode(first)
    assert list(keyring.parse_master_keys("", SECRET)) == ["derived"]
    for bad, message in ((f"k1:{first[:10]}", "32 bytes"), (f"bad id:{first}", "not a key id"),
                         (f"k1:{first},k1:{second}", "given twice"), (f"derived:{first}", "not a key id")):
        with pytest.raises(MasterKeyError, match=message):
            keyring.parse_master_keys(bad, SECRET)
    with pytest.raises(MasterKeyError, match="HUB_INDEX_KEY"):
        keyring.index_key("c2hvcnQ=", SECRET)


def test_a_missing_or_wrong_master_key_is_a_clear_error(engine, ring):
    other = _ring(engine, f"other:{_key()}")  # the data keys are wrapped by `derived`
    with pytest.raises(MasterKeyError, match="which HUB_DATA_KEYS does not hold"):
        other.ensure_key()
    impostor = Keyring(engine, {"derived": os.urandom(32)}, b"x" * 32)
    with pytest.raises(MasterKeyError, match="does not open data key"):
        impostor.ensure_key()


@pytest.fixture
def installed(ring, monkeypatch):
    monkeypatch.setattr(keyring, "_installed", ring)
    return ring


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the keyring is not changed
@given(local=st.from_regex(r"[a-z0-9.]{1,20}", fullmatch=True), pad=st.text(" \t", max_size=3))
def test_a_blind_index_is_the_same_for_every_spelling_of_an_email(installed, local, pad):
    email = f"{local}@example.com"
    assert blind.index("email", f"{pad}{email.upper()}{pad}") == blind.index("email", email)
    assert blind.index("phone", email) != blind.index("email", email)  # the kind is part of it
    assert email not in blind.index("email", email) and len(blind.index("email", email)) == 64


def test_a_blind_index_depends_on_the_index_key_only(engine, installed, monkeypatch):
    phone = "+6281234567890"
    same = blind.index("phone", phone)
    monkeypatch.setattr(keyring, "_installed", _ring(engine))  # other process, same settings
    assert blind.index("phone", phone) == same
    monkeypatch.setattr(keyring, "_installed", _ring(engine, index_key=_key()))
    assert blind.index("phone", phone) != same
