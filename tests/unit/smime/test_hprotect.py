"""smimegate.smime.hprotect on its own: the payload protect() builds, what restore() decides,
and that damaged payloads give an answer, never an exception."""

from __future__ import annotations

import random

import pytest

from smimegate.smime import hprotect, mime
from smimegate.smime.errors import Malformed

HEADERS = [("Received", "from a by b"), ("From", "Alice <alice@x.test>"),
           ("To", "bob@y.test"), ("Subject", "Plans"), ("Keywords", "k"),
           ("Message-ID", "<m1@x.test>"), ("DKIM-Signature", "v=1; d=x.test")]
ENTITY = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nText.\r\n"


def test_protect_signed_only_injects_without_obscuring() -> None:
    out = hprotect.protect(ENTITY, HEADERS, encrypted=False)
    assert out.mode == "clear" and out.outer == () and not out.legacy_display
    entity = mime.parse_entity(out.entity)
    names = [n for n, _v in entity.headers]
    # Transport fields stay outside only (RFC 5321 4.4 trace fields, DKIM).
    assert names == ["From", "To", "Subject", "Keywords", "Message-ID", "Content-Type"]
    assert mime.content_type(entity)[1] == {"charset": "us-ascii", "hp": "clear"}
    assert entity.body == b"Text.\r\n"


def test_protect_encrypted_baseline_policy() -> None:
    out = hprotect.protect(ENTITY, HEADERS, encrypted=True)
    assert out.outer == (("Subject", 1, "[...]"), ("Keywords", 1, None))
    entity = mime.parse_entity(out.entity)
    assert [v for n, v in entity.headers if n == "HP-Outer"] == [
        b"From: Alice <alice@x.test>", b"To: bob@y.test", b"Subject: [...]",
        b"Message-ID: <m1@x.test>"]
    assert entity.body == b"Subject: Plans\r\n\r\nText.\r\n"


def test_protect_replaces_an_hp_parameter_already_there() -> None:
    entity = b'Content-Type: text/plain; hp="clear"; charset=utf-8\r\n\r\nx\r\n'
    out = hprotect.protect(entity, [("Subject", "s")], encrypted=True, legacy_display=False)
    ctype = mime.get_header(mime.parse_entity(out.entity), "content-type")
    assert ctype is not None and ctype.count(b"hp=") == 1 and b'hp="cipher"' in ctype


def test_protect_without_content_type_and_non_text_body() -> None:
    out = hprotect.protect(b"\r\nraw\r\n", [("Subject", "s")], encrypted=True)
    assert mime.content_type(mime.parse_entity(out.entity))[0] == "text/plain"
    pdf = b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBE\r\n"
    out = hprotect.protect(pdf, [("Subject", "s")], encrypted=True)
    assert not out.legacy_display and mime.parse_entity(out.entity).body == b"JVBE\r\n"


@pytest.mark.parametrize("part", [
    ENTITY.replace(b"\r\n", b"\n"),
    b"Content-Type: text/html; charset=utf-8\n\n<html><body>\n<p>x</p>\n</body></html>\n",
    b"Content-Type: text/plain; charset=utf-16\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    + "Text.\r\nMore.\r\n".encode("utf-16"),
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"VGV4dC4KTW9yZS4K\r\n",
    # UTF-7 writes a LF as "+AAo-" too: decoded, it is a bare line end to canonicalise.
    b"Content-Type: text/plain; charset=utf-7\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"Text.+AAo-More.\r\n",
])
def test_protect_payload_is_canonical(part: bytes) -> None:
    # The gateway signs and encrypts the payload with canonical=True (no second scan).
    headers = [*HEADERS, ("Cc", "carol@y.test")]
    for encrypted in (False, True):
        payload = hprotect.protect(part, headers, encrypted=encrypted).entity
        assert mime.canonicalize(payload) == payload


