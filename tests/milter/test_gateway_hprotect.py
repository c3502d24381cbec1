"""RFC 9788 header protection through the gateway, [milter] header_protection = true (the
default): outbound payloads read back with OpenSSL, inbound restoring with our own output and
with the shared corpus (autocrypt/protected-headers, tests/vectors/protected-headers), a round
trip, contradictions and malformed hp parts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from smimegate.milter.edit import apply_header_edits, apply_outcome_to_message
from smimegate.milter.transaction import Outcome
from smimegate.smime import mime
from tests.conftest import VECTORS
from tests.helpers.testpki import Identity
from tests.milter.gateway_support import World, envelope, make_world, openssl, parse

ALICE, EVE = "alice@internal.test", "eve@internal.test"
CAROL, DAVE, FRANK = "carol@external.test", "dave@external.test", "frank@external.test"
REMOTE = "rcpt@remote.test"
BOB_PH = "bob@smime.example"
P = "X-Smimegate-Info-"
OUTSIDE = "198.51.100.7"
PH = VECTORS / "protected-headers"


@dataclass
class Sites:
    """here: the sending gateway; there: the receiving one (holds REMOTE's key and, for the
    corpus, Bob's of the LAMPS samples)."""

    here: World
    there: World
    remote: Identity


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    here = make_world(tmp_path_factory.mktemp("hp-here"))
    there = make_world(tmp_path_factory.mktemp("hp-there"))
    remote = there.ca.issue(REMOTE)
    there.store.add_domain("remote.test", {"locality": "internal"})
    there.store.add_user(REMOTE)
    there.store.add_certificate(remote.cert, key=remote.key)
    there.store.add_root(here.ca.cert)
    here.store.add_root(there.ca.cert)
    here.store.add_certificate(remote.cert)
    key, cert, _chain = pkcs12.load_key_and_certificates((PH / "bob.der.p12").read_bytes(),
                                                         b"bob")
    assert key is not None and cert is not None
    there.store.add_domain("smime.example", {"locality": "internal"})
    there.store.add_user(BOB_PH)
    there.store.add_certificate(cert, key=key)
    from cryptography import x509
    there.store.add_root(x509.load_pem_x509_certificate((PH / "sample-ca.pem").read_bytes()))
    here.gateway.reload()
    there.gateway.reload()
    yield Sites(here, there, remote)


def message(sender: str, to: str, subject: str = "quarterly figures", extra: str = "",
            body: str = "Hello there.\r\n",
            ctype: str = "text/plain; charset=us-ascii") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}"
            f"Message-ID: <hp1@client.test>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {ctype}\r\n\r\n{body}").encode()


def send(world: World, raw: bytes, sender: str, *rcpts: str,
         client: str = "127.0.0.1") -> tuple[Outcome, list[tuple[str, str]], bytes]:
    headers, body = parse(raw)
    outcome = world.gateway.process(envelope(sender, *rcpts, client=client), headers, body)
    return (outcome, apply_header_edits(headers, outcome.header_edits),
            apply_outcome_to_message(headers, body, outcome))


def outer_fields(delivered: bytes) -> dict[str, list[str]]:
    fields, _entity = mime.split_message(delivered)
    out: dict[str, list[str]] = {}
    for name, value in fields:
        out.setdefault(name.lower(), []).append(mime.unfold(value))
    return out


def cms_decrypt(world: World, name: str, data: bytes) -> bytes:
    key, crt = world.pem(name)
    return openssl("cms", "-decrypt", "-inkey", str(key), "-recip", str(crt), data=data)


def smime_verify(world: World, data: bytes) -> bytes:
    ca = world.root / "ca.pem"
    ca.write_bytes(world.ca.cert_pem())
    return openssl("smime", "-verify", "-CAfile", str(ca), data=data)


