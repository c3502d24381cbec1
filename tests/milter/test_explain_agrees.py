"""Policy explain (smimegate.service.explain) and the real Gateway agree (issue 12 point 1).

For each case the same sender, recipients and Subject go to Gateway.process as a message and to
explain as a question. What the gateway did is read back from its output alone: refused or not,
which copies it made for whom, each copy's RecipientInfos (issuer and serial) and SignerInfos
(after decrypting with the test identities' keys). That must be exactly what explain says:
its copies, the certificates it marks used for the recipients of each copy, its signers.
Cases: internal and external recipients, a mandatory recipient without certificate, the
Subject trigger, expired and revoked certificates, pqc = prefer, an unauthorised client; and
for the sender's signing keys, which one signs and why each other one does not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from smimegate.milter.edit import apply_outcome_to_message
from smimegate.milter.entity import message_entity
from smimegate.milter.inbound import open_entity
from smimegate.service import explain
from tests.milter.gateway_support import World, envelope, global_settings, make_world, parse, plain

ALICE, BOB = "alice@internal.test", "bob@internal.test"
CAROL, DAVE, MAND = "carol@external.test", "dave@external.test", "mand@external.test"
GRACE, RITA, QUINN = "grace@external.test", "rita@external.test", "quinn@external.test"
HANK = "hank@internal.test"
OUTSIDE = "198.51.100.7"
DAY = dt.timedelta(days=1)

CertKey = tuple[str, int]  # (issuer RFC 4514, serial)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = make_world(tmp_path_factory.mktemp("explain"))
    now = dt.datetime.now(dt.UTC)
    # grace: the newest certificate expired, an older one valid (chosen), the oldest superseded.
    for name, start, days in (("grace-expired", now - 10 * DAY, 5),
                              ("grace-valid", now - 200 * DAY, 800),
                              ("grace-old", now - 300 * DAY, 800)):
        w.ids[name] = w.ca.issue(GRACE, not_before=start, days=days)
        w.store.add_certificate(w.ids[name].cert)
    # rita: her only certificate is revoked by the CA's CRL.
    w.ids["rita"] = w.ca.issue(RITA)
    w.store.add_certificate(w.ids["rita"].cert)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(w.ca.cert.subject)
           .last_update(now - dt.timedelta(minutes=5)).next_update(now + 7 * DAY)
           .add_extension(x509.CRLNumber(1), critical=False)
           .add_revoked_certificate(x509.RevokedCertificateBuilder()
                                    .serial_number(w.ids["rita"].cert.serial_number)
                                    .revocation_date(now - dt.timedelta(minutes=1)).build())
           .sign(w.ca.key, hashes.SHA256()))
    w.store.add_crl(crl, verified=True)
    # pqc: alice also signs with ML-DSA, carol has an ML-KEM certificate, quinn only one.
    for name, email, kind, key in (("alice-pq", ALICE, "ml-dsa-65", True),
                                   ("carol-kem", CAROL, "ml-kem-768", False),
                                   ("quinn-kem", QUINN, "ml-kem-1024", False)):
        w.ids[name] = w.ca.issue(email, kind)
        w.store.add_certificate(w.ids[name].cert, key=w.ids[name].key if key else None)
    # hank signs: his newest key expired, the next one signs, an older one is superseded,
    # and the oldest is blocked in the store.
    for name, start, days in (("hank-expired", now - 10 * DAY, 5),
                              ("hank-valid", now - 100 * DAY, 800),
                              ("hank-old", now - 200 * DAY, 800),
                              ("hank-blocked", now - 300 * DAY, 800)):
        w.ids[name] = w.ca.issue(HANK, not_before=start, days=days)
        w.store.add_certificate(w.ids[name].cert, key=w.ids[name].key)
    w.store.set_certificate_blocked(
        w.ids["hank-blocked"].cert.fingerprint(hashes.SHA256()).hex(), True)
    w.gateway.reload()
    return w


@pytest.fixture()
def setting(world: World) -> Iterator[Callable[..., None]]:
    """Set global properties for one test; the settings are removed afterwards."""
    yield from global_settings(world)


@dataclass(frozen=True)
class Seen:
    """What a message's handling came to: refused, or its copies (recipients -> the
    RecipientInfos and the SignerInfos of that copy)."""

    refused: bool
    copies: dict[frozenset[str], tuple[frozenset[CertKey], frozenset[CertKey]]]


def keys(world: World) -> list[tuple[x509.Certificate, Any]]:
    return [(ident.cert, ident.key) for ident in world.ids.values()]


def layers_of(world: World, message: bytes) -> tuple[frozenset[CertKey], frozenset[CertKey]]:
    headers, body = parse(message)
    opened = open_entity(message_entity(headers, body), keys(world))
    recipients: set[CertKey] = set()
    signers: set[CertKey] = set()
    for layer in opened.layers:
        for r in layer.recipients:
            assert r.recipient_id.serial is not None
            recipients.add((r.recipient_id.issuer, r.recipient_id.serial))
        for s in layer.signers:
            assert s.valid and s.signer_id.serial is not None, s.reason
            signers.add((s.signer_id.issuer, s.signer_id.serial))
    return frozenset(recipients), frozenset(signers)


def gateway_saw(world: World, sender: str, rcpts: tuple[str, ...], subject: str,
                client: str) -> Seen:
    headers, body = parse(plain(sender, ", ".join(rcpts), subject))
    outcome = world.gateway.process(envelope(sender, *rcpts, client=client), headers, body)
    if outcome.reply.refuses:
        return Seen(True, {})
    assert outcome.reply.kind == "continue", outcome.log_line
    kept = frozenset(r for r in rcpts if r not in outcome.remove_recipients)
    copies = {kept: layers_of(world, apply_outcome_to_message(headers, body, outcome))}
    for copy in outcome.reinjections:
        copies[frozenset(copy.recipients)] = layers_of(world, copy.message)
    return Seen(False, copies)


def explain_says(answer: dict[str, Any]) -> Seen:
    if answer["refusal"] is not None:
        return Seen(True, {})
    used = {r["address"]: {(c["issuer"], int(c["serial"], 16)) for c in r["certificates"]
                           if c["used"]} for r in answer["recipients"]}
    signers = frozenset((s["issuer"], int(s["serial"], 16)) for s in answer["sign"]["signers"])
    copies = {}
    for copy in answer["copies"]:
        recipients = frozenset(copy["recipients"])
        infos = frozenset(c for address in recipients for c in used[address])
        copies[recipients] = (infos, signers)
    return Seen(False, copies)


def agree(world: World, *rcpts: str, subject: str = "hello", sender: str = ALICE,
          client: str = "127.0.0.1") -> dict[str, Any]:
    asked = explain.question(sender, rcpts, subject, authorised=client != OUTSIDE)
    answer = explain.explain(world.store, world.config, asked)
    seen = gateway_saw(world, sender, rcpts, subject, client)
    assert explain_says(answer) == seen
    return answer


def recipient(answer: dict[str, Any], address: str) -> dict[str, Any]:
    return next(r for r in answer["recipients"] if r["address"] == address)


def serial(world: World, name: str) -> str:
    return format(world.ids[name].cert.serial_number, "X")


def test_external_with_certificate_and_internal_recipient(world: World) -> None:
    answer = agree(world, CAROL, BOB)
    assert answer["direction"] == "outbound" and answer["sign"]["sign"] is True
    assert [s["family"] for s in answer["sign"]["signers"]] == ["classic"]
    assert recipient(answer, CAROL)["action"] == "encrypt"
    assert recipient(answer, BOB)["action"] == "internal"
    assert len(answer["copies"]) == 2  # encrypted for carol, signed only for bob
    # The policy values that decided, with their levels.
    assert recipient(answer, BOB)["policy"]["locality"] == {"value": "internal",
                                                            "from": "domain"}
    assert answer["sender_policy"]["sign"] == {"value": "yes", "from": "default"}


def test_mandatory_recipient_without_certificate_is_refused(world: World) -> None:
    answer = agree(world, CAROL, MAND)
    assert recipient(answer, MAND)["action"] == "refuse"
    assert recipient(answer, MAND)["policy"]["encrypt_mode"] == {"value": "mandatory",
                                                                 "from": "user"}
    assert answer["refusal"].startswith("550 5.7.1 <mand@external.test>")


def test_subject_trigger(world: World) -> None:
    answer = agree(world, CAROL, subject="[encrypt] figures")
    assert answer["subject"] == {"given": "[encrypt] figures", "sent": "figures",
                                 "trigger": True}
    # The trigger makes a recipient without certificate a refusal, not a message in clear.
    answer = agree(world, CAROL, DAVE, subject="figures [ENCRYPT]")
    assert recipient(answer, DAVE)["reasons"] == ["trigger", "no-certificate"]
    answer = agree(world, DAVE, subject="figures")
    assert recipient(answer, DAVE)["action"] == "clear"


def test_expired_certificate_is_skipped_for_an_older_valid_one(world: World) -> None:
    answer = agree(world, GRACE)
    certs = {c["serial"]: c for c in recipient(answer, GRACE)["certificates"]}
    assert certs[serial(world, "grace-valid")]["used"] is True
    assert "expired" in certs[serial(world, "grace-expired")]["why"]
    assert certs[serial(world, "grace-old")]["why"] == "a newer certificate was chosen"
    # Skipped ones say what kind of key they hold, as chosen ones do.
    assert {c["kind"] for c in certs.values()} == {"classic"}


def test_revoked_certificate_is_not_used(world: World) -> None:
    answer = agree(world, RITA)
    rita = recipient(answer, RITA)
    assert rita["action"] == "clear" and rita["reasons"] == ["no-certificate"]
    assert "revoked" in rita["certificates"][0]["why"]
    assert rita["certificates"][0]["kind"] == "classic"
    assert agree(world, RITA, subject="[encrypt] x")["refusal"] is not None


def test_pqc_prefer(world: World, setting: Any) -> None:
    answer = agree(world, CAROL)
    carol = recipient(answer, CAROL)
    kem = next(c for c in carol["certificates"] if c["kind"] == "ml-kem")
    assert kem["used"] is False and kem["why"].startswith("pqc is never")
    setting(pqc="prefer")
    answer = agree(world, CAROL, QUINN, GRACE)  # grace: classic only, still encrypted
    assert [s["family"] for s in answer["sign"]["signers"]] == ["classic", "ml-dsa"]
    assert {c["kind"] for c in recipient(answer, CAROL)["certificates"] if c["used"]} == {
        "classic", "ml-kem"}
    assert len(answer["copies"]) == 2  # the ML-KEM recipients apart from the classic one
    assert answer["sender_policy"]["pqc"] == {"value": "prefer", "from": "global"}
    setting(pqc="only")
    answer = agree(world, QUINN, GRACE, subject="[encrypt] x")
    assert recipient(answer, GRACE)["reasons"] == ["trigger", "no-ml-kem-certificate"]
    classic = recipient(answer, GRACE)["certificates"][0]
    assert classic["kind"] == "classic" and classic["why"].startswith("pqc is only")
    assert agree(world, QUINN, GRACE)["copies"][1]["recipients"] == [GRACE]


def test_every_signing_key_says_whether_it_signs_and_why_not(world: World,
                                                              setting: Any) -> None:
    answer = agree(world, CAROL, sender=HANK)
    keys = {k["serial"]: k for k in answer["sign"]["keys"]}
    assert [k["serial"] for k in answer["sign"]["keys"]] == [
        serial(world, n) for n in ("hank-expired", "hank-valid", "hank-old", "hank-blocked")]
    assert keys[serial(world, "hank-valid")]["used"] is True
    assert keys[serial(world, "hank-valid")]["why"] == ""
    assert "expired" in keys[serial(world, "hank-expired")]["why"]
    assert keys[serial(world, "hank-expired")]["why"].startswith("not trusted for signing")
    assert keys[serial(world, "hank-old")]["why"] == "a newer trusted key of the same kind signs"
    assert keys[serial(world, "hank-blocked")]["why"] == "blocked in the store"
    assert not any(k["used"] for k in answer["sign"]["keys"]
                   if k["serial"] != serial(world, "hank-valid"))
    # alice's ML-DSA key waits for pqc; with prefer both of her keys sign.
    answer = agree(world, CAROL)
    pq = next(k for k in answer["sign"]["keys"] if k["kind"] == "ml-dsa")
    assert pq["used"] is False and pq["why"] == "pqc is never: ML-DSA keys do not sign"
    setting(pqc="prefer")
    answer = agree(world, CAROL)
    assert {k["kind"] for k in answer["sign"]["keys"] if k["used"]} == {"classic", "ml-dsa"}
    # Not signing at all: every key says why.
    setting(sign="no")
    answer = agree(world, CAROL, sender=HANK)
    assert answer["sign"]["sign"] is False
    assert keys_why(answer, serial(world, "hank-valid")).startswith("not signed: ")


def keys_why(answer: dict[str, Any], serial_hex: str) -> str:
    return str(next(k["why"] for k in answer["sign"]["keys"] if k["serial"] == serial_hex))


def test_unauthorised_client_is_not_outbound(world: World) -> None:
    answer = agree(world, CAROL, BOB, client=OUTSIDE)
    assert answer["direction"] == "inbound" and answer["sign"]["sign"] is False
    assert answer["authorised"] is False
    assert recipient(answer, BOB)["keys"] == 1 and recipient(answer, CAROL)["keys"] == 0


def test_bad_input_names_its_field() -> None:
    with pytest.raises(explain.InvalidInput) as bad:
        explain.question("not an address", [CAROL])
    assert bad.value.field == "sender"
    with pytest.raises(explain.InvalidInput) as bad:
        explain.question(ALICE, ["", " "])
    assert bad.value.field == "recipients"
    with pytest.raises(explain.InvalidInput) as bad:
        explain.question(ALICE, [CAROL], "a\r\nBcc: x@y")
    assert bad.value.field == "subject"
