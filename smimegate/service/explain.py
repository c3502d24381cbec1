"""Policy explain: what the milter would do with a message, without a message.

Sender, recipients and Subject in; out, the decision the gateway would take: the direction,
whether it signs and with which certificate(s), why every other signing key of the sender was
not used, per recipient whether it is encrypted and to which certificate, why every other
certificate of the recipient was not used, and the policy values that decided, each with the
level it came from (issue 12 point 1).

It runs the gateway's own code, never a copy of its rules: Services built from the same
configuration (smimegate.milter.services.configured_services, read-only: certificates found
in the DNS are not stored) and smimegate.milter.outbound.plan_outbound, which the gateway acts
on. tests/milter/test_explain_agrees.py holds both to the same answers. Nothing is written:
the web page is a GET and an auditor may use it.

The message is taken to be a plain one, as a user writes it (the gateway leaves one that is
encrypted already as it is). An inbound message's treatment depends on which keys it was
encrypted to; for a plain one nothing is decrypted, and each internal recipient's ``keys``
says how many private keys of its own the store holds to open an encrypted one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from smimegate.config import Config
from smimegate.milter.outbound import OutboundPlan, encryption_targets, may_encrypt, plan_outbound
from smimegate.milter.services import Services, configured_services, is_ml_kem
from smimegate.policy import (
    Decision,
    EffectivePolicy,
    PolicyError,
    Recipient,
    RecipientDecision,
    Sender,
    decide,
    is_outbound,
)
from smimegate.policy.decide import RECIPIENT_PROPERTIES, SENDER_PROPERTIES
from smimegate.service.errors import InvalidInput, OperationFailed
from smimegate.service.properties import email_arg
from smimegate.store import Store
from smimegate.store.certinfo import name_string, serial_hex
from smimegate.store.ldap import DirectoryUsers

MAX_RECIPIENTS = 100
MAX_SUBJECT = 998  # RFC 5322 2.1.1: a line is at most 998 characters

# decide's reason codes (smimegate.policy.decide) in words, for the page and the CLI.
REASONS: Mapping[str, str] = {
    "sender-internal-authorised": "the sender is internal and the client is authorised",
    "sender-internal-unauthorised": "the sender is internal but the client is not authorised "
                                    "(no SMTP AUTH, trusted network or originating listener)",
    "sender-external": "the sender is external",
    "trigger": "the Subject trigger matched",
    "sign-no": "the sender's sign is no",
    "sender-smime-deny": "the sender's smime is deny",
    "sender-disabled": "the sender is disabled",
    "no-signing-key": "the sender has no trusted signing key",
    "no-ml-dsa-key": "pqc is only and the sender has no trusted ML-DSA key",
    "internal-recipient": "internal recipient: never encrypted",
    "external-recipient": "external recipient of an inbound message",
    "encrypt-mode-none": "encrypt_mode is none",
    "recipient-smime-deny": "the recipient's smime is deny",
    "recipient-disabled": "the recipient is disabled",
    "no-certificate": "no valid, trusted certificate",
    "no-ml-kem-certificate": "pqc is only and there is no valid, trusted ML-KEM certificate",
    "mandatory": "encrypt_mode is mandatory",
    "allow": "encrypt_mode is allow and a certificate is usable",
    "certificate": "a valid, trusted certificate",
    "ml-kem": "an ML-KEM certificate (pqc)",
    "entitled": "one of its keys can open the message",
    "no-key": "no private key of its own in the store",
    "relay": "neither sender nor recipient is internal: passed unchanged",
}


@dataclass(frozen=True)
class Question:
    """What to explain: bare addresses, the Subject (None: no Subject header) and whether
    the client counts as authorised to send as an internal user."""

    sender: str
    recipients: tuple[str, ...]
    subject: str | None
    authorised: bool = True


def question(sender: str, recipients: Sequence[str], subject: str | None = None,
             authorised: bool = True) -> Question:
    """A checked Question. Raises InvalidInput naming the field (sender, recipients,
    subject)."""
    try:
        sender_address = email_arg(sender)
    except InvalidInput as exc:
        raise InvalidInput(f"sender: {exc}", "sender") from None
    addresses: list[str] = []
    for text in recipients:
        if not text.strip():
            continue
        try:
            addresses.append(email_arg(text))
        except InvalidInput as exc:
            raise InvalidInput(f"recipient {text.strip()!r}: {exc}", "recipients") from None
    if not addresses:
        raise InvalidInput("at least one recipient is needed", "recipients")
    if len(addresses) > MAX_RECIPIENTS:
        raise InvalidInput(f"at most {MAX_RECIPIENTS} recipients", "recipients")
    if subject is not None and (len(subject) > MAX_SUBJECT or "\r" in subject
                                or "\n" in subject):
        raise InvalidInput(f"the Subject must be one line of at most {MAX_SUBJECT} characters",
                           "subject")
    return Question(sender_address, tuple(dict.fromkeys(addresses)), subject, authorised)


def explain(store: Store, config: Config, asked: Question) -> dict[str, Any]:
    """The decision for ``asked`` as a JSON object (see the module docstring). Raises
    OperationFailed for a bad stored value (a subject_trigger that is no regex ...),
    StoreUnavailable, DirectoryUnavailable, MasterKeyError (signing keys are unwrapped)."""
    directory = DirectoryUsers(config.ldap) if config.ldap.enabled else None
    try:
        services = configured_services(config, store, directory, read_only=True)
        return _explain(services, asked)
    except PolicyError as exc:
        raise OperationFailed(f"policy: {exc}") from None
    finally:
        if directory is not None:
            directory.close()


def _explain(services: Services, asked: Question) -> dict[str, Any]:
    policies = services.policies([asked.sender, *asked.recipients])
    sender_policy = policies[asked.sender]
    probe = Sender(asked.sender, sender_policy, asked.authorised, False)
    plan: OutboundPlan | None = None
    if is_outbound(probe):
        plan = plan_outbound(services, asked.sender, asked.authorised, policies,
                             asked.recipients, asked.subject)
        decision = plan.decision
    else:
        # As the gateway's _inbound does for a message that is not encrypted (holds_key).
        facts = [Recipient(a, policies[a], False) for a in asked.recipients]
        decision = decide(probe, facts, asked.subject)
    recipients = [_recipient(services, plan, d, policies[d.address])
                  for d in decision.recipients]
    return {
        "sender": asked.sender,
        "authorised": asked.authorised,
        "direction": decision.direction,
        "reasons": list(decision.reasons),
        "why": [REASONS.get(r, r) for r in decision.reasons],
        "subject": {"given": asked.subject, "sent": decision.subject,
                    "trigger": decision.trigger_matched},
        "sign": _signing(services, asked.sender, plan, decision),
        "sender_policy": _values(sender_policy, SENDER_PROPERTIES),
        "refusal": str(decision.refusal) if decision.refusal is not None else None,
        "recipients": recipients,
        # A refused message is not delivered to anyone (SMTP answers for the whole
        # transaction at end of message): no copies then.
        "copies": [] if decision.refusal is not None else [
            {"recipients": list(g.addresses), "action": decision.action(g)}
            for g in decision.groups],
    }


def _values(policy: EffectivePolicy, names: Sequence[str]) -> dict[str, dict[str, str]]:
    return {name: {"value": policy.value(name), "from": policy.source(name)} for name in names}


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _describe(cert: x509.Certificate) -> dict[str, Any]:
    return {"fingerprint": _fingerprint(cert), "subject": name_string(cert.subject),
            "issuer": name_string(cert.issuer), "serial": serial_hex(cert.serial_number),
            "not_after": cert.not_valid_after_utc.isoformat()}


def _signing(services: Services, sender: str, plan: OutboundPlan | None, decision: Decision
             ) -> dict[str, Any]:
    signers = []
    if plan is not None:
        for kind in decision.signers if decision.sign else ():
            identity = plan.identities.get(kind)
            if identity is not None:
                signers.append({"family": kind, "revocation": identity.revocation,
                                **_describe(identity.certificate)})
    return {"sign": decision.sign, "mode": decision.sign_mode,
            "arrangement": decision.sign_arrangement, "signers": signers,
            "keys": _signing_keys(services, sender, plan, decision) if plan is not None else []}


def _signing_keys(services: Services, sender: str, plan: OutboundPlan, decision: Decision
                  ) -> list[dict[str, Any]]:
    """Every stored key of the sender, newest first: whether it signs and, if not, why (the
    way Services.signing_identity chooses: per family, the newest trusted key)."""
    used = {_fingerprint(identity.certificate) for identity in plan.signers}
    pqc = plan.sender.policy.value("pqc")
    out: list[dict[str, Any]] = []
    for candidate in services.signing_candidates(sender):
        fingerprint = _fingerprint(candidate.certificate)
        result = candidate.trust
        trusted = result is not None and result.trusted
        if fingerprint in used:
            why = ""
        elif result is None:
            why = "blocked in the store"
        elif not trusted:
            why = f"not trusted for signing: {result.reason}"
        elif not decision.sign:
            why = "not signed: " + "; ".join(REASONS.get(r, r) for r in decision.reasons)
        elif candidate.family == "classic" and pqc == "only":
            why = "pqc is only: classic keys do not sign"
        elif candidate.family == "ml-dsa" and pqc == "never":
            why = "pqc is never: ML-DSA keys do not sign"
        else:  # signing_identity takes the newest trusted key of each kind
            why = "a newer trusted key of the same kind signs"
        out.append({**_describe(candidate.certificate), "kind": candidate.family,
                    "used": not why, "why": why})
    return out


def _action(decision: RecipientDecision) -> str:
    if decision.refused:
        return "refuse"
    if decision.encrypt:
        return "encrypt"
    if decision.decrypt:
        return "decrypt"
    return "internal" if decision.internal else "clear"


def _recipient(services: Services, plan: OutboundPlan | None, decision: RecipientDecision,
               policy: EffectivePolicy) -> dict[str, Any]:
    return {
        "address": decision.address,
        "internal": decision.internal,
        "action": _action(decision),
        "cipher": decision.cipher,
        "key_transport": decision.key_transport,
        "reasons": list(decision.reasons),
        "why": [REASONS.get(r, r) for r in decision.reasons],
        "refusal": str(decision.refusal) if decision.refusal is not None else None,
        "policy": _values(policy, RECIPIENT_PROPERTIES),
        "keys": len(services.key_certificates(decision.address)) if decision.internal else 0,
        "certificates": _certificates(services, plan, decision, policy),
    }


def _certificates(services: Services, plan: OutboundPlan | None, decision: RecipientDecision,
                  policy: EffectivePolicy) -> list[dict[str, Any]]:
    """Every certificate of the recipient the gateway looked at or could have: used or not,
    and why not (the trust check's reason, pqc, or policy that did not ask for one)."""
    address = decision.address
    stored = {r.fingerprint: r for r in services.store.find_certificates(address)
              if not r.is_ca}
    choice = plan.choices.get(address) if plan is not None else None
    if choice is None:
        why = ("not considered: " + "; ".join(REASONS.get(r, r) for r in decision.reasons)
               if plan is not None and not may_encrypt(policy) else
               "not considered: only outbound mail is encrypted")
        return [{**_with_kind(r.certificate()), "used": False,
                 "why": "blocked in the store" if r.blocked else why}
                for r in stored.values()]
    used = {_fingerprint(t.certificate): t for t in (
        encryption_targets(choice, decision) if decision.encrypt else ())}
    out: list[dict[str, Any]] = []
    for kind, cert in (("classic", choice.certificate), ("ml-kem", choice.kem_certificate)):
        if cert is None:
            continue
        target = used.get(_fingerprint(cert))
        out.append({**_describe(cert), "kind": kind, "used": target is not None,
                    "revocation": (choice.revocation if kind == "classic"
                                   else choice.kem_revocation),
                    "why": "" if target is not None else _unused_why(kind, decision, policy)})
    for fingerprint, reason in choice.skipped:
        record = stored.get(fingerprint)
        described = (_with_kind(record.certificate()) if record is not None
                     else {"fingerprint": fingerprint, "kind": None})
        out.append({**described, "used": False, "why": reason})
    seen = {c["fingerprint"] for c in out}
    out.extend({**_with_kind(r.certificate()), "used": False, "why": "blocked in the store"}
               for r in stored.values() if r.blocked and r.fingerprint not in seen)
    return out


def _with_kind(cert: x509.Certificate) -> dict[str, Any]:
    """_describe(cert) and the kind of recipient info it could give, as the gateway tells
    them apart (milter/services.py): an ML-KEM key (RFC 9936) or a classic one."""
    return {**_describe(cert), "kind": "ml-kem" if is_ml_kem(cert) else "classic"}


def _unused_why(kind: str, decision: RecipientDecision, policy: EffectivePolicy) -> str:
    """Why a trusted certificate was chosen and still not used."""
    pqc = policy.value("pqc")
    if kind == "classic" and pqc == "only":
        return "pqc is only: classic certificates are not used"
    if kind == "ml-kem" and pqc == "never":
        return "pqc is never: ML-KEM certificates are not used"
    return "not encrypted: " + "; ".join(REASONS.get(r, r) for r in decision.reasons)
