"""Recipients with several certificates and keys, and the chain an inbound signature carries.

- Outbound (issue 4 item 2): a recipient's certificates that are not chosen are logged, one
  line per certificate in the message's context (queue id first), with a fingerprint prefix
  and the reason, and the message is encrypted to the certificate that was chosen.
- Inbound (issue 5 item 4): a message encrypted to an older key of an internal user is still
  decrypted, and the intermediate a signed message carries is imported into the store.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from smimegate.milter.edit import apply_header_edits, apply_outcome_to_message
from smimegate.milter.transaction import Outcome
from smimegate.store.base import NotFound
from tests.helpers.testpki import Identity
from tests.milter.gateway_support import World, envelope, make_world, openssl, parse, plain
from tests.unit.pki import pkibuild as pb

ALICE, FRANK = "alice@internal.test", "frank@external.test"
HENRY = "henry@internal.test"
P = "X-Smimegate-Info-"
OUTSIDE = "198.51.100.7"
QUEUE_ID = "4Xk2q1GZ"
DAY = dt.timedelta(days=1)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("recipient-certs"))


class Lines(logging.Handler):
    """Every record of the smimegate.milter logger: (level, text)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.getMessage()))

    def skipped(self) -> list[tuple[int, str]]:
        return [(lvl, text) for lvl, text in self.records if "certificate skipped" in text]


@pytest.fixture
def lines() -> Iterator[Lines]:
    # Our own handler: setup_logging in another test of this process may have stopped the
    # smimegate logger from propagating to caplog's root handler.
    logger = logging.getLogger("smimegate.milter")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def send_out(world: World, rcpt: str) -> tuple[Outcome, bytes]:
    headers, body = parse(plain(ALICE, rcpt, "figures"))
    outcome = world.gateway.process(envelope(ALICE, rcpt, queue_id=QUEUE_ID), headers, body)
    return outcome, apply_outcome_to_message(headers, body, outcome)


def decrypt(world: World, ident: Identity, stem: str, message: bytes) -> bytes:
    """The content of an S/MIME message, decrypted by openssl with ident's key."""
    key, crt = ident.write(world.root, stem)
    return openssl("smime", "-decrypt", "-inkey", str(key), "-recip", str(crt), data=message)


def openssl_fails(*args: str, data: bytes) -> str:
    done = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)
    assert done.returncode != 0, "openssl was expected to fail"
    return done.stderr.decode(errors="replace")


# --- outbound: skipped certificates are logged ------------------------------------------------

def test_expired_and_valid_certificate_skip_is_logged_and_valid_one_used(
    world: World, lines: Lines
) -> None:
    grace = "grace@external.test"
    # The expired certificate is the newest (latest notBefore), so it is checked and refused;
    # an older good one is chosen; an older one still is only superseded.
    expired = world.ca.issue(grace, not_before=now() - 10 * DAY, days=5)
    valid = world.ca.issue(grace, not_before=now() - 200 * DAY, days=800)
    oldest = world.ca.issue(grace, not_before=now() - 300 * DAY, days=800)
    for ident in (expired, valid, oldest):
        world.store.add_certificate(ident.cert)

    outcome, message = send_out(world, grace)

    assert outcome.reply.kind == "continue", outcome.log_line
    assert "encrypt" in outcome.log_line and "rcpt_certs=1" in outcome.log_line
    assert b"Hello there." in decrypt(world, valid, "grace-valid", message)
    key, crt = expired.write(world.root, "grace-expired")
    openssl_fails("smime", "-decrypt", "-inkey", str(key), "-recip", str(crt), data=message)

    got = lines.skipped()
    prefix = f"{QUEUE_ID}: smimegate: warning: recipient certificate skipped; to=<{grace}>"
    assert got == [
        (logging.WARNING,
         f"{prefix} cert={fingerprint(expired.cert)[:16]} reason=expired chosen=yes"),
        (logging.INFO,
         f'{prefix} cert={fingerprint(oldest.cert)[:16]} '
         f'reason="a newer certificate was chosen" chosen=yes'),
    ], lines.records
    # Nothing of a key and no whole fingerprint in the log.
    text = "\n".join(t for _lvl, t in lines.records)
    assert "PRIVATE" not in text and fingerprint(expired.cert) not in text


def test_no_usable_certificate_is_a_warning_per_certificate(world: World, lines: Lines) -> None:
    ivan = "ivan@external.test"
    expired = world.ca.issue(ivan, not_before=now() - 10 * DAY, days=5)
    world.store.add_certificate(expired.cert)
    outcome, message = send_out(world, ivan)
    assert outcome.reply.kind == "continue"
    assert b"enveloped-data" not in message  # allow mode, nothing usable: sent signed only
    assert lines.skipped() == [(
        logging.WARNING,
        f"{QUEUE_ID}: smimegate: warning: recipient certificate skipped; to=<{ivan}> "
        f"cert={fingerprint(expired.cert)[:16]} reason=expired chosen=no",
    )]


def test_a_single_good_certificate_logs_no_skip(world: World, lines: Lines) -> None:
    outcome, _message = send_out(world, "carol@external.test")
    assert "rcpt_certs=1" in outcome.log_line
    assert lines.skipped() == []


# --- inbound: older keys, the message's chain -------------------------------------------------

