"""SMIMEA lookups (RFC 8162) through one configured validating resolver, cached per TTL.

We do not validate DNSSEC ourselves: the configured resolver does (unbound, BIND, Knot
Resolver on the host or the site's network), and only its answers with the AD bit count
(RFC 4035 3.2.3, RFC 6840 5.7: the query sets AD and DO to ask for it). An answer without AD
(insecure zone) is not used; a bogus one comes back as SERVFAIL from a validating resolver
and is not used either. Every outcome is cached: answers for their TTL, NXDOMAIN and NODATA
for the negative TTL of the SOA in the authority section (RFC 2308 5), failures and an
unreachable resolver for FAILURE_TTL, so a resolver that is down costs one timeout per
FAILURE_TTL and address, and the message is decided without it, never tempfailed.

dnspython does the wire format (name compression, EDNS0, truncation and the TCP retry): a
hand-written parser for that is exactly the code an attacker on the path would feed.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
from cryptography import x509

from smimegate.pki.smimea import SmimeaError, SmimeaRecord, owner_name, record_matches
from smimegate.x509errors import X509_ERRORS, check_readable

__all__ = ["FAILURE_TTL", "SmimeaLookup", "SmimeaResolver", "parse_resolver"]

_LOG = logging.getLogger("smimegate.smimea")

FAILURE_TTL = 60.0  # unbound's val-bogus-ttl default; also how long a dead resolver is skipped
MAX_TTL = 86400.0  # a record's TTL may say a week; we ask again after a day at most
SMIMEA = dns.rdatatype.RdataType.SMIMEA  # 53, RFC 8162 8

Status = Literal["secure", "insecure", "absent", "failed", "unreachable"]


@dataclass(frozen=True)
class SmimeaLookup:
    """What the resolver said about one address.

    status: secure (validated answer: records holds its SMIMEA records), insecure (an answer
    without AD: records empty, it does not count), absent (NXDOMAIN or no SMIMEA record, validated
    or not), failed (SERVFAIL, e.g. bogus signatures; REFUSED ...), unreachable (no answer).
    """

    owner: str
    status: Status
    records: tuple[SmimeaRecord, ...] = ()
    ttl: float = FAILURE_TTL

    def certificates(self) -> list[tuple[int, x509.Certificate]]:
        """(usage, certificate) of the records that carry a whole certificate: usage 1
        (PKIX-EE) or 3 (DANE-EE), selector 0, matching 0. The others (trust anchor usages 0
        and 2, SPKI or hashes) cannot give a certificate to encrypt to; they only confirm
        one we already have (dane_ee_confirms)."""
        found = []
        for record in self.records:
            if record.usage in (1, 3) and record.selector == 0 and record.matching == 0:
                try:
                    found.append((record.usage, check_readable(
                        x509.load_der_x509_certificate(record.data))))
                except X509_ERRORS:
                    _LOG.info("smimea: %s: a record's data is not a certificate", self.owner)
        return found

    def dane_ee_confirms(self, cert: x509.Certificate) -> bool:
        """Whether a validated usage 3 (DANE-EE) record names ``cert`` (RFC 6698 2.1.1: the
        certificate is trusted by the DNSSEC answer alone, no PKIX path needed)."""
        return self.status == "secure" and any(
            r.usage == 3 and record_matches(r, cert) for r in self.records)


def parse_resolver(value: str) -> tuple[str, int]:
    """``127.0.0.1:53`` or ``[::1]:53`` -> (address, port); ValueError naming the value."""
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    try:
        version = ipaddress.ip_address(host).version
        number = int(port)
    except ValueError:
        raise ValueError(f'expected IP:PORT of a resolver (IPv6 as [ADDR]:PORT), got "{value}"') \
            from None
    if not sep or not 0 < number < 65536 or (version == 6) != bracketed:
        raise ValueError(f'expected IP:PORT of a resolver (IPv6 as [ADDR]:PORT), got "{value}"')
    return host, number


class SmimeaResolver:
    """Asks one resolver for SMIMEA records; ``lookup`` is cached per address and TTL."""

    def __init__(self, resolver: str, *, timeout: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.resolver = resolver
        self._host, self._port = parse_resolver(resolver)
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, SmimeaLookup]] = {}
        self.queries = 0  # how many were sent (tests and the bench read it)

    def lookup(self, address: str) -> SmimeaLookup:
        """The cached or a fresh answer for ``address``. Never raises for DNS trouble."""
        try:
            owner = owner_name(address)
        except SmimeaError as exc:
            _LOG.info("smimea: %s", exc)
            return SmimeaLookup(address, "failed")
        now = self._clock()
        with self._lock:
            hit = self._cache.get(owner)
        if hit is not None and now < hit[0]:
            return hit[1]
        answer = self.query(owner)
        with self._lock:
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[owner] = (now + answer.ttl, answer)
        return answer

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def query(self, owner: str) -> SmimeaLookup:
        """One uncached question for the SMIMEA records at ``owner``."""
        request = dns.message.make_query(owner, SMIMEA, want_dnssec=True)
        request.flags |= dns.flags.AD  # RFC 6840 5.7: ask for the AD bit
        self.queries += 1
        try:
            response, _ = dns.query.udp_with_fallback(request, self._host, timeout=self._timeout,
                                                      port=self._port)
        except (dns.exception.DNSException, OSError) as exc:
            _LOG.warning("smimea: resolver %s did not answer for %s (%s): deciding without "
                         "SMIMEA for %d s", self.resolver, owner, exc.__class__.__name__,
                         FAILURE_TTL)
            return SmimeaLookup(owner, "unreachable")
        return _interpret(owner, response)


def _interpret(owner: str, response: dns.message.Message) -> SmimeaLookup:
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return SmimeaLookup(owner, "absent", ttl=_negative_ttl(response))
    if rcode != dns.rcode.NOERROR:
        _LOG.info("smimea: %s: resolver answered %s", owner, dns.rcode.to_text(rcode))
        return SmimeaLookup(owner, "failed")
    name = dns.name.from_text(owner)
    rrset = next((r for r in response.answer
                  if r.rdtype == SMIMEA and r.name == name), None)
    if rrset is None:
        return SmimeaLookup(owner, "absent", ttl=_negative_ttl(response))
    ttl = min(float(rrset.ttl), MAX_TTL)
    if not response.flags & dns.flags.AD:
        return SmimeaLookup(owner, "insecure", ttl=ttl)
    records = tuple(SmimeaRecord(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in rrset)
    return SmimeaLookup(owner, "secure", records, ttl)


def _negative_ttl(response: dns.message.Message) -> float:
    # RFC 2308 5: the smaller of the SOA record's TTL and its MINIMUM field.
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return float(min(rrset.ttl, rrset[0].minimum, MAX_TTL))
    return FAILURE_TTL
