"""smimegate.policy: pure policy. Properties and their inheritance in, a Decision out; no I/O.

properties.py  the table of properties, validate()
resolve.py     default -> global -> domain rule -> user -> ldap, with the level of each value
decide.py      direction, signing, per-recipient encryption / refusal / decryption, groups
"""

from smimegate.policy.decide import (
    Decision,
    Direction,
    Group,
    Recipient,
    RecipientDecision,
    Refusal,
    Sender,
    Treatment,
    decide,
    decide_at_rcpt,
    is_outbound,
    match_trigger,
)
from smimegate.policy.properties import (
    LEVELS,
    PROPERTIES,
    Level,
    PolicyError,
    Property,
    check_level,
    defaults,
    names,
    validate,
)
from smimegate.policy.resolve import (
    EffectivePolicy,
    Resolved,
    Source,
    domain_of,
    normalise_domain,
    normalise_rule,
    pick_domain_rule,
    resolve,
    resolve_for_address,
)

__all__ = [
    "LEVELS", "PROPERTIES", "Decision", "Direction", "EffectivePolicy", "Group", "Level",
    "PolicyError", "Property", "Recipient", "RecipientDecision", "Refusal", "Resolved", "Sender",
    "Source", "Treatment", "check_level", "decide", "decide_at_rcpt", "defaults", "domain_of",
    "is_outbound", "match_trigger", "names", "normalise_domain", "normalise_rule",
    "pick_domain_rule", "resolve", "resolve_for_address", "validate",
]
