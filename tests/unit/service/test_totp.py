"""TOTP second factor (RFC 6238) and re-authentication: codes checked against the RFC's
algorithm, accepted once, one step of clock skew each way; the secret sealed at rest;
sign-in needs the code; re-authentication stamps the session and is throttled."""

from __future__ import annotations

import time
import urllib.parse

import pytest
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from smimegate.service import accounts, audit, sessions, totp
from smimegate.service.errors import Forbidden, InvalidInput
from smimegate.service.sessions import Limits, Throttled
from smimegate.store import SqlStore
from smimegate.store.accounts import accounts_of
from tests.unit.service.conftest import ADMIN, AUDITOR

PASSWORD = "a long enough password"


@pytest.fixture
def alice(store: SqlStore) -> str:
    """alice with a second factor; returns its base32 secret (from the URI)."""
    accounts.add(store, ADMIN, "alice", "admin", PASSWORD)
    uri = totp.enrol(store, ADMIN, "alice")
    parsed = urllib.parse.urlparse(uri)
    query = urllib.parse.parse_qs(parsed.query)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    assert urllib.parse.unquote(parsed.path) == "/smimegate:alice"
    assert query["digits"] == ["6"] and query["period"] == ["30"]
    assert query["algorithm"] == ["SHA1"] and query["issuer"] == ["smimegate"]
    return query["secret"][0]


def test_rfc6238_appendix_b_vector() -> None:
    # RFC 6238 Appendix B, SHA-1 seed "12345678901234567890", T = 59 s: 94287082 (8 digits);
    # six digits are its last six.
    import base64
    seed = base64.b32encode(b"12345678901234567890").decode()
    assert totp.code_at(seed, 59) == "287082"
    assert totp.code_at(seed, 1111111109) == "081804"


def test_secret_sealed_at_rest_and_code_accepted_once(store: SqlStore, alice: str) -> None:
    row = accounts_of(store).totp("alice")
    assert row is not None
    import base64
    raw = base64.b32decode(alice + "=" * (-len(alice) % 8))
    assert raw not in row.sealed and len(raw) == 20
    now = time.time()
    code = totp.code_at(alice, now)
    assert totp.check(store, "alice", code, at=now)
    assert not totp.check(store, "alice", code, at=now), "a code must not work twice"
    # The next step's code works (clock skew), one two steps away does not.
    assert totp.check(store, "alice", totp.code_at(alice, now + 30), at=now)
    assert not totp.check(store, "alice", totp.code_at(alice, now + 90), at=now)
    assert not totp.check(store, "alice", "12345", at=now)
    assert not totp.check(store, "alice", "abcdef", at=now)
    # Independent implementation of the same parameters agrees.
    ref = TOTP(raw, 6, SHA1(), 30).generate(now + 300).decode()
    assert totp.code_at(alice, now + 300) == ref


def test_sign_in_needs_the_code(store: SqlStore, alice: str) -> None:
    limits = Limits(per_user=10)
    with pytest.raises(InvalidInput, match="wrong user name, password or code"):
        sessions.sign_in(store, "alice", PASSWORD, "192.0.2.1", limits)
    with pytest.raises(InvalidInput):
        sessions.sign_in(store, "alice", PASSWORD, "192.0.2.1", limits, code="000000")
    sid, session = sessions.sign_in(store, "alice", PASSWORD, "192.0.2.1", limits,
                                    code=totp.code_at(alice, time.time()))
    assert session.admin == "alice" and sid
    # Disabled: the password alone is enough again.
    totp.disable(store, ADMIN, "alice")
    assert not totp.enrolled(store, "alice")
    sessions.sign_in(store, "alice", PASSWORD, "192.0.2.1", limits)
    actions = [(e.action, e.detail) for e in audit.entries(store, search="totp")]
    assert actions == [("admin.totp", "disabled"), ("admin.totp", "enrolled")]


def test_auditor_cannot_enrol(store: SqlStore) -> None:
    accounts.add(store, ADMIN, "otto", "auditor", PASSWORD)
    with pytest.raises(Forbidden):
        totp.enrol(store, AUDITOR, "otto")
    assert accounts.listing(store)[0]["totp"] is False


def test_reauthenticate_stamps_the_session(store: SqlStore, alice: str) -> None:
    limits = Limits(per_user=3)
    now = time.time()
    _, session = sessions.sign_in(store, "alice", PASSWORD, "192.0.2.1", limits,
                                  code=totp.code_at(alice, now))
    assert session.reauth is None and not sessions.reauth_fresh(session, 300)
    with pytest.raises(InvalidInput) as caught:
        sessions.reauthenticate(store, session, PASSWORD, "", "192.0.2.1", limits)
    assert caught.value.field == "reauth_password"
    _, renewed = sessions.reauthenticate(store, session, PASSWORD,
                                         totp.code_at(alice, now + 30), "192.0.2.1", limits)
    fresh = accounts_of(store).session(renewed.digest)
    assert fresh is not None and fresh.reauth is not None
    assert sessions.reauth_fresh(fresh, 300)
    assert not sessions.reauth_fresh(fresh, 300, at=fresh.reauth + 301)
    assert [e.action for e in audit.entries(store, search="reauth")] == [
        "session.reauth", "session.reauth-failed"]
    # Wrong passwords count as failed sign-ins: throttled after per_user of them.
    for _ in range(2):
        with pytest.raises(InvalidInput):
            sessions.reauthenticate(store, session, "wrong password!", "", "192.0.2.1", limits)
    with pytest.raises(Throttled):
        sessions.reauthenticate(store, session, PASSWORD, "", "192.0.2.1", limits)
