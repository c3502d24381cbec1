"""Inheritance default -> global -> domain -> user -> ldap, and which domain rule applies."""

from __future__ import annotations

import pytest

from smimegate.policy.properties import PolicyError, names
from smimegate.policy.resolve import (
    EffectivePolicy,
    Resolved,
    domain_of,
    normalise_rule,
    pick_domain_rule,
    resolve,
    resolve_for_address,
)


def test_nothing_set_gives_defaults_from_default() -> None:
    policy = resolve()
    assert policy.as_dict()["encrypt_mode"] == {"value": "allow", "from": "default"}
    assert policy.as_dict()["locality"] == {"value": "external", "from": "default"}
    assert {entry["from"] for entry in policy.as_dict().values()} == {"default"}
    assert list(policy.as_dict()) == list(names())


def test_each_level_overrides_the_one_before() -> None:
    policy = resolve(
        global_values={"encrypt_mode": "none", "sign": "no", "sign_mode": "opaque",
                       "smime": "deny"},
        domain_values={"encrypt_mode": "allow", "sign": "yes", "smime": "allow"},
        user_values={"encrypt_mode": "mandatory", "smime": "deny"},
        directory_values={"smime": "allow"},
    )
    assert policy["sign_mode"] == Resolved("opaque", "global")
    assert policy["sign"] == Resolved("yes", "domain")
    assert policy["encrypt_mode"] == Resolved("mandatory", "user")
    assert policy["smime"] == Resolved("allow", "ldap")
    assert policy["locality"] == Resolved("external", "default")


def test_values_are_normalised_on_the_way_in() -> None:
    policy = resolve(global_values={"sign": "FALSE"}, user_values={"enabled": "off",
                                                                  "phone": "0031 20 1234567"})
    assert policy.value("sign") == "no"
    assert policy.flag("sign") is False
    assert policy.flag("enabled") is False
    assert policy.value("phone") == "+31201234567"


def test_json_shape_of_show() -> None:
    policy = resolve(domain_values={"locality": "internal"})
    shown = policy.as_dict()
    assert shown["locality"] == {"value": "internal", "from": "domain"}
    assert set(shown) == set(names())


def test_bad_stored_value_names_the_level() -> None:
    with pytest.raises(PolicyError, match="domain settings: bad value 'maybe' for sign"):
        resolve(domain_values={"sign": "maybe"})
    with pytest.raises(PolicyError, match="ldap settings: bad value 'sometimes' for encrypt_mode"):
        resolve(directory_values={"encrypt_mode": "sometimes"})


def test_unknown_stored_property_is_refused() -> None:
    with pytest.raises(PolicyError, match="global settings: unknown property 'colour'"):
        resolve(global_values={"colour": "blue"})


@pytest.mark.parametrize("level", ["global_values", "domain_values"])
def test_phone_outside_the_user_level_is_refused(level: str) -> None:
    with pytest.raises(PolicyError, match="phone cannot be set"):
        resolve(**{level: {"phone": "+31201234567"}})


def test_phone_from_the_directory_counts_as_user_level() -> None:
    policy = resolve(directory_values={"phone": "+31201234567"})
    assert policy["phone"] == Resolved("+31201234567", "ldap")


def test_effective_policy_is_immutable_and_hashable() -> None:
    policy = resolve(global_values={"sign": "no"})
    assert hash(policy) == hash(resolve(global_values={"sign": "no"}))
    with pytest.raises(AttributeError):
        policy.items = ()  # type: ignore[misc]
    with pytest.raises(PolicyError, match="unknown property 'nope'"):
        policy.value("nope")
    assert isinstance(policy, EffectivePolicy)


