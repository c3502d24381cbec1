"""Inheritance of properties: built-in default -> global -> domain rule -> user -> directory.

Each later level overrides the earlier ones, property by property, and the result remembers
where every value came from ("default", "global", "domain", "user", "ldap"), which is what
``settings show``, ``domain show`` and ``user show`` print as ``from``.

Directory (ldap) values slot in at the user level and are applied after the store's own user
row: the directory is the live source of truth for the attributes it maps, and ``show`` makes
visible that a value came from it.

Domain rules: a rule ``example.com`` covers example.com and every subdomain; a rule
``*.example.com`` covers the subdomains only, not example.com itself. When several rules match,
the most specific wins: the one with the most labels, where ``*`` counts as one label (it
stands for at least one); at equal count an exact rule beats a wildcard. So with rules
``example.com`` and ``*.example.com``, example.com takes the first and a.example.com the second,
while a rule ``a.example.com`` beats ``*.example.com`` for a.example.com and b.a.example.com.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from smimegate.policy.properties import (
    PROPERTIES,
    Level,
    PolicyError,
    check_level,
    is_yes,
    validate,
)

Source = Literal["default", "global", "domain", "user", "ldap"]


@dataclass(frozen=True)
class Resolved:
    """The effective value of one property and the level it came from."""

    value: str
    source: Source


@dataclass(frozen=True)
class EffectivePolicy:
    """Every property's effective value for one address, domain or the global settings.

    Immutable and hashable: the milter may cache it per process.
    """

    items: tuple[tuple[str, Resolved], ...]

    def __getitem__(self, name: str) -> Resolved:
        """The resolved property. Raises PolicyError for an unknown name."""
        for key, resolved in self.items:
            if key == name:
                return resolved
        raise PolicyError(f"unknown property {name!r}; known properties: {', '.join(PROPERTIES)}")

    def value(self, name: str) -> str:
        """The effective value (normal form). Raises PolicyError for an unknown name."""
        return self[name].value

    def source(self, name: str) -> Source:
        """Where the effective value came from. Raises PolicyError for an unknown name."""
        return self[name].source

    def flag(self, name: str) -> bool:
        """A boolean property as bool. Raises PolicyError for an unknown name."""
        return is_yes(self.value(name))

    def as_dict(self) -> dict[str, dict[str, str]]:
        """``{property: {"value": ..., "from": ...}}`` as CONTRACT.md's ``show --json`` prints."""
        return {name: {"value": r.value, "from": r.source} for name, r in self.items}


def _apply(
    current: dict[str, Resolved],
    layer: Mapping[str, str | bool] | None,
    level: Level,
    source: Source,
) -> None:
    """Overlay one level's values, validated; raises PolicyError naming the level."""
    if not layer:
        return
    for name, raw in layer.items():
        try:
            check_level(name, level)
            value = validate(name, raw)
        except PolicyError as exc:
            raise PolicyError(f"{source} settings: {exc}") from exc
        current[name] = Resolved(value, source)


def resolve(
    global_values: Mapping[str, str | bool] | None = None,
    domain_values: Mapping[str, str | bool] | None = None,
    user_values: Mapping[str, str | bool] | None = None,
    directory_values: Mapping[str, str | bool] | None = None,
) -> EffectivePolicy:
    """Combine the levels that apply into the effective policy.

    domain_values are the properties of the one rule that applies (see pick_domain_rule);
    directory_values are those read from LDAP for the user. Every value is validated again, so
    a bad row in the store or attribute in the directory cannot slip through.

    Raises PolicyError (naming the level) for an unknown property, a bad value, or a property
    set at a level where it is not allowed (``phone`` outside the user level).
    """
    current: dict[str, Resolved] = {
        name: Resolved(prop.default, "default") for name, prop in PROPERTIES.items()
    }
    _apply(current, global_values, "global", "global")
    _apply(current, domain_values, "domain", "domain")
    _apply(current, user_values, "user", "user")
    _apply(current, directory_values, "user", "ldap")
    return EffectivePolicy(tuple(current.items()))


def resolve_for_address(
    address: str,
    global_values: Mapping[str, str | bool] | None,
    domain_rules: Mapping[str, Mapping[str, str | bool]],
    user_values: Mapping[str, str | bool] | None = None,
    directory_values: Mapping[str, str | bool] | None = None,
) -> EffectivePolicy:
    """The effective policy of an address: picks its domain rule from domain_rules, then resolve.

    Raises PolicyError for an address without a domain, a malformed rule name, or a bad value.
    """
    rule = pick_domain_rule(address, domain_rules)
    domain_values = domain_rules[rule] if rule is not None else None
    return resolve(global_values, domain_values, user_values, directory_values)


def normalise_domain(domain: str) -> str:
    """Lower case, no trailing dot, internationalised labels as A-labels (RFC 5890 2.3.2.1).

    Raises PolicyError for an empty domain, an empty label, or a label IDNA cannot encode.
    """
    text = domain.strip().rstrip(".").lower()
    if not text:
        raise PolicyError(f"bad domain {domain!r}: empty")
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise PolicyError(f"bad domain {domain!r}: {exc}") from exc
    if any(label == "" for label in text.split(".")):
        raise PolicyError(f"bad domain {domain!r}: empty label")
    return text


def domain_of(address: str) -> str:
    """The normalised domain of an address (``local@domain``, angle brackets allowed).

    The last ``@`` separates: a quoted local part may itself contain one (RFC 5321 4.1.2).
    Raises PolicyError if there is no domain.
    """
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    local, at, domain = text.rpartition("@")
    if not at or not domain:
        raise PolicyError(f"bad address {address!r}: no domain")
    return normalise_domain(domain)


def normalise_rule(rule: str) -> str:
    """The normal form of a domain rule name: ``example.com`` or ``*.example.com``.

    Raises PolicyError for ``*`` alone, a ``*`` anywhere but as the whole first label, or a
    malformed domain.
    """
    text = rule.strip()
    wildcard = text.startswith("*.")
    base = text[2:] if wildcard else text
    if "*" in base:
        raise PolicyError(
            f"bad domain rule {rule!r}: a wildcard is allowed only as '*.' at the start, "
            "e.g. *.example.com"
        )
    base = normalise_domain(base)
    return f"*.{base}" if wildcard else base


def _specificity(rule: str, domain: str) -> tuple[int, int] | None:
    """(label count, 1 if exact) when rule covers domain, else None; larger is more specific."""
    if rule.startswith("*."):
        base = rule[2:]
        if domain.endswith("." + base):
            return (base.count(".") + 2, 0)
        return None
    if domain == rule or domain.endswith("." + rule):
        return (rule.count(".") + 1, 1)
    return None


def pick_domain_rule(address_or_domain: str, rules: Iterable[str]) -> str | None:
    """The name (as given) of the most specific rule covering an address or domain, or None.

    Rule names are compared in normal form, so ``Example.COM.`` works as a rule for
    user@example.com.

    Raises PolicyError for a malformed address, domain or rule name.
    """
    text = address_or_domain
    domain = domain_of(text) if "@" in text else normalise_domain(text)
    best: tuple[int, int] | None = None
    chosen: str | None = None
    for rule in rules:
        rank = _specificity(normalise_rule(rule), domain)
        if rank is not None and (best is None or rank > best):
            best, chosen = rank, rule
    return chosen
