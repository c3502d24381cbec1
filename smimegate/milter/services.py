"""Store and directory lookups the gateway needs, with the per-process caches (DESIGN.md
"Scale-out": caches are per process and hold nothing another node needs).

Every method may raise StoreUnavailable (the action table turns it into 451 4.7.1), and
DirectoryUnavailable (a StoreUnavailable) when an LDAP directory is configured and cannot be
asked, unless its ``on_unavailable = "soft"``: then the directory's lookup gives None and the
store alone decides. The directory (smimegate.store.ldap.DirectoryUsers, cached there for
``cache_ttl``) adds, per address, the policy level ``ldap`` (after the store's user row,
smimegate.policy.resolve) and the certificates of the user's entry as encryption candidates
next to the stored ones. Harvested SMIMECapabilities (Store.certificate_capabilities) of the
chosen certificate travel with the EncryptionChoice, so policy.decide can pick AES-GCM and
RSA-OAEP for recipients that announced them (RFC 8551 2.5.2, 2.7.1). Cached:
the trust anchors (smimegate.pki.anchors.CachedAnchors: roots, stored CA certificates as
intermediates, CRLs; read again on reload and when older than ANCHORS_MAX_AGE seconds), signing
identities and encryption certificates (CACHE_TTL seconds, so a newly imported certificate
is used within that time), trust decisions on signers (smimegate.pki.trustcache, for one
anchors value), and the policy rows of each address (POLICY_TTL seconds). Changes made with
the CLI (another process) take effect within those times or at once on SIGUSR1 (reload);
policy writes through this process's own store (SqlStore.policy_generation) at once, and
those of every other process sharing the store (the CLI, the web admin, other nodes) within
POLICY_CHECK seconds (SqlStore.shared_policy_generation, read that often, not per message). Private
keys for decryption are not cached here: they are only taken from the store for a message
that needs them (SqlStore unwraps them without OpenSSL's slow RSA key check: they were
checked when they were stored, and AES-GCM proves them unchanged).

Why caches at all (issue 5 item 12): in the milter every store query releases the GIL and the
thread then waits for it behind the other connections' signing and encryption, and a path
validation costs ~5 ms; bench/gateway_bench.py prints the per-message cost cold and warm.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

from smimegate.config import Config
from smimegate.pki import trust
from smimegate.pki.addresses import address_match
from smimegate.pki.anchors import CachedAnchors
from smimegate.pki.crlstore import CrlKeeper
from smimegate.pki.trustcache import TrustCache
from smimegate.policy import EffectivePolicy, resolve
from smimegate.smime import kem, mldsa, mlkem512
from smimegate.smime.certmemo import per_certificate
from smimegate.smime.results import Layer, SignerResult
from smimegate.store.base import Capabilities, InvalidData, PolicyRows, Store, StoreUnavailable
from smimegate.store.certinfo import cert_info
from smimegate.store.ldap import DirectoryUser, DirectoryUsers
from smimegate.store.policyrows import address_policy
from smimegate.x509errors import EXTENSION_LOOKUP_ERRORS, X509_ERRORS

CACHE_TTL = 60.0
ANCHORS_MAX_AGE = 60.0
POLICY_TTL = 30.0
# How often the store's shared policy generation (sql/0008_generations.sql) is read: a policy
# change made by another process reaches this one's cache within about this many seconds, for
# one small query per interval, not one per message.
POLICY_CHECK = 1.0

if TYPE_CHECKING:  # dnspython is imported only when [smimea] lookup is on
    from smimegate.pki.smimealookup import SmimeaLookup, SmimeaResolver

_T = TypeVar("_T")
SigningFamily = Literal["classic", "ml-dsa"]


@dataclass(frozen=True)
class SigningIdentity:
    """A key to sign with, its certificate, the intermediates to include, and the
    certificate's revocation status (good | revoked | unknown, for the log line)."""

    certificate: x509.Certificate
    key: Any
    chain: tuple[x509.Certificate, ...]
    revocation: str = "unknown"


