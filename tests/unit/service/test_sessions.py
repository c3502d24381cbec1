"""Web sessions in the store: a new id at each sign-in, idle and absolute timeouts, sign-out,
revocation by a password change, and throttling by address and by user name."""

from __future__ import annotations

import pytest

from smimegate.service import accounts, audit, sessions
from smimegate.service.errors import InvalidInput
from smimegate.service.sessions import Limits, Throttled
from smimegate.store import SqlStore
from smimegate.store.accounts import accounts_of
from tests.unit.service.conftest import ADMIN

PASSWORD = "a long enough password"


@pytest.fixture
def accounts_store(store: SqlStore) -> SqlStore:
    accounts.add(store, ADMIN, "alice", "admin", PASSWORD)
    accounts.add(store, ADMIN, "otto", "auditor", PASSWORD)
    return store


def test_sign_in_makes_a_new_session_each_time(accounts_store: SqlStore) -> None:
    store, limits = accounts_store, Limits()
    first, session = sessions.sign_in(store, "alice", PASSWORD, "192.0.2.1", limits)
    second, _ = sessions.sign_in(store, "Alice", PASSWORD, "192.0.2.1", limits)
    assert first != second and len(first) >= 43
    assert session.admin == "alice" and session.role == "admin"
    found = sessions.current(store, first, limits)
    assert found is not None and found.csrf == session.csrf
    assert sessions.csrf_ok(found, session.csrf) and not sessions.csrf_ok(found, "x" * 43)
    # Only the digest is stored, never the id itself.
    assert accounts_of(store).session(first) is None
    sessions.sign_out(store, first)
    assert sessions.current(store, first, limits) is None
    assert sessions.current(store, second, limits) is not None
    assert sessions.actor_of(session, "192.0.2.1").via == "web"
    assert [e.action for e in audit.entries(store, search="sign-in")] == ["session.sign-in"] * 2


def test_timeouts_and_revocation(accounts_store: SqlStore) -> None:
    store = accounts_store
    sid, _ = sessions.sign_in(store, "otto", PASSWORD, "192.0.2.1", Limits())
    assert sessions.current(store, sid, Limits(idle=3600, absolute=3600)) is not None
    # A limit of -1 s puts every session past it: no waiting for the clock.
    assert sessions.current(store, sid, Limits(idle=3600, absolute=-1)) is None
    sid, _ = sessions.sign_in(store, "otto", PASSWORD, "192.0.2.1", Limits())
    assert sessions.current(store, sid, Limits(idle=-1)) is None
    sid, _ = sessions.sign_in(store, "otto", PASSWORD, "192.0.2.1", Limits())
    accounts.set_password(store, ADMIN, "otto", "another long password")
    assert sessions.current(store, sid, Limits()) is None
    sid, _ = sessions.sign_in(store, "otto", "another long password", "192.0.2.1", Limits())
    accounts.remove(store, ADMIN, "otto")
    assert sessions.current(store, sid, Limits()) is None
    assert sessions.current(store, "", Limits()) is None


def test_wrong_name_or_password_says_the_same(accounts_store: SqlStore) -> None:
    messages = set()
    for name, password in [("alice", "wrong password!"), ("nobody", PASSWORD),
                           ("bad name!", PASSWORD)]:
        with pytest.raises(InvalidInput) as caught:
            sessions.sign_in(accounts_store, name, password, "192.0.2.1", Limits())
        messages.add((str(caught.value), caught.value.field))
    assert messages == {("wrong user name, password or code", "password")}


def test_throttled_by_user_name_then_by_address(accounts_store: SqlStore) -> None:
    store, limits = accounts_store, Limits(per_user=3, per_address=5)
    for _ in range(3):
        with pytest.raises(InvalidInput):
            sessions.sign_in(store, "alice", "wrong password!", "192.0.2.1", limits)
    # Even the right password is refused now, before it is checked.
    with pytest.raises(Throttled):
        sessions.sign_in(store, "alice", PASSWORD, "192.0.2.9", limits)
    # Other users from that address still get in, until the address has 5 failures.
    sessions.sign_in(store, "otto", PASSWORD, "192.0.2.1", limits)
    for _ in range(2):
        with pytest.raises(InvalidInput):
            sessions.sign_in(store, "otto", "wrong password!", "192.0.2.1", limits)
    with pytest.raises(Throttled):
        sessions.sign_in(store, "otto", PASSWORD, "192.0.2.1", limits)
    sessions.sign_in(store, "otto", PASSWORD, "192.0.2.2", limits)
    # Failures older than the window no longer count.
    sessions.sign_in(store, "alice", PASSWORD, "192.0.2.3", Limits(window=-1, per_user=3))