# -- outbound ---------------------------------------------------------------------------------
def test_signed_only_carries_the_header_section_with_hp_clear(sites: Sites) -> None:
    outcome, _headers, sent = send(sites.here, message(ALICE, DAVE), ALICE, DAVE)
    assert "action=sign " in outcome.log_line and "hp=clear" in outcome.log_line
    # Nothing is obscured when nothing is encrypted.
    assert outer_fields(sent)["subject"] == ["quarterly figures"]
    content = mime.canonicalize(smime_verify(sites.here, sent))
    entity = mime.parse_entity(content)
    inner = {n.lower(): v for n, v in entity.headers}
    assert inner["subject"] == b"quarterly figures"
    assert inner["from"] == ALICE.encode() and inner["message-id"] == b"<hp1@client.test>"
    assert mime.content_type(entity) == ("text/plain", {"charset": "us-ascii", "hp": "clear"})
    assert "hp-outer" not in inner and entity.body == b"Hello there.\r\n"


def test_encrypted_shows_subject_obscured_and_carries_it_inside(sites: Sites) -> None:
    raw = message(EVE, CAROL, subject="Merger with =?utf-8?q?Gr=C3=BCn?= AG",
                  extra="Keywords: merger, secret\r\nComments: draft 3\r\n")
    outcome, _headers, sent = send(sites.here, raw, EVE, CAROL)
    assert "action=encrypt " in outcome.log_line and "hp=cipher" in outcome.log_line
    assert "legacy_display=added" in outcome.log_line
    outer = outer_fields(sent)
    # RFC 9788 3.2 hcp_baseline: Subject "[...]", Keywords and Comments gone, the rest kept.
    assert outer["subject"] == ["[...]"]
    assert "keywords" not in outer and "comments" not in outer
    assert outer["from"] == [EVE] and outer["message-id"] == ["<hp1@client.test>"]
    assert b"Merger" not in sent and b"merger" not in sent
    payload = mime.canonicalize(cms_decrypt(sites.here, "carol", sent))
    entity = mime.parse_entity(payload)
    inner = [(n, mime.unfold(v)) for n, v in entity.headers]
    assert ("Subject", "Merger with =?utf-8?q?Gr=C3=BCn?= AG") in inner
    assert ("Keywords", "merger, secret") in inner and ("Comments", "draft 3") in inner
    # What stayed outside, recorded inside (RFC 9788 2.2).
    assert [v for n, v in inner if n == "HP-Outer"] == [
        f"From: {EVE}", f"To: {CAROL}", "Subject: [...]", "Message-ID: <hp1@client.test>"]
    ctype, params = mime.content_type(entity)
    assert (ctype, params["hp"], params["hp-legacy-display"]) == ("text/plain", "cipher", "1")
    # The legacy display element, decoded for people; the text is UTF-8 now (ü).
    assert params["charset"] == "utf-8"
    assert mime.transfer_encoding(entity) == "quoted-printable"
    import binascii
    text = binascii.a2b_qp(entity.body).decode("utf-8")
    assert text == "Subject: Merger with Grün AG\r\n\r\nHello there.\r\n"


def test_sign_then_encrypt_inner_signed_payload_read_by_openssl(sites: Sites) -> None:
    outcome, _headers, sent = send(sites.here, message(ALICE, CAROL), ALICE, CAROL)
    assert "action=sign+encrypt" in outcome.log_line and "hp=cipher" in outcome.log_line
    assert outer_fields(sent)["subject"] == ["[...]"]
    signed = cms_decrypt(sites.here, "carol", sent)
    assert b"multipart/signed" in signed
    content = mime.canonicalize(smime_verify(sites.here, signed))
    entity = mime.parse_entity(content)
    assert mime.get_header(entity, "subject") == b"quarterly figures"
    assert mime.content_type(entity)[1]["hp"] == "cipher"
    assert entity.body == b"Subject: quarterly figures\r\n\r\nHello there.\r\n"