@dataclass(frozen=True)
class SigningCandidate:
    """One of a sender's stored keys as signing_identity looks at it: its certificate, its
    family, and the trust check for signing (None: blocked in the store, so not checked)."""

    certificate: x509.Certificate
    key: Any
    family: SigningFamily
    trust: trust.TrustResult | None


@dataclass(frozen=True)
class EncryptionChoice:
    """The certificate to encrypt to (None: none usable), the recipient's other certificates
    with why each was skipped ((SHA-256 fingerprint hex, reason), newest first; empty when the
    recipient has no certificate at all), and the algorithms the recipient announced (policy
    names, most preferred first; empty: unknown). revocation: the chosen certificate's
    revocation status (good | revoked | unknown), for the log line. certificate is chosen among
    the classic ones (RSA, EC, X25519), kem_certificate (with kem_revocation) among the ML-KEM
    ones, each the newest trusted of its kind: policy (pqc) decides which are used."""

    certificate: x509.Certificate | None
    skipped: tuple[tuple[str, str], ...]
    capabilities: tuple[str, ...] = ()
    revocation: str = "unknown"
    kem_certificate: x509.Certificate | None = None
    kem_revocation: str = "unknown"


# SMIMECapabilities names (smimegate.smime.algorithms.CAPABILITY_OIDS) that are spelt
# differently as policy values (smimegate.policy.properties key_transport).
_POLICY_NAMES = {"rsaes-oaep": "rsa-oaep"}


def smimea_resolver(config: Config) -> SmimeaResolver | None:
    """The SMIMEA resolver ([smimea], RFC 8162) when lookups are on; dnspython is imported
    only then."""
    if not config.smimea.lookup:
        return None
    from smimegate.pki.smimealookup import SmimeaResolver

    return SmimeaResolver(config.smimea.resolver)


def configured_services(config: Config, store: Store, directory: DirectoryUsers | None = None,
                        *, read_only: bool = False) -> Services:
    """Services as ``config`` asks ([crl] revocation_mode and ocsp, [smimea]): the gateway's,
    and smimegate.service.explain's (read_only), so both decide with the same trust rules."""
    from smimegate.pki.ocsp import configured_lookup

    return Services(store, directory, revocation_mode=config.crl.revocation_mode,
                    ocsp=configured_lookup(config.crl), smimea=smimea_resolver(config),
                    trust_dane_ee=config.smimea.trust_dane_ee, read_only=read_only)


