"""Our own PKCS#12 mail through our own milter: `cert issue --send-pfx` (delivery.pfx.deliver)
hands it to a real SMTP server on loopback, and what arrived there goes through
Gateway.process as the MTA would pass it. Its marker (smimegate.marker) makes the gateway pass
it unchanged, even to a mandatory recipient who now has a certificate (encrypting it to the key
it carries would lock the recipient out); a forged marker does not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from smimegate.delivery.pfx import deliver
from smimegate.delivery.queue import PFX_MAIL, PfxMailJob, run_due
from smimegate.marker import MARKER_HEADER
from smimegate.milter.edit import apply_outcome_to_message
from smimegate.milter.transaction import Outcome
from smimegate.pki.pkcs12 import make_pkcs12
from tests.milter.gateway_support import World, envelope, make_world, parse
from tests.unit.delivery.servers import Received, smtp_server

MAND = "mand@external.test"  # encrypt_mode mandatory in make_world's store
SENDER = "pki@internal.test"  # internal: mail from it on a trusted network is outbound
PASSWORD = "Vq4nT8sLw2ZkRb6Y"


@pytest.fixture
def world(tmp_path: Path) -> World:
    world = make_world(tmp_path)
    # `cert issue` stores the new certificate: from now on MAND can be encrypted to.
    issued = world.ca.issue(MAND)
    world.store.add_certificate(issued.cert, key=issued.key)
    world.ids["mand"] = issued
    return world


def send_pfx(world: World) -> Received:
    """Issue-time delivery of MAND's PKCS#12 through a real SMTP server; what it received."""
    issued = world.ids["mand"]
    pfx = make_pkcs12(issued.key, issued.cert, [world.ca.cert], PASSWORD)
    with smtp_server() as (port, behaviour):
        config = dataclasses.replace(world.config, smtp=dataclasses.replace(
            world.config.smtp, relay=f"127.0.0.1:{port}", sender=SENDER))
        report = deliver(store=world.store, config=config, email=MAND, pfx=pfx,
                         password=PASSWORD, send_pfx=True, sms_password=False)
        assert [o.sent for o in report.outcomes] == [True]
        (received,) = behaviour.messages
    assert received.rcpt_to == [MAND]
    return received


def through_milter(world: World, message: bytes) -> tuple[Outcome, bytes]:
    headers, body = parse(message)
    outcome = world.gateway.process(envelope(SENDER, MAND), headers, body)
    return outcome, apply_outcome_to_message(headers, body, outcome)


def without_marker(message: bytes) -> bytes:
    first, rest = message.split(b"\r\n", 1)
    assert first.startswith(MARKER_HEADER.encode() + b": v=1; q=PFXMAIL; t=")
    return rest


def test_pfx_mail_passes_unchanged_and_loses_its_marker(world: World) -> None:
    received = send_pfx(world)
    outcome, delivered = through_milter(world, received.data)
    assert outcome.reply.kind == "continue" and outcome.new_body is None
    assert [(e.op, e.name) for e in outcome.header_edits] == [("delete", MARKER_HEADER)]
    assert "direction=reinjected" in outcome.log_line
    # Unchanged but for the marker (compared as the MTA holds it: fields and body; rebuilding
    # the bytes here would only add a blank after an empty first line of a folded field).
    assert parse(delivered) == parse(without_marker(received.data))
    assert b"application/x-pkcs12" in delivered and b"enveloped-data" not in delivered


def test_without_the_marker_it_would_be_encrypted(world: World) -> None:
    # The control: the same mail unmarked is encrypted to MAND's new certificate.
    received = send_pfx(world)
    outcome, delivered = through_milter(world, without_marker(received.data))
    assert "action=encrypt" in outcome.log_line
    assert b"smime-type=enveloped-data" in delivered


def test_forged_marker_is_processed_normally(world: World) -> None:
    received = send_pfx(world)
    head, _, rest = received.data.partition(b"\r\n")
    forged = head[: head.rindex(b"m=") + 2] + b"A" * 43 + b"\r\n" + rest
    outcome, delivered = through_milter(world, forged)
    assert "direction=outbound" in outcome.log_line and "action=encrypt" in outcome.log_line
    assert ("delete", MARKER_HEADER) in [(e.op, e.name) for e in outcome.header_edits]
    assert MARKER_HEADER.encode() not in delivered
    assert b"smime-type=enveloped-data" in delivered
    # A marker for another recipient does not carry over either.
    headers, body = parse(received.data)
    other = world.gateway.process(envelope(SENDER, "carol@external.test"), headers, body)
    assert "action=encrypt" in other.log_line


def test_queue_worker_uses_the_key_the_gateway_read_at_start(world: World) -> None:
    # The milter process's queue worker runs after the privilege drop: it marks with the key
    # the gateway read at start (Gateway.marker_secret), not by opening the file again.
    secret = world.gateway.marker_secret()
    assert secret is not None and secret == (world.root / "reinject.key").read_bytes()
    issued = world.ids["mand"]
    pfx = make_pkcs12(issued.key, issued.cert, [world.ca.cert], PASSWORD)
    gone = world.root / "not-a-dir"
    gone.write_text("no key can be made below a file")
    with smtp_server() as (port, behaviour):
        config = dataclasses.replace(
            world.config,
            smtp=dataclasses.replace(world.config.smtp, relay=f"127.0.0.1:{port}",
                                     sender=SENDER),
            milter=dataclasses.replace(world.config.milter,
                                       reinject_secret_file=str(gone / "reinject.key")))
        world.store.enqueue(PFX_MAIL, PfxMailJob(MAND, pfx, False, "<q@internal.test>").payload())
        (sent,) = run_due(world.store, config, marker_secret=secret)
        assert sent.sent
        (received,) = behaviour.messages
    outcome, _delivered = through_milter(world, received.data)
    assert "direction=reinjected" in outcome.log_line
