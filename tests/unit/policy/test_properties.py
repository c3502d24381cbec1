"""The property table: names, defaults, normal forms, levels and error messages."""

from __future__ import annotations

import pytest

from smimegate.policy import properties
from smimegate.policy.properties import PolicyError, check_level, defaults, validate


def test_table_holds_exactly_the_properties_of_the_issue() -> None:
    assert properties.names() == (
        "locality", "encrypt_mode", "smime", "sign", "sign_mode", "subject_trigger",
        "subject_trigger_enabled", "encryption_algorithm", "key_transport", "pqc",
        "pqc_signature", "phone", "enabled",
    )


def test_defaults() -> None:
    assert dict(defaults()) == {
        "locality": "external",
        "encrypt_mode": "allow",
        "smime": "allow",
        "sign": "yes",
        "sign_mode": "clear",
        "subject_trigger": r"\[encrypt\]",
        "subject_trigger_enabled": "yes",
        "encryption_algorithm": "aes256-cbc",
        "key_transport": "rsa-pkcs1",
        "pqc": "never",
        "pqc_signature": "countersignature",
        "phone": "",
        "enabled": "yes",
    }


@pytest.mark.parametrize("name", properties.names())
def test_every_default_is_in_normal_form(name: str) -> None:
    default = defaults()[name]
    assert validate(name, default) == default


@pytest.mark.parametrize("name", properties.names())
def test_every_property_is_documented(name: str) -> None:
    assert len(properties.PROPERTIES[name].doc) > 20


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("locality", "internal", "internal"),
        ("locality", " External ", "external"),
        ("encrypt_mode", "MANDATORY", "mandatory"),
        ("encrypt_mode", "none", "none"),
        ("smime", "Deny", "deny"),
        ("sign", "yes", "yes"),
        ("sign", "TRUE", "yes"),
        ("sign", "on", "yes"),
        ("sign", "1", "yes"),
        ("sign", "No", "no"),
        ("sign", "false", "no"),
        ("sign", "OFF", "no"),
        ("sign", "0", "no"),
        ("enabled", True, "yes"),
        ("enabled", False, "no"),
        ("subject_trigger_enabled", "off", "no"),
        ("sign_mode", "opaque", "opaque"),
        ("encryption_algorithm", "AES128-GCM", "aes128-gcm"),
        ("encryption_algorithm", "aes256-gcm", "aes256-gcm"),
        ("encryption_algorithm", "aes128-cbc", "aes128-cbc"),
        ("key_transport", "rsa-oaep", "rsa-oaep"),
        ("subject_trigger", r"\[secure\]", r"\[secure\]"),
        ("subject_trigger", r" \[x\] ", r" \[x\] "),  # a regex is kept byte for byte
        ("phone", "+31 20 123 4567", "+31201234567"),
        ("phone", "0049 (170) 123-45.67", "+491701234567"),
        ("phone", "+14155550100", "+14155550100"),
        ("phone", "", ""),
    ],
)
def test_valid_values_are_normalised(name: str, given: str | bool, expected: str) -> None:
    assert validate(name, given) == expected


@pytest.mark.parametrize(
    ("name", "given", "message_parts"),
    [
        ("locality", "inside", ["locality", "'inside'", "internal, external"]),
        ("encrypt_mode", "always", ["encrypt_mode", "none, allow, mandatory"]),
        ("smime", "", ["smime", "allow, deny"]),
        ("sign", "maybe", ["sign", "yes, no", "true/false", "on/off"]),
        ("sign_mode", "detached", ["sign_mode", "clear, opaque"]),
        ("encryption_algorithm", "des-ede3-cbc",
         ["encryption_algorithm", "aes256-cbc, aes128-cbc, aes128-gcm, aes256-gcm"]),
        ("key_transport", "rsa-pss", ["key_transport", "rsa-pkcs1, rsa-oaep"]),
        ("enabled", "2", ["enabled", "yes, no"]),
        ("phone", "0170 1234567", ["phone", "E.164"]),
        ("phone", "+0123456789", ["phone", "E.164"]),
        ("phone", "+1 234", ["phone", "E.164"]),
        ("phone", "+1234567890123456", ["phone", "E.164"]),
        ("phone", "call me", ["phone", "E.164"]),
        ("subject_trigger", "[encrypt", ["subject_trigger", "not a valid regular expression"]),
        ("subject_trigger", "", ["subject_trigger", "empty"]),
        ("subject_trigger", ".*", ["subject_trigger", "matches an empty Subject"]),
        ("subject_trigger", "(secure)?", ["subject_trigger", "matches an empty Subject"]),
        ("subject_trigger", "x" * 300, ["subject_trigger", "longer than 256"]),
        ("locality", 3, ["locality", "expected text"]),
    ],
)
def test_bad_values_are_refused_with_the_allowed_values(
    name: str, given: object, message_parts: list[str]
) -> None:
    with pytest.raises(PolicyError) as caught:
        validate(name, given)  # type: ignore[arg-type]
    for part in message_parts:
        assert part in str(caught.value)


def test_unknown_property_lists_the_known_names() -> None:
    with pytest.raises(PolicyError) as caught:
        validate("encryption_mode", "allow")
    message = str(caught.value)
    assert "unknown property 'encryption_mode'" in message
    for name in properties.names():
        assert name in message


def test_policy_error_is_a_value_error() -> None:
    assert issubclass(PolicyError, ValueError)


@pytest.mark.parametrize("level", ["global", "domain"])
def test_phone_is_a_user_property_only(level: str) -> None:
    with pytest.raises(PolicyError, match=f"phone cannot be set at the {level} level.*user"):
        validate("phone", "+31201234567", level)  # type: ignore[arg-type]


def test_phone_at_user_level_is_fine() -> None:
    assert validate("phone", "+31201234567", "user") == "+31201234567"


@pytest.mark.parametrize("name", [n for n in properties.names() if n != "phone"])
@pytest.mark.parametrize("level", ["global", "domain", "user"])
def test_other_properties_may_be_set_at_every_level(name: str, level: str) -> None:
    check_level(name, level)  # type: ignore[arg-type]
    assert level in properties.PROPERTIES[name].levels


def test_check_level_refuses_unknown_names() -> None:
    with pytest.raises(PolicyError, match="unknown property 'colour'"):
        check_level("colour", "global")


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        properties.PROPERTIES["x"] = properties.PROPERTIES["sign"]  # type: ignore[index]
    with pytest.raises(TypeError):
        defaults()["sign"] = "no"  # type: ignore[index]