class _TtlCache:
    """A small thread-safe cache with expiry; values computed outside the lock."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, object]] = {}

    def get(self, key: str, compute: Callable[[], _T]) -> _T:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]  # type: ignore[return-value]
        value = compute()
        with self._lock:
            if len(self._items) > 10000:
                self._items.clear()
            self._items[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def discard(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


class Services:
    """Lookups over one Store (and a directory, when one is configured) for one process."""

    def __init__(self, store: Store, directory: DirectoryUsers | None = None, *,
                 revocation_mode: trust.RevocationMode = "soft-fail",
                 ocsp: trust.OcspLookup | None = None,
                 smimea: SmimeaResolver | None = None, trust_dane_ee: bool = True,
                 read_only: bool = False) -> None:
        """``revocation_mode`` and ``ocsp`` ([crl] in the configuration) go into the trust
        anchors (smimegate.pki.trust); ``smimea`` and ``trust_dane_ee`` ([smimea]) turn on
        certificate discovery in the DNS (encryption_certificate). read_only: certificates
        found in the DNS are used but not stored (smimegate.service.explain, which must
        change nothing)."""
        self.store = store
        self.read_only = read_only
        self.directory = directory
        self.smimea = smimea
        self._trust_dane_ee = trust_dane_ee
        # Reloaded in a thread of its own when older than ANCHORS_MAX_AGE: a CRL imported or
        # downloaded by another process (another milter node on the same PostgreSQL) is used
        # here within that time, and no message waits for the reload (issue 10 items 2, 6).
        self._anchors = CachedAnchors(store, max_age=ANCHORS_MAX_AGE, background=True,
                                      revocation_mode=revocation_mode, ocsp=ocsp)
        self._signing = _TtlCache(CACHE_TTL)
        self._encryption = _TtlCache(CACHE_TTL)
        self._decryption = _TtlCache(CACHE_TTL)  # address -> its (fingerprint, cert, key)s
        self._key_certs = _TtlCache(CACHE_TTL)  # address -> certificates with a key
        self._trust = TrustCache(ttl=ANCHORS_MAX_AGE)
        self._policy_lock = threading.Lock()
        self._policy_rows: dict[str, tuple[float, PolicyRows]] = {}
        self._policy_generation: tuple[int | None, int | None] | None = None
        self._shared_generation: int | None = None  # last read (None: not yet, or no table)
        self._shared_checked = -POLICY_CHECK  # time.monotonic() of that read
        self._resolved: dict[str, tuple[PolicyRows, EffectivePolicy]] = {}
        # Harvesting (import_signers) writes to the store only what this process has not
        # written lately: the same correspondents sign message after message, and two store
        # transactions per message cost more than the RSA decryption (bench/cost_bench.py).
        self._harvested = _TtlCache(CACHE_TTL)  # fingerprint -> stored (False: refused)
        self._capabilities_lock = threading.Lock()
        # fingerprint -> (newest signing time recorded, whole seconds as stored; its names)
        self._capabilities_seen: dict[str, tuple[int, tuple[str, ...]]] = {}

    def configure_smimea(self, smimea: SmimeaResolver | None, trust_dane_ee: bool) -> None:
        """Take a new [smimea] configuration (reload); answers cached so far are dropped."""
        self.smimea = smimea
        self._trust_dane_ee = trust_dane_ee
        self._encryption.clear()

    def configure_revocation(self, revocation_mode: trust.RevocationMode,
                             ocsp: trust.OcspLookup | None) -> None:
        """Take a changed [crl] revocation_mode / OCSP client (reload): the anchors loaded by
        the reload() that follows decide with them."""
        self._anchors.configure(revocation_mode=revocation_mode, ocsp=ocsp)

    def reload(self) -> None:
        """Forget every cached value, the directory's too. The trust anchors are read again
        on next use, incrementally (only new CRLs are parsed)."""
        self._anchors.invalidate()
        self._trust.clear()
        with self._policy_lock:
            self._policy_rows.clear()
        self._signing.clear()
        self._encryption.clear()
        self._decryption.clear()
        self._key_certs.clear()
        self._harvested.clear()
        if self.smimea is not None:
            self.smimea.clear()
        with self._capabilities_lock:
            self._capabilities_seen.clear()
        if self.directory is not None:
            self.directory.invalidate()

    def directory_user(self, address: str) -> DirectoryUser | None:
        """The directory's entry for ``address`` (None: no directory, no entry, or the
        directory is down under ``on_unavailable = "soft"``). Raises DirectoryUnavailable."""
        if self.directory is None or "@" not in address:
            return None
        return self.directory.lookup(address)

    # -- policy ---------------------------------------------------------------------------
    def policies(self, addresses: Sequence[str]) -> dict[str, EffectivePolicy]:
        """The effective policy of each address (one policy_rows query for all).

        The null sender ("") and addresses without a domain count as external. Raises
        StoreUnavailable, PolicyError for a bad stored value.
        """
        rows = self._rows([a if "@" in a else "" for a in addresses])
        out: dict[str, EffectivePolicy] = {}
        for address in addresses:
            if "@" not in address:
                out[address] = resolve(rows[""].settings, None, {"locality": "external"})
                continue
            # The same mapping as the CLI's ``user show``: a user whose enabled column is
            # cleared is disabled here too (smimegate.store.policyrows). The directory's values
            # come last: it is the live source for the attributes it maps (cached there).
            if self.directory is None:
                out[address] = self._resolved_policy(rows[address], address)
                continue
            user = self.directory_user(address)
            out[address] = address_policy(rows[address], address,
                                          user.properties if user is not None else None)
        return out

    def _resolved_policy(self, rows: PolicyRows, address: str) -> EffectivePolicy:
        """address_policy without a directory, remembered while its rows are the cached ones
        (the same object until _rows reads them again): resolving took a tenth of a
        millisecond per message (bench/cost_bench.py)."""
        hit = self._resolved.get(address)
        if hit is not None and hit[0] is rows:
            return hit[1]
        policy = address_policy(rows, address)
        if len(self._resolved) > 10000:
            self._resolved.clear()
        self._resolved[address] = (rows, policy)
        return policy

    def _rows(self, keys: Sequence[str]) -> dict[str, PolicyRows]:
        """Policy rows for each key (an address, or "" for the settings alone), from the cache
        when younger than POLICY_TTL and no policy write went through our store since; the
        others in one Store.policy_rows query. Raises StoreUnavailable."""
        now = time.monotonic()
        own = getattr(self.store, "policy_generation", None)
        generation = (own, self._shared_policy_generation(now))
        found: dict[str, PolicyRows] = {}
        with self._policy_lock:
            if generation != self._policy_generation:
                self._policy_rows.clear()
                self._policy_generation = generation
            for key in keys:
                hit = self._policy_rows.get(key)
                if hit is not None and now - hit[0] < POLICY_TTL:
                    found[key] = hit[1]
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            fetched: PolicyRows = self.store.policy_rows([k for k in missing if k])
            with self._policy_lock:
                if len(self._policy_rows) > 10000:
                    self._policy_rows.clear()
                # Rows read while a write went through are not kept (the next call reads
                # again); they are still the freshest answer for this call.
                if getattr(self.store, "policy_generation", None) == own:
                    for key in missing:
                        self._policy_rows[key] = (now, fetched)
            for key in missing:
                found[key] = fetched
        return found

    def _shared_policy_generation(self, now: float) -> int | None:
        """The store's shared policy generation, read at most every POLICY_CHECK seconds
        (None: the store keeps none). A store that does not answer leaves the last value:
        the cached rows stay good until POLICY_TTL, and the rows query says what is wrong."""
        read = getattr(self.store, "shared_policy_generation", None)
        if read is None or now - self._shared_checked < POLICY_CHECK:
            return self._shared_generation
        self._shared_checked = now
        try:
            self._shared_generation = int(read())
        except StoreUnavailable:
            pass
        return self._shared_generation

    # -- trust ----------------------------------------------------------------------------
    def anchors(self) -> trust.TrustAnchors:
        """Roots, intermediates (stored CA certificates that are not roots) and CRLs
        (smimegate.pki.anchors), read again when older than ANCHORS_MAX_AGE seconds."""
        return self._anchors.get()

    def apply_trust(self, layer: Layer, anchors: trust.TrustAnchors) -> Layer:
        """trust.apply_trust(layer, anchors) now, with each signer's decision remembered for
        this anchors value (smimegate.pki.trustcache: at most ANCHORS_MAX_AGE seconds, never
        past a certificate's expiry or a CRL's nextUpdate). Never raises for a bad
        certificate."""
        return self._trust.apply_trust(layer, anchors)

    # -- keys and certificates ------------------------------------------------------------
    def signing_identity(self, address: str,
                         family: SigningFamily = "classic") -> SigningIdentity | None:
        """The newest key of ``address`` whose certificate is trusted for signing, or None.
        family: "classic" (RSA, EC, Ed25519) or "ml-dsa" (RFC 9881): policy (pqc) decides
        which ones sign."""
        return self._signing.get(f"{family}:{address.lower()}",
                                 lambda: self._find_signing(address, family))

    def _find_signing(self, address: str, family: SigningFamily) -> SigningIdentity | None:
        for candidate in self.signing_candidates(address, family):
            result = candidate.trust
            if result is not None and result.trusted:
                # The path runs leaf ... root: send the intermediates (RFC 8551 2.4.2: include
                # what the recipient needs to build the path), not the leaf twice nor the root.
                return SigningIdentity(candidate.certificate, candidate.key,
                                       tuple(result.path[1:-1]), result.revocation)
        return None

    def signing_candidates(self, address: str, family: SigningFamily | None = None
                           ) -> Iterator[SigningCandidate]:
        """The stored keys of ``address`` newest first (of ``family`` only, when given), as
        signing_identity looks at them: it takes the first trusted one. Lazy: a key's trust
        check runs when the iteration reaches it. Not cached (explain lists them all)."""
        anchors = self.anchors()
        for record, key in self.store.keys_for_email(address):
            kind: SigningFamily = "ml-dsa" if _is_ml_dsa(key) else "classic"
            if family is not None and kind != family:
                continue
            cert = record.certificate()
            result = None if record.blocked else trust.check(cert, anchors, purpose="sign")
            yield SigningCandidate(cert, key, kind, result)

    def encryption_certificate(self, address: str) -> EncryptionChoice:
        """The certificate to encrypt to ``address`` (pki.trust.choose_encryption_certificate
        over its stored, unblocked certificates)."""
        return self._encryption.get(address.lower(), lambda: self._choose(address))

    def _choose(self, address: str) -> EncryptionChoice:
        stored = self.store.find_certificates(address)
        blocked = {r.fingerprint for r in stored if r.blocked}
        candidates = {r.fingerprint: r.certificate() for r in stored if not r.blocked}
        from_dns = any(r.source == "smimea" for r in stored if not r.blocked)
        user = self.directory_user(address)
        for cert in user.certificates if user is not None else ():
            # A certificate the administrator blocked in the store stays blocked when the
            # directory offers it too.
            fingerprint = _fingerprint(cert)
            if fingerprint not in blocked:
                candidates.setdefault(fingerprint, cert)
        answer = None
        if self.smimea is not None and not candidates:
            answer = self._discover(address, blocked, candidates)
        if not candidates:
            return EncryptionChoice(None, ())
        kem_fps = {fp for fp, cert in candidates.items() if is_ml_kem(cert)}
        classic = {fp: c for fp, c in candidates.items() if fp not in kem_fps}
        chosen, reasons, revocation, answer = self._pick(address, classic, answer, from_dns)
        capabilities = self._capabilities(chosen, candidates) if chosen is not None else ()
        if not kem_fps:
            return EncryptionChoice(chosen, reasons, capabilities, revocation)
        kem = {fp: c for fp, c in candidates.items() if fp in kem_fps}
        kem_chosen, kem_reasons, kem_revocation, _ = self._pick(address, kem, answer, from_dns)
        return EncryptionChoice(chosen, reasons + kem_reasons, capabilities, revocation,
                                kem_chosen, kem_revocation)

    def _pick(self, address: str, candidates: dict[str, x509.Certificate],
              answer: SmimeaLookup | None, from_dns: bool,
              ) -> tuple[x509.Certificate | None, tuple[tuple[str, str], ...], str,
                         SmimeaLookup | None]:
        """The newest trusted of ``candidates`` (certificates of one kind), the others with
        why they were skipped, the chosen one's revocation status, and the SMIMEA answer asked
        on the way (None when not asked)."""
        if not candidates:
            return None, (), "unknown", answer
        choice = trust.choose_encryption(list(candidates.values()), self.anchors())
        reasons = tuple((_fingerprint(cert), reason) for cert, reason in choice.skipped)
        chosen = choice.certificate
        if chosen is None or choice.result is None:
            if self.smimea is not None and self._trust_dane_ee and (answer or from_dns):
                # RFC 6698 2.1.1 usage 3 (DANE-EE): the validated DNS answer itself says this
                # is the recipient's certificate; no PKIX path. Asked again per the record's
                # TTL (cached), so a record that is withdrawn stops the trust.
                answer = answer or self.smimea.lookup(address)
                dane = next((c for c in candidates.values() if answer.dane_ee_confirms(c)
                             and trust.encryption_problem(c) is None), None)
                if dane is not None:
                    fingerprint = _fingerprint(dane)
                    return (dane, tuple(r for r in reasons if r[0] != fingerprint), "unknown",
                            answer)
            return None, reasons, "unknown", answer
        return chosen, reasons, choice.result.revocation, answer

    def _discover(self, address: str, blocked: set[str],
                  candidates: dict[str, x509.Certificate]) -> SmimeaLookup | None:
        """Ask the DNS for ``address``'s SMIMEA records (RFC 8162) and store the certificates
        they carry (source smimea) that name the address: stored, they are found like
        harvested ones, and a later message needs no lookup unless trust rests on DANE-EE.
        Adds them to ``candidates``. None when the lookup gave nothing to use."""
        assert self.smimea is not None
        answer = self.smimea.lookup(address)
        if answer.status != "secure":
            return None
        for _usage, cert in answer.certificates():
            fingerprint = _fingerprint(cert)
            # RFC 8550 3: the certificate must speak for the address we encrypt to; a record
            # for another address cannot be found again under this one either.
            if fingerprint in blocked or not address_match(cert, address):
                continue
            if not self.read_only:
                try:
                    self.store.add_certificate(cert, source="smimea")
                except InvalidData:
                    continue
            candidates.setdefault(fingerprint, cert)
        return answer

    def _capabilities(self, chosen: x509.Certificate,
                      candidates: dict[str, x509.Certificate]) -> tuple[str, ...]:
        """What the recipient announced: recorded for the chosen certificate, else the newest
        recorded for another certificate of the same address (the same client, often with a
        separate signing certificate, RFC 8551 2.5.2 and RFC 9216)."""
        chosen_fp = _fingerprint(chosen)
        recorded = self.store.certificate_capabilities(list(candidates))
        found: Capabilities | None = recorded.get(chosen_fp)
        if found is None and recorded:
            found = max(recorded.values(), key=lambda c: c.signing_time)
        if found is None:
            return ()
        return tuple(_POLICY_NAMES.get(name, name) for name in found.names)

    def decryption_keys(self, addresses: Sequence[str]) -> list[tuple[x509.Certificate, Any]]:
        """Every (certificate, key) of the addresses, current and older (no duplicates).
        Cached per address for CACHE_TTL, as signing identities are: reading and unwrapping
        them cost a few tenths of a millisecond per inbound message (bench/cost_bench.py)."""
        out: list[tuple[x509.Certificate, Any]] = []
        seen: set[str] = set()
        for address in addresses:
            for fingerprint, cert, key in self._decryption.get(
                    address, functools.partial(self._read_keys, address)):
                if fingerprint not in seen:
                    seen.add(fingerprint)
                    out.append((cert, key))
        return out

    def _read_keys(self, address: str) -> tuple[tuple[str, x509.Certificate, Any], ...]:
        return tuple((record.fingerprint, record.certificate(), key)
                     for record, key in self.store.keys_for_email(address))

    def key_certificates(self, address: str) -> list[x509.Certificate]:
        """Certificates of ``address`` that have a private key in the store (cached per
        address for CACHE_TTL, like decryption_keys)."""
        return list(self._key_certs.get(address, functools.partial(self._read_key_certs, address)))

    def _read_key_certs(self, address: str) -> tuple[x509.Certificate, ...]:
        return tuple(r.certificate() for r in self.store.list_certificates(address) if r.has_key)

    def import_signers(self, layers: Sequence[Layer]) -> int:
        """Store the certificates of valid signers and the chain their layer carries, so that
        replies can be encrypted (trust is decided when they are used), and each valid
        signer's SMIMECapabilities with its signing time (the newer one wins). Returns how
        many certificates."""
        count = 0
        for layer in layers:
            if layer.kind != "signed" or not any(s.valid for s in layer.signers):
                continue
            signers = [s for s in layer.signers if s.valid and s.certificate is not None]
            wanted = [s.certificate for s in signers if s.certificate is not None]
            wanted += [c for c in layer.certificates if _is_ca(c)]
            count += sum(1 for cert in wanted if self._harvest(cert))
            for signer in signers:
                self._record_capabilities(signer)
            for der in layer.crls:
                self._harvest_crl(der, layer.certificates)
        return count

    def _harvest_crl(self, der: bytes, carried: Sequence[x509.Certificate]) -> bool:
        """Keep a CRL that came with a validly signed message (RFC 8551 2.4.5), once per
        CACHE_TTL in this process. Only one that a CA certificate of the store or of the
        message itself signed: anyone can put anything into a message, and an unverified CRL
        would only fill the store. The anchors pick it up on their next reload."""

        def keep() -> bool:
            try:
                crl = x509.load_der_x509_crl(der)
            except X509_ERRORS:
                return False
            keeper = CrlKeeper(self.store, extra_cas=[c for c in carried if _is_ca(c)])
            try:
                if keeper.verified(crl) is not True:
                    return False
                self.store.add_crl(crl, source="message", verified=True)
            except InvalidData:
                return False
            return True

        return self._harvested.get("crl:" + hashlib.sha256(der).hexdigest(), keep)

    def _harvest(self, cert: x509.Certificate) -> bool:
        """Store one certificate, once per CACHE_TTL in this process; False when the store
        cannot keep it (then it is simply not harvested)."""

        def add() -> bool:
            try:
                record = self.store.add_certificate(cert, source="message")
            except InvalidData:
                return False
            for email in record.emails:
                self._encryption.discard(email)  # maybe a new certificate: choose again
            return True

        return self._harvested.get(_fingerprint(cert), add)

    def _record_capabilities(self, signer: SignerResult) -> None:
        # Only a valid signature gets here: the capabilities are the certificate holder's own
        # words (RFC 8551 2.5.2), not something a third party can plant to downgrade us.
        if signer.certificate is None or not signer.capabilities:
            return
        now = time.time()
        when = signer.signing_time.timestamp() if signer.signing_time is not None else now
        # signingTime is the sender's claim: one from the future would pin its list forever.
        when = min(when, now)
        fingerprint = _fingerprint(signer.certificate)
        names = tuple(signer.capabilities)
        with self._capabilities_lock:
            seen = self._capabilities_seen.get(fingerprint)
        if seen is not None and (int(when) < seen[0] or (int(when), names) == seen):
            return  # the store holds a newer announcement, or this very one
        try:
            # Inside the try: a signature can verify with a certificate whose extensions do
            # not parse (the key is all it needs); that certificate is not stored either.
            info = cert_info(signer.certificate)
            changed = self.store.set_certificate_capabilities(
                info.fingerprint, names,
                dt.datetime.fromtimestamp(int(when), dt.UTC))
        except InvalidData:
            return  # the certificate was not stored (see import_signers)
        with self._capabilities_lock:
            if len(self._capabilities_seen) > 10000:
                self._capabilities_seen.clear()
            seen = self._capabilities_seen.get(fingerprint)
            if seen is None or int(when) >= seen[0]:
                self._capabilities_seen[fingerprint] = (int(when), names)
        if changed:
            for email in info.emails:
                self._encryption.discard(email)


def is_ml_kem(cert: x509.Certificate) -> bool:
    """An ML-KEM certificate (RFC 9936); one whose key cryptography cannot load is not."""
    try:
        return isinstance(mlkem512.certificate_public_key(cert), kem.PublicKey)
    except (ValueError, UnsupportedAlgorithm):
        return False


def _is_ml_dsa(key: object) -> bool:
    return mldsa.parameter_set(key) is not None


@per_certificate(maxsize=1024)
def _fingerprint(cert: x509.Certificate) -> str:
    """The store's key of a certificate: SHA-256 of the DER, lower-case hex. Remembered: the
    same few certificates come with message after message, three times each per inbound
    message (harvest, capabilities), and hashing one cost 7 us (bench/cost_bench.py)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except EXTENSION_LOOKUP_ERRORS:
        return False
