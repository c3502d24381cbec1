"""What to do with one message: facts and effective properties in, a frozen Decision out.

The milter gathers the facts (who sends, whether the client is authorised to send as an internal
user, the recipients with their effective properties and whether a usable certificate exists,
the Subject, whether the sender has a signing key) and acts on the Decision. Nothing here does
I/O. Rules, after CONTRACT.md "What the milter does to a message":

Direction
  outbound  the sender's locality is internal AND the client is authorised (SMTP AUTH, trusted
            network or originating daemon: one boolean the milter computes). Wins over inbound.
  inbound   otherwise, when at least one recipient is internal.
  relay     neither: nothing is signed, encrypted or decrypted.
  A From in an internal domain from an unauthorised client is a forgery or a misrouted
  message: it is never outbound, so never signed with our keys.

Signing (outbound only, one signature for the whole message)
  when the sender's sign is yes, smime is allow, enabled is yes and it has a signing key;
  sign_mode (clear | opaque) from the sender. The sender's pqc chooses the keys: never: the
  classic key; prefer: the classic key and the ML-DSA key, whichever it has (both: the
  ML-DSA signature goes beside the classic one as pqc_signature says); only: the ML-DSA key.

Encryption (outbound only, per recipient, from the recipient's effective properties)
  Internal recipients are never encrypted: their mail does not leave the gateway's users.
  For an external recipient, encryption is *possible* when: a usable certificate exists,
  its encrypt_mode is not none, smime is allow on both sender and recipient, and the recipient is
  enabled. Encryption is *required* when its encrypt_mode is mandatory, or when the subject
  trigger matched (below). Then:
    possible               -> encrypt (under allow too: like the commercial seed, a usable
                              certificate is used whenever one exists; encrypting costs the
                              recipient nothing and a mail admin who imported a certificate
                              expects it to be used)
    required, not possible -> refuse with 550 5.7.1 naming the address; nothing goes in clear
    otherwise              -> deliver unencrypted
  Our reading of the subject trigger: since allow already encrypts whenever it can, the trigger
  is the sender saying "this message must not travel in clear". It turns the message into a
  mandatory one for each external recipient, so a recipient without certificate (or with
  encrypt_mode none, or smime deny) is refused rather than sent the text in clear, and the
  sender learns it from the reply. The trigger is only honoured for outbound mail, when the
  sender's subject_trigger_enabled is yes; its regex is the sender's subject_trigger, matched
  case-insensitively on the unfolded Subject (RFC 5322 2.2.3); zero-width matches do not count.
  The matched text is removed from the Subject whenever the trigger was honoured, also when no
  recipient is external, so the marker never reaches a reader.
  Which certificates count as usable comes from the recipient's pqc: never: a classic one
  (RSA, EC, X25519); prefer: a classic one, an ML-KEM one, or both, and the message gets a
  RecipientInfo for each (classic clients read theirs, the ML-KEM one protects against a
  later quantum attack on the classic one only when the recipient has no classic certificate
  at all: "harvest now, decrypt later" needs every RecipientInfo to resist); only: an ML-KEM
  one, so a recipient without one is treated exactly like one without any certificate
  (allow: sent in clear, mandatory or trigger: refused). That is what an administrator who
  says "only" asks for: no message to that recipient is protected by a classic key alone.
  Cipher and key transport come from the recipient's encryption_algorithm and key_transport.
  Left at their built-in default, the recipient's advertised SMIMECapabilities (RFC 8551
  2.5.2, 2.7.1) choose: the first of aes256-gcm, aes128-gcm, aes256-cbc, aes128-cbc it lists,
  and rsa-oaep when it lists that. key_transport only matters for RSA certificates.

Decryption (inbound only, per recipient)
  A recipient is entitled to the plaintext when it is internal, smime is allow, it is enabled,
  and one of its own private keys (current or older) opens the message (``holds_key``, which
  the milter works out from the RecipientInfos). Decrypting for the whole transaction is only
  right when every recipient is entitled; otherwise the groups differ and the milter splits, so
  no one reads what was not encrypted to them.

Groups and refusals
  Recipients that are not refused are grouped by treatment (encrypt, cipher, decrypt, kem), in
  the order of their first member; the milter keeps groups[0] in this transaction and re-submits
  the others. Recipients in one encrypted group may differ in key transport: each RecipientInfo
  carries its own (RFC 5652 6.2). kem: the copy carries ML-KEM RecipientInfos. Recipients
  encrypted to classically only never share a copy with one that has an ML-KEM RecipientInfo:
  NSS 3.87 (Thunderbird's library, Debian 12's cmsutil) refuses a whole EnvelopedData that has
  an ori RecipientInfo (SEC_ERROR_BAD_DER, tests/e2e/test_interop_pqc_classic.py), so a classic
  recipient must not get one because someone else on the message has an ML-KEM certificate. ``refusal`` is the reply for the whole message when any
  recipient is refused (at end of message SMTP can only answer for the whole transaction);
  ``decide_at_rcpt`` answers one recipient at RCPT time with the facts known then, and refuses
  only what ``decide`` would refuse too, since the trigger can only add refusals.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from smimegate.policy.properties import PROPERTIES, PolicyError
from smimegate.policy.resolve import EffectivePolicy

Direction = Literal["outbound", "inbound", "relay"]
CertificateKind = Literal["classic", "ml-kem"]
SignerKind = Literal["classic", "ml-dsa"]

# Preference when the recipient's capabilities choose (RFC 8551 2.7.1: use the strongest the
# recipient announced). AEAD first: AuthEnvelopedData resists the EFAIL-style malleability
# of CBC (RFC 8551 2.7.1.2, RFC 5083).
CIPHER_PREFERENCE: tuple[str, ...] = ("aes256-gcm", "aes128-gcm", "aes256-cbc", "aes128-cbc")

REFUSE_CODE = "550"
REFUSE_STATUS = "5.7.1"  # RFC 3463: delivery not authorized, message refused
# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including code and CRLF.
_MAX_REPLY_TEXT = 400

_FOLD = re.compile(r"\r?\n(?=[ \t])")

# The properties decide reads: of the sender, and of each recipient. The explain page
# (smimegate.service.explain) shows these with the level each value came from; keep them in
# step with the rules below.
SENDER_PROPERTIES: tuple[str, ...] = (
    "locality", "enabled", "smime", "sign", "sign_mode", "pqc", "pqc_signature",
    "subject_trigger_enabled", "subject_trigger")
RECIPIENT_PROPERTIES: tuple[str, ...] = (
    "locality", "enabled", "smime", "encrypt_mode", "pqc", "encryption_algorithm",
    "key_transport")


@dataclass(frozen=True)
class Sender:
    """The sender of one message.

    address: the envelope sender (MAIL FROM) the policy was resolved for.
    authorised: the client may send as an internal user (SMTP AUTH, trusted network or
    originating daemon), computed by the milter.
    has_signing_key: the store holds a usable classic key and certificate to sign as this
    sender; has_pq_signing_key: an ML-DSA one (RFC 9881, 9882).
    """

    address: str
    policy: EffectivePolicy
    authorised: bool
    has_signing_key: bool
    has_pq_signing_key: bool = False


@dataclass(frozen=True)
class Recipient:
    """One envelope recipient.

    has_certificate: a valid, trusted classic certificate usable for encryption to this
    address exists; has_pq_certificate: an ML-KEM one (RFC 9936).
    holds_key: inbound: one of this recipient's private keys opens the message.
    capabilities: algorithm names (as in properties.py) from the recipient's harvested
    SMIMECapabilities, most preferred first; empty when unknown.
    """

    address: str
    policy: EffectivePolicy
    has_certificate: bool
    holds_key: bool = False
    capabilities: tuple[str, ...] = ()
    has_pq_certificate: bool = False


@dataclass(frozen=True)
class Refusal:
    """An SMTP refusal: ``550 5.7.1 text``."""

    text: str
    code: str = REFUSE_CODE
    status: str = REFUSE_STATUS

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"


@dataclass(frozen=True)
class Treatment:
    """What happens to a recipient's copy; recipients with equal treatment share one copy.

    kem: the copy carries ML-KEM RecipientInfos (see "Groups and refusals")."""

    encrypt: bool
    cipher: str | None
    decrypt: bool
    kem: bool = False


@dataclass(frozen=True)
class RecipientDecision:
    """The outcome for one recipient, with short reasons for the log.

    certificates: when encrypted, which of its certificates get a RecipientInfo ("classic",
    "ml-kem"), from its pqc.
    """

    address: str
    internal: bool
    encrypt: bool
    cipher: str | None
    key_transport: str | None
    decrypt: bool
    refusal: Refusal | None
    reasons: tuple[str, ...]
    certificates: tuple[CertificateKind, ...] = ()

    @property
    def refused(self) -> bool:
        """True when this recipient must be refused."""
        return self.refusal is not None

    @property
    def treatment(self) -> Treatment:
        """The part of the outcome that decides which copy of the message it gets."""
        return Treatment(self.encrypt, self.cipher, self.decrypt, "ml-kem" in self.certificates)


@dataclass(frozen=True)
class Group:
    """Recipients that get the same copy of the message."""

    treatment: Treatment
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    """Everything the milter needs to act on one message.

    subject: the new Subject (trigger text removed, unfolded) or None to leave it unchanged.
    refusal: set when any recipient is refused; the message must then not be delivered.
    signers: when signing, the sender's keys that sign ("classic", "ml-dsa"); with both,
    sign_arrangement (the sender's pqc_signature) says how the second one is carried.
    """

    direction: Direction
    sign: bool
    sign_mode: str | None
    recipients: tuple[RecipientDecision, ...]
    groups: tuple[Group, ...]
    refusal: Refusal | None
    trigger_matched: bool
    subject: str | None
    reasons: tuple[str, ...]
    signers: tuple[SignerKind, ...] = ()
    sign_arrangement: str | None = None

    @property
    def refused(self) -> tuple[RecipientDecision, ...]:
        """The refused recipients."""
        return tuple(r for r in self.recipients if r.refused)

    @property
    def split(self) -> bool:
        """True when recipients need different copies (more than one group)."""
        return len(self.groups) > 1

    def action(self, group: Group) -> str:
        """The log line's ``action`` for one group: sign+encrypt | sign | encrypt | decrypt |
        verify | none.
        """
        if self.direction == "inbound":
            return "decrypt" if group.treatment.decrypt else "verify"
        steps = [name for name, on in (("sign", self.sign), ("encrypt", group.treatment.encrypt))
                 if on]
        return "+".join(steps) or "none"


def is_outbound(sender: Sender) -> bool:
    """True when the sender is internal and the client is authorised to send as it."""
    return sender.policy.value("locality") == "internal" and sender.authorised


def _smime_allowed(policy: EffectivePolicy) -> bool:
    return policy.value("smime") == "allow" and policy.flag("enabled")


def unfold(subject: str) -> str:
    """Undo header folding (RFC 5322 2.2.3): a line break followed by white space is removed."""
    return _FOLD.sub("", subject)


def match_trigger(pattern: str, subject: str) -> tuple[bool, str]:
    """Look for the trigger regex (case-insensitive) in an unfolded Subject.

    Returns (matched, subject without the matched texts). Each removed text takes the white
    space around it along, one space is kept between the remaining words, and zero-width
    matches are ignored.

    Raises PolicyError if pattern is not a valid regular expression.
    """
    try:
        regex = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise PolicyError(f"bad subject_trigger {pattern!r}: {exc}") from exc
    pieces: list[str] = []
    start = 0
    for found in regex.finditer(subject):
        if found.end() == found.start():
            continue
        pieces.append(subject[start:found.start()])
        start = found.end()
    if not pieces:
        return False, subject
    pieces.append(subject[start:])
    out = ""
    for index, piece in enumerate(pieces):
        if index > 0:
            piece = piece.lstrip()
        if index < len(pieces) - 1:
            piece = piece.rstrip()
        if piece:
            out = f"{out} {piece}" if out else piece
    return True, out


def _choose(policy: EffectivePolicy, name: str, capabilities: Sequence[str],
            preference: Sequence[str]) -> str:
    """Policy value when set at any level, else the first preferred algorithm advertised."""
    resolved = policy[name]
    if resolved.source != "default":
        return resolved.value
    advertised = set(capabilities)
    for candidate in preference:
        if candidate in advertised and candidate in PROPERTIES[name].choices:
            return candidate
    return resolved.value


def _quote(address: str) -> str:
    return address if address.startswith("<") else f"<{address}>"


def _outbound_recipient(sender: Sender, rcpt: Recipient, trigger: bool) -> RecipientDecision:
    policy = rcpt.policy
    if policy.value("locality") == "internal":
        return RecipientDecision(rcpt.address, True, False, None, None, False, None,
                                 ("internal-recipient",))
    mode = policy.value("encrypt_mode")
    blockers: list[str] = []
    if mode == "none":
        blockers.append("encrypt-mode-none")
    if policy.value("smime") != "allow":
        blockers.append("recipient-smime-deny")
    if not policy.flag("enabled"):
        blockers.append("recipient-disabled")
    if sender.policy.value("smime") != "allow":
        blockers.append("sender-smime-deny")
    certificates = _usable_certificates(policy.value("pqc"), rcpt)
    if not certificates:
        blockers.append("no-ml-kem-certificate" if policy.value("pqc") == "only"
                        else "no-certificate")
    required = [why for why, on in (("mandatory", mode == "mandatory"), ("trigger", trigger))
                if on]
    if not blockers:
        cipher = _choose(policy, "encryption_algorithm", rcpt.capabilities, CIPHER_PREFERENCE)
        transport = _choose(policy, "key_transport", rcpt.capabilities, ("rsa-oaep",))
        reasons = ("certificate", *(required or [mode]))
        if "ml-kem" in certificates:
            reasons += ("ml-kem",)
        return RecipientDecision(rcpt.address, False, True, cipher, transport, False, None,
                                 reasons, certificates)
    if required:
        why = ("encryption is mandatory for this recipient" if mode == "mandatory"
               else "the sender asked for encryption in the Subject")
        what = ("no valid certificate is available" if blockers == ["no-certificate"]
                else "no valid ML-KEM certificate is available (pqc only)"
                if blockers == ["no-ml-kem-certificate"]
                else "policy does not allow encrypting to it")
        refusal = Refusal(f"{_quote(rcpt.address)}: {why} but {what}; message not sent"[
            :_MAX_REPLY_TEXT])
        return RecipientDecision(rcpt.address, False, False, None, None, False, refusal,
                                 (*required, *blockers))
    return RecipientDecision(rcpt.address, False, False, None, None, False, None,
                             tuple(blockers))


def _usable_certificates(pqc: str, rcpt: Recipient) -> tuple[CertificateKind, ...]:
    """The recipient's certificates that pqc lets us encrypt to (see the module docstring)."""
    out: list[CertificateKind] = []
    if rcpt.has_certificate and pqc != "only":
        out.append("classic")
    if rcpt.has_pq_certificate and pqc != "never":
        out.append("ml-kem")
    return tuple(out)


def _signing_keys(sender: Sender) -> tuple[SignerKind, ...]:
    """The sender's keys that its pqc lets sign (see the module docstring)."""
    pqc = sender.policy.value("pqc")
    out: list[SignerKind] = []
    if sender.has_signing_key and pqc != "only":
        out.append("classic")
    if sender.has_pq_signing_key and pqc != "never":
        out.append("ml-dsa")
    return tuple(out)


def _inbound_recipient(rcpt: Recipient) -> RecipientDecision:
    policy = rcpt.policy
    if policy.value("locality") != "internal":
        return RecipientDecision(rcpt.address, False, False, None, None, False, None,
                                 ("external-recipient",))
    reasons: list[str] = []
    if policy.value("smime") != "allow":
        reasons.append("recipient-smime-deny")
    if not policy.flag("enabled"):
        reasons.append("recipient-disabled")
    if not rcpt.holds_key:
        reasons.append("no-key")
    entitled = not reasons
    return RecipientDecision(rcpt.address, True, False, None, None, entitled, None,
                             ("entitled",) if entitled else tuple(reasons))


def decide_at_rcpt(sender: Sender, recipient: Recipient) -> Refusal | None:
    """The refusal to give at RCPT time, or None to accept the recipient for now.

    Uses only what is known before the message: a mandatory external recipient of outbound
    mail that cannot be encrypted to. The Subject trigger is not known yet; it can only add
    refusals at end of message, never lift one, so this never refuses what decide would accept.
    """
    if not is_outbound(sender):
        return None
    return _outbound_recipient(sender, recipient, trigger=False).refusal


def _combined_refusal(refused: Sequence[RecipientDecision]) -> Refusal | None:
    if not refused:
        return None
    if len(refused) == 1 and refused[0].refusal is not None:
        return refused[0].refusal
    listed = ", ".join(_quote(r.address) for r in refused)
    text = f"encryption required but not possible for {listed}; message not sent"
    if len(text) > _MAX_REPLY_TEXT:
        text = (f"encryption required but not possible for {_quote(refused[0].address)} and "
                f"{len(refused) - 1} more recipients; message not sent")[:_MAX_REPLY_TEXT]
    return Refusal(text)


def _groups(decisions: Sequence[RecipientDecision]) -> tuple[Group, ...]:
    members: dict[Treatment, list[str]] = {}
    for d in decisions:
        if not d.refused:
            members.setdefault(d.treatment, []).append(d.address)
    return tuple(Group(t, tuple(addresses)) for t, addresses in members.items())


def decide(sender: Sender, recipients: Sequence[Recipient], subject: str | None) -> Decision:
    """Decide one message (see the module docstring for the rules).

    subject: the decoded (RFC 2047) Subject, folded or not, or None when there is none.
    Raises PolicyError when there are no recipients or the sender's subject_trigger is invalid.
    """
    if not recipients:
        raise PolicyError("a message needs at least one recipient")
    sender_internal = sender.policy.value("locality") == "internal"
    reasons: list[str] = []
    if sender_internal:
        reasons.append("sender-internal-authorised" if sender.authorised
                       else "sender-internal-unauthorised")
    else:
        reasons.append("sender-external")

    if is_outbound(sender):
        direction: Direction = "outbound"
    elif any(r.policy.value("locality") == "internal" for r in recipients):
        direction = "inbound"
    else:
        direction = "relay"

    trigger = False
    new_subject: str | None = None
    if direction == "outbound" and subject is not None and sender.policy.flag(
            "subject_trigger_enabled"):
        trigger, stripped = match_trigger(sender.policy.value("subject_trigger"), unfold(subject))
        if trigger:
            reasons.append("trigger")
            new_subject = stripped

    sign = False
    sign_mode: str | None = None
    signers: tuple[SignerKind, ...] = ()
    arrangement: str | None = None
    if direction == "outbound":
        wants = sender.policy.flag("sign")
        keys = _signing_keys(sender)
        if not wants:
            reasons.append("sign-no")
        elif not _smime_allowed(sender.policy):
            reasons.append("sender-smime-deny" if sender.policy.value("smime") != "allow"
                           else "sender-disabled")
        elif not keys:
            reasons.append("no-ml-dsa-key" if sender.policy.value("pqc") == "only"
                           and sender.has_signing_key else "no-signing-key")
        else:
            sign = True
            sign_mode = sender.policy.value("sign_mode")
            signers = keys
            if len(keys) > 1:
                arrangement = sender.policy.value("pqc_signature")

    if direction == "outbound":
        decisions = tuple(_outbound_recipient(sender, r, trigger) for r in recipients)
    elif direction == "inbound":
        decisions = tuple(_inbound_recipient(r) for r in recipients)
    else:
        decisions = tuple(
            RecipientDecision(r.address, False, False, None, None, False, None, ("relay",))
            for r in recipients)
    refused = tuple(d for d in decisions if d.refused)
    return Decision(
        direction=direction,
        sign=sign,
        sign_mode=sign_mode,
        recipients=decisions,
        groups=_groups(decisions),
        refusal=_combined_refusal(refused),
        trigger_matched=trigger,
        subject=new_subject,
        reasons=tuple(reasons),
        signers=signers,
        sign_arrangement=arrangement,
    )
