"""OCSP client: is one certificate revoked, asked of the responder its AIA names (RFC 6960).

Asked by trust decisions for a link of a path that no current CRL answers (``[crl] ocsp``).
One question per certificate and issuer; every failure is an answer ("unavailable" with the
reason), never an exception, so the caller applies its revocation_mode to it.

What a response must pass before its status counts:
- the request carries a fresh 32-byte nonce (RFC 8954 2.1: 1 to 32 octets; RFC 6960 4.4.1); a
  response that echoes a different nonce is refused. A response without a nonce is accepted
  (RFC 5019 lightweight responders never echo one; RFC 8954 2.1 leaves it to the client), but
  then only with a nextUpdate or a thisUpdate within CLOCK_SKEW of now: otherwise nothing shows
  it is not a replay;
- responseStatus successful, a Basic response (RFC 6960 4.2.1), no critical extension we do
  not know (RFC 5280 4.2, as RFC 6960 4.4 defers to it);
- signed by an authorized responder (RFC 6960 4.2.2.2): the CA that issued the certificate
  itself, or a delegated responder whose certificate is in the response, is issued directly by
  that CA (name and signature), carries id-kp-OCSPSigning in its EKU and is valid now. The
  responder ID (byName or byKey) must name the signer. A locally configured responder is not
  supported. The delegate's own revocation status is not checked: RFC 6960 4.2.2.2.1 lets the
  CA exempt it (id-pkix-ocsp-nocheck), and a CA that signed it can sign a response anyway;
- the signature verifies over tbsResponseData with an algorithm we accept (no MD5 or SHA-1:
  the same rule as pyhanko's path validation);
- a SingleResponse whose CertID (hash algorithm, issuer name and key hash, serial) is the one
  asked for (RFC 6960 4.1.1, 3.2 step 1);
- thisUpdate not after now + CLOCK_SKEW and nextUpdate, when present, not before now -
  CLOCK_SKEW (RFC 6960 3.2 steps 4 and 5, 4.2.2.1).

Answers are kept in an OcspCache until their nextUpdate (RFC 5019 6: a response is good until
then); answers without nextUpdate are not kept ("newer information is always available",
RFC 6960 4.2.2.1). A responder that failed is not asked again for the same certificate for
``retry_after`` seconds, so one responder that is down costs one timeout per minute, not one
per message. The cache is per process (DESIGN.md: milters keep no state another node needs).

Transport is HTTP POST (RFC 6960 A.1) through urllib to the http or https URL of the
certificate's AIA id-ad-ocsp entry (RFC 5280 4.2.2.1), bounded by ``timeout`` seconds for the
whole exchange and by MAX_RESPONSE_BYTES.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from asn1crypto import algos as aalgos
from asn1crypto import ocsp as aocsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    OCSPExtensionOID,
    SignatureAlgorithmOID,
)

from smimegate import __version__
from smimegate.config import CrlConfig
from smimegate.pki.httpclient import HttpError, exchange
from smimegate.x509errors import EXTENSION_LOOKUP_ERRORS, X509_ERRORS

__all__ = [
    "CLOCK_SKEW",
    "MAX_RESPONSE_BYTES",
    "NONCE_BYTES",
    "OcspCache",
    "OcspClient",
    "OcspResult",
    "OcspStatus",
    "configured_lookup",
    "responder_url",
]

OcspStatus = Literal["good", "revoked", "unknown", "unavailable"]

CLOCK_SKEW = dt.timedelta(minutes=5)
"""How far a responder's clock may be off ours (thisUpdate ahead, nextUpdate behind)."""

MAX_RESPONSE_BYTES = 1024 * 1024
"""Largest response read; a real one (a few certificates at most) is a few kilobytes."""

NONCE_BYTES = 32
"""RFC 8954 2.1: a nonce of 1 to 32 octets; the longest is the hardest to guess."""

_SCHEMES = ("http", "https")
_WEAK_HASHES = frozenset({"md5", "sha1"})
# RFC 5019 2.1.1 makes SHA-1 the CertID hash every responder understands; it only names the
# certificate (a collision would not help an attacker), the response signature is what counts.
_CERT_ID_HASH = hashes.SHA1()  # noqa: S303


