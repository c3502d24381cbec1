"""The outbound decision of one message, before any byte of it is rewritten.

The facts the store holds (the sender's signing keys, each external recipient's encryption
certificates, chosen and trusted by smimegate.pki.trust through Services), smimegate.policy.decide
over them, and which certificate each encrypted recipient gets. The gateway acts on the plan
(gateway.py); ``smimegate policy explain``, the web's explain page and POST /api/v1/explain show
it (smimegate.service.explain). One code path for both, so that what the administrator is shown
is what the milter does (issue 12 point 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509

from smimegate.milter.services import EncryptionChoice, Services, SigningIdentity
from smimegate.policy import Decision, EffectivePolicy, Recipient, Sender, decide
from smimegate.policy.decide import CertificateKind, RecipientDecision, SignerKind


@dataclass(frozen=True)
class Target:
    """One RecipientInfo to write: the certificate, its kind, the key transport (classic RSA
    certificates only; None for ML-KEM) and its revocation status for the log line."""

    kind: CertificateKind
    certificate: x509.Certificate
    key_transport: str | None
    revocation: str


@dataclass(frozen=True)
class OutboundPlan:
    """What the milter will do with an outbound message.

    identities: the sender's signing identity per family, looked up only when its policy may
    sign (None: not looked up or none trusted). choices: the encryption certificates looked up,
    per recipient address: only for external recipients whose policy may encrypt (the others
    are never asked, so they cost no trust check).
    """

    sender: Sender
    identities: Mapping[SignerKind, SigningIdentity | None]
    facts: tuple[Recipient, ...]
    choices: Mapping[str, EncryptionChoice]
    decision: Decision

    @property
    def signers(self) -> list[SigningIdentity]:
        """The identities that sign, in the order decide chose ("classic" before "ml-dsa")."""
        if not self.decision.sign:
            return []
        return [found for found in (self.identities.get(kind) for kind in self.decision.signers)
                if found is not None]


def may_sign(policy: EffectivePolicy) -> bool:
    """The sender's policy lets it sign at all, so its keys are worth looking up."""
    return policy.flag("sign") and policy.value("smime") == "allow" and policy.flag("enabled")


def may_encrypt(policy: EffectivePolicy) -> bool:
    """An outbound recipient whose certificates are worth looking up: external, encrypt_mode
    not none, smime allow (decide refuses or sends in clear the others without one)."""
    return (policy.value("locality") != "internal" and policy.value("encrypt_mode") != "none"
            and policy.value("smime") == "allow")


def plan_outbound(services: Services, sender_address: str, authorised: bool,
                  policies: Mapping[str, EffectivePolicy], recipients: Sequence[str],
                  subject: str | None, *, signed_already: bool = False) -> OutboundPlan:
    """The plan for an outbound message from ``sender_address`` to ``recipients`` (bare
    addresses, each with its policy in ``policies``). subject: the decoded Subject or None.
    signed_already: the message is S/MIME signed already (then it is not signed again).

    Raises StoreUnavailable, DirectoryUnavailable, PolicyError (a bad subject_trigger).
    """
    sender_policy = policies[sender_address]
    identities: dict[SignerKind, SigningIdentity | None] = {"classic": None, "ml-dsa": None}
    if may_sign(sender_policy) and not signed_already:
        # pqc (policy.decide): never asks for the classic key alone, only for the ML-DSA key
        # alone, prefer for both.
        pqc = sender_policy.value("pqc")
        if pqc != "only":
            identities["classic"] = services.signing_identity(sender_address)
        if pqc != "never":
            identities["ml-dsa"] = services.signing_identity(sender_address, "ml-dsa")
    sender = Sender(sender_address, sender_policy, authorised,
                    identities["classic"] is not None, identities["ml-dsa"] is not None)
    facts: list[Recipient] = []
    choices: dict[str, EncryptionChoice] = {}
    for address in recipients:
        pol = policies[address]
        choice = None
        if may_encrypt(pol):
            choice = choices[address] = services.encryption_certificate(address)
        facts.append(Recipient(
            address, pol, choice is not None and choice.certificate is not None,
            capabilities=choice.capabilities if choice is not None else (),
            has_pq_certificate=choice is not None and choice.kem_certificate is not None))
    decision = decide(sender, facts, subject)
    return OutboundPlan(sender, identities, tuple(facts), choices, decision)


def encryption_targets(choice: EncryptionChoice, wanted: RecipientDecision) -> list[Target]:
    """The RecipientInfos of one encrypted recipient: a classic one and/or an ML-KEM one, as
    its pqc chose (RecipientDecision.certificates). Raises LookupError when a certificate the
    decision counted on is missing from the choice (never the case for a choice decide saw)."""
    out: list[Target] = []
    for kind in wanted.certificates:
        cert = choice.certificate if kind == "classic" else choice.kem_certificate
        if cert is None:
            raise LookupError(f"no {kind} certificate for <{wanted.address}>")
        if kind == "classic":
            out.append(Target(kind, cert, wanted.key_transport or "rsa-pkcs1",
                              choice.revocation))
        else:
            out.append(Target(kind, cert, None, choice.kem_revocation))
    return out
