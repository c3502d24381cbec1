"""The gateway: one message's decisions and rewriting, independent of pymilter.

``Gateway.process(envelope, headers, body)`` -> ``Outcome``; the session (session.py) applies it.
Steps, after CONTRACT.md "What the milter does to a message" and issue 5 items 2-8:

1. A copy we re-submitted ourselves (reinject.py), or our own PKCS#12 mail
   (smimegate.delivery), with a valid marker (smimegate.marker) is accepted as it is.
2. Result headers (``header_prefix``), Authentication-Results naming our authserv-id and any
   reinjection marker are removed: they are ours alone (headers.py).
3. Over ``max_message_size``: passed unchanged and logged (actions.py: refused when a
   recipient requires encryption, since nothing may go out in clear).
4. Direction and per-recipient treatment come from smimegate.policy.decide with the facts
   gathered here: the client is authorised to send as an internal user when it used SMTP
   AUTH, sits in ``trusted_networks`` or came through an ``originating_daemons`` listener;
   signing keys, encryption certificates (pki.trust) and the keys that open an encrypted
   message come from the store (services.py); with ``[ldap]`` configured, the directory adds
   its policy attributes and certificates (``on_unavailable``: tempfail 451 4.7.1, or decide
   without it), and a recipient's harvested SMIMECapabilities choose AES-GCM / RSA-OAEP.
   Outbound, outbound.plan_outbound gathers them and decides: ``smimegate policy explain``
   (smimegate.service.explain) runs the very same function.
5. Outbound: sign (clear or opaque), then encrypt per group (outbound.py shares nothing with
   inbound.py). A message that is already encrypted passes as it is.
   Inbound: every layer verified and trusted against the store's roots and CRLs, encrypted
   layers opened for the recipients entitled to them, result headers and an RFC 7281
   Authentication-Results added, signer certificates harvested.
6. Recipients needing different copies are split: groups[0] stays in this transaction, every
   other group's copy is finished now and returned as a Reinjection.
7. One log line per message (smimegate.log.message_line); warnings on their own lines.

``process`` never raises: every failure goes through the action table (actions.py).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from smimegate import log
from smimegate.config import Config
from smimegate.milter import actions, reinject, replies
from smimegate.milter import headers as hdr
from smimegate.milter.edit import apply_header_edits, build_message
from smimegate.milter.entity import message_entity, replace_entity
from smimegate.milter.inbound import (
    Opened,
    addressed_to,
    first_recipients,
    is_encrypted,
    is_smime,
    open_entity,
    recipients_of,
)
from smimegate.milter.outbound import OutboundPlan, encryption_targets, plan_outbound
from smimegate.milter.services import EncryptionChoice, configured_services, smimea_resolver
from smimegate.milter.transaction import Envelope, HeaderEdit, Outcome, Reinjection
from smimegate.pki import trust
from smimegate.policy import (
    Decision,
    EffectivePolicy,
    Group,
    Recipient,
    Sender,
    decide,
    decide_at_rcpt,
    is_outbound,
)
from smimegate.smime import encrypt as smime_encrypt
from smimegate.smime import hprotect, mime
from smimegate.smime import sign as smime_sign
from smimegate.smime.errors import Malformed, SmimeError, Unsupported
from smimegate.smime.results import Layer, result_headers
from smimegate.store.base import Store, StoreUnavailable
from smimegate.store.configured import open_configured
from smimegate.store.ldap import DirectoryUnavailable, DirectoryUsers

_LOG = logging.getLogger("smimegate.milter")


class _Failure(Exception):
    """Internal: a failure kind with its reason, raised inside and mapped by the action table."""

    def __init__(self, kind: actions.FailureKind, reason: str,
                 encryption_required: bool = False) -> None:
        super().__init__(reason)
        self.kind: actions.FailureKind = kind
        self.reason = reason
        self.encryption_required = encryption_required


@dataclass
class _Run:
    """Per-message working state: the input and the log fields gathered on the way."""

    envelope: Envelope
    headers: Sequence[tuple[str, str]]
    body: bytes
    started: float
    strip: tuple[HeaderEdit, ...] = ()
    kept: list[tuple[str, str]] = field(default_factory=list)
    fields: dict[str, object] = field(default_factory=dict)
    to: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Copy:
    """One group's finished copy: edits (after the strip edits), new body, log facts."""

    edits: tuple[HeaderEdit, ...]
    new_body: bytes | None
    reply: replies.Reply = replies.CONTINUE
    facts: tuple[tuple[str, object], ...] = ()


