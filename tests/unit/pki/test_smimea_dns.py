"""SMIMEA lookups against a real private DNSSEC setup (tests.fixtures.dnssec: nsd serving a
zone signed by ldns-signzone, unbound validating with that zone's key as trust anchor)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography import x509

from smimegate.pki.smimea import zone_line
from smimegate.pki.smimealookup import SmimeaResolver, parse_resolver
from tests.fixtures.dnssec import DnssecSetup, DnsSetupError
from tests.helpers.ports import free_port
from tests.unit.pki import pkibuild


@dataclass(frozen=True)
class Site:
    dns: DnssecSetup
    certs: dict[str, x509.Certificate]


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    root = pkibuild.root()
    addresses = ("alice@signed.example", "carol@signed.example", "dave@plain.example",
                 "erin@signed.example")
    certs = {a: pkibuild.ee(root, a).cert for a in addresses}
    lines = [zone_line(a, c) for a, c in certs.items() if not a.startswith("erin")]
    # alice also has a hash-only record: it can confirm, not give, a certificate.
    lines.append(zone_line("alice@signed.example", certs["alice@signed.example"], 3, 1, 1))
    # erin: PKIX-EE (usage 1), SPKI SHA-512 only.
    lines.append(zone_line("erin@signed.example", certs["erin@signed.example"], 1, 1, 2))
    setup = DnssecSetup()
    try:
        carol = zone_line("carol@signed.example", certs["carol@signed.example"]).split()[0]
        setup.start(lines, bogus=(carol,))
        yield Site(setup, certs)
    finally:
        setup.stop()


def test_a_validated_answer_gives_the_certificate(site: Site) -> None:
    resolver = SmimeaResolver(site.dns.resolver)
    cert = site.certs["alice@signed.example"]
    answer = resolver.lookup("alice@signed.example")
    assert answer.status == "secure"
    assert sorted((r.usage, r.selector, r.matching) for r in answer.records) == [
        (3, 0, 0), (3, 1, 1)]
    assert answer.certificates() == [(3, cert)]
    assert answer.dane_ee_confirms(cert)
    assert not answer.dane_ee_confirms(site.certs["carol@signed.example"])
    assert 0 < answer.ttl <= 300


def test_hash_only_records_are_seen_but_give_no_certificate(site: Site) -> None:
    answer = SmimeaResolver(site.dns.resolver).lookup("erin@signed.example")
    assert answer.status == "secure"
    assert [(r.usage, r.selector, r.matching) for r in answer.records] == [(1, 1, 2)]
    assert answer.certificates() == []
    # usage 1 is PKIX-EE: it never makes a certificate trusted by DNSSEC alone
    assert not answer.dane_ee_confirms(site.certs["erin@signed.example"])


def test_an_unsigned_answer_is_ignored(site: Site) -> None:
    answer = SmimeaResolver(site.dns.resolver).lookup("dave@plain.example")
    assert answer.status == "insecure"
    assert answer.records == ()
    assert answer.certificates() == []
    assert not answer.dane_ee_confirms(site.certs["dave@plain.example"])


def test_a_bogus_answer_is_ignored(site: Site) -> None:
    resolver = SmimeaResolver(site.dns.resolver)
    answer = resolver.lookup("carol@signed.example")
    assert answer.status == "failed"
    assert answer.certificates() == []
    resolver.lookup("carol@signed.example")
    assert resolver.queries == 1  # a bogus answer is not asked again at once either


def test_nxdomain_is_cached_for_the_negative_ttl(site: Site) -> None:
    now = [1000.0]
    resolver = SmimeaResolver(site.dns.resolver, clock=lambda: now[0])
    first = resolver.lookup("nobody@signed.example")
    assert first.status == "absent"
    assert first.ttl == 30  # the SOA's MINIMUM (smaller than its TTL, RFC 2308 5)
    assert resolver.lookup("nobody@signed.example") is first
    assert resolver.queries == 1
    now[0] += 29
    resolver.lookup("nobody@signed.example")
    assert resolver.queries == 1
    now[0] += 2
    assert resolver.lookup("nobody@signed.example").status == "absent"
    assert resolver.queries == 2


def test_a_resolver_that_is_down_is_skipped_not_retried_per_message() -> None:
    resolver = SmimeaResolver(f"127.0.0.1:{free_port()}", timeout=0.3)
    answer = resolver.lookup("alice@signed.example")
    assert answer.status == "unreachable"
    assert answer.certificates() == []
    assert resolver.lookup("alice@signed.example") is answer
    assert resolver.queries == 1


@pytest.mark.parametrize("bad", ["localhost:53", "127.0.0.1", "127.0.0.1:0", "[::1]:x", "::1:53",
                                 "[127.0.0.1]:53"])
def test_resolver_must_be_an_ip_and_port(bad: str) -> None:
    with pytest.raises(ValueError, match="expected IP:PORT of a resolver"):
        SmimeaResolver(bad)
    assert parse_resolver("[::1]:5353") == ("::1", 5353)


def test_the_setup_moves_to_another_port_when_its_port_was_taken() -> None:
    """The fixture's own start-up race (free_port, then the server binds): a port taken in
    between makes the server exit at once, and the setup starts it again on a new port."""
    cert = pkibuild.ee(pkibuild.root(), "alice@signed.example").cert
    setup = DnssecSetup()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nsd_squatter, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as unbound_squatter:
        nsd_squatter.bind(("127.0.0.1", setup.nsd_port))
        unbound_squatter.bind(("127.0.0.1", setup.unbound_port))
        taken = (setup.nsd_port, setup.unbound_port)
        try:
            setup.start([zone_line("alice@signed.example", cert)])
            assert setup.nsd_port != taken[0] and setup.unbound_port != taken[1]
            answer = SmimeaResolver(setup.resolver).lookup("alice@signed.example")
            assert answer.status == "secure"
            assert answer.certificates() == [(3, cert)]
            said = "".join(p.read_text(errors="replace") for p in setup.dir.glob("*.1.*")
                           if p.suffix in (".out", ".log"))
            assert said.lower().count("already in use") >= 2  # both first tries failed so
        finally:
            setup.stop()


def test_a_server_that_exits_for_another_reason_fails_the_setup_at_once() -> None:
    setup = DnssecSetup()
    try:
        with pytest.raises(DnsSetupError, match=r"(?s)exited with .* at start-up \(attempt 1"):
            setup._launch("false", lambda port, tag: ["false"], setup.nsd_port, "x.example",
                          want_ad=False)
    finally:
        setup.stop()