def test_restore_placeholder_and_hp_outer() -> None:
    payload = hprotect.protect(ENTITY, HEADERS, encrypted=True).entity
    outer = [("From", "Alice <alice@x.test>"), ("To", "bob@y.test"), ("Subject", "[...]"),
             ("Message-ID", "<m1@x.test>")]
    got = hprotect.restore(outer, payload, level=0, encrypted=True, deliverable=payload)
    assert got is not None and got.conflicts == ()
    assert got.protected == ("from", "to", "subject", "keywords", "message-id")
    assert ("change", "Subject", 1, "Plans") in got.edits
    assert ("add", "Keywords", 0, "k") in got.edits
    assert got.legacy == "removed" and got.entity is not None
    assert mime.parse_entity(got.entity).body == b"Text.\r\n"


def test_restore_address_change_is_a_conflict_even_with_hp_outer() -> None:
    payload = (b"From: ceo@x.test\r\nSubject: s\r\nHP-Outer: From: mallory@z.test\r\n"
               b"Content-Type: text/plain; hp=\"cipher\"\r\n\r\nx\r\n")
    got = hprotect.restore([("From", "mallory@z.test"), ("Subject", "s")], payload, level=0,
                           encrypted=True, deliverable=None)
    assert got is not None and got.conflicts == ("from",) and got.protected == ("subject",)
    assert got.edits == ()


def test_restore_display_name_change_sanctioned_by_hp_outer() -> None:
    payload = (b"From: Alice <alice@x.test>\r\nHP-Outer: From: alice@x.test\r\n"
               b"Content-Type: text/plain; hp=\"cipher\"\r\n\r\nx\r\n")
    got = hprotect.restore([("From", "alice@x.test")], payload, level=0, encrypted=True,
                           deliverable=None)
    assert got is not None and got.edits == (("change", "From", 1, "Alice <alice@x.test>"),)


def test_restore_without_protection_is_none() -> None:
    assert hprotect.restore([("Subject", "x")], ENTITY, level=0, encrypted=True,
                            deliverable=ENTITY) is None


@pytest.mark.parametrize("seed", range(12))
def test_damaged_payloads_never_raise(seed: int) -> None:
    rng = random.Random(seed)
    body = (b"--b\r\nContent-Type: text/plain; hp-legacy-display=\"1\"\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\nSubject: x\r\n\r\ntext\r\n"
            b"--b\r\nContent-Type: text/html; charset=utf-8; hp-legacy-display=\"1\"\r\n\r\n"
            b"<div class=\"header-protection-legacy-display\"><pre>Subject: x</pre></div>"
            b"\r\n--b--\r\n")
    good = (b"From: a@x.test\r\nSubject: x\r\nHP-Outer: Subject: [...]\r\n"
            b"Content-Type: multipart/alternative; boundary=b; hp=\"cipher\"\r\n\r\n" + body)
    assert hprotect.restore([("Subject", "[...]")], good, level=0, encrypted=True,
                            deliverable=good) is not None
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            action = rng.randrange(3)
            if action == 0:
                del data[at:at + rng.randint(1, 8)]
            elif action == 1:
                data[at:at] = bytes(rng.choice(b'\r\n:;="-b\x00\xff <>') for _ in range(3))
            else:
                data[at] = rng.randrange(256)
        damaged = bytes(data)
        result = hprotect.restore([("Subject", "[...]")], damaged, level=0, encrypted=True,
                                  deliverable=damaged)
        assert result is None or isinstance(result, hprotect.Restoration)


@pytest.mark.parametrize("seed", range(4))
def test_damaged_entities_to_protect_raise_malformed_at_most(seed: int) -> None:
    rng = random.Random(seed)
    good = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            b"Content-Type: text/plain; charset=iso-8859-1\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe\r\n"
            b"--b\r\nContent-Type: text/html\r\n\r\n<body>x</body>\r\n--b--\r\n")
    out = hprotect.protect(good, [("Subject", "Grüße")], encrypted=True)
    assert out.legacy_display
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            data[at:at + rng.randint(0, 4)] = bytes(
                rng.choice(b'\r\n:;="-b\x00\xff <>') for _ in range(rng.randint(0, 3)))
        try:
            hprotect.protect(bytes(data), [("Subject", "s")], encrypted=True)
        except Malformed:
            pass