@dataclass(frozen=True)
class OcspResult:
    """What the responder said about one certificate.

    status: good, revoked or unknown as the responder answered (RFC 6960 2.2), or unavailable
    when there is no usable answer (no responder named, network, refused response).
    reason: one line for logs and ``Signer-Trusted-Info``, without "OCSP" (the caller says
    where it comes from); for unavailable it starts with the responder's URL when one was asked.
    url: the responder asked; None when the certificate names none.
    next_update: the response's nextUpdate, if any. revoked_at / revocation_reason: for revoked
    (the reason as RFC 5280 names it, e.g. "keyCompromise"; "unspecified" when absent).
    """

    status: OcspStatus
    reason: str
    url: str | None = None
    next_update: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None

    @property
    def named(self) -> bool:
        """True when the certificate names a responder (hard-fail: named but unavailable)."""
        return self.url is not None


class _Refused(Exception):
    """The exchange gave no usable answer; the message says why in one line."""


# --- which responder --------------------------------------------------------------------------


def responder_url(cert: x509.Certificate) -> str | None:
    """The first http(s) id-ad-ocsp URI of cert's Authority Information Access, or None.

    Other schemes and an unreadable extension give None (RFC 5280 4.2.2.1, RFC 6960 A.1).
    """
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except EXTENSION_LOOKUP_ERRORS:
        return None
    for desc in aia:
        location = desc.access_location
        if (desc.access_method == AuthorityInformationAccessOID.OCSP
                and isinstance(location, x509.UniformResourceIdentifier)
                and urllib.parse.urlsplit(location.value).scheme.lower() in _SCHEMES):
            return location.value
    return None


# --- cache ------------------------------------------------------------------------------------


_Key = tuple[bytes, int]


class OcspCache:
    """Answers per (issuer, serial) until a given time; thread-safe, bounded (past
    ``max_entries`` it starts again empty). Raises ValueError for max_entries below 1."""

    def __init__(self, max_entries: int = 10000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries: must be at least 1, got {max_entries}")
        self._max = max_entries
        self._lock = threading.Lock()
        self._items: dict[_Key, tuple[dt.datetime, OcspResult]] = {}

    def get(self, key: _Key, now: dt.datetime) -> OcspResult | None:
        """The answer kept for key if it is still good at ``now``, else None."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            if now >= hit[0]:
                del self._items[key]
                return None
            return hit[1]

    def put(self, key: _Key, result: OcspResult, until: dt.datetime) -> None:
        """Keep result for key until ``until``."""
        with self._lock:
            if len(self._items) >= self._max and key not in self._items:
                self._items.clear()
            self._items[key] = (until, result)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def _key(cert: x509.Certificate, issuer: x509.Certificate) -> _Key:
    return hashlib.sha256(issuer.public_bytes(Encoding.DER)).digest(), cert.serial_number


# --- transport --------------------------------------------------------------------------------


def _post(url: str, body: bytes, timeout: float) -> bytes:
    """POST body as application/ocsp-request (RFC 6960 A.1.1) and return the response body."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "User-Agent": f"smimegate/{__version__}",
            "Content-Type": "application/ocsp-request",
            "Accept": "application/ocsp-response",
        },
    )
    try:
        return exchange(request, timeout, MAX_RESPONSE_BYTES)
    except HttpError as exc:
        raise _Refused(str(exc)) from None


# --- checking a response ----------------------------------------------------------------------