def test_subject_trigger_is_removed_inside_and_obscured_outside(sites: Sites) -> None:
    raw = message(ALICE, CAROL, subject="[encrypt] figures")
    outcome, _headers, sent = send(sites.here, raw, ALICE, CAROL)
    assert [e.value for e in outcome.header_edits if e.name == "Subject"] == ["[...]"]
    assert b"[encrypt]" not in sent and b"figures" not in sent
    content = smime_verify(sites.here, cms_decrypt(sites.here, "carol", sent))
    assert b"Subject: figures\r\n" in mime.canonicalize(content)
    assert b"[encrypt]" not in content


def test_html_and_alternative_parts_get_the_legacy_display(sites: Sites) -> None:
    body = ("--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nplain text\r\n"
            "--b1\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n"
            "<html><body><p>html text</p></body></html>\r\n"
            "--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\n\r\n"
            "%PDF\r\n--b1--\r\n")
    raw = message(EVE, CAROL, subject="A <b>bold</b> plan", body=body,
                  ctype='multipart/alternative; boundary="b1"')
    _outcome, _headers, sent = send(sites.here, raw, EVE, CAROL)
    payload = mime.parse_entity(mime.canonicalize(cms_decrypt(sites.here, "carol", sent)))
    parts = [mime.parse_entity(p) for p in mime.split_multipart(payload)]
    assert parts[0].body == b"Subject: A <b>bold</b> plan\r\n\r\nplain text"
    assert parts[1].body.startswith(
        b'<html><body><div class="header-protection-legacy-display"><pre>'
        b"Subject: A &lt;b&gt;bold&lt;/b&gt; plan</pre></div>")
    assert [mime.content_type(p)[1].get("hp-legacy-display") for p in parts] == ["1", "1", None]
    assert parts[2].body == b"%PDF"


# -- inbound: our own output, the round trip ---------------------------------------------------
def test_round_trip_encrypted_restores_subject_and_removes_legacy_display(sites: Sites) -> None:
    raw = message(EVE, REMOTE, extra="Keywords: k1\r\n")
    _o, _h, sent = send(sites.here, raw, EVE, REMOTE)
    assert outer_fields(sent)["subject"] == ["[...]"]
    outcome, headers, delivered = send(sites.there, sent, EVE, REMOTE, client=OUTSIDE)
    assert outcome.reply.kind == "continue", outcome.log_line
    outer = outer_fields(delivered)
    assert outer["subject"] == ["quarterly figures"] and outer["keywords"] == ["k1"]
    assert [v.replace("\n", "") for n, v in headers if n == f"{P}Protected-Headers-0"] == [
        "from, to, subject, keywords, message-id"]
    assert "protected=from,to,subject,keywords,message-id" in outcome.log_line
    assert "legacy_display=removed" in outcome.log_line
    # Each field once: the payload's own From/Subject/HP-Outer are not copied outside.
    assert all(len(v) == 1 for v in outer.values()), outer
    assert "hp-outer" not in outer
    _fields, entity = mime.split_message(delivered)
    parsed = mime.parse_entity(entity)
    assert parsed.body == b"Hello there.\r\n"
    assert "hp-legacy-display" not in mime.content_type(parsed)[1]


def test_round_trip_signed_and_encrypted_keeps_the_signature(sites: Sites) -> None:
    _o, _h, sent = send(sites.here, message(ALICE, REMOTE), ALICE, REMOTE)
    outcome, headers, delivered = send(sites.there, sent, ALICE, REMOTE, client=OUTSIDE)
    assert outer_fields(delivered)["subject"] == ["quarterly figures"]
    got = dict(headers)
    assert got[f"{P}Signer-Verified-0-1"] == "True"
    assert got[f"{P}Protected-Headers-1"] == "from, to, subject, message-id"
    # The legacy display element sits under the delivered signature: kept, so it verifies.
    assert "legacy_display=kept" in outcome.log_line
    assert b"multipart/signed" in delivered
    ca = sites.there.root / "here-ca.pem"
    ca.write_bytes(sites.here.ca.cert_pem())
    assert b"Hello there." in openssl("smime", "-verify", "-CAfile", str(ca), data=delivered)


