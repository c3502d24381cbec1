"""The pqc property through the gateway (issue 14 point 3), both ways.

Outbound: with pqc = never nothing changes (one classic RecipientInfo, one classic signer);
with prefer a recipient that has a classic and an ML-KEM certificate gets a RecipientInfo for
each, and a sender with an RSA and an ML-DSA key signs with both (countersignature by default,
parallel on request); with only, ML-KEM and ML-DSA alone, and a recipient without an ML-KEM
certificate has no usable certificate. The system openssl (3.0, no ML-KEM/ML-DSA) is the
classic client: it must still decrypt and verify what prefer writes in the default arrangement.
Inbound: our milter reads both signers (and the countersignature) and reports each one.
ML-KEM-512 (kyber-py, as cryptography has none) goes through the same paths: pat has such a
certificate outside, ivy such a key inside.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from asn1crypto import cms as acms

from smimegate.milter.edit import apply_header_edits, apply_outcome_to_message
from smimegate.milter.transaction import Outcome
from smimegate.smime import mime
from smimegate.smime.results import serial_hex
from smimegate.smime.unwrap import unwrap
from tests.milter.gateway_support import (
    World,
    envelope,
    global_settings,
    make_world,
    openssl,
    parse,
    plain,
)

ALICE, BOB = "alice@internal.test", "bob@internal.test"
CAROL, DAVE, MAND = "carol@external.test", "dave@external.test", "mand@external.test"
QUINN = "quinn@external.test"  # an ML-KEM certificate and nothing else
PAT = "pat@external.test"  # an ML-KEM-512 certificate and nothing else
IVY = "ivy@internal.test"  # internal, an ML-KEM-512 key and nothing else
P = "X-Smimegate-Info-"
OUTSIDE = "198.51.100.7"
ML_KEM_512 = "2.16.840.1.101.3.4.4.1"
ML_KEM_768 = "2.16.840.1.101.3.4.4.2"
ORI_KEM = "1.2.840.113549.1.9.16.13.3"
RSA = "1.2.840.113549.1.1.1"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = make_world(tmp_path_factory.mktemp("pqc"))
    w.ids["alice-pq"] = w.ca.issue(ALICE, "ml-dsa-65")
    w.store.add_certificate(w.ids["alice-pq"].cert, key=w.ids["alice-pq"].key)
    w.ids["carol-kem"] = w.ca.issue(CAROL, "ml-kem-768")
    w.store.add_certificate(w.ids["carol-kem"].cert)
    w.ids["quinn-kem"] = w.ca.issue(QUINN, "ml-kem-1024")
    w.store.add_certificate(w.ids["quinn-kem"].cert)
    w.store.add_certificate(w.ca.issue(MAND, "rsa2048").cert)  # classic only
    # bob (internal) also holds an ML-KEM key, for the inbound direction.
    w.ids["bob-kem"] = w.ca.issue(BOB, "ml-kem-768")
    w.store.add_certificate(w.ids["bob-kem"].cert, key=w.ids["bob-kem"].key)
    w.ids["pat-kem"] = w.ca.issue(PAT, "ml-kem-512")
    w.store.add_certificate(w.ids["pat-kem"].cert)
    w.ids["ivy-kem"] = w.ca.issue(IVY, "ml-kem-512")
    w.store.add_user(IVY)
    w.store.add_certificate(w.ids["ivy-kem"].cert, key=w.ids["ivy-kem"].key)
    (w.root / "ca.pem").write_bytes(w.ca.cert_pem())
    return w


@pytest.fixture()
def pqc(world: World) -> Iterator[Callable[..., None]]:
    """Set global properties for one test; the settings are removed afterwards."""
    yield from global_settings(world)


def run(world: World, sender: str, *rcpts: str, subject: str = "hello") -> tuple[Outcome, bytes]:
    headers, body = parse(plain(sender, ", ".join(rcpts), subject))
    outcome = world.gateway.process(envelope(sender, *rcpts), headers, body)
    return outcome, apply_outcome_to_message(headers, body, outcome)


def recipient_infos(message: bytes) -> list[tuple[str, str]]:
    """(RecipientInfo kind, key encryption OID) of an encrypted message, in order."""
    der = mime.decode_smime_body(mime.parse_entity(message))
    info = acms.ContentInfo.load(der)
    out = []
    for ri in info["content"]["recipient_infos"]:
        if ri.name == "ori":
            out.append(("ori", ri.chosen["ori_type"].dotted))
        else:
            out.append((ri.name, ri.chosen["key_encryption_algorithm"]["algorithm"].dotted))
    return out


def signer_algorithms(entity: bytes) -> list[str]:
    """signatureAlgorithm OIDs of the SignerInfos, then of their countersignatures."""
    parsed = mime.parse_entity(entity)
    if mime.classify(parsed) == "signed":
        der = mime.split_multipart_signed(parsed)[1]
    else:
        der = mime.decode_smime_body(parsed)
    signed = acms.ContentInfo.load(der)["content"]
    out = [si["signature_algorithm"]["algorithm"].dotted for si in signed["signer_infos"]]
    for si in signed["signer_infos"]:
        if si["unsigned_attrs"].native:
            out += [f"counter:{a['type'].dotted}" for a in si["unsigned_attrs"]]
    return out


def openssl_decrypt(world: World, name: str, message: bytes) -> bytes:
    key, crt = world.pem(name)
    return openssl("cms", "-decrypt", "-inkey", str(key), "-recip", str(crt), data=message)


def openssl_verify(world: World, entity: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", "smime", "-verify", "-CAfile",
                           str(world.root / "ca.pem")], input=entity, capture_output=True,
                          check=False)


def openssl_knows_ml_dsa() -> bool:
    out = subprocess.run(["openssl", "list", "-signature-algorithms"], capture_output=True,
                         text=True, check=False).stdout
    return "ML-DSA" in out.upper()


def test_never_is_the_default_and_writes_classic_only(world: World) -> None:
    outcome, message = run(world, ALICE, CAROL)
    assert outcome.reply.kind == "continue"
    assert recipient_infos(message) == [("ktri", RSA)]
    # EnvelopedData version 0: no ori, exactly what the classic path always wrote.
    der = mime.decode_smime_body(mime.parse_entity(message))
    assert acms.ContentInfo.load(der)["content"]["version"].native == "v0"
    inner = openssl_decrypt(world, "carol", message)
    assert signer_algorithms(inner) == [RSA]
    assert "kem_certs" not in outcome.log_line and "pqc_sign" not in outcome.log_line
    # An ML-KEM certificate alone is no usable certificate under never.
    outcome, message = run(world, ALICE, QUINN)
    assert "action=sign " in outcome.log_line and b"pkcs7-mime" not in message


def test_prefer_adds_ml_kem_and_countersigns_and_openssl_30_still_reads_it(
        world: World, pqc) -> None:  # type: ignore[no-untyped-def]
    pqc(pqc="prefer")
    outcome, message = run(world, ALICE, CAROL)
    assert outcome.reply.kind == "continue"
    assert sorted(recipient_infos(message)) == [("ktri", RSA), ("ori", "1.2.840.113549.1.9.16.13.3")]
    assert "rcpt_certs=2" in outcome.log_line and "kem_certs=1" in outcome.log_line
    assert "pqc_sign=countersignature" in outcome.log_line
    # The classic client: openssl 3.0 decrypts with the RSA key and verifies the RSA signer.
    inner = openssl_decrypt(world, "carol", message)
    assert signer_algorithms(inner) == [RSA, "counter:1.2.840.113549.1.9.6"]
    done = openssl_verify(world, inner)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Hello there." in done.stdout
    # The ML-KEM key alone opens it too, and both signatures verify.
    kem = world.ids["carol-kem"]
    opened = unwrap(message, [(kem.cert, kem.key)])
    assert opened.error is None
    assert opened.layers[0].recipients[0].key_encryption_oid in (ML_KEM_768, RSA)
    signers = opened.layers[1].signers
    assert [(s.signature_algorithm, s.valid, s.countersigns) for s in signers] == [
        ("rsa", True, None), ("ml-dsa-65", True, 0)]


def test_prefer_parallel_writes_two_signer_infos(world: World, pqc) -> None:  # type: ignore[no-untyped-def]
    pqc(pqc="prefer", pqc_signature="parallel")
    outcome, message = run(world, ALICE, DAVE)
    assert "action=sign " in outcome.log_line and "pqc_sign=parallel" in outcome.log_line
    assert sorted(signer_algorithms(message)) == sorted([RSA, "2.16.840.1.101.3.4.3.18"])
    assert re.search(rb'micalg="sha-256,sha-512"', message)
    done = openssl_verify(world, message)
    if openssl_knows_ml_dsa():
        assert done.returncode == 0, done.stderr.decode(errors="replace")
    else:
        # OpenSSL before 3.5 verifies every SignerInfo (CMS_verify) and so refuses the whole
        # message: why countersignature is the default arrangement.
        assert done.returncode != 0


def test_prefer_recipient_with_ml_kem_only_and_classic_only(world: World, pqc) -> None:  # type: ignore[no-untyped-def]
    pqc(pqc="prefer")
    outcome, message = run(world, ALICE, QUINN)
    assert recipient_infos(message) == [("ori", "1.2.840.113549.1.9.16.13.3")]
    kem = world.ids["quinn-kem"]
    assert b"Hello there." in unwrap(message, [(kem.cert, kem.key)]).content
    outcome, message = run(world, ALICE, MAND)
    assert recipient_infos(message) == [("ktri", RSA)]


def test_only_uses_ml_kem_and_ml_dsa_alone(world: World, pqc) -> None:  # type: ignore[no-untyped-def]
    pqc(pqc="only")
    outcome, message = run(world, ALICE, CAROL)
    assert recipient_infos(message) == [("ori", "1.2.840.113549.1.9.16.13.3")]
    assert "pqc_sign=ml-dsa" in outcome.log_line
    kem = world.ids["carol-kem"]
    opened = unwrap(message, [(kem.cert, kem.key)])
    assert [(s.signature_algorithm, s.valid) for s in opened.layers[1].signers] == [
        ("ml-dsa-65", True)]
    # allow and no ML-KEM certificate: in clear (signed with ML-DSA alone), like no certificate.
    outcome, message = run(world, ALICE, DAVE)
    assert "action=sign " in outcome.log_line
    assert signer_algorithms(message) == ["2.16.840.1.101.3.4.3.18"]


def test_only_refuses_a_mandatory_recipient_with_a_classic_certificate(world: World, pqc) -> None:  # type: ignore[no-untyped-def]
    pqc(pqc="only")
    reply = world.gateway.rcpt_check(envelope(ALICE), MAND)
    assert (reply.kind, reply.code, reply.xcode) == ("reject", "550", "5.7.1")
    assert f"<{MAND}>" in (reply.text or "") and "ML-KEM" in (reply.text or "")
    outcome, _message = run(world, ALICE, MAND)
    assert (outcome.reply.code, outcome.reply.xcode) == ("550", "5.7.1")
    assert outcome.new_body is None and "result=refused" in outcome.log_line


def test_the_recipient_level_decides_encryption(world: World, pqc) -> None:  # type: ignore[no-untyped-def]
    pqc(pqc="never")
    world.store.add_user(CAROL, {"pqc": "only"})
    try:
        world.gateway.reload()
        _outcome, message = run(world, ALICE, CAROL)
    finally:
        world.store.remove_user(CAROL)
        world.gateway.reload()
    assert recipient_infos(message) == [("ori", "1.2.840.113549.1.9.16.13.3")]
    # ... and the sender's level its signature: never, so RSA alone.
    kem = world.ids["carol-kem"]
    signers = unwrap(message, [(kem.cert, kem.key)]).layers[1].signers
    assert [s.signature_algorithm for s in signers] == ["rsa"]


def deliver(world: World, raw: bytes, *rcpts: str) -> tuple[Outcome, list[tuple[str, str]]]:
    headers, body = parse(raw)
    outcome = world.gateway.process(envelope("frank@external.test", *rcpts, client=OUTSIDE),
                                    headers, body)
    return outcome, apply_header_edits(headers, outcome.header_edits)


def ours(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {n[len(P):]: v for n, v in headers if n.startswith(P)}


@pytest.mark.parametrize("arrangement", ["countersignature", "parallel"])
def test_inbound_reports_both_signers(world: World, pqc, arrangement: str) -> None:  # type: ignore[no-untyped-def]
    """alice's prefer message (signed only, to dave outside) comes back in to bob: our milter
    verifies both signers and names each one."""
    pqc(pqc="prefer", pqc_signature=arrangement)
    _outcome, message = run(world, ALICE, DAVE)
    pqc(pqc="never")
    outcome, headers = deliver(world, message, BOB)
    got = ours(headers)
    rsa_id, pq_id = world.ids["alice"].cert, world.ids["alice-pq"].cert
    serials = {got["Signer-ID-0-0"].split("/")[1], got["Signer-ID-1-0"].split("/")[1]}
    assert serials == {serial_hex(rsa_id.serial_number), serial_hex(pq_id.serial_number)}
    for index in (0, 1):
        assert got[f"Signer-Verified-{index}-0"] == "True"
        assert got[f"Signer-Trusted-{index}-0"] == "True"
    if arrangement == "countersignature":
        assert got["Signer-Countersigns-1-0"] == "0"
    else:
        assert not any(k.startswith("Signer-Countersigns") for k in got)
    ar = next(v for n, v in headers if n == "Authentication-Results")
    assert ar.count("smime=pass") == 2
    assert "signers=2" in outcome.log_line and "verified=yes" in outcome.log_line


def test_inbound_decrypts_with_the_ml_kem_key_and_names_both_recipients(world: World) -> None:
    from smimegate.smime import encrypt as smime_encrypt
    from smimegate.smime import sign as smime_sign

    frank = world.ids["frank"]
    frank_pq = world.ca.issue("frank@external.test", "ml-dsa-44")
    entity = b"Content-Type: text/plain\r\n\r\nQuantum hello.\r\n"
    signed = smime_sign.sign_several(entity, [smime_sign.Signer(frank.key, frank.cert),
                                              smime_sign.Signer(frank_pq.key, frank_pq.cert)],
                                     arrangement="parallel")
    encrypted = smime_encrypt.encrypt(signed, [world.ids["bob"].cert, world.ids["bob-kem"].cert])
    raw = (b"From: frank@external.test\r\nTo: bob@internal.test\r\nSubject: pq\r\n"
           b"MIME-Version: 1.0\r\n" + encrypted)
    outcome, headers = deliver(world, raw, BOB)
    got = ours(headers)
    oids = sorted(got[f"Encryption-Recipient-{i}-0"].rsplit("/", 1)[1] for i in (0, 1))
    assert oids == sorted([RSA, ML_KEM_768])
    assert got["Signer-Verified-0-1"] == got["Signer-Verified-1-1"] == "True"
    assert "action=decrypt" in outcome.log_line
    assert outcome.new_body is not None and b"Quantum hello." in outcome.new_body


def test_pqc_is_shown_with_its_level(world: World, tmp_path: Path) -> None:
    from smimegate.service import properties as service_properties

    world.store.set_setting("pqc", "prefer")
    try:
        assert service_properties.effective_global(world.store).as_dict()["pqc"] == {
            "value": "prefer", "from": "global"}
    finally:
        world.store.delete_setting("pqc")


def test_an_independent_reader_opens_and_verifies_what_prefer_writes(
        world: World, pqc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """tests/interop/pqc-js (JavaScript, no code shared with smimegate, cryptography or
    OpenSSL) decrypts the gateway's message with carol's ML-KEM key and verifies both of
    alice's signatures in it."""
    from tests.helpers import pqcjs

    pqc(pqc="prefer")
    _outcome, message = run(world, ALICE, CAROL)
    der = mime.decode_smime_body(mime.parse_entity(message))
    inner = pqcjs.decrypt(tmp_path, der, world.ids["carol-kem"].key)
    content, signature, _micalg = mime.split_multipart_signed(mime.parse_entity(inner))
    assert pqcjs.verify(tmp_path, signature, content) == [
        {"algorithm": "1.2.840.113549.1.1.1", "valid": True, "reason": None,
         "countersigns": None},
        {"algorithm": "ml-dsa-65", "valid": True, "reason": None, "countersigns": 0}]


