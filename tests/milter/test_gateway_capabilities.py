"""Harvested SMIMECapabilities (RFC 8551 2.5.2, 2.7.1): an inbound signed message records what
its signer announced, with its signing time; outbound mail to that signer then uses AES-GCM
(AuthEnvelopedData, RFC 5083/5084) and RSA-OAEP when announced. A newer message's list wins;
an older one changes nothing. What the gateway writes is read back with openssl and with our
own unwrap."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from smimegate.milter.edit import apply_outcome_to_message
from smimegate.milter.transaction import Outcome
from smimegate.smime import sign as smime_sign
from smimegate.smime.unwrap import unwrap
from tests.helpers.testpki import Identity
from tests.milter.gateway_support import World, envelope, make_world, openssl, parse, plain

ALICE, EVE = "alice@internal.test", "eve@internal.test"
GINA = "gina@external.test"
OUTSIDE = "198.51.100.7"
RSAES_OAEP = "1.2.840.113549.1.1.7"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def world(tmp_path: Path) -> World:
    world = make_world(tmp_path)
    world.ids["gina"] = world.ca.issue(GINA)  # not in the store: harvested from her mail
    return world


def signed_by(who: Identity, capabilities: tuple[str, ...], when: dt.datetime) -> bytes:
    """A message from ``who`` to alice, signed with those SMIMECapabilities and signingTime."""
    entity = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHi from outside.\r\n"
    signed = smime_sign.sign(entity, who.key, who.cert, capabilities=capabilities,
                             signing_time=when)
    return (f"From: {who.email}\r\nTo: {ALICE}\r\nSubject: hi\r\n"
            "MIME-Version: 1.0\r\n").encode() + signed


def receive(world: World, raw: bytes, sender: str = GINA) -> Outcome:
    headers, body = parse(raw)
    outcome = world.gateway.process(envelope(sender, ALICE, client=OUTSIDE), headers, body)
    assert "direction=inbound" in outcome.log_line and "verified=yes" in outcome.log_line
    return outcome


def reply_to(world: World, to: str = GINA) -> tuple[Outcome, bytes]:
    headers, body = parse(plain(EVE, to))
    outcome = world.gateway.process(envelope(EVE, to), headers, body)
    assert "action=encrypt" in outcome.log_line
    return outcome, apply_outcome_to_message(headers, body, outcome)


def open_as(world: World, name: str, message: bytes) -> tuple[str, str | None, str]:
    """(layer kind, cipher, key encryption OID) of the outer layer, opened with our unwrap."""
    who = world.ids[name]
    result = unwrap(message, [(who.cert, who.key)])
    assert result.error is None and b"Hello there." in result.content
    layer = result.layers[0]
    return layer.kind, layer.cipher, layer.recipients[0].key_encryption_oid


def test_announced_gcm_and_oaep_are_used_for_the_reply(world: World) -> None:
    receive(world, signed_by(world.ids["gina"], ("aes256-gcm", "aes256-cbc", "rsaes-oaep"),
                             NOW - dt.timedelta(hours=1)))
    (record,) = world.store.find_certificates(GINA)
    caps = world.store.certificate_capabilities([record.fingerprint])[record.fingerprint]
    assert caps.names == ("aes256-gcm", "aes256-cbc", "rsaes-oaep")
    assert caps.signing_time == NOW - dt.timedelta(hours=1)

    outcome, message = reply_to(world)
    assert "cipher=aes256-gcm" in outcome.log_line
    assert b"smime-type=authEnveloped-data" in message
    assert open_as(world, "gina", message) == ("auth-enveloped", "AES256-GCM", RSAES_OAEP)
    key, crt = world.pem("gina")
    assert b"Hello there." in openssl("cms", "-decrypt", "-inkey", str(key), "-recip",
                                      str(crt), data=message)


def test_newer_announcement_wins_and_older_one_is_ignored(world: World) -> None:
    gina = world.ids["gina"]
    receive(world, signed_by(gina, ("aes128-cbc",), NOW - dt.timedelta(days=2)))
    outcome, message = reply_to(world)
    assert "cipher=aes128-cbc" in outcome.log_line
    assert open_as(world, "gina", message)[:2] == ("enveloped", "AES128")
    # A newer message announces GCM: used from now on, without a reload.
    receive(world, signed_by(gina, ("aes128-gcm", "aes128-cbc"), NOW - dt.timedelta(days=1)))
    outcome, message = reply_to(world)
    assert "cipher=aes128-gcm" in outcome.log_line
    assert open_as(world, "gina", message)[:2] == ("auth-enveloped", "AES128-GCM")
    # An older message arriving late changes nothing.
    receive(world, signed_by(gina, ("aes256-cbc",), NOW - dt.timedelta(days=3)))
    outcome, _message = reply_to(world)
    assert "cipher=aes128-gcm" in outcome.log_line


def test_future_signing_time_does_not_pin_the_list(world: World) -> None:
    gina = world.ids["gina"]
    receive(world, signed_by(gina, ("aes128-cbc",), NOW + dt.timedelta(days=365)))
    (record,) = world.store.find_certificates(GINA)
    caps = world.store.certificate_capabilities([record.fingerprint])[record.fingerprint]
    assert caps.signing_time <= dt.datetime.now(dt.UTC)  # clamped to the time of receipt
    receive(world, signed_by(gina, ("aes256-gcm",), dt.datetime.now(dt.UTC)
                             + dt.timedelta(seconds=5)))
    outcome, _message = reply_to(world)
    assert "cipher=aes256-gcm" in outcome.log_line


def test_policy_set_by_the_admin_beats_the_announcement(world: World) -> None:
    receive(world, signed_by(world.ids["gina"], ("aes256-gcm", "rsaes-oaep"), NOW))
    world.store.add_user(GINA, {"encryption_algorithm": "aes256-cbc",
                                "key_transport": "rsa-pkcs1"})
    world.gateway.reload()
    outcome, message = reply_to(world)
    assert "cipher=aes256-cbc" in outcome.log_line
    assert open_as(world, "gina", message) == ("enveloped", "AES256", "1.2.840.113549.1.1.1")


def test_no_announcement_keeps_the_cbc_default(world: World) -> None:
    # openssl's default SMIMECapabilities list AES-CBC and older ciphers, no GCM.
    gina = world.ids["gina"]
    key, crt = world.pem("gina")
    entity = b"Content-Type: text/plain\r\n\r\nHi.\r\n"
    signed = openssl("smime", "-sign", "-signer", str(crt), "-inkey", str(key), data=entity)
    receive(world, f"From: {GINA}\r\nTo: {ALICE}\r\nSubject: hi\r\n".encode() + signed)
    (record,) = world.store.find_certificates(gina.email)
    assert world.store.certificate_capabilities([record.fingerprint])[
        record.fingerprint].names[0] == "aes256-cbc"
    outcome, message = reply_to(world)
    assert "cipher=aes256-cbc" in outcome.log_line
    assert open_as(world, "gina", message) == ("enveloped", "AES256", "1.2.840.113549.1.1.1")


def test_separate_signing_certificate_speaks_for_the_encryption_one(world: World) -> None:
    # RFC 9216 style: gina signs with an Ed25519 certificate (which cannot encrypt) and was
    # given an RSA encryption certificate; what her signed mail announced applies to it too.
    signing = world.ca.issue(GINA, "ed25519")
    world.store.add_certificate(world.ids["gina"].cert)  # the encryption certificate
    receive(world, signed_by(signing, ("aes256-gcm",), NOW))
    recorded = world.store.certificate_capabilities(
        [r.fingerprint for r in world.store.find_certificates(GINA)])
    assert [c.names for c in recorded.values()] == [("aes256-gcm",)]
    outcome, message = reply_to(world)
    assert "cipher=aes256-gcm" in outcome.log_line
    assert open_as(world, "gina", message)[:2] == ("auth-enveloped", "AES256-GCM")