def test_round_trip_signed_only_confirms_the_fields(sites: Sites) -> None:
    # REMOTE has a certificate here: sign only, by taking the encryption policy away.
    sites.here.store.add_user(REMOTE, {"encrypt_mode": "none"})
    sites.here.gateway.reload()
    try:
        outcome, _h, sent = send(sites.here, message(ALICE, REMOTE), ALICE, REMOTE)
    finally:
        sites.here.store.remove_user(REMOTE)
        sites.here.gateway.reload()
    assert "action=sign " in outcome.log_line, outcome.log_line
    outcome, headers, delivered = send(sites.there, sent, ALICE, REMOTE, client=OUTSIDE)
    got = dict(headers)
    assert got[f"{P}Protected-Headers-0"] == "from, to, subject, message-id"
    assert f"{P}Protected-Headers-Conflict-0" not in got
    assert outer_fields(delivered)["subject"] == ["quarterly figures"]
    assert outcome.new_body is None  # a signed-only message is delivered as it came


# -- inbound: the shared corpus ------------------------------------------------------------------
CORPUS = {
    # file -> (level, protected fields, Subject delivered, legacy display)
    "smime-onepart-signed.eml": (0, "from, to, date, subject, message-id",
                                 "The FooCorp contract", None),
    "smime-multipart-signed.eml": (0, "from, to, date, subject, message-id",
                                   "The FooCorp contract", None),
    "smime-sign+enc.eml": (1, "from, to, date, subject, message-id",
                           "BarCorp contract signed, let's go!", None),
    "smime-sign+enc+legacy-disp.eml": (1, "from, to, date, subject, message-id",
                                       "BarCorp contract signed, let's go!", "kept"),
    "smime-enc+legacy-disp.eml": (0, "from, to, date, subject, message-id",
                                  "BarCorp contract signed, let's go!", "removed"),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_restored(sites: Sites, name: str) -> None:
    level, fields, subject, legacy = CORPUS[name]
    raw = (PH / name).read_bytes()
    outcome, headers, delivered = send(sites.there, raw, "alice@smime.example", BOB_PH,
                                       client=OUTSIDE)
    assert outcome.reply.kind == "continue" and "result=ok" in outcome.log_line, outcome.log_line
    got = dict(headers)
    assert got[f"{P}Protected-Headers-{level}"] == fields
    assert outer_fields(delivered)["subject"] == [subject]
    assert all(not n.startswith(f"{P}Protected-Headers-Conflict") for n in got)
    if legacy:
        assert f"legacy_display={legacy}" in outcome.log_line
    else:
        assert "legacy_display" not in outcome.log_line
    if legacy == "removed":
        # The draft's Legacy Display Part is gone; the text part is what remains.
        _fields, entity = mime.split_message(delivered)
        parts = mime.split_multipart(mime.parse_entity(entity))
        assert len(parts) == 1 and b"Hi Bob!" in parts[0]
        assert b"protected-headers" not in parts[0]


# -- inbound: contradictions, forgeries, malformed hp parts ----------------------------------------
def _signed_by_frank(world: World, payload: bytes, opaque: bool = False) -> bytes:
    key, crt = world.pem("frank")
    args = ["smime", "-sign", "-signer", str(crt), "-inkey", str(key)]
    if opaque:
        args.append("-nodetach")
    return openssl(*args, data=payload)


def _encrypted_to(world: World, who: str, payload: bytes) -> bytes:
    return openssl("smime", "-encrypt", "-aes256", str(world.pem(who)[1]), data=payload)


def _outside(entity: bytes, sender: str = FRANK, to: str = "bob@internal.test",
             subject: str = "[...]") -> bytes:
    """openssl's output (MIME-Version, the entity) under an outer header section."""
    head = (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <in1@external.test>\r\n").encode()
    return head + mime.canonicalize(entity)


def _payload(hp: str, subject: str = "The real subject", sender: str = FRANK,
             extra: str = "") -> bytes:
    return (f"From: {sender}\r\nTo: bob@internal.test\r\nSubject: {subject}\r\n{extra}"
            f"Content-Type: text/plain; charset=us-ascii; hp=\"{hp}\"\r\n\r\nBody text.\r\n"
            ).encode()


def _inbound(sites: Sites, raw: bytes) -> tuple[Outcome, dict[str, str], bytes]:
    outcome, headers, delivered = send(sites.here, raw, FRANK, "bob@internal.test",
                                       client=OUTSIDE)
    assert "Traceback" not in outcome.log_line
    return outcome, dict(headers), delivered


def test_signed_inner_from_contradicting_outer_from_is_reported_not_preferred(
        sites: Sites, caplog: pytest.LogCaptureFixture) -> None:
    payload = _payload("clear", subject="hello", sender="ceo@internal.test")
    signed = (_signed_by_frank(sites.here, payload))
    raw = _outside(signed, subject="hello")
    with caplog.at_level(logging.WARNING, logger="smimegate.milter"):
        outcome, got, delivered = _inbound(sites, raw)
    assert got[f"{P}Signer-Verified-0-0"] == "True"
    assert got[f"{P}Protected-Headers-Conflict-0"] == "from"
    assert got[f"{P}Protected-Headers-0"] == "to, subject"
    assert outer_fields(delivered)["from"] == [FRANK]
    assert "hp_conflict=from" in outcome.log_line
    assert any("contradicts" in r.getMessage() and "fields=from" in r.getMessage()
               for r in caplog.records)


def test_obscured_subject_in_signed_only_message_is_not_restored(sites: Sites) -> None:
    # Only a decrypted payload can have obscured anything: "[...]" outside a signed-only
    # message contradicts the signed Subject.
    signed = (_signed_by_frank(sites.here, _payload("clear")))
    _outcome, got, delivered = _inbound(sites, _outside(signed))
    assert got[f"{P}Protected-Headers-Conflict-0"] == "subject"
    assert outer_fields(delivered)["subject"] == ["[...]"]


def test_hp_cipher_on_signed_only_payload_is_read_as_clear(sites: Sites) -> None:
    signed = (_signed_by_frank(sites.here, _payload("cipher", subject="same")))
    outcome, got, _delivered = _inbound(sites, _outside(signed, subject="same"))
    assert got[f"{P}Protected-Headers-0"] == "from, to, subject"
    assert "not encrypted" in got[f"{P}Protected-Headers-Error-0"]
    assert "hp=clear" in outcome.log_line


def test_unknown_hp_value_gives_an_error_header_and_nothing_restored(sites: Sites) -> None:
    encrypted = (_encrypted_to(sites.here, "bob", _payload("bogus")))
    outcome, got, delivered = _inbound(sites, _outside(encrypted))
    assert outcome.reply.kind == "continue"
    assert 'hp="bogus"' in got[f"{P}Protected-Headers-Error-0"]
    assert f"{P}Protected-Headers-0" not in got
    assert outer_fields(delivered)["subject"] == ["[...]"]
    assert "hp=error" in outcome.log_line


def test_bad_signature_around_protected_headers_restores_nothing(sites: Sites) -> None:
    signed = (_signed_by_frank(sites.here, _payload("clear")))
    tampered = signed.replace(b"Body text.", b"Body text!")
    outcome, got, delivered = _inbound(sites, _outside(tampered))
    assert got[f"{P}Signer-Verified-0-0"] == "False"
    assert "does not verify" in got[f"{P}Protected-Headers-Error-0"]
    assert outer_fields(delivered)["subject"] == ["[...]"]
    assert outcome.reply.kind == "continue"


def test_broken_legacy_display_part_is_left_alone(sites: Sites) -> None:
    payload = (b"From: frank@external.test\r\nSubject: Real\r\n"
               b"Content-Type: text/plain; charset=us-ascii; hp=\"cipher\";"
               b" hp-legacy-display=\"1\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               b"!!!! not base64 at all\r\n")
    encrypted = (_encrypted_to(sites.here, "bob", payload))
    outcome, _got, delivered = _inbound(sites, _outside(encrypted))
    assert outer_fields(delivered)["subject"] == ["Real"]
    assert b"!!!! not base64 at all" in delivered
    assert "legacy_display" not in outcome.log_line


def test_forged_protected_headers_result_headers_are_stripped(sites: Sites) -> None:
    raw = (f"{P}Protected-Headers-0: subject\r\n{P}Protected-Headers-Conflict-0: from\r\n"
           ).encode() + message(FRANK, "bob@internal.test")
    outcome, got, _delivered = _inbound(sites, raw)
    assert not any(n.startswith(f"{P}Protected") for n in got)
    assert {e.name for e in outcome.header_edits if e.op == "delete"} == {
        f"{P}Protected-Headers-0", f"{P}Protected-Headers-Conflict-0"}


# -- the real `smimegate milter` over the milter protocol ------------------------------------------
def test_real_milter_restores_corpus_and_protects_outbound(sites: Sites) -> None:
    from tests.helpers.ports import free_port
    from tests.milter import client as mc
    from tests.milter.daemon import milter_argv, start, write_config

    root = sites.there.root
    spec = f"inet:{free_port()}@127.0.0.1"
    config = write_config(root, spec, store_url=f"sqlite:///{root / 'store.db'}")
    daemon = start(milter_argv(config), root / "milter.log", spec)
    try:
        with mc.MilterClient(spec).open() as c:
            c.negotiate()
            c.connect(hostname="mx.outside.test", address="192.0.2.7",
                      macros={"{daemon_name}": "smtpd", "j": "mx.internal.test"})
            c.helo("mx.outside.test")
            # Inbound: the corpus's encrypted message with a legacy display part, to Bob.
            headers, body = parse((PH / "smime-enc+legacy-disp.eml").read_bytes())
            r = c.message("alice@smime.example", [BOB_PH], headers, body, queue_id="4HPIN1")
            assert r.eom is not None and r.eom.reply.cmd == mc.SMFIR_CONTINUE
            got, new_body = mc.apply_actions(headers, body, r.eom)
            fields = {n: v for n, v in got}
            assert fields["Subject"] == "BarCorp contract signed, let's go!"
            assert fields[f"{P}Protected-Headers-0"].replace("\n", "") == \
                "from, to, date, subject, message-id"
            assert b"Hi Bob!" in new_body and b"protected-headers" not in new_body
            assert [n for n, _v in got].count("From") == 1
            # Outbound: alice (SMTP AUTH) to carol, encrypted: Subject obscured outside.
            headers, body = parse(message(ALICE, CAROL))
            r = c.message(ALICE, [CAROL], headers, body, queue_id="4HPOUT1",
                          auth_authen="alice")
            assert r.eom is not None and r.eom.reply.cmd == mc.SMFIR_CONTINUE
            got, new_body = mc.apply_actions(headers, body, r.eom)
            assert dict(got)["Subject"] == "[...]" and b"quarterly" not in new_body
        out = daemon.output()
        assert "4HPIN1: smimegate: direction=inbound" in out and "protected=from,to" in out
        assert "4HPOUT1: smimegate: direction=outbound" in out and "hp=cipher" in out
    finally:
        daemon.stop()
    # What the milter wrote, read by OpenSSL with carol's key.
    sent = b"".join(f"{n}: {v}\r\n".encode() for n, v in got) + b"\r\n" + new_body
    signed = cms_decrypt(sites.there, "carol", sent)
    payload = mime.canonicalize(openssl("smime", "-verify", "-noverify", data=signed))
    assert b"Subject: quarterly figures\r\n" in payload and b'hp="cipher"' in payload