def test_classic_recipients_get_a_copy_without_ml_kem(world: World, pqc) -> None:  # type: ignore[no-untyped-def]
    """carol has an ML-KEM certificate, mand a classic one only: two copies, and mand's has no
    ori RecipientInfo (NSS refuses a whole EnvelopedData with one)."""
    pqc(pqc="prefer")
    outcome, message = run(world, ALICE, CAROL, MAND)
    assert outcome.reply.kind == "continue" and "split=2" in outcome.log_line
    [copy] = outcome.reinjections
    kept, other = recipient_infos(message), recipient_infos(copy.message)
    assert sorted([kept, other]) == sorted([
        [("ktri", RSA)], sorted([("ktri", RSA), ("ori", "1.2.840.113549.1.9.16.13.3")])])


def kem_oids(message: bytes) -> list[str]:
    """The KEM algorithm OID of each KEMRecipientInfo (RFC 9629 3) of an encrypted message."""
    from smimegate.smime import kem

    der = mime.decode_smime_body(mime.parse_entity(message))
    infos = acms.ContentInfo.load(der)["content"]["recipient_infos"]
    return [kemri["kem"]["algorithm"].dotted for ri in infos
            if (kemri := kem.parse(ri)) is not None]


@pytest.mark.parametrize("setting", ["prefer", "only"])
def test_ml_kem_512_recipient_outbound(world: World, pqc, setting: str,  # type: ignore[no-untyped-def]
                                       tmp_path: Path) -> None:
    """pat holds an ML-KEM-512 certificate alone: prefer and only both encrypt to it with a
    KEMRecipientInfo, which pat's key and the independent reader (tests/interop/pqc-js) open."""
    from tests.helpers import pqcjs

    pqc(pqc=setting)
    outcome, message = run(world, ALICE, PAT)
    assert outcome.reply.kind == "continue" and "kem_certs=1" in outcome.log_line
    assert recipient_infos(message) == [("ori", ORI_KEM)]
    assert kem_oids(message) == [ML_KEM_512]
    pat = world.ids["pat-kem"]
    opened = unwrap(message, [(pat.cert, pat.key)])
    assert opened.error is None and b"Hello there." in opened.content
    der = mime.decode_smime_body(mime.parse_entity(message))
    assert b"Hello there." in pqcjs.decrypt(tmp_path, der, pat.key)
    # never: the ML-KEM-512 certificate is not used, so pat has no usable certificate.
    pqc(pqc="never")
    outcome, message = run(world, ALICE, PAT)
    assert "action=sign " in outcome.log_line and b"pkcs7-mime" not in message


def test_inbound_decrypts_with_our_ml_kem_512_key(world: World) -> None:
    from smimegate.smime import encrypt as smime_encrypt

    entity = b"Content-Type: text/plain\r\n\r\nSmall quantum hello.\r\n"
    encrypted = smime_encrypt.encrypt(entity, [world.ids["ivy-kem"].cert], cipher="aes128-gcm")
    raw = (b"From: frank@external.test\r\nTo: ivy@internal.test\r\nSubject: pq\r\n"
           b"MIME-Version: 1.0\r\n" + encrypted)
    outcome, headers = deliver(world, raw, IVY)
    got = ours(headers)
    assert got["Encryption-Recipient-0-0"].rsplit("/", 1)[1] == ML_KEM_512
    assert "action=decrypt" in outcome.log_line
    assert outcome.new_body is not None and b"Small quantum hello." in outcome.new_body
