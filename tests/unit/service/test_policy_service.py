"""smimegate.service's settings, domains and users: the checks every front end shares, the
role check before a change, and one audit row per change (none for a refused one)."""

from __future__ import annotations

import pytest

from smimegate.service import audit, domains, settings, users
from smimegate.service.errors import Forbidden, InvalidInput
from smimegate.service.properties import settable
from smimegate.store import NotFound, SqlStore
from tests.unit.service.conftest import ADMIN, AUDITOR


def test_changes_are_audited_with_who_what_and_where(store: SqlStore) -> None:
    settings.set_property(store, ADMIN, "sign", "off")
    domains.add(store, ADMIN, "Example.COM", {"locality": "internal", "smime": None})
    assert domains.set_property(store, ADMIN, "example.com", "encrypt_mode", "MANDATORY") \
        == "mandatory"
    users.add(store, ADMIN, "bob@example.com", {"phone": "+31 20 123 4567"})
    users.set_property(store, ADMIN, "bob@example.com", "enabled", "no")
    domains.unset_property(store, ADMIN, "example.com", "locality")
    rows = audit.entries(store)
    assert [(e.action, e.target, e.detail) for e in reversed(rows)] == [
        ("settings.set", "sign", "no"),
        ("domain.add", "example.com", "locality=internal"),
        ("domain.set", "example.com", "encrypt_mode=mandatory"),
        ("user.add", "bob@example.com", "phone=+31201234567"),
        ("user.set", "bob@example.com", "enabled=no"),
        ("domain.unset", "example.com", "locality"),
    ]
    assert {(e.actor, e.role, e.via, e.address) for e in rows} == {
        ("alice", "admin", "web", "192.0.2.7")}
    assert [e.action for e in audit.entries(store, search="BOB@")] == ["user.set", "user.add"]
    assert len(audit.entries(store, limit=2, offset=5)) == 1
    shown = domains.show(store, "example.com").as_dict()
    assert shown["encrypt_mode"] == {"value": "mandatory", "from": "domain"}
    assert shown["locality"] == {"value": "external", "from": "default"}
    assert shown["sign"] == {"value": "no", "from": "global"}
    assert users.show(store, "BOB@example.com").as_dict()["enabled"] == {"value": "no",
                                                                        "from": "user"}


def test_an_auditor_changes_nothing_and_leaves_no_audit_row(store: SqlStore) -> None:
    domains.add(store, ADMIN, "example.com")
    users.add(store, ADMIN, "bob@example.com")
    before = audit.entries(store)
    attempts = [
        lambda: settings.set_property(store, AUDITOR, "sign", "no"),
        lambda: settings.unset_property(store, AUDITOR, "sign"),
        lambda: domains.add(store, AUDITOR, "other.test"),
        lambda: domains.set_property(store, AUDITOR, "example.com", "sign", "no"),
        lambda: domains.unset_property(store, AUDITOR, "example.com", "sign"),
        lambda: domains.remove(store, AUDITOR, "example.com"),
        lambda: users.add(store, AUDITOR, "eve@example.com"),
        lambda: users.set_property(store, AUDITOR, "bob@example.com", "sign", "no"),
        lambda: users.unset_property(store, AUDITOR, "bob@example.com", "sign"),
        lambda: users.remove(store, AUDITOR, "bob@example.com"),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden, match="otto is an auditor"):
            attempt()
    assert audit.entries(store) == before
    assert store.settings() == {}
    assert domains.listing(store) == [{"name": "example.com", "properties": {}}]
    assert users.listing(store) == [{"email": "bob@example.com", "enabled": True,
                                     "properties": {}}]
    # Reading is what an auditor may do.
    assert domains.show(store, "example.com").as_dict()["sign"]["from"] == "default"


@pytest.mark.parametrize(("call", "field", "words"), [
    (lambda s: settings.set_property(s, ADMIN, "colour", "blue"), "property", "unknown property"),
    (lambda s: settings.set_property(s, ADMIN, "phone", "+31201234567"), "property",
     "cannot be set at the global level"),
    (lambda s: domains.set_property(s, ADMIN, "example.com", "smime", "maybe"), "value",
     "allowed values are allow, deny"),
    (lambda s: domains.add(s, ADMIN, "a.*.example.com"), "domain", "a.*.example.com"),
    (lambda s: users.add(s, ADMIN, "not-an-address"), "email", "not-an-address"),
    (lambda s: users.add(s, ADMIN, "a@example.com", {"phone": "12"}), "phone", "E.164"),
])
def test_bad_input_names_its_field_and_writes_nothing(
    store: SqlStore, call: object, field: str, words: str
) -> None:
    domains.add(store, ADMIN, "example.com")
    before = audit.entries(store)
    with pytest.raises(InvalidInput) as caught:
        call(store)  # type: ignore[operator]
    assert caught.value.field == field
    assert words in str(caught.value)
    assert audit.entries(store) == before
    assert store.settings() == {} and users.listing(store) == []


def test_missing_rows_are_not_found(store: SqlStore) -> None:
    with pytest.raises(NotFound, match="no domain example.com"):
        domains.set_property(store, ADMIN, "example.com", "sign", "no")
    with pytest.raises(NotFound, match="no user bob@example.com"):
        users.show(store, "bob@example.com")
    assert settings.unset_property(store, ADMIN, "sign") is False
    assert audit.entries(store) == []


def test_settable_lists_the_properties_of_each_level() -> None:
    assert "phone" in [p.name for p in settable("user")]
    assert "phone" not in [p.name for p in settable("domain")]
    encrypt = next(p for p in settable("domain") if p.name == "encrypt_mode")
    assert encrypt.choices == ("none", "allow", "mandatory") and encrypt.default == "allow"