def _key_hash(cert: x509.Certificate) -> bytes:
    # RFC 6960 4.2.1 ResponderID byKey: SHA-1 of the subjectPublicKey BIT STRING value, the
    # same value as RFC 5280 4.2.1.2 method (1), which cryptography computes here.
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _names_signer(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    try:
        return response.responder_key_hash == _key_hash(cert)
    except (ValueError, UnsupportedAlgorithm):
        return False


def _delegate_problem(
    delegate: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
) -> str | None:
    """Why delegate may not answer for issuer's certificates, or None (RFC 6960 4.2.2.2)."""
    if delegate.issuer != issuer.subject:
        return "responder certificate not issued by the certificate's CA"
    try:
        delegate.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return "responder certificate not issued by the certificate's CA"
    try:
        eku = delegate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "responder certificate lacks id-kp-OCSPSigning"
    except X509_ERRORS:  # an extension given twice too (RFC 5280 4.2)
        return "responder certificate extensions unreadable"
    if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        return "responder certificate lacks id-kp-OCSPSigning"
    if not delegate.not_valid_before_utc <= now <= delegate.not_valid_after_utc:
        return "responder certificate not valid now"
    return None


def _signer(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, now: dt.datetime
) -> x509.Certificate:
    """The certificate whose key must have signed response (RFC 6960 4.2.2.2)."""
    if _names_signer(response, issuer):
        return issuer
    problem = "response signed by an unauthorized responder"
    for delegate in response.certificates:
        if not _names_signer(response, delegate):
            continue
        found = _delegate_problem(delegate, issuer, now)
        if found is None:
            return delegate
        problem = found
    raise _Refused(problem)


def _pss(der: bytes) -> tuple[hashes.HashAlgorithm, padding.PSS]:
    """Hash and PSS padding from the response's RSASSA-PSS-params (RFC 4055 3.1)."""
    basic = aocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
    params = basic["signature_algorithm"]["parameters"]
    if not isinstance(params, aalgos.RSASSAPSSParams):
        raise _Refused("RSASSA-PSS parameters missing")
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise _Refused("unsupported PSS mask generation")
    digest = _hash_named(params["hash_algorithm"]["algorithm"].native)
    mgf_hash = _hash_named(mgf["parameters"]["algorithm"].native)
    salt = int(params["salt_length"].native)
    return digest, padding.PSS(mgf=padding.MGF1(mgf_hash), salt_length=salt)


def _hash_named(name: str) -> hashes.HashAlgorithm:
    known: dict[str, hashes.HashAlgorithm] = {
        "sha224": hashes.SHA224(), "sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
        "sha512": hashes.SHA512(),
    }
    found = known.get(name)
    if found is None:
        raise _Refused(f"unsupported response signature hash {name}")
    return found


def _check_signature(response: ocsp.OCSPResponse, der: bytes, signer: x509.Certificate) -> None:
    """Raise _Refused unless response's signature verifies with signer's key."""
    try:
        key: Any = signer.public_key()
        oid = response.signature_algorithm_oid
        pss = oid == SignatureAlgorithmOID.RSASSA_PSS
        # cryptography names no hash for RSASSA-PSS: its parameters do (asn1crypto reads them).
        digest, pad = _pss(der) if pss else (response.signature_hash_algorithm, None)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _Refused(f"unsupported response signature: {exc}") from None
    if digest is not None and digest.name in _WEAK_HASHES:
        raise _Refused(f"weak response signature algorithm ({digest.name})")
    data, signature = response.tbs_response_bytes, response.signature
    try:
        if isinstance(key, rsa.RSAPublicKey) and digest is not None:
            key.verify(signature, data, pad or padding.PKCS1v15(), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey) and digest is not None and not pss:
            key.verify(signature, data, ec.ECDSA(digest))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            raise _Refused("response signature algorithm does not fit the responder's key")
    except InvalidSignature:
        raise _Refused("bad response signature") from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _Refused(f"bad response signature ({exc})") from None


def _critical_unknown(extensions: x509.Extensions, allowed: frozenset[x509.ObjectIdentifier]
                      ) -> x509.ObjectIdentifier | None:
    for ext in extensions:
        oid: x509.ObjectIdentifier = ext.oid
        if ext.critical and oid not in allowed:
            return oid
    return None


def _check_nonce(response: ocsp.OCSPResponse, nonce: bytes) -> bool:
    """True when the response echoes our nonce, False without one; _Refused for another."""
    try:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return False
    if echoed != nonce:
        raise _Refused("nonce mismatch (a replayed or misdirected response)")
    return True


def _single(response: ocsp.OCSPResponse, request: ocsp.OCSPRequest) -> ocsp.OCSPSingleResponse:
    """The SingleResponse for the CertID we asked about (RFC 6960 4.1.1)."""
    for single in response.responses:
        if (single.serial_number == request.serial_number
                and single.hash_algorithm.name == request.hash_algorithm.name
                and single.issuer_name_hash == request.issuer_name_hash
                and single.issuer_key_hash == request.issuer_key_hash):
            return single
    raise _Refused("response does not answer for the certificate asked about")


def _check_times(single: ocsp.OCSPSingleResponse, nonce_echoed: bool, now: dt.datetime,
                 skew: dt.timedelta) -> None:
    this_update, next_update = single.this_update_utc, single.next_update_utc
    if this_update > now + skew:
        raise _Refused(f"response from the future (thisUpdate {this_update:%Y-%m-%d %H:%M} UTC)")
    if next_update is not None:
        if next_update < now - skew:
            raise _Refused(f"stale response (nextUpdate {next_update:%Y-%m-%d %H:%M} UTC)")
    elif not nonce_echoed and this_update < now - skew:
        # RFC 6960 4.2.2.1: without nextUpdate newer information is always available; with
        # neither nonce nor a recent thisUpdate this may be a replay of an old answer.
        raise _Refused(f"stale response (thisUpdate {this_update:%Y-%m-%d %H:%M} UTC, "
                       "no nextUpdate, no nonce)")


def _evaluate(der: bytes, request: ocsp.OCSPRequest, nonce: bytes, issuer: x509.Certificate,
              now: dt.datetime, skew: dt.timedelta, url: str) -> OcspResult:
    try:
        response = ocsp.load_der_ocsp_response(der)
    except X509_ERRORS:
        raise _Refused("malformed response") from None
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise _Refused(f"responder answered {response.response_status.name.lower()}")
    try:
        signer = _signer(response, issuer, now)
        _check_signature(response, der, signer)
        unknown = _critical_unknown(response.extensions, frozenset({OCSPExtensionOID.NONCE}))
        nonce_echoed = _check_nonce(response, nonce)
        single = _single(response, request)
        if unknown is None:
            unknown = _critical_unknown(response.single_extensions, frozenset())
        if unknown is not None:
            raise _Refused(f"unsupported critical extension {unknown.dotted_string}")
        _check_times(single, nonce_echoed, now, skew)
    except X509_ERRORS as exc:  # cryptography parses the inner parts lazily
        raise _Refused(f"malformed response ({exc})") from None
    status = single.certificate_status
    if status == ocsp.OCSPCertStatus.GOOD:
        return OcspResult("good", "good", url, single.next_update_utc)
    if status == ocsp.OCSPCertStatus.REVOKED:
        when = single.revocation_time_utc
        flag = single.revocation_reason or x509.ReasonFlags.unspecified
        text = f"revoked ({flag.value})" + (f" {when:%Y-%m-%d}" if when else "")
        return OcspResult("revoked", text, url, single.next_update_utc, when, flag.value)
    return OcspResult("unknown", "the responder does not know the certificate", url,
                      single.next_update_utc)


# --- the client -------------------------------------------------------------------------------


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class OcspClient:
    """Asks responders about certificates, with memory (see the module docstring).

    ``timeout``: seconds for one exchange. ``cache``: where answers are kept (a new private
    one by default; share one between clients of a process). ``retry_after``: seconds a failed
    responder is not asked again about the same certificate. ``clock``: now (tests).
    Thread-safe. Raises ValueError for a timeout that is not positive or a negative retry_after.
    """

    def __init__(
        self,
        timeout: float = 5.0,
        cache: OcspCache | None = None,
        *,
        retry_after: float = 60.0,
        skew: dt.timedelta = CLOCK_SKEW,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout: must be positive, got {timeout}")
        if retry_after < 0:
            raise ValueError(f"retry_after: must not be negative, got {retry_after}")
        self.timeout = timeout
        self.cache = cache if cache is not None else OcspCache()
        self._retry_after = dt.timedelta(seconds=retry_after)
        self._skew = skew
        self._clock = clock

    def check(self, cert: x509.Certificate, issuer: x509.Certificate) -> OcspResult:
        """The revocation status of ``cert`` (issued by ``issuer``) now, from the responder of
        cert's AIA or from the cache. Never raises for network or response trouble: that is
        an "unavailable" result saying why."""
        url = responder_url(cert)
        if url is None:
            return OcspResult("unavailable", "no responder named")
        key = _key(cert, issuer)
        now = self._clock()
        hit = self.cache.get(key, now)
        if hit is not None:
            return hit
        result = self._ask(url, cert, issuer, now)
        until = result.next_update
        if result.status == "unavailable":
            until = now + self._retry_after
        if until is not None and until > now:
            self.cache.put(key, result, until)
        return result

    def _ask(self, url: str, cert: x509.Certificate, issuer: x509.Certificate,
             now: dt.datetime) -> OcspResult:
        nonce = os.urandom(NONCE_BYTES)
        try:
            request = (
                ocsp.OCSPRequestBuilder()
                .add_certificate(cert, issuer, _CERT_ID_HASH)
                .add_extension(x509.OCSPNonce(nonce), critical=False)
                .build()
            )
        except (ValueError, TypeError) as exc:
            return OcspResult("unavailable", f"request not possible: {exc}", url)
        try:
            body = _post(url, request.public_bytes(Encoding.DER), self.timeout)
            return _evaluate(body, request, nonce, issuer, now, self._skew, url)
        except _Refused as exc:
            return OcspResult("unavailable", f"{url}: {exc}", url)


_PROCESS_CACHE = OcspCache()
"""One cache per process: every trust context of the milter (and a reload) shares its answers."""


def configured_lookup(crl: CrlConfig) -> Callable[[x509.Certificate, x509.Certificate],
                                                  OcspResult] | None:
    """The OCSP lookup trust decisions use as ``[crl]`` configures it (``ocsp``,
    ``ocsp_timeout``), answering from the process's cache; None when ``ocsp = false``."""
    if not crl.ocsp:
        return None
    return OcspClient(timeout=crl.ocsp_timeout, cache=_PROCESS_CACHE).check
