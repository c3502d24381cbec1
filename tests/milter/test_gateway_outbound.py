"""Outbound: sign, encrypt, both, the subject trigger, mandatory refusals, forged senders.
What the gateway produces is checked with openssl, so it is real S/MIME."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from smimegate.milter.edit import apply_outcome_to_message
from smimegate.milter.gateway import Gateway
from smimegate.milter.transaction import Outcome
from smimegate.smime import mime
from tests.milter.gateway_support import World, envelope, make_world, openssl, parse, plain

ALICE, EVE = "alice@internal.test", "eve@internal.test"
CAROL, DAVE, MAND = "carol@external.test", "dave@external.test", "mand@external.test"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("outbound"))


@pytest.fixture(scope="module")
def legacy(world: World) -> World:
    """The same store with [milter] header_protection = false: the output before RFC 9788
    (tests/milter/test_gateway_hprotect.py tests it on)."""
    milter = dataclasses.replace(world.config.milter, header_protection=False)
    config = dataclasses.replace(world.config, milter=milter)
    return dataclasses.replace(world, config=config, gateway=Gateway.create(config, world.store))


def run(world: World, sender: str, *rcpts: str, subject: str = "hello",
        **kw: object) -> tuple[Outcome, bytes]:
    headers, body = parse(plain(sender, ", ".join(rcpts), subject))
    outcome = world.gateway.process(envelope(sender, *rcpts, **kw), headers, body)  # type: ignore[arg-type]
    return outcome, apply_outcome_to_message(headers, body, outcome)


def decrypt(world: World, name: str, message: bytes) -> bytes:
    key, crt = world.pem(name)
    return openssl("smime", "-decrypt", "-inkey", str(key), "-recip", str(crt), data=message)


def verify(world: World, message: bytes) -> bytes:
    ca = world.root / "ca.pem"
    ca.write_bytes(world.ca.cert_pem())
    return openssl("smime", "-verify", "-CAfile", str(ca), data=message)


def test_sign_only_when_recipient_has_no_certificate(world: World) -> None:
    outcome, message = run(world, ALICE, DAVE)
    assert outcome.reply.kind == "continue"
    assert b"Content-Type: multipart/signed" in message
    assert b"Hello there." in verify(world, message)
    assert "action=sign " in outcome.log_line and outcome.log_line.startswith("4Xk2q1GZ: ")


def test_opaque_signing_when_sign_mode_says(world: World, tmp_path: Path) -> None:
    world.store.set_user_property(ALICE, "sign_mode", "opaque")
    try:
        _outcome, message = run(world, ALICE, DAVE)
    finally:
        world.store.delete_user_property(ALICE, "sign_mode")
    world.gateway.reload()
    assert b"smime-type=signed-data" in message
    assert b"Hello there." in verify(world, message)


def test_encrypt_only_for_sender_without_key(world: World) -> None:
    outcome, message = run(world, EVE, CAROL)
    assert "action=encrypt " in outcome.log_line and "rcpt_certs=1" in outcome.log_line
    inner = decrypt(world, "carol", message)
    assert b"Hello there." in inner and b"multipart/signed" not in inner


def test_sign_then_encrypt_decrypts_and_verifies_with_openssl(legacy: World) -> None:
    world = legacy
    outcome, message = run(world, ALICE, CAROL)
    assert "action=sign+encrypt" in outcome.log_line
    assert b"smime-type=enveloped-data" in message and b"MIME-Version: 1.0" in message
    inner = decrypt(world, "carol", message)
    assert b"multipart/signed" in inner
    assert b"Hello there." in verify(world, inner)
    # The routing fields stay as they were.
    assert b"Subject: hello\r\n" in message and b"From: alice@internal.test" in message


def test_aes_gcm_recipient(world: World) -> None:
    world.store.set_user_property(EVE, "sign", "no")
    world.store.add_user(CAROL, {"encryption_algorithm": "aes256-gcm"})
    try:
        outcome, message = run(world, EVE, CAROL)
    finally:
        world.store.remove_user(CAROL)
        world.store.delete_user_property(EVE, "sign")
    assert "cipher=aes256-gcm" in outcome.log_line
    assert b"authEnveloped-data" in message
    key, crt = world.pem("carol")
    out = openssl("cms", "-decrypt", "-inkey", str(key), "-recip", str(crt), data=message)
    assert b"Hello there." in out


def test_subject_trigger_encrypts_and_is_removed(legacy: World) -> None:
    world = legacy
    outcome, message = run(world, ALICE, CAROL, subject="[encrypt] quarterly figures")
    assert b"Subject: quarterly figures\r\n" in message
    assert b"[encrypt]" not in message
    assert b"Hello there." in decrypt(world, "carol", message)


def test_subject_trigger_in_encoded_word(legacy: World) -> None:
    world = legacy
    # "[encrypt] Grüße" as an RFC 2047 encoded-word.
    outcome, message = run(world, ALICE, CAROL,
                           subject="=?utf-8?q?=5Bencrypt=5D_Gr=C3=BC=C3=9Fe?=")
    edits = [e for e in outcome.header_edits if e.name == "Subject"]
    assert edits and edits[0].op == "change"
    assert edits[0].value == "=?utf-8?b?R3LDvMOfZQ==?="


@pytest.mark.parametrize("protect", [True, False])
@pytest.mark.parametrize("subject", ["=?ut\u00e9f-8?b?R3LDvMOfZQ==?= report",  # no charset
                                     "=?x-unknown?q?abc?= report",  # unknown charset
                                     "=?utf-8?q?caf=C3?= report"])  # bytes not UTF-8
def test_an_undecodable_encoded_word_subject_is_sent_not_tempfailed(
        world: World, legacy: World, protect: bool, subject: str) -> None:
    # Found by fuzzing: a charset name Python's email package cannot even make a Charset of
    # (email.errors.CharsetError, not a ValueError) failed the message as an internal error,
    # so the sender's mail was tempfailed on every retry. The Subject is kept as written.
    outcome, message = run(world if protect else legacy, ALICE, CAROL, subject=subject)
    assert outcome.reply.kind == "continue", outcome.log_line
    assert "action=sign+encrypt" in outcome.log_line
    assert b"Hello there." in decrypt(world, "carol", message)


def test_header_protection_off_signs_the_entity_as_it_was(legacy: World) -> None:
    # Byte for byte what was signed before header_protection existed: the Content-* fields
    # and the body, nothing injected.
    _outcome, message = run(legacy, ALICE, DAVE)
    _outer, entity = mime.split_message(message)
    first, _signature, _micalg = mime.split_multipart_signed(mime.parse_entity(entity))
    assert first == b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello there.\r\n"


def test_subject_trigger_without_certificate_is_refused(world: World) -> None:
    outcome, _message = run(world, ALICE, DAVE, subject="[encrypt] secret")
    assert outcome.reply.kind == "reject"
    assert (outcome.reply.code, outcome.reply.xcode) == ("550", "5.7.1")
    assert f"<{DAVE}>" in (outcome.reply.text or "")
    assert outcome.new_body is None and "result=refused" in outcome.log_line


def test_mandatory_refused_at_rcpt(world: World) -> None:
    reply = world.gateway.rcpt_check(envelope(ALICE), MAND)
    assert (reply.kind, reply.code, reply.xcode) == ("reject", "550", "5.7.1")
    assert f"<{MAND}>" in (reply.text or "")
    assert world.gateway.rcpt_check(envelope(ALICE), CAROL).kind == "continue"
    # From outside, the mandatory rule is not ours to apply.
    assert world.gateway.rcpt_check(envelope(ALICE, client="203.0.113.9"), MAND).kind \
        == "continue"


def test_mandatory_refused_at_end_of_message(world: World) -> None:
    outcome, _message = run(world, ALICE, CAROL, MAND)
    assert (outcome.reply.code, outcome.reply.xcode) == ("550", "5.7.1")
    assert f"<{MAND}>" in (outcome.reply.text or "")
    assert outcome.new_body is None and not outcome.reinjections


def test_forged_internal_sender_from_outside_is_not_signed(world: World) -> None:
    outcome, message = run(world, ALICE, DAVE, client="203.0.113.9")
    assert outcome.new_body is None
    assert b"multipart/signed" not in message
    assert "direction=relay" in outcome.log_line


def test_authenticated_client_counts_as_internal(world: World) -> None:
    outcome, message = run(world, ALICE, DAVE, client="203.0.113.9", auth="alice")
    assert "direction=outbound" in outcome.log_line and b"multipart/signed" in message


def test_originating_daemon_counts_as_internal(world: World) -> None:
    headers, body = parse(plain(ALICE, DAVE))
    env = envelope(ALICE, DAVE, client="203.0.113.9")
    env = type(env)(**{**env.__dict__, "daemon_name": "ORIGINATING"})
    outcome = world.gateway.process(env, headers, body)
    assert "direction=outbound" in outcome.log_line and outcome.new_body is not None


def test_already_encrypted_message_passes(world: World) -> None:
    _outcome, encrypted = run(world, EVE, CAROL)
    headers, body = parse(encrypted)
    outcome = world.gateway.process(envelope(ALICE, CAROL), headers, body)
    assert outcome.new_body is None and "already-encrypted" in outcome.log_line
    assert apply_outcome_to_message(headers, body, outcome) == apply_outcome_to_message(
        headers, body, type(outcome)(outcome.reply))