def _bare(address: str) -> str:
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


@functools.lru_cache(maxsize=1024)
def _client_ip(addr: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Remembered: MTAs and mail servers connect again and again, and each message asks twice
    # (policy's sender, the inbound decision).
    if not addr:
        return None
    text = addr.strip().strip("[]")
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class Gateway:
    """Built once per process (``Gateway.create``); holds per-process caches."""

    def __init__(self, config: Config, store: Store,
                 directory: DirectoryUsers | None = None) -> None:
        self.store = store
        self.directory = directory
        self.services = configured_services(config, store, directory)
        self._configure(config)

    def _configure(self, config: Config) -> None:
        self.config = config
        milter = config.milter
        self.prefix = milter.header_prefix
        self.authserv_id = milter.authserv_id or socket.gethostname()
        self.networks = tuple(ipaddress.ip_network(n, strict=False)
                              for n in milter.trusted_networks)
        self._secret: bytes | None = None
        # Read (or made) now, before the daemon drops privileges: split copies carry the marker
        # when reinject_marker is on, and our own PKCS#12 mail always does (smimegate.delivery;
        # `cert issue` may have made the key as root, and the queue worker of this process
        # sends as the dropped user with marker_secret()). Fatal only when reinject_marker is
        # on; otherwise marked mail is processed normally until the key can be read.
        try:
            self._secret = reinject.load_or_create_secret(milter.reinject_secret_file)
        except reinject.MarkerKeyError as exc:
            if milter.reinject_marker:
                raise
            _LOG.warning(log.warning_line(None, "reinjection key unusable", {"error": str(exc)}))

    @classmethod
    def create(cls, config: Config, store: Store | None = None) -> Gateway:
        """A gateway over ``store``, or over the store ``config`` names (opened here), and over
        the ``[ldap]`` directory when it is enabled (connected on first lookup).

        Raises what store.configured.open_configured raises (StoreUnavailable, SchemaError,
        MasterKeyError ...), DirectoryError when the LDAP password file cannot be read, and
        reinject.MarkerKeyError when reinject_marker is on and its key cannot be read.
        """
        with contextlib.ExitStack() as on_failure:
            if store is None:
                store = open_configured(config.store)
                on_failure.callback(store.close)  # ours to close if the rest fails
            directory = DirectoryUsers(config.ldap) if config.ldap.enabled else None
            gateway = cls(config, store, directory)
            on_failure.pop_all()
        return gateway

    def reload(self, config: Config | None = None) -> None:
        """Clear the caches (the directory's too); take ``config`` (milter options, a changed
        ``[ldap]`` section: a new directory connection, a changed ``[smimea]`` section, a
        changed ``[crl]`` revocation_mode or OCSP setting) when given. Raises like create."""
        if config is not None and config.ldap != self.config.ldap:
            directory = DirectoryUsers(config.ldap) if config.ldap.enabled else None
            old, self.directory = self.directory, directory
            self.services.directory = directory
            if old is not None:
                old.close()
        if config is not None and config.smimea != self.config.smimea:
            self.services.configure_smimea(smimea_resolver(config),
                                           config.smimea.trust_dane_ee)
        if config is not None and config.crl != self.config.crl:
            from smimegate.pki.ocsp import configured_lookup

            self.services.configure_revocation(config.crl.revocation_mode,
                                               configured_lookup(config.crl))
        self.services.reload()
        if config is not None:
            self._configure(config)

    def marker_secret(self) -> bytes | None:
        """The key of the marker (smimegate.marker) read at start, for the delivery queue
        worker of this process (smimegate.delivery.queue.run_due ``marker_secret``), which
        runs after privileges are dropped; None when it could not be read."""
        return self._secret

    def close(self) -> None:
        """Release the store's connections and unbind the directory; the daemon calls this at
        shutdown. The gateway is unusable afterwards. Raises what Store.close raises."""
        try:
            if self.directory is not None:
                self.directory.close()
        finally:
            self.store.close()

    # -- facts ----------------------------------------------------------------------------
    def authorised(self, envelope: Envelope) -> bool:
        """The client may send as an internal user (SMTP AUTH, trusted network, originating
        listener)."""
        if envelope.auth_authen:
            return True
        if envelope.daemon_name and envelope.daemon_name in self.config.milter.originating_daemons:
            return True
        ip = _client_ip(envelope.client_addr)
        return ip is not None and any(ip in net for net in self.networks)

    def _sender(self, envelope: Envelope, policy: EffectivePolicy) -> Sender:
        """The sender as policy sees it before any key is looked up (RCPT time, inbound)."""
        return Sender(_bare(envelope.sender), policy, self.authorised(envelope), False)

    # -- RCPT -----------------------------------------------------------------------------
    def rcpt_check(self, envelope_so_far: Envelope, recipient: str) -> replies.Reply:
        """CONTINUE, or the refusal of a mandatory recipient known at RCPT time, or a
        tempfail when the store is down. Never raises."""
        sender_addr, rcpt = _bare(envelope_so_far.sender), _bare(recipient)
        try:
            pol = self.services.policies([sender_addr, rcpt])
            sender = self._sender(envelope_so_far, pol[sender_addr])
            rpol = pol[rcpt]
            if (not is_outbound(sender) or rpol.value("locality") == "internal"
                    or rpol.value("encrypt_mode") != "mandatory"):
                return replies.CONTINUE
            choice = self.services.encryption_certificate(rcpt)
            refusal = decide_at_rcpt(sender, Recipient(
                rcpt, rpol, choice.certificate is not None,
                has_pq_certificate=choice.kem_certificate is not None))
            return replies.reject_policy(refusal.text) if refusal else replies.CONTINUE
        except DirectoryUnavailable:
            return replies.TEMPFAIL_DIRECTORY
        except StoreUnavailable:
            return replies.TEMPFAIL_STORE
        except Exception as exc:  # noqa: BLE001 - boundary: rcpt_check never raises (Style 5)
            _LOG.warning(log.warning_line(envelope_so_far.queue_id or "",
                                          "internal error at RCPT",
                                          {"error": f"{type(exc).__name__}: {exc}"}))
            return actions.reply_for("internal",
                                     on_internal_error=self.config.milter.on_internal_error)

    # -- end of message -------------------------------------------------------------------
    def process(self, envelope: Envelope, headers: Sequence[tuple[str, str]],
                body: bytes) -> Outcome:
        """Decide and rewrite one message. Never raises (see the module docstring)."""
        run = _Run(envelope, headers, body, time.monotonic())
        try:
            run.strip, run.kept = hdr.strip_edits(headers, self.prefix, self.authserv_id,
                                                  (reinject.MARKER_HEADER,))
            return self._process(run)
        except _Failure as failure:
            return self._failed(run, failure.kind, failure.reason,
                                failure.encryption_required)
        except DirectoryUnavailable as exc:
            return self._failed(run, "directory-unavailable",
                                str(exc) or "directory unavailable")
        except StoreUnavailable as exc:
            return self._failed(run, "store-unavailable", str(exc) or "store unavailable")
        except Exception as exc:  # noqa: BLE001 - boundary: process never raises (Style 5)
            _LOG.debug("internal error", exc_info=True)
            return self._failed(run, "internal", f"{type(exc).__name__}: {exc}")

    def _failed(self, run: _Run, kind: actions.FailureKind, reason: str,
                encryption_required: bool = False) -> Outcome:
        milter = self.config.milter
        reply = actions.reply_for(kind, on_internal_error=milter.on_internal_error,
                                  on_malformed=milter.on_malformed,
                                  encryption_required=encryption_required)
        run.fields.setdefault("direction", "unknown")
        run.fields["action"] = "none"
        if kind != "oversize" or reply.refuses:
            self._warn(run, f"{actions.result_word(kind)}: {reason}")
        return Outcome(reply=reply, header_edits=() if reply.refuses else run.strip,
                       log_line=self._line(run, len(run.body), actions.result_word(kind),
                                           reply))

    def _warn(self, run: _Run, text: str) -> None:
        _LOG.warning(log.warning_line(run.envelope.queue_id or "", text))

    def _line(self, run: _Run, size_after: int, result: str, reply: replies.Reply) -> str:
        env = run.envelope
        to = run.to if run.to is not None else env.recipients
        fields: list[tuple[str, object]] = [
            ("direction", run.fields.pop("direction", "unknown")),
            ("action", run.fields.pop("action", "none")),
            ("from", f"<{_bare(env.sender)}>"),
            ("to", ",".join(f"<{_bare(r)}>" for r in to)),
        ]
        fields += list(run.fields.items())
        fields += [
            ("size", f"{len(run.body)}->{size_after}"),
            ("delay", round(time.monotonic() - run.started, 2)),
            ("result", result),
        ]
        if reply.refuses:
            fields.append(("reply", reply.line()))
        return log.message_line(env.queue_id, fields)

    def _process(self, run: _Run) -> Outcome:
        env = run.envelope
        marker = hdr.find(run.headers, reinject.MARKER_HEADER)
        if marker is not None:
            verdict = self._check_marker(marker, env, run.body)
            if verdict.valid:
                run.fields.update(direction="reinjected", action="none")
                edits = tuple(e for e in run.strip
                              if e.name.lower() == reinject.MARKER_HEADER.lower())
                return Outcome(replies.CONTINUE, edits, log_line=self._line(
                    run, len(run.body), "ok", replies.CONTINUE))
            self._warn(run, f"reinjection marker ignored: {verdict.reason}")

        recipients = [_bare(r) for r in env.recipients]
        sender_addr = _bare(env.sender)
        policies = self.services.policies([sender_addr, *recipients])
        sender_policy = policies[sender_addr]
        probe = self._sender(env, sender_policy)
        outbound = is_outbound(probe)

        limit = self.config.milter.max_message_size
        if limit and len(run.body) > limit:
            required = outbound and any(
                policies[r].value("locality") != "internal"
                and policies[r].value("encrypt_mode") == "mandatory" for r in recipients)
            run.fields["direction"] = "outbound" if outbound else "inbound"
            raise _Failure("oversize", f"{len(run.body)} bytes over max_message_size {limit}",
                           required)

        entity = message_entity(run.kept, run.body)
        if outbound:
            return self._outbound(run, entity, policies, sender_policy, recipients)
        return self._inbound(run, entity, policies, sender_policy, recipients)

    def _check_marker(self, value: str, env: Envelope, body: bytes) -> reinject.MarkerCheck:
        if self._secret is None:
            try:
                self._secret = reinject.load_or_create_secret(
                    self.config.milter.reinject_secret_file)
            except reinject.MarkerKeyError as exc:
                return reinject.MarkerCheck(False, f"no key to check it ({exc})")
        return reinject.check_marker(self._secret, value, [_bare(r) for r in env.recipients],
                                     body)

    # -- splitting ------------------------------------------------------------------------
    def _finish(self, run: _Run, decision: Decision, copies: Sequence[_Copy],
                groups: Sequence[Group]) -> Outcome:
        """This transaction keeps groups[0]; the others become reinjections."""
        kept = copies[0]
        if kept.reply.refuses:
            run.fields.update(dict(kept.facts))
            return Outcome(kept.reply, log_line=self._line(run, len(run.body), "refused",
                                                           kept.reply))
        reinjections: list[Reinjection] = []
        removed: list[str] = []
        by_bare = {_bare(r): r for r in run.envelope.recipients}
        for group, copy in zip(groups[1:], copies[1:], strict=True):
            if copy.reply.refuses:
                return Outcome(copy.reply, log_line=self._line(run, len(run.body), "refused",
                                                               copy.reply))
            edited = apply_header_edits(run.headers, (*run.strip, *copy.edits))
            new_body = copy.new_body if copy.new_body is not None else run.body
            if self.config.milter.reinject_marker and self._secret is not None:
                value = reinject.make_marker(self._secret, run.envelope.queue_id,
                                             group.addresses, new_body)
                edited.insert(0, (reinject.MARKER_HEADER, value))
            reinjections.append(Reinjection(group.addresses, build_message(edited, new_body)))
            removed.extend(by_bare.get(a, a) for a in group.addresses)
        run.to = groups[0].addresses if groups else ()
        run.fields.update(dict(kept.facts))
        if reinjections:
            run.fields["split"] = len(groups)
        size_after = len(kept.new_body) if kept.new_body is not None else len(run.body)
        return Outcome(
            reply=kept.reply,
            header_edits=(*run.strip, *kept.edits),
            new_body=kept.new_body,
            remove_recipients=tuple(removed),
            reinjections=tuple(reinjections),
            log_line=self._line(run, size_after, "ok", kept.reply),
        )

    # -- outbound -------------------------------------------------------------------------
    def _outbound(self, run: _Run, entity: bytes, policies: dict[str, EffectivePolicy],
                  sender_policy: EffectivePolicy, recipients: list[str]) -> Outcome:
        run.fields["direction"] = "outbound"
        try:
            encrypted_already = is_encrypted(entity)
            signed_already = is_smime(entity)
        except SmimeError:
            encrypted_already = signed_already = False  # not S/MIME we can read: wrap it whole
        if encrypted_already:
            run.fields.update(action="none", reason="already-encrypted")
            return Outcome(replies.CONTINUE, run.strip, log_line=self._line(
                run, len(run.body), "ok", replies.CONTINUE))

        subject_value = hdr.find(run.kept, "Subject")
        subject = hdr.decode_subject(subject_value) if subject_value is not None else None
        plan = plan_outbound(self.services, _bare(run.envelope.sender),
                             self.authorised(run.envelope), policies, recipients, subject,
                             signed_already=signed_already)
        for address, choice in plan.choices.items():
            _log_skipped(run.envelope.queue_id or "", address, choice)
        decision = plan.decision
        if decision.refusal is not None:
            reply = replies.reject_policy(decision.refusal.text)
            run.fields.update(action="refuse",
                              refused=",".join(f"<{r.address}>" for r in decision.refused))
            return Outcome(reply, log_line=self._line(run, len(run.body), "refused", reply))
        if not decision.groups:
            raise _Failure("internal", "policy left no recipient")
        copies = [self._seal(run, entity, plan, group) for group in decision.groups]
        return self._finish(run, decision, copies, decision.groups)

    def _seal(self, run: _Run, entity: bytes, plan: OutboundPlan, group: Group) -> _Copy:
        decision, signers = plan.decision, plan.signers
        edits: list[HeaderEdit] = []
        facts: list[tuple[str, object]] = [("action", decision.action(group))]
        if decision.subject is not None:
            edits.append(HeaderEdit("change", "Subject", 1, hdr.encode_subject(decision.subject)))
        new_entity = entity
        # Whether new_entity is CRLF throughout by construction (RFC 8551 3.1.1): what
        # hprotect.protect and smime sign return is, and is then not scanned again.
        canonical = False
        signing = decision.sign and bool(signers)
        detached = decision.sign_mode != "opaque"
        if self.config.milter.header_protection and (group.treatment.encrypt or signing):
            try:
                new_entity, hp_edits, hp_facts = _protect(run, entity, decision.subject,
                                                          group.treatment.encrypt)
                canonical = True
            except Malformed as exc:
                # Signed or encrypted as before rather than not at all; said once.
                self._warn(run, f"header protection skipped: {exc}")
                hp_edits, hp_facts = [], [("hp", "none")]
            if any(e.name.lower() == "subject" for e in hp_edits):
                edits = [e for e in edits if e.name.lower() != "subject"]
            edits.extend(hp_edits)
            facts.extend(hp_facts)
        if signing and len(signers) == 1:
            identity = signers[0]
            new_entity = smime_sign.sign(new_entity, identity.key, identity.certificate,
                                         identity.chain, detached=detached, canonical=canonical)
        elif signing:
            # pqc = prefer with a classic and an ML-DSA key: classic first, so that the
            # countersignature arrangement countersigns the classic SignerInfo.
            arrangement: smime_sign.Arrangement = (
                "parallel" if decision.sign_arrangement == "parallel" else "countersignature")
            new_entity = smime_sign.sign_several(
                new_entity, [smime_sign.Signer(i.key, i.certificate, i.chain) for i in signers],
                arrangement=arrangement, detached=detached, canonical=canonical)
        # Issue 9 item 9: the revocation status of each certificate used, signer first.
        revocation = [i.revocation for i in signers] if signing else []
        if group.treatment.encrypt:
            wanted = {d.address: d for d in decision.recipients}
            targets = []
            kem_targets = 0
            for address in group.addresses:
                try:
                    chosen = encryption_targets(plan.choices[address], wanted[address])
                except LookupError as exc:
                    # Never send in clear what policy meant to encrypt.
                    raise _Failure("internal", str(exc)) from exc
                for target in chosen:
                    targets.append(smime_encrypt.Recipient(target.certificate)
                                   if target.key_transport is None else
                                   smime_encrypt.Recipient(target.certificate,
                                                           target.key_transport))
                    kem_targets += target.kind == "ml-kem"
                    revocation.append(target.revocation)
            cipher = group.treatment.cipher or smime_encrypt.DEFAULT_CIPHER
            new_entity = smime_encrypt.encrypt(new_entity, targets, cipher=cipher,
                                               canonical=canonical or signing)
            facts += [("rcpt_certs", len(targets)), ("cipher", cipher)]
            if kem_targets:
                facts.append(("kem_certs", kem_targets))
        if signing:
            facts.append(("sign_mode", decision.sign_mode))
            if "ml-dsa" in decision.signers:
                facts.append(("pqc_sign", decision.sign_arrangement or "ml-dsa"))
        if revocation:
            facts.append(("revocation", ",".join(revocation)))
        if new_entity is entity:
            return _Copy(tuple(edits), None, facts=tuple(facts))
        # new_entity is what smime sign / encrypt returned: CRLF throughout (RFC 8551 3.1.1).
        entity_edits, new_body = replace_entity(run.kept, new_entity, canonical=True)
        return _Copy((*edits, *entity_edits), new_body, facts=tuple(facts))

    # -- inbound --------------------------------------------------------------------------
    def _inbound(self, run: _Run, entity: bytes, policies: dict[str, EffectivePolicy],
                 sender_policy: EffectivePolicy, recipients: list[str]) -> Outcome:
        early = self._open_early(entity, policies, recipients)
        try:
            rids = recipients_of(early[1].layers) if early else first_recipients(entity)
        except (Malformed, Unsupported) as exc:
            rids = None
            malformed: str | None = f"{type(exc).__name__.lower()}: {exc}"
        else:
            malformed = None
        facts: list[Recipient] = []
        for address in recipients:
            pol = policies[address]
            holds = False
            if rids is not None and pol.value("locality") == "internal":
                holds = any(addressed_to(c, rids)
                            for c in self.services.key_certificates(address))
            facts.append(Recipient(address, pol, False, holds_key=holds))
        sender = self._sender(run.envelope, sender_policy)
        decision = decide(sender, facts, None)
        run.fields["direction"] = decision.direction
        if decision.direction == "relay":
            run.fields["action"] = "none"
            return Outcome(replies.CONTINUE, run.strip, log_line=self._line(
                run, len(run.body), "ok", replies.CONTINUE))
        if malformed is not None:
            return self._malformed(run, malformed)
        internal = {d.address for d in decision.recipients if d.internal}
        copies = [self._open(run, entity, decision, group, internal, early)
                  for group in decision.groups]
        return self._finish(run, decision, copies, decision.groups)

    def _open_early(self, entity: bytes, policies: dict[str, EffectivePolicy],
                    recipients: list[str]) -> tuple[list[str], Opened] | None:
        """The common inbound case, a message encrypted for internal users, opened once with
        the keys of those who may decrypt (the addresses, and what it gave): their RecipientInfos
        come from the same pass, and _open reuses it when a group asks for just these keys.
        Unwrapping twice, once without keys to read the RecipientInfos and once with them, cost
        a millisecond per message (bench/cost_bench.py). None when the message is not
        encrypted at the top, when nobody could decrypt it, or when an inner layer is broken
        (then the two passes report it exactly as before). Raises StoreUnavailable."""
        addresses = [a for a in recipients if policies[a].value("locality") == "internal"
                     and policies[a].value("smime") == "allow" and policies[a].flag("enabled")]
        if not addresses:
            return None
        try:
            parsed = mime.parse_entity(entity)
            if not is_encrypted(parsed):
                return None
            keys = self.services.decryption_keys(addresses)
            if not keys:
                return None
            return addresses, open_entity(entity, keys, parsed=parsed)
        except (Malformed, Unsupported):
            return None

    def _malformed(self, run: _Run, reason: str) -> Outcome:
        milter = self.config.milter
        reply = actions.reply_for("malformed", on_malformed=milter.on_malformed)
        run.fields["action"] = "none"
        self._warn(run, f"malformed S/MIME: {reason}")
        if reply.refuses:
            return Outcome(reply, log_line=self._line(run, len(run.body), "malformed", reply))
        edits = (
            *run.strip,
            HeaderEdit("insert", "Authentication-Results", 1, hdr.authentication_results(
                self.authserv_id, [f"smime=permerror reason={hdr.quote(reason[:200])}"])),
            HeaderEdit("add", f"{self.prefix}Error", 1, hdr.fold(
                f"{self.prefix}Error", " ".join(reason.split())[:400])),
        )
        return Outcome(reply, edits, log_line=self._line(run, len(run.body), "malformed",
                                                         reply))

    def _open(self, run: _Run, entity: bytes, decision: Decision, group: Group,
              internal: set[str], early: tuple[list[str], Opened] | None) -> _Copy:
        facts: list[tuple[str, object]] = [("action", decision.action(group))]
        if not any(a in internal for a in group.addresses):
            return _Copy((), None, facts=(("action", "none"),))
        addresses = [a for a in group.addresses if a in internal]
        if early is not None and group.treatment.decrypt and addresses == early[0]:
            opened = early[1]  # opened with exactly these keys already (_open_early)
        else:
            keys = self.services.decryption_keys(addresses) if group.treatment.decrypt else []
            try:
                opened = open_entity(entity, keys)
            except (Malformed, Unsupported) as exc:
                raise _Failure("malformed", f"{type(exc).__name__.lower()}: {exc}") from exc
        if not opened.layers:
            return _Copy((), None, facts=(("action", "none"),))
        anchors = self.services.anchors() if any(
            layer.kind == "signed" for layer in opened.layers) else trust.TrustAnchors()
        layers = tuple(self.services.apply_trust(layer, anchors) for layer in opened.layers)
        harvested = self.services.import_signers(layers)
        error = opened.error
        if error and group.treatment.decrypt:
            # Entitled recipients whose key did not open it: a failure (on_malformed).
            reply = actions.reply_for("malformed", on_malformed=self.config.milter.on_malformed)
            self._warn(run, f"cannot decrypt: {error}")
            if reply.refuses:
                return _Copy((), None, reply, tuple(facts))
        edits: list[HeaderEdit] = []
        new_body: bytes | None = None
        hp_on = self.config.milter.header_protection
        restored = hprotect.restore_layers(run.kept, opened.content, layers,
                                           opened.deliverable) if hp_on and not error else None
        deliverable = opened.deliverable
        if restored is not None and restored.entity is not None:
            deliverable = restored.entity
        if deliverable is not None:
            entity_edits, new_body = replace_entity(run.kept, deliverable, content_only=hp_on)
            edits.extend(entity_edits)
        if restored is not None:
            edits.extend(_restore_edits(restored))
        edits.append(HeaderEdit("insert", "Authentication-Results", 1,
                                hdr.authentication_results(
                                    self.authserv_id, hdr.smime_results(layers, error))))
        for name, value in result_headers(layers, self.prefix):
            edits.append(HeaderEdit("add", name, 1, hdr.fold(name, value)))
        if restored is not None:
            for name, value in hprotect.result_headers(restored, self.prefix):
                edits.append(HeaderEdit("add", name, 1, hdr.fold(name, value)))
        if error:
            edits.append(HeaderEdit("add", f"{self.prefix}Error", 1,
                                    hdr.fold(f"{self.prefix}Error", error)))
        facts += _layer_facts(layers, harvested, error)
        if restored is not None:
            facts += _restore_facts(run, restored)
        return _Copy(tuple(edits), new_body, facts=tuple(facts))


def _protect(run: _Run, entity: bytes, subject: str | None,
             encrypted: bool) -> tuple[bytes, list[HeaderEdit], list[tuple[str, object]]]:
    """RFC 9788 header protection of one copy (smimegate.smime.hprotect.protect): the payload
    to sign or encrypt, the outer header edits (an encrypted copy: Subject "[...]", Keywords and
    Comments removed) and the log facts. ``subject``: the Subject policy set, if it changed."""
    fields = list(run.kept)
    if subject is not None:
        fields = [(n, hdr.encode_subject(subject) if n.lower() == "subject" else v)
                  for n, v in fields]
    protected = hprotect.protect(entity, fields, encrypted=encrypted)
    edits = [HeaderEdit("delete", name, index) if value is None
             else HeaderEdit("change", name, index, hdr.fold(name, value))
             for name, index, value in protected.outer]
    facts: list[tuple[str, object]] = [("hp", protected.mode)]
    if protected.legacy_display:
        facts.append(("legacy_display", "added"))
    return protected.entity, edits, facts


def _restore_edits(restored: hprotect.Restoration) -> list[HeaderEdit]:
    out: list[HeaderEdit] = []
    for op, name, index, value in restored.edits:
        if op == "delete" or value is None:
            out.append(HeaderEdit("delete", name, index))
        elif op == "change":
            out.append(HeaderEdit("change", name, index, hdr.fold(name, value)))
        else:
            out.append(HeaderEdit("add", name, 1, hdr.fold(name, value)))
    return out


def _restore_facts(run: _Run, restored: hprotect.Restoration) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [("hp", restored.mode)]
    if restored.protected:
        out.append(("protected", ",".join(restored.protected)))
    if restored.conflicts:
        out.append(("hp_conflict", ",".join(restored.conflicts)))
        _LOG.warning(log.warning_line(run.envelope.queue_id or "",
                                      "protected header contradicts the outer one, outer kept",
                                      {"fields": ",".join(restored.conflicts)}))
    if restored.legacy:
        out.append(("legacy_display", restored.legacy))
    if restored.errors:
        out.append(("hp_error", "; ".join(restored.errors)))
    return out


# pki.trust.choose_encryption_certificate's reason for the certificates older than the chosen
# one: they were not checked, so nothing is wrong with them that the administrator should see.
_SUPERSEDED = "a newer certificate was chosen"


def _log_skipped(queue_id: str, address: str, choice: EncryptionChoice) -> None:
    """One line per certificate of ``address`` that was not chosen (issue 4 item 2), in the
    message's context: fingerprint prefix and reason, nothing of the key. Refused ones (expired,
    revoked, untrusted ...) are warnings; superseded ones are logged at INFO. Never raises."""
    for fingerprint, reason in choice.skipped:
        level = logging.INFO if reason == _SUPERSEDED else logging.WARNING
        _LOG.log(level, log.warning_line(queue_id, "recipient certificate skipped", (
            ("to", f"<{address}>"), ("cert", fingerprint[:16]), ("reason", reason),
            ("chosen", choice.certificate is not None))))


def _layer_facts(layers: Sequence[Layer], harvested: int,
                 error: str | None) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for layer in layers:
        if layer.kind != "signed":
            out.append(("rcpt_certs", len(layer.recipients)))
            if layer.cipher:
                out.append(("cipher", layer.cipher.lower()))
            break
    signers = [s for layer in layers if layer.kind == "signed" for s in layer.signers]
    if signers:
        out.append(("signers", len(signers)))
        out.append(("verified", all(s.valid for s in signers)))
        out.append(("trusted", all(s.trusted for s in signers)))
        # Issue 9 item 9: each signer certificate's revocation status, in signer order.
        out.append(("revocation", ",".join(s.revocation for s in signers)))
    if harvested:
        out.append(("harvested", harvested))
    if error:
        out.append(("note", error))
    return out