# Domain matching: (rules, address or domain, the rule that must win).
RULES = ["example.com", "*.example.com", "a.example.com", "other.test", "*.wild.test"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("user@example.com", "example.com"),          # exact covers the domain itself
        ("user@a.example.com", "a.example.com"),      # exact a.example.com beats *.example.com
        ("user@b.a.example.com", "a.example.com"),    # ... and covers its own subdomains
        ("user@b.example.com", "*.example.com"),      # wildcard more specific than example.com
        ("user@x.y.example.com", "*.example.com"),
        ("user@other.test", "other.test"),
        ("user@deep.sub.other.test", "other.test"),   # exact rule covers subdomains
        ("user@wild.test", None),                     # wildcard does not cover the base domain
        ("user@x.wild.test", "*.wild.test"),
        ("user@notexample.com", None),                # suffix match is by label, not by text
        ("user@example.com.evil.test", None),
        ("user@unrelated.test", None),
        ("User@EXAMPLE.COM", "example.com"),          # case-insensitive
        ("user@example.com.", "example.com"),         # trailing root dot
        ("<user@b.example.com>", "*.example.com"),    # angle brackets from the envelope
        ('"a@b"@other.test', "other.test"),           # quoted local part with an @
        ("example.com", "example.com"),               # a bare domain works too
        ("q.example.com", "*.example.com"),
    ],
)
def test_pick_domain_rule(target: str, expected: str | None) -> None:
    assert pick_domain_rule(target, RULES) == expected


def test_exact_and_wildcard_of_same_specificity_exact_wins_in_any_order() -> None:
    # a.example.com (3 labels, exact) and *.example.com (3 labels counting '*') both match.
    assert pick_domain_rule("a.example.com", ["*.example.com", "a.example.com"]) == "a.example.com"
    assert pick_domain_rule("a.example.com", ["a.example.com", "*.example.com"]) == "a.example.com"


def test_longer_wildcard_beats_shorter_exact() -> None:
    assert pick_domain_rule("x.a.example.com", ["example.com", "*.a.example.com"]) == (
        "*.a.example.com")


def test_rule_names_are_compared_in_normal_form() -> None:
    assert pick_domain_rule("u@Sub.Example.com", ["*.EXAMPLE.com."]) == "*.EXAMPLE.com."


def test_internationalised_domains_match_their_a_label() -> None:
    assert domain_of("u@Bücher.example") == "xn--bcher-kva.example"
    assert pick_domain_rule("u@bücher.example", ["xn--bcher-kva.example"]) == (
        "xn--bcher-kva.example")
    assert pick_domain_rule("u@xn--bcher-kva.example", ["bücher.example"]) == "bücher.example"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("Example.COM", "example.com"), ("*.Example.com.", "*.example.com"),
     (" a.b.c ", "a.b.c")],
)
def test_normalise_rule(rule: str, expected: str) -> None:
    assert normalise_rule(rule) == expected


@pytest.mark.parametrize(
    ("rule", "message"),
    [("*", "bad domain"), ("*example.com", "wildcard is allowed only"),
     ("a.*.com", "wildcard is allowed only"), ("*.*.com", "wildcard is allowed only"),
     ("", "empty"), ("a..com", "empty label")],
)
def test_bad_rule_names_are_refused(rule: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        normalise_rule(rule)


@pytest.mark.parametrize("address", ["nodomain", "user@", "", "<>"])
def test_address_without_domain_is_refused(address: str) -> None:
    with pytest.raises(PolicyError, match="bad (address|domain)"):
        domain_of(address)


def test_resolve_for_address_uses_the_most_specific_rule() -> None:
    rules = {
        "example.com": {"locality": "internal", "encrypt_mode": "none"},
        "*.example.com": {"encrypt_mode": "mandatory"},
    }
    top = resolve_for_address("a@example.com", {"sign": "no"}, rules)
    assert top["locality"] == Resolved("internal", "domain")
    assert top["encrypt_mode"] == Resolved("none", "domain")
    assert top["sign"] == Resolved("no", "global")
    # The wildcard rule replaces (does not stack on) the exact parent rule.
    sub = resolve_for_address("a@sub.example.com", {"sign": "no"}, rules)
    assert sub["encrypt_mode"] == Resolved("mandatory", "domain")
    assert sub["locality"] == Resolved("external", "default")
    # A user row and the directory still override the rule.
    user = resolve_for_address("a@sub.example.com", None, rules, {"encrypt_mode": "allow"},
                               {"phone": "+31201234567"})
    assert user["encrypt_mode"] == Resolved("allow", "user")
    assert user["phone"] == Resolved("+31201234567", "ldap")
    # No rule: only global and defaults.
    none = resolve_for_address("a@elsewhere.test", {"encrypt_mode": "none"}, rules)
    assert none["encrypt_mode"] == Resolved("none", "global")
