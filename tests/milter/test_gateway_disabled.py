"""A user disabled through the users table's enabled column (``smimegate user set EMAIL enabled
no``) is neither signed for nor decrypted for: the gateway folds the column into the policy
exactly as ``user show`` does (smimegate.store.policyrows)."""

from __future__ import annotations

import pytest

from smimegate.milter.edit import apply_header_edits, apply_outcome_to_message
from smimegate.milter.transaction import Outcome
from smimegate.service import users
from smimegate.service.actor import cli_actor
from tests.milter.gateway_support import World, envelope, make_world, openssl, parse, plain

ALICE, DAVE, FRANK = "alice@internal.test", "dave@external.test", "frank@external.test"
P = "X-Smimegate-Info-"


@pytest.fixture
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("disabled"))


def disable_alice(world: World) -> None:
    # What `smimegate user set alice@internal.test enabled no` does.
    users.set_property(world.store, cli_actor(), ALICE, "enabled", "no")
    user = world.store.get_user(ALICE)
    assert user.enabled is False and "enabled" not in user.properties  # the column only
    assert users.show(world.store, ALICE)["enabled"].value == "no"
    world.gateway.reload()


def outbound(world: World) -> tuple[Outcome, bytes]:
    headers, body = parse(plain(ALICE, DAVE))
    outcome = world.gateway.process(envelope(ALICE, DAVE), headers, body)
    return outcome, apply_outcome_to_message(headers, body, outcome)


def inbound(world: World) -> tuple[Outcome, list[tuple[str, str]]]:
    head, _sep, text = plain(FRANK, ALICE, "from outside").partition(b"\r\n\r\n")
    entity = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + text
    part = openssl("smime", "-encrypt", "-aes256", str(world.pem("alice")[1]), data=entity)
    outer = b"\r\n".join(line for line in head.split(b"\r\n")
                         if not line.lower().startswith((b"content-", b"mime-version")))
    headers, body = parse(outer + b"\r\n" + part)
    outcome = world.gateway.process(envelope(FRANK, ALICE, client="198.51.100.7"), headers, body)
    return outcome, apply_header_edits(headers, outcome.header_edits)


def test_enabled_user_is_signed_for_and_decrypted_for(world: World) -> None:
    # The baseline the disabled case differs from.
    outcome, message = outbound(world)
    assert b"multipart/signed" in message and "action=sign " in outcome.log_line
    outcome, headers = inbound(world)
    assert outcome.new_body is not None and "action=decrypt" in outcome.log_line
    assert any(name == f"{P}Encryption-Algorithm-0" for name, _value in headers)


def test_disabled_user_is_not_signed_for(world: World) -> None:
    disable_alice(world)
    outcome, message = outbound(world)
    assert outcome.reply.kind == "continue"
    assert outcome.new_body is None
    assert b"multipart/signed" not in message and b"pkcs7" not in message
    assert "action=none" in outcome.log_line


def test_disabled_user_is_not_decrypted_for(world: World) -> None:
    disable_alice(world)
    outcome, headers = inbound(world)
    assert outcome.reply.kind == "continue"
    assert outcome.new_body is None  # delivered still encrypted
    assert "action=decrypt" not in outcome.log_line
    # The store holds alice's key, but a disabled user's mail is not opened with it.
    assert dict(headers)[f"{P}Error"].startswith("not decrypted")