def encrypted_from_frank(world: World, to: x509.Certificate, entity: bytes | None = None,
                         sign_with: tuple[Path, Path, Path | None] | None = None) -> bytes:
    """A message from frank to henry: ``entity`` (signed with ``sign_with`` = key, cert,
    chain file when given), encrypted to ``to`` with openssl."""
    message = plain(FRANK, HENRY, "from outside")
    head, _sep, body = message.partition(b"\r\n\r\n")
    inner = entity or b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body
    if sign_with is not None:
        key, crt, chain = sign_with
        extra = ["-certfile", str(chain)] if chain is not None else []
        inner = openssl("smime", "-sign", "-signer", str(crt), "-inkey", str(key), *extra,
                        data=inner)
    recip = world.root / f"to-{fingerprint(to)[:8]}.pem"
    recip.write_bytes(to.public_bytes(serialization.Encoding.PEM))
    enveloped = openssl("smime", "-encrypt", "-aes256", str(recip), data=inner)
    outer = b"\r\n".join(line for line in head.split(b"\r\n")
                         if not line.lower().startswith((b"content-", b"mime-version")))
    return outer + b"\r\n" + enveloped


def deliver(world: World, raw: bytes) -> tuple[Outcome, list[tuple[str, str]], bytes]:
    headers, body = parse(raw)
    outcome = world.gateway.process(envelope(FRANK, HENRY, client=OUTSIDE), headers, body)
    return (outcome, apply_header_edits(headers, outcome.header_edits),
            apply_outcome_to_message(headers, body, outcome))


def value(headers: list[tuple[str, str]], name: str) -> str:
    return next(v for n, v in headers if n == name)


@pytest.fixture(scope="module")
def henry(world: World) -> dict[str, Identity]:
    """henry has three certificates with keys: current, an older one that is still valid,
    and an expired one (mail encrypted to it while it was good may still arrive)."""
    world.store.add_user(HENRY)
    ids = {
        "expired": world.ca.issue(HENRY, not_before=now() - 400 * DAY, days=365),
        "older": world.ca.issue(HENRY, not_before=now() - 100 * DAY, days=730),
        "current": world.ca.issue(HENRY, not_before=now() - DAY, days=730),
    }
    for ident in ids.values():
        world.store.add_certificate(ident.cert, key=ident.key)
    return ids


@pytest.mark.parametrize("which", ["older", "expired", "current"])
def test_older_keys_still_decrypt(world: World, henry: dict[str, Identity], which: str) -> None:
    cert = henry[which].cert
    outcome, headers, message = deliver(world, encrypted_from_frank(world, cert))
    assert outcome.reply.kind == "continue", outcome.log_line
    assert outcome.new_body is not None, outcome.log_line
    assert b"Hello there." in message and b"pkcs7-mime" not in message
    assert "action=decrypt" in outcome.log_line and "result=ok" in outcome.log_line
    assert not [n for n, _v in headers if n == f"{P}Error"]
    recipient = value(headers, f"{P}Encryption-Recipient-0-0")
    assert int(recipient.split("/")[1], 16) == cert.serial_number


def test_the_chain_a_signed_message_carries_is_imported(
    world: World, henry: dict[str, Identity]
) -> None:
    # A PKI the store does not know yet: root -> intermediate -> judy (RSA, signs).
    start = now() - DAY
    root = pb.root("Outside Root CA", key_kind="rsa2048", not_before=start)
    inter = pb.ca(root, "Outside Issuing CA", key_kind="rsa2048", not_before=start)
    judy = pb.ee(inter, "judy@external.test", key_kind="rsa2048", not_before=start)
    folder = world.root / "outside"
    folder.mkdir()
    pem = serialization.Encoding.PEM
    (folder / "judy.key").write_bytes(judy.key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / "judy.pem").write_bytes(judy.cert.public_bytes(pem))
    (folder / "chain.pem").write_bytes(inter.cert.public_bytes(pem))
    for cert in (inter.cert, judy.cert):
        with pytest.raises(NotFound):
            world.store.get_certificate(fingerprint(cert))

    raw = encrypted_from_frank(world, henry["current"].cert, sign_with=(
        folder / "judy.key", folder / "judy.pem", folder / "chain.pem"))
    outcome, headers, _message = deliver(world, raw)

    assert outcome.reply.kind == "continue", outcome.log_line
    assert value(headers, f"{P}Signer-Verified-0-1") == "True"
    # The root is not in the store: verified but not trusted; harvesting does not depend on it.
    assert value(headers, f"{P}Signer-Trusted-0-1") == "False"
    assert "harvested=2" in outcome.log_line, outcome.log_line
    stored_inter = world.store.get_certificate(fingerprint(inter.cert))
    assert stored_inter.is_ca and stored_inter.source == "message"
    assert stored_inter.der == inter.cert.public_bytes(serialization.Encoding.DER)
    stored_leaf = world.store.get_certificate(fingerprint(judy.cert))
    assert stored_leaf.emails == ("judy@external.test",) and not stored_leaf.has_key
    # The root was not in the message, so it is not invented; and nothing became a root.
    with pytest.raises(NotFound):
        world.store.get_certificate(fingerprint(root.cert))
    assert fingerprint(inter.cert) not in {r.fingerprint for r in world.store.list_roots()}

    # With the root added by the administrator, judy's certificate (leaf + harvested
    # intermediate) is now good to encrypt a reply to.
    world.store.add_root(root.cert)
    world.gateway.reload()
    try:
        reply, message = send_out(world, "judy@external.test")
        assert "rcpt_certs=1" in reply.log_line, reply.log_line
        assert b"Hello there." in openssl(
            "smime", "-decrypt", "-inkey", str(folder / "judy.key"),
            "-recip", str(folder / "judy.pem"), data=message)
    finally:
        world.store.remove_root(fingerprint(root.cert))
        world.gateway.reload()
