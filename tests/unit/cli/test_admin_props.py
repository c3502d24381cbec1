"""``settings``, ``domain`` and ``user``: properties validated by smimegate.policy, inherited
global -> domain -> user, and ``show`` giving each value and the level it came from."""

from __future__ import annotations

from smimegate.policy.properties import PROPERTIES
from smimegate.store.policyrows import address_policy, user_values
from tests.unit.cli.admin_support import Cli, cli  # noqa: F401


def test_settings_set_and_show(cli: Cli) -> None:  # noqa: F811
    assert cli.ok("settings", "set", "sign", "false").out.strip() == "global sign = no"
    cli.ok("settings", "set", "encryption_algorithm", "AES256-GCM")
    shown = cli.ok("settings", "show", "--json").json()
    assert set(shown) == set(PROPERTIES)
    assert shown["sign"] == {"value": "no", "from": "global"}
    assert shown["encryption_algorithm"] == {"value": "aes256-gcm", "from": "global"}
    assert shown["locality"] == {"value": "external", "from": "default"}
    text = cli.ok("settings", "show").out
    assert "sign" in text and "no  (global)" in text
    cli.ok("settings", "unset", "sign")
    assert cli.ok("settings", "show", "--json").json()["sign"] == {"value": "yes",
                                                                  "from": "default"}


def test_bad_names_and_values_are_usage_errors_listing_what_is_allowed(cli: Cli) -> None:  # noqa: F811
    unknown = cli("settings", "set", "colour", "blue")
    assert unknown.code == 2
    assert "unknown property 'colour'" in unknown.err and "encrypt_mode" in unknown.err
    bad = cli("settings", "set", "encrypt_mode", "always")
    assert bad.code == 2
    assert "none, allow, mandatory" in bad.err
    assert len(bad.err.strip().splitlines()) == 1
    phone = cli("settings", "set", "phone", "+31201234567")
    assert phone.code == 2 and "user" in phone.err
    cli.ok("domain", "add", "example.com")
    assert cli("domain", "set", "example.com", "smime", "maybe").code == 2
    assert cli("domain", "add", "x.test", "--locality", "inside").code == 2
    assert cli("user", "add", "a@example.com", "--phone", "12").code == 2
    assert cli("user", "add", "not-an-address").code == 2
    assert cli("domain", "add", "a.*.example.com").code == 2
    # Nothing half-written by the refused commands.
    assert cli.ok("settings", "show", "--json").json()["encrypt_mode"]["from"] == "default"
    assert [d["name"] for d in cli.ok("domain", "list", "--json").json()] == ["example.com"]
    assert cli.ok("user", "list", "--json").json() == []


def test_domain_lifecycle(cli: Cli) -> None:  # noqa: F811
    added = cli.ok("domain", "add", "Example.COM.", "--locality", "internal",
                   "--encrypt-mode", "mandatory", "--smime", "allow")
    assert "domain example.com added" in added.out
    assert cli("domain", "add", "example.com").code == 1  # exists
    cli.ok("domain", "add", "*.partner.test")
    cli.ok("settings", "set", "key_transport", "rsa-oaep")
    cli.ok("domain", "set", "example.com", "sign", "off")
    shown = cli.ok("domain", "show", "example.com", "--json").json()
    assert shown["locality"] == {"value": "internal", "from": "domain"}
    assert shown["encrypt_mode"] == {"value": "mandatory", "from": "domain"}
    assert shown["sign"] == {"value": "no", "from": "domain"}
    assert shown["key_transport"] == {"value": "rsa-oaep", "from": "global"}
    assert shown["sign_mode"] == {"value": "clear", "from": "default"}
    listed = cli.ok("domain", "list", "--json").json()
    assert listed == [
        {"name": "*.partner.test", "properties": {}},
        {"name": "example.com", "properties": {"encrypt_mode": "mandatory",
                                               "locality": "internal", "smime": "allow",
                                               "sign": "no"}},
    ]
    cli.ok("domain", "unset", "example.com", "sign")
    assert cli.ok("domain", "show", "example.com", "--json").json()["sign"]["from"] == "default"
    cli.ok("domain", "remove", "example.com")
    gone = cli("domain", "show", "example.com")
    assert gone.code == 1 and "no domain example.com" in gone.err
    assert cli("domain", "remove", "example.com").code == 1


def test_user_inherits_from_the_most_specific_domain_rule(cli: Cli) -> None:  # noqa: F811
    cli.ok("settings", "set", "sign", "no")
    cli.ok("domain", "add", "example.com", "--locality", "internal")
    cli.ok("domain", "add", "*.example.com", "--encrypt-mode", "mandatory")
    cli.ok("user", "add", "Bob@Sales.Example.com", "--phone", "0031 20 123 4567",
           "--smime", "allow")
    shown = cli.ok("user", "show", "bob@sales.example.com", "--json").json()
    assert shown["phone"] == {"value": "+31201234567", "from": "user"}
    assert shown["encrypt_mode"] == {"value": "mandatory", "from": "domain"}
    assert shown["locality"] == {"value": "external", "from": "default"}  # *. rule wins
    assert shown["sign"] == {"value": "no", "from": "global"}
    assert shown["smime"] == {"value": "allow", "from": "user"}
    users = cli.ok("user", "list", "--json").json()
    assert users == [{"email": "bob@sales.example.com", "enabled": True,
                      "properties": {"phone": "+31201234567", "smime": "allow"}}]
    assert cli.ok("user", "list", "--domain", "other.test", "--json").json() == []
    assert cli("user", "add", "bob@sales.example.com").code == 1
    cli.ok("user", "remove", "bob@sales.example.com")
    assert cli("user", "show", "bob@sales.example.com").code == 1


def test_user_enabled_is_one_source_of_truth(cli: Cli) -> None:  # noqa: F811
    cli.ok("user", "add", "a@example.com")
    assert cli.ok("user", "set", "a@example.com", "enabled", "false").out.strip() == \
        "user a@example.com enabled = no"
    assert cli.ok("user", "show", "a@example.com", "--json").json()["enabled"] == \
        {"value": "no", "from": "user"}
    store = cli.store()
    try:
        user = store.get_user("a@example.com")
        assert user.enabled is False          # the column ldap sync and the milter read
        assert "enabled" not in user.properties
        rows = store.policy_rows(["a@example.com"])
        assert user_values(rows.users["a@example.com"])["enabled"] == "no"
        # The gateway resolves it the same way (smimegate.store.policyrows).
        assert address_policy(rows, "a@example.com").flag("enabled") is False
    finally:
        store.close()
    # A disabled domain is overridden by an explicitly enabled user, and unset inherits again.
    cli.ok("domain", "add", "example.com")
    cli.ok("domain", "set", "example.com", "enabled", "no")
    cli.ok("user", "set", "a@example.com", "enabled", "TRUE")
    assert cli.ok("user", "show", "a@example.com", "--json").json()["enabled"] == \
        {"value": "yes", "from": "user"}
    cli.ok("user", "unset", "a@example.com", "enabled")
    assert cli.ok("user", "show", "a@example.com", "--json").json()["enabled"] == \
        {"value": "no", "from": "domain"}
    store = cli.store()
    try:
        assert store.get_user("a@example.com").enabled is True
    finally:
        store.close()
    text = cli.ok("user", "show", "a@example.com").out
    assert "enabled" in text and "no  (domain)" in text
    assert cli("user", "set", "nobody@example.com", "sign", "no").code == 1
