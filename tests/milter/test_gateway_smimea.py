"""SMIMEA discovery in the gateway (issue 13 item 3) against a real private DNSSEC setup
(tests.fixtures.dnssec: nsd with an ldns-signed zone and an unsigned one, unbound validating).

Outbound mail to an external recipient without a stored certificate: a validated DANE-EE
(usage 3) record's certificate is stored with source smimea and used (and, with
trust_dane_ee = false, not trusted by DNS alone); a validated PKIX-EE (usage 1) one is used
only when its path is trusted; unsigned, bogus and missing answers give nothing; a resolver
that is down lets the message through unencrypted, never tempfailed.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography import x509

from smimegate.config import SmimeaConfig
from smimegate.milter.edit import apply_outcome_to_message
from smimegate.milter.gateway import Gateway
from smimegate.milter.transaction import Outcome
from smimegate.pki.smimea import owner_name, zone_line
from tests.fixtures.dnssec import DnssecSetup
from tests.helpers.ports import free_port
from tests.helpers.testpki import Identity, TestCA
from tests.milter.gateway_support import World, envelope, make_world, parse, plain

ALICE = "alice@internal.test"
DANE, DANE2 = "dane@signed.example", "dane2@signed.example"
PKIX, PKIX_UNTRUSTED = "pkix@signed.example", "pkixbad@signed.example"
INSECURE, BOGUS, NOBODY = "insecure@plain.example", "bogus@signed.example", "nobody@signed.example"
SIGNONLY = "signonly@signed.example"


@dataclass(frozen=True)
class Site:
    world: World
    dns: DnssecSetup
    ids: dict[str, Identity]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    world = make_world(tmp_path_factory.mktemp("smimea"))
    stranger = TestCA("Not Trusted Root", key_kind="ec-p256")  # never a root of the store
    ids = {a: stranger.issue(a, key_kind="ec-p256")
           for a in (DANE, DANE2, PKIX_UNTRUSTED, INSECURE, BOGUS)}
    ids[PKIX] = world.ca.issue(PKIX, key_kind="ec-p256")
    # A DANE-EE record for a key that may only sign (no keyAgreement).
    ids[SIGNONLY] = stranger.issue(SIGNONLY, key_kind="ec-p256", key_usage=x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False))
    lines = [zone_line(a, ident.cert, usage=1 if a.startswith("pkix") else 3)
             for a, ident in ids.items()]
    dns = DnssecSetup()
    try:
        dns.start(lines, bogus=(zone_line(BOGUS, ids[BOGUS].cert).split()[0],))
        yield Site(world, dns, ids)
    finally:
        dns.stop()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def gateway(site: Site, resolver: str | None = None, trust_dane_ee: bool = True) -> Gateway:
    smimea = SmimeaConfig(lookup=True, resolver=resolver or site.dns.resolver,
                          trust_dane_ee=trust_dane_ee)
    config = dataclasses.replace(site.world.config, smimea=smimea)
    return Gateway.create(config, site.world.store)


def send_out(gw: Gateway, rcpt: str) -> tuple[Outcome, bytes]:
    headers, body = parse(plain(ALICE, rcpt, "figures"))
    outcome = gw.process(envelope(ALICE, rcpt), headers, body)
    return outcome, apply_outcome_to_message(headers, body, outcome)


def decrypts(site: Site, rcpt: str, message: bytes) -> bool:
    key, crt = site.ids[rcpt].write(site.world.root, rcpt.split("@")[0])
    done = subprocess.run(["openssl", "cms", "-decrypt", "-inkey", str(key), "-recip",
                           str(crt)], input=message, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return b"Hello there." in done.stdout


def sources(site: Site, rcpt: str) -> list[str]:
    return [r.source for r in site.world.store.find_certificates(rcpt)]


def assert_plain(outcome: Outcome, message: bytes) -> None:
    assert outcome.reply.kind == "continue", outcome.log_line
    assert b"pkcs7-mime" not in message and b"Hello there." in message


def test_dane_ee_record_is_stored_and_used(site: Site) -> None:
    gw = gateway(site)
    outcome, message = send_out(gw, DANE)
    assert outcome.reply.kind == "continue", outcome.log_line
    assert "encrypt" in outcome.log_line
    assert decrypts(site, DANE, message)
    assert sources(site, DANE) == ["smimea"]
    # Another process (fresh caches): the stored certificate is found and its DANE-EE trust
    # confirmed by the DNS again, so it is still used.
    again = gateway(site)
    outcome, message = send_out(again, DANE)
    assert decrypts(site, DANE, message)
    assert again.services.smimea is not None and again.services.smimea.queries == 1


def test_dane_ee_is_not_trusted_by_dns_alone_when_turned_off(site: Site) -> None:
    outcome, message = send_out(gateway(site, trust_dane_ee=False), DANE2)
    assert_plain(outcome, message)
    assert sources(site, DANE2) == ["smimea"]  # kept; it may be trusted by a path one day


def test_dane_ee_does_not_make_a_signing_key_encrypt(site: Site) -> None:
    # The DNS answer vouches for the key and the address (RFC 7671 5.1), not for using a
    # key whose key usage forbids it to take a content-encryption key (RFC 8550 4.4.2).
    outcome, message = send_out(gateway(site), SIGNONLY)
    assert_plain(outcome, message)
    assert sources(site, SIGNONLY) == ["smimea"]


def test_pkix_ee_needs_a_trusted_path(site: Site) -> None:
    gw = gateway(site)
    outcome, message = send_out(gw, PKIX)
    assert "encrypt" in outcome.log_line
    assert decrypts(site, PKIX, message)
    outcome, message = send_out(gw, PKIX_UNTRUSTED)
    assert_plain(outcome, message)


@pytest.mark.parametrize("rcpt", [INSECURE, BOGUS, NOBODY])
def test_unsigned_bogus_and_missing_answers_give_nothing(site: Site, rcpt: str) -> None:
    gw = gateway(site)
    outcome, message = send_out(gw, rcpt)
    assert_plain(outcome, message)
    assert sources(site, rcpt) == []
    assert gw.services.smimea is not None and gw.services.smimea.queries == 1


def test_resolver_down_decides_without_it(site: Site) -> None:
    resolver = f"127.0.0.1:{free_port()}"
    gw = gateway(site, resolver=resolver)
    logger = logging.getLogger("smimegate.smimea")
    handler = Records()
    logger.addHandler(handler)
    try:
        send_out(gw, NOBODY)
    finally:
        logger.removeHandler(handler)
    assert [(r.levelno, r.getMessage().split(" (")[0]) for r in handler.records] == [
        (logging.WARNING, f"smimea: resolver {resolver} did not answer for "
                          f"{owner_name(NOBODY)}")]
    assert gw.services.smimea is not None
    for _ in range(2):
        outcome, message = send_out(gw, NOBODY)
        assert_plain(outcome, message)
    gw.services.reload()  # even with the encryption choice forgotten, the failure is cached
    outcome, message = send_out(gw, "other@signed.example")
    assert_plain(outcome, message)
    assert gw.services.smimea.queries == 2  # one per address, not one per message


def test_reload_turns_lookups_on_and_off(site: Site) -> None:
    gw = Gateway.create(site.world.config, site.world.store)
    assert gw.services.smimea is None
    outcome, message = send_out(gw, "reload@signed.example")
    assert_plain(outcome, message)
    on = dataclasses.replace(site.world.config, smimea=SmimeaConfig(
        lookup=True, resolver=site.dns.resolver))
    gw.reload(on)
    assert gw.services.smimea is not None and gw.services.smimea.resolver == site.dns.resolver
    outcome, message = send_out(gw, DANE)
    assert decrypts(site, DANE, message)
    gw.reload(site.world.config)
    assert gw.services.smimea is None
