"""Split recipients, reinjected copies and their HMAC marker; failures through the action
table (store down, oversize, internal errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smimegate.milter import reinject
from smimegate.milter.edit import apply_outcome_to_message
from tests.milter.gateway_support import World, envelope, make_world, openssl, parse, plain

ALICE, CAROL, DAVE = "alice@internal.test", "carol@external.test", "dave@external.test"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def test_split_groups_become_reinjections(world: World) -> None:
    headers, body = parse(plain(ALICE, f"{CAROL}, {DAVE}"))
    outcome = world.gateway.process(envelope(ALICE, CAROL, f"<{DAVE}>"), headers, body)
    assert outcome.reply.kind == "continue"
    # carol (encrypted) stays; dave (signed only) is re-submitted.
    assert outcome.remove_recipients == (f"<{DAVE}>",)
    kept = apply_outcome_to_message(headers, body, outcome)
    key, crt = world.pem("carol")
    assert b"Hello there." in openssl("smime", "-decrypt", "-inkey", str(key), "-recip",
                                      str(crt), data=kept)
    (copy,) = outcome.reinjections
    assert copy.recipients == (DAVE,)
    assert b"multipart/signed" in copy.message and b"pkcs7-mime;" not in copy.message
    assert reinject.MARKER_HEADER.encode() not in copy.message  # marker off by default
    assert "split=2" in outcome.log_line and f"to=<{CAROL}>" in outcome.log_line


def test_marker_round_trip(tmp_path: Path) -> None:
    world = make_world(tmp_path, reinject_marker=True)
    assert (tmp_path / "reinject.key").stat().st_mode & 0o777 == 0o600
    headers, body = parse(plain(ALICE, f"{CAROL}, {DAVE}"))
    outcome = world.gateway.process(envelope(ALICE, CAROL, DAVE), headers, body)
    (copy,) = outcome.reinjections
    assert copy.message.startswith(reinject.MARKER_HEADER.encode() + b": v=1; q=4Xk2q1GZ;")
    # The copy comes back through the milter: accepted as it is, marker removed.
    h2, b2 = parse(copy.message)
    again = world.gateway.process(envelope(ALICE, DAVE, queue_id="5Yz"), h2, b2)
    assert again.new_body is None and not again.reinjections
    assert [(e.op, e.name) for e in again.header_edits] == [("delete", reinject.MARKER_HEADER)]
    assert "direction=reinjected" in again.log_line
    # Another recipient, or a changed body: processed normally (and the marker removed).
    other = world.gateway.process(envelope(ALICE, CAROL, queue_id="6Ab"), h2, b2)
    assert "direction=outbound" in other.log_line
    assert ("delete", reinject.MARKER_HEADER) in [(e.op, e.name) for e in other.header_edits]
    tampered = world.gateway.process(envelope(ALICE, DAVE), h2, b2 + b"extra\r\n")
    assert "direction=outbound" in tampered.log_line


def test_forged_marker_is_processed(tmp_path: Path) -> None:
    world = make_world(tmp_path, reinject_marker=True)
    headers, body = parse(plain(ALICE, DAVE))
    forged = reinject.make_marker(b"not the key" * 3, "Q1", [DAVE], body)
    outcome = world.gateway.process(envelope(ALICE, DAVE),
                                    [(reinject.MARKER_HEADER, forged), *headers], body)
    assert "direction=outbound" in outcome.log_line and outcome.new_body is not None


def test_stale_marker_is_refused_by_check() -> None:
    secret = b"k" * 32
    value = reinject.make_marker(secret, "Q1", ["a@b"], b"body\r\n", now=1000.0)
    assert reinject.check_marker(secret, value, ["A@b"], b"body\n", now=1001.0).valid
    assert not reinject.check_marker(secret, value, ["a@b"], b"body",
                                     now=1000.0 + reinject.MAX_AGE + 1).valid


def test_store_down_tempfails(world: World) -> None:
    headers, body = parse(plain(ALICE, CAROL))
    world.store.close()
    outcome = world.gateway.process(envelope(ALICE, CAROL), headers, body)
    assert (outcome.reply.kind, outcome.reply.code, outcome.reply.xcode) == (
        "tempfail", "451", "4.7.1")
    assert "result=tempfail-store" in outcome.log_line
    assert world.gateway.rcpt_check(envelope(ALICE), CAROL).code == "451"


def test_oversize_passes_unchanged(tmp_path: Path) -> None:
    world = make_world(tmp_path, max_message_size=10)
    headers, body = parse(plain(ALICE, CAROL))
    outcome = world.gateway.process(envelope(ALICE, CAROL), headers, body)
    assert outcome.reply.kind == "continue" and outcome.new_body is None
    assert "result=oversize" in outcome.log_line
    # ... unless a recipient requires encryption: never in clear.
    world.store.add_user(DAVE, {"encrypt_mode": "mandatory"})
    refused = world.gateway.process(envelope(ALICE, DAVE), headers, body)
    assert (refused.reply.code, refused.reply.xcode) == ("552", "5.3.4")


def test_internal_error_follows_on_internal_error(tmp_path: Path) -> None:
    world = make_world(tmp_path, on_internal_error="accept")
    headers, body = parse(plain(ALICE, CAROL))

    def boom(_address: str) -> None:
        raise RuntimeError("boom")

    world.gateway.services.signing_identity = boom  # type: ignore[method-assign,assignment]
    outcome = world.gateway.process(envelope(ALICE, CAROL), headers, body)
    assert outcome.reply.kind == "continue" and "result=internal-error" in outcome.log_line
    world.gateway.config = type(world.config)(
        store=world.config.store,
        milter=type(world.config.milter)(**{**world.config.milter.__dict__,
                                            "on_internal_error": "tempfail"}))
    outcome = world.gateway.process(envelope(ALICE, CAROL), headers, body)
    assert (outcome.reply.code, outcome.reply.xcode) == ("451", "4.3.0")
