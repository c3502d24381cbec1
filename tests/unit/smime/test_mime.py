"""smimegate.smime.mime: raw-byte MIME against third-party messages, real tools and edge cases.

Third-party data copied into tests/vectors (origins in its README.md): thunderbird-smime (NSS-made, CRLF),
rfc4134 (LF), protected-headers (LF), openssl-smime-eml. openssl and s-nail are run for real to
prove that the bytes we extract are the bytes that were signed and that what we build is read by
other implementations.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from smimegate.smime import mime
from smimegate.smime.errors import Malformed, SmimeError, Unsupported
from tests.helpers.testpki import Identity, TestCA

CORPORA = Path(__file__).resolve().parents[2] / "vectors"
TB = CORPORA / "thunderbird-smime"
TB_BOUNDARY = b"--------------ms030903020902020502030404"


def _read(rel: str) -> bytes:
    path = CORPORA / rel
    assert path.is_file(), f"corpus file missing: {path}"
    return path.read_bytes()


def _entity_of(raw_message: bytes) -> mime.Entity:
    _, entity = mime.split_message(raw_message)
    return mime.parse_entity(entity)


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, capture_output=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


# --------------------------------------------------------------------------- corpora: classify


def _tb_expected(name: str) -> str:
    # The last operation named in the file name is the outermost layer.
    ops = [t for t in name.split(".") if t in ("env", "multipart", "opaque")]
    return {"env": "enveloped", "multipart": "signed", "opaque": "opaque-signed"}[ops[-1]]


TB_FILES = sorted(p.name for p in TB.glob("*.eml"))


def test_thunderbird_corpus_is_there() -> None:
    assert len(TB_FILES) >= 60


@pytest.mark.parametrize("name", TB_FILES)
def test_thunderbird_messages_classify(name: str) -> None:
    entity = _entity_of((TB / name).read_bytes())
    kind = mime.classify(entity)
    assert kind == _tb_expected(name)
    if kind == "signed":
        first, der, micalg = mime.split_multipart_signed(entity)
        assert der[:1] == b"\x30" and len(der) > 1000
        assert micalg is not None and mime.digest_for_micalg(micalg).startswith("sha")
        assert first.startswith(b"Content-Type:")
    else:
        assert mime.decode_smime_body(entity)[:1] == b"\x30"


@pytest.mark.parametrize(
    ("rel", "kind"),
    [
        ("rfc4134/4.8.eml", "signed"),
        ("rfc4134/4.9.eml", "opaque-signed"),
        ("rfc4134/5.3.eml", "enveloped"),
        ("protected-headers/smime-multipart-signed.eml", "signed"),
        ("protected-headers/smime-onepart-signed.eml", "opaque-signed"),
        ("protected-headers/smime-sign+enc.eml", "enveloped"),
        ("protected-headers/smime-enc+legacy-disp.eml", "enveloped"),
        ("protected-headers/smime-sign+enc+legacy-disp.eml", "enveloped"),
        ("protected-headers/smime-sign+enc.inner", "opaque-signed"),
        ("protected-headers/smime-sign+enc.inner.inner", "plain"),
        ("protected-headers/unfortunately-complex.eml", "plain"),  # PGP/MIME
        ("thunderbird-smime-manual/outer-pgp-sig-inner-smime-enc.eml", "plain"),
        ("openssl-smime-eml/pkcs7-empty-digest-set.eml", "signed"),  # x-pkcs7-signature
    ],
)
def test_corpus_messages_classify(rel: str, kind: str) -> None:
    assert mime.classify(_entity_of(_read(rel))) == kind


def test_certs_only_bag_is_certs_only_by_peeking() -> None:
    der = _read("pyca-pkcs7/amazon-roots.der")
    entity = mime.parse_entity(
        b"Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(der)
    )
    assert mime.classify(entity) == "certs-only"
    built = mime.parse_entity(mime.build_pkcs7_mime(der, "certs-only"))
    assert mime.classify(built) == "certs-only"
    assert mime.content_type(built)[1]["name"] == "smime.p7c"


# ------------------------------------------------------------------ first part: exact bytes


def test_first_part_is_the_hand_located_slice_crlf() -> None:
    raw = (TB / "alice.dsig.SHA256.multipart.eml").read_bytes()
    start = raw.index(TB_BOUNDARY + b"\r\n") + len(TB_BOUNDARY) + 2
    end = raw.index(b"\r\n" + TB_BOUNDARY + b"\r\nContent-Type: application/pkcs7-signature")
    first, der, micalg = mime.split_multipart_signed(_entity_of(raw))
    assert first == raw[start:end]
    assert first == (
        b"Content-Type: text/plain; charset=utf-8; format=flowed\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"Content-Language: en-US\r\n"
        b"\r\n"
        b"This is a test message from Alice to Bob.\r\n"
    )
    assert micalg == "sha-256"
    sig_b64 = raw[raw.index(b"\r\n\r\nMIAGCSqG") + 4 : raw.rindex(b"\r\n" + TB_BOUNDARY + b"--")]
    assert der == base64.b64decode(sig_b64)


def test_first_part_is_the_hand_located_slice_lf() -> None:
    raw = _read("rfc4134/4.8.eml")
    first, der, micalg = mime.split_multipart_signed(_entity_of(raw))
    # The part has no header fields: it starts with the empty line, and the LF before the next
    # delimiter belongs to the delimiter (RFC 2046 5.1.1).
    assert first == b"\nThis is some sample content."
    assert micalg == "sha1"
    assert mime.digest_for_micalg(micalg) == "sha1"
    assert der[:2] == b"\x30\x82"


def test_lf_and_crlf_variants_give_the_same_canonical_part() -> None:
    crlf = (TB / "alice.dsig.SHA256.multipart.eml").read_bytes()
    lf = crlf.replace(b"\r\n", b"\n")
    first_crlf, der_crlf, _ = mime.split_multipart_signed(_entity_of(crlf))
    first_lf, der_lf, _ = mime.split_multipart_signed(_entity_of(lf))
    assert b"\r" not in first_lf
    assert first_lf != first_crlf
    assert mime.canonicalize(first_lf) == first_crlf
    assert der_lf == der_crlf


def _openssl_verify_detached(tmp: Path, content: bytes, der: bytes) -> bool:
    (tmp / "part").write_bytes(content)
    (tmp / "sig.der").write_bytes(der)
    res = _run(
        [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-noverify",
            "-inform",
            "DER",
            "-in",
            str(tmp / "sig.der"),
            "-content",
            str(tmp / "part"),
            "-out",
            os.devnull,
        ]
    )
    return res.returncode == 0


@pytest.mark.parametrize(
    ("rel", "good"),
    [
        ("thunderbird-smime/alice.dsig.SHA256.multipart.eml", True),
        ("thunderbird-smime/alice.dsig.SHA512.multipart.eml", True),
        (
            "thunderbird-smime/alice.plain.dsig.SHA256.multipart.dave.dsig.SHA256.multipart.eml",
            True,
        ),
        ("protected-headers/smime-multipart-signed.eml", True),
        ("thunderbird-smime/alice.dsig.SHA256.multipart.bad.eml", False),
    ],
)
def test_openssl_verifies_the_extracted_part(tmp_path: Path, rel: str, good: bool) -> None:
    """The byte-exact first part (canonicalised) is what the signer signed."""
    first, der, _ = mime.split_multipart_signed(_entity_of(_read(rel)))
    assert _openssl_verify_detached(tmp_path, mime.canonicalize(first), der) is good
    if good:
        # One byte more (the CRLF that belongs to the delimiter) breaks it: exactness matters.
        assert not _openssl_verify_detached(tmp_path, mime.canonicalize(first) + b"\r\n", der)


def test_transport_padding_and_boundary_prefix_lines() -> None:
    body = (
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
        b'\tmicalg=SHA-256; boundary="b1"\r\n'
        b"\r\n"
        b"preamble --b1 not at line start\r\n"
        b"--b1 \t\r\n"
        b"Content-Type: text/plain\r\n\r\n"
        b"--b1x is longer, so not a delimiter\r\n"
        b"--b1-- \r\n"
        b"Content-Type: application/pkcs7-signature\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        b"MAA=\r\n"
        b"--b1--  \t\r\n"
        b"epilogue\r\n"
    )
    # "--b1-- " in the middle is the close delimiter: a part after it is epilogue.
    entity = mime.parse_entity(body)
    with pytest.raises(Malformed, match="expected 2 body parts, found 1"):
        mime.split_multipart_signed(entity)
    fixed = mime.parse_entity(
        body.replace(b"--b1-- \r\nContent-Type: app", b"--b1\t\r\nContent-Type: app")
    )
    first, der, micalg = mime.split_multipart_signed(fixed)
    assert first == b"Content-Type: text/plain\r\n\r\n--b1x is longer, so not a delimiter"
    assert der == b"\x30\x00"
    assert micalg == "sha-256"


# ------------------------------------------------------------------------------ canonicalize


def test_canonicalize_every_line_end() -> None:
    assert mime.canonicalize(b"a\nb\r\nc\rd\r\r\ne") == b"a\r\nb\r\nc\r\nd\r\n\r\ne"
    assert mime.canonicalize(b"x\r\n") == b"x\r\n"
    assert mime.canonicalize(b"") == b""
    assert mime.canonicalize(b"\n\n") == b"\r\n\r\n"


# ----------------------------------------------------------------------------- header parsing


def test_folded_headers_case_insensitive_names_and_values() -> None:
    raw = (
        b"content-TYPE: Application/PKCS7-MIME;\r\n"
        b"\tname=smime.p7m;\r\n"
        b'    Smime-Type="Enveloped-Data"\r\n'
        b"Content-Transfer-Encoding:base64\r\n"
        b"\r\n"
        b"body\r\n"
    )
    entity = mime.parse_entity(raw)
    assert entity.headers == (
        (
            "content-TYPE",
            b'Application/PKCS7-MIME;\r\n\tname=smime.p7m;\r\n    Smime-Type="Enveloped-Data"',
        ),
        ("Content-Transfer-Encoding", b"base64"),
    )
    assert entity.body == b"body\r\n"
    assert mime.get_header(entity, "CONTENT-transfer-encoding") == b"base64"
    ctype, params = mime.content_type(entity)
    assert ctype == "application/pkcs7-mime"
    assert params == {"name": "smime.p7m", "smime-type": "Enveloped-Data"}
    assert mime.classify(entity) == "enveloped"


def test_content_type_params_quoting_comments_and_rfc2231() -> None:
    entity = mime.parse_entity(
        b'Content-Type: text/plain (a comment; with semicolon) ; charset="utf-8";\n'
        b' name="a \\"quoted\\" \\\\ name;x" ; BOUNDARY=----=_Part_1 (comment);\n'
        b" title*0*=us-ascii'en'This%20is%20; title*1*=%2A%2A%2Afun%2A%2A%2A;\n"
        b" title*2=\"!\"; filename*=utf-8''%E2%82%AC%20rates.txt; filename=fallback.txt;\n"
        b" novalue; =orphan\n"
        b"\n"
    )
    ctype, params = mime.content_type(entity)
    assert ctype == "text/plain"
    assert params == {
        "charset": "utf-8",
        "name": 'a "quoted" \\ name;x',
        "boundary": "----=_Part_1",
        "title": "This is ***fun***!",
        "filename": "\u20ac rates.txt",
    }


def test_content_type_defaults_and_duplicates() -> None:
    default = ("text/plain", {"charset": "us-ascii"})
    assert mime.content_type(mime.parse_entity(b"\r\nhello")) == default
    assert mime.content_type(mime.parse_entity(b"Content-Type: garbage\r\n\r\n")) == default
    assert mime.content_type(mime.parse_entity(b"Content-Type: a/b/c\r\n\r\n")) == default
    assert mime.classify(mime.parse_entity(b"\r\nhello")) == "plain"
    dup = mime.parse_entity(
        b"Content-Type: text/plain\r\nContent-Type: application/pkcs7-mime\r\n\r\n"
    )
    with pytest.raises(Malformed, match="more than one Content-Type"):
        mime.classify(dup)


def test_headers_without_body_and_without_final_line_end() -> None:
    entity = mime.parse_entity(b"Content-Type: text/plain\r\nX-A: 1")
    assert entity.headers == (("Content-Type", b"text/plain"), ("X-A", b"1"))
    assert entity.body == b""


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not a header\r\n\r\nbody", "line 1 is not a header field"),
        (b"Content-Type: text/plain\r\nbroken line\r\n\r\n", "line 2 is not a header field"),
        (b" leading continuation: x\r\n\r\n", "continuation without a field"),
        (b"Bad Name: x\r\n\r\n", "line 1 is not a header field"),
        (b"\x30\x82\x01\x00\x06\x09*\x86H\x86\xf7\r\n\r\n", "not a header field"),
        (b": empty name\r\n\r\n", "not a header field"),
    ],
)
def test_garbage_header_lines_are_malformed(raw: bytes, message: str) -> None:
    with pytest.raises(Malformed, match=message):
        mime.parse_entity(raw)
    with pytest.raises(Malformed, match=message):
        mime.split_message(raw)


def test_header_limits() -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(1001)) + b"\r\nbody"
    with pytest.raises(Malformed, match="more than 1000 header lines"):
        mime.parse_entity(many)
    assert len(mime.parse_entity(many[: many.index(b"X-H1000")] + b"\r\n").headers) == 1000
    folded = b"Subject: x\r\n" + b" y\r\n" * 1000 + b"\r\n"
    with pytest.raises(Malformed, match="more than 1000 header lines"):
        mime.parse_entity(folded)
    long_line = b"X-Long: " + b"a" * (64 * 1024) + b"\r\n\r\n"
    with pytest.raises(Malformed, match="longer than 65536 bytes"):
        mime.parse_entity(long_line)
    long_folded = b"X-Long: a\r\n" + b" " + b"b" * 999 + b"\r\n"
    with pytest.raises(Malformed, match="field X-Long is longer than 65536 bytes"):
        mime.parse_entity(b"X-Long: a\r\n" + long_folded[11:] * 66 + b"\r\n")


# ------------------------------------------------------------------- multipart/signed errors


def _signed(ctype_params: bytes, body: bytes) -> mime.Entity:
    return mime.parse_entity(
        b"Content-Type: multipart/signed; " + ctype_params + b"\r\n\r\n" + body
    )


SIG_PART = (
    b"Content-Type: application/pkcs7-signature\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nMAA=\r\n"
)


@pytest.mark.parametrize(
    ("entity", "message"),
    [
        (
            _signed(b'protocol="application/pkcs7-signature"', b"--b\r\nx\r\n--b--\r\n"),
            "missing boundary parameter",
        ),
        (
            _signed(b"boundary=b", b"--b\r\n\r\nx\r\n--b\r\n" + SIG_PART + b"--b\r\n"),
            "missing closing delimiter --b--",
        ),
        (_signed(b"boundary=b", b"--b\r\n\r\nx\r\n--b--\r\n"), "expected 2 body parts, found 1"),
        (
            _signed(
                b"boundary=b", b"--b\r\n\r\nx\r\n--b\r\n\r\ny\r\n--b\r\n" + SIG_PART + b"--b--\r\n"
            ),
            "expected 2 body parts, found 3",
        ),
        (_signed(b"boundary=b", b"no delimiter at all\r\n"), "no boundary delimiter line"),
        (
            _signed(
                b"boundary=b",
                b"--b\r\n\r\nx\r\n--b\r\nContent-Type: text/plain\r\n\r\nMAA=\r\n--b--\r\n",
            ),
            "second part is text/plain",
        ),
        (
            _signed(
                b"boundary=b",
                b"--b\r\n\r\nx\r\n--b\r\n" + SIG_PART.replace(b"MAA=", b"MAA") + b"--b--\r\n",
            ),
            "base64: length 3 is not a multiple of 4",
        ),
        (
            mime.parse_entity(
                b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b--\r\n"
            ),
            "entity is multipart/mixed",
        ),
    ],
)
def test_multipart_signed_errors(entity: mime.Entity, message: str) -> None:
    with pytest.raises(Malformed, match=re.escape(message)):
        mime.split_multipart_signed(entity)


def test_split_multipart_generic() -> None:
    entity = mime.parse_entity(
        b'Content-Type: multipart/mixed; boundary="=_x"\n\n'
        b"pre\n--=_x\n\na\n--=_x\n\nb\n\n--=_x--\nepi\n"
    )
    assert mime.split_multipart(entity) == [b"\na", b"\nb\n"]
    with pytest.raises(Malformed, match="entity is text/plain"):
        mime.split_multipart(mime.parse_entity(b"\r\nplain"))


# ------------------------------------------------------------------------ decode_smime_body


def _p7m(body: bytes, cte: bytes = b"base64", extra: bytes = b"") -> mime.Entity:
    return mime.parse_entity(
        b"Content-Type: application/pkcs7-mime"
        + extra
        + b"\r\nContent-Transfer-Encoding: "
        + cte
        + b"\r\n\r\n"
        + body
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"MIIBHgYJKoZIhvcNAQcDoIIBDzCCAQsCAQAxgc\r\n", "base64: length 38 is not a multiple of 4"),
        (b"MIIB*gYJ\r\n", "base64: Only base64 data is allowed"),
        (b"MA==MA==\r\n", "base64: Excess data after padding"),
        (b"=MAA\r\n", "base64: Leading padding not allowed"),
        (b"\r\n \r\n", "base64: empty body"),
    ],
)
def test_strict_base64(body: bytes, message: str) -> None:
    with pytest.raises(Malformed, match=re.escape(message)):
        mime.decode_smime_body(_p7m(body))


def test_base64_with_blanks_and_lf_is_fine() -> None:
    assert mime.decode_smime_body(_p7m(b"MA\n  A=\n\n", cte=b"BASE64")) == b"\x30\x00"


def test_truncated_corpus_body_is_malformed() -> None:
    entity = _entity_of(_read("rfc4134/5.3.eml"))
    good = mime.decode_smime_body(entity)
    assert good[:2] == b"\x30\x82"
    cut = mime.Entity(raw=entity.raw, headers=entity.headers, body=entity.body[:-12])
    with pytest.raises(Malformed, match="base64: "):
        mime.decode_smime_body(cut)


def test_binary_and_other_transfer_encodings() -> None:
    der = b"\x30\x03\x02\x01\x05"
    assert mime.decode_smime_body(_p7m(der, b"binary")) == der
    # An MTA may add a line end after the DER; it is not part of the object.
    assert mime.decode_smime_body(_p7m(der + b"\r\n", b"8bit")) == der
    assert mime.decode_smime_body(_p7m(der + b"junk", b"binary")) == der + b"junk"
    assert mime.decode_smime_body(_p7m(b"0=03=02=01=05", b"quoted-printable")) == der
    with pytest.raises(Unsupported, match="x-uuencode"):
        mime.decode_smime_body(_p7m(b"begin 644", b"x-uuencode"))
    with pytest.raises(Malformed, match="empty"):
        mime.decode_smime_body(_p7m(b"", b"binary"))


def test_25_mb_base64_body_decodes() -> None:
    der = os.urandom(25 * 1024 * 1024)
    entity = mime.parse_entity(mime.build_pkcs7_mime(der, "enveloped-data"))
    assert len(entity.body) > 25 * 1024 * 1024
    assert mime.decode_smime_body(entity) == der
    lf = mime.parse_entity(entity.raw.replace(b"\r\n", b"\n"))
    assert mime.decode_smime_body(lf) == der
    truncated = mime.Entity(raw=b"", headers=entity.headers, body=entity.body[:-3])
    with pytest.raises(Malformed, match="base64: "):
        mime.decode_smime_body(truncated)


# ---------------------------------------------------------------------------------- classify


def _body_of(rel: str) -> bytes:
    return _entity_of(_read(rel)).body


@pytest.mark.parametrize(
    ("ctype", "kind"),
    [
        (b"application/x-pkcs7-mime; smime-type=enveloped-data", "enveloped"),
        (b"application/pkcs7-mime; smime-type=AuthEnveloped-Data", "auth-enveloped"),
        (b'application/pkcs7-mime; smime-type="authenveloped-data"', "auth-enveloped"),
        (b"APPLICATION/PKCS7-MIME; SMIME-TYPE=SIGNED-DATA", "opaque-signed"),
        (b"application/pkcs7-mime; smime-type=certs-only", "certs-only"),
        # No smime-type (s-nail, some Outlook), or an unknown one: the DER decides.
        (b"application/pkcs7-mime; name=smime.p7m", "enveloped"),
        (b"application/x-pkcs7-mime", "enveloped"),
        (b"application/pkcs7-mime; smime-type=frobnicated-data", "enveloped"),
        (b'application/octet-stream; name="SMIME.P7M"', "enveloped"),
        (b'application/octet-stream; name="report.pdf"', "plain"),
        (b'multipart/signed; protocol="application/pgp-signature"; boundary=b', "plain"),
        (b'multipart/signed; protocol="application/x-pkcs7-signature"; boundary=b', "signed"),
        (b"application/pkcs7-signature", "plain"),
    ],
)
def test_classify_content_types(ctype: bytes, kind: str) -> None:
    body = _body_of("rfc4134/5.3.eml")  # an EnvelopedData in base64
    entity = mime.parse_entity(
        b"Content-Type: " + ctype + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body
    )
    assert mime.classify(entity) == kind


def test_classify_peeks_signed_and_auth_enveloped(tmp_path: Path, pki: dict[str, Path]) -> None:
    signed = _body_of("rfc4134/4.9.eml")
    entity = mime.parse_entity(
        b"Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + signed
    )
    assert mime.classify(entity) == "opaque-signed"
    (tmp_path / "in").write_bytes(b"Content-Type: text/plain\r\n\r\nhi\r\n")
    res = _run(
        [
            "openssl",
            "cms",
            "-encrypt",
            "-aes-256-gcm",
            "-binary",
            "-outform",
            "DER",
            "-in",
            str(tmp_path / "in"),
            str(pki["crt"]),
        ]
    )
    assert res.returncode == 0, res.stderr
    gcm = mime.parse_entity(
        b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment;"
        b" filename=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(res.stdout)
    )
    assert mime.classify(gcm) == "auth-enveloped"


def test_classify_errors() -> None:
    with pytest.raises(Unsupported, match="compressed-data"):
        mime.classify(_p7m(b"MAA=", extra=b"; smime-type=compressed-data"))
    data_info = base64.b64encode(bytes.fromhex("300f06092a864886f70d010701a0020400"))
    with pytest.raises(Unsupported, match="1.2.840.113549.1.7.1"):
        mime.classify(_p7m(data_info))
    with pytest.raises(Malformed, match="base64: "):
        mime.classify(_p7m(b"not base64 !!"))
    with pytest.raises(Malformed, match="CMS"):
        mime.classify(_p7m(b"AAAAAAAA"))
    # Outlook-style guess that does not hold CMS is just an attachment.
    garbage = mime.parse_entity(
        b"Content-Type: application/octet-stream; name=x.p7m\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nAAAAAAAA\r\n"
    )
    assert mime.classify(garbage) == "plain"


# ----------------------------------------------------------------------- real tools: openssl


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = TestCA()
    alice: Identity = ca.issue("alice@example.test", "rsa2048")
    key, crt = alice.write(folder, "alice")
    ca_path = folder / "ca.crt"
    ca_path.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    keycert = folder / "alice.keycert.pem"
    keycert.write_bytes(key.read_bytes() + crt.read_bytes())
    return {"key": key, "crt": crt, "ca": ca_path, "keycert": keycert, "dir": folder}


def test_openssl_lf_multipart_signed(tmp_path: Path, pki: dict[str, Path]) -> None:
    content = b"Content-Type: text/plain\n\nline one\nline two\n"
    (tmp_path / "in").write_bytes(content)
    res = _run(
        [
            "openssl",
            "cms",
            "-sign",
            "-in",
            str(tmp_path / "in"),
            "-signer",
            str(pki["crt"]),
            "-inkey",
            str(pki["key"]),
            "-md",
            "sha384",
        ]
    )
    assert res.returncode == 0, res.stderr
    assert b"\r\n" not in res.stdout.split(b"\n\n", 1)[0]  # OpenSSL writes LF
    entity = _entity_of(res.stdout)
    assert mime.classify(entity) == "signed"
    first, der, micalg = mime.split_multipart_signed(entity)
    # OpenSSL writes its own headers with LF but the signed part canonical (CRLF).
    assert first == mime.canonicalize(content)
    assert micalg == "sha-384"
    assert _openssl_verify_detached(tmp_path, mime.canonicalize(first), der)


def test_build_multipart_signed_is_read_by_openssl(tmp_path: Path, pki: dict[str, Path]) -> None:
    content = b"Content-Type: text/plain; charset=us-ascii\n\nHello\n\n--\nsig line\n"
    canonical = mime.canonicalize(content)
    (tmp_path / "in").write_bytes(canonical)
    res = _run(
        [
            "openssl",
            "cms",
            "-sign",
            "-binary",
            "-outform",
            "DER",
            "-in",
            str(tmp_path / "in"),
            "-signer",
            str(pki["crt"]),
            "-inkey",
            str(pki["key"]),
            "-md",
            "sha256",
        ]
    )
    assert res.returncode == 0, res.stderr
    entity_bytes = mime.build_multipart_signed(content, res.stdout, "sha256")
    message = mime.join_message(
        [("From", b"alice@example.test"), ("To", b"bob@example.test"), ("Subject", b"t")],
        entity_bytes,
    )
    (tmp_path / "msg.eml").write_bytes(message)
    out = _run(
        [
            "openssl",
            "cms",
            "-verify",
            "-CAfile",
            str(pki["ca"]),
            "-in",
            str(tmp_path / "msg.eml"),
            "-out",
            str(tmp_path / "out"),
        ]
    )
    assert out.returncode == 0, out.stderr
    assert b"Verification successful" in out.stderr
    assert (tmp_path / "out").read_bytes() == canonical


def test_build_pkcs7_mime_is_decrypted_by_openssl(tmp_path: Path, pki: dict[str, Path]) -> None:
    content = b"Content-Type: text/plain\r\n\r\nsecret\r\n"
    (tmp_path / "in").write_bytes(content)
    res = _run(
        [
            "openssl",
            "cms",
            "-encrypt",
            "-aes-256-cbc",
            "-binary",
            "-outform",
            "DER",
            "-in",
            str(tmp_path / "in"),
            str(pki["crt"]),
        ]
    )
    assert res.returncode == 0, res.stderr
    message = mime.join_message(
        [("Subject", b"x")], mime.build_pkcs7_mime(res.stdout, "enveloped-data")
    )
    (tmp_path / "msg.eml").write_bytes(message)
    out = _run(
        [
            "openssl",
            "cms",
            "-decrypt",
            "-in",
            str(tmp_path / "msg.eml"),
            "-recip",
            str(pki["crt"]),
            "-inkey",
            str(pki["key"]),
            "-out",
            str(tmp_path / "out"),
        ]
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out").read_bytes() == content
    assert mime.classify(_entity_of(message)) == "enveloped"


# ------------------------------------------------------------------------ real tools: s-nail


def _snail(pki: dict[str, Path], tmp: Path, *opts: str) -> bytes:
    mbox = tmp / "out.mbox"
    res = _run(
        [
            "s-nail",
            "-:/",
            "-Sv15-compat",
            f"-Smta=test://{mbox}",
            "-r",
            "alice@example.test",
            "-Ssmime-sign",
            f"-Ssmime-sign-cert={pki['keycert']}",
            "-Ssmime-sign-digest=sha256",
            *opts,
            "-s",
            "subj",
            "alice@example.test",
        ],
        input=b"hello from s-nail\n",
    )
    assert res.returncode == 0, res.stderr
    data = mbox.read_bytes()
    assert data.startswith(b"From ")
    return data[data.index(b"\n") + 1 :]  # drop the mbox From_ line


def test_snail_messages(tmp_path: Path, pki: dict[str, Path]) -> None:
    signed = _entity_of(_snail(pki, tmp_path))
    assert mime.classify(signed) == "signed"
    first, der, micalg = mime.split_multipart_signed(signed)
    assert micalg == "sha256"
    assert mime.digest_for_micalg(micalg) == "sha256"
    assert b"hello from s-nail" in first
    assert _openssl_verify_detached(tmp_path, mime.canonicalize(first), der)
    (tmp_path / "out.mbox").unlink()
    encrypted = _entity_of(
        _snail(
            pki,
            tmp_path,
            f"-Ssmime-encrypt-alice@example.test={pki['crt']}",
            "-Ssmime-cipher=aes256",
        )
    )
    ctype, params = mime.content_type(encrypted)
    assert ctype == "application/pkcs7-mime" and "smime-type" not in params
    assert mime.classify(encrypted) == "enveloped"


# -------------------------------------------------------------------------------- builders


def _lines(data: bytes) -> list[bytes]:
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF in built output"
    assert b"\r" not in data.replace(b"\r\n", b""), "bare CR in built output"
    return data.split(b"\r\n")


def test_build_multipart_signed_shape_and_round_trip() -> None:
    content = b"Content-Type: text/plain\n\nbody line\n"
    sig = os.urandom(3000)
    built = mime.build_multipart_signed(content, sig, "SHA-256")
    lines = _lines(built)
    assert all(len(line) < 78 for line in lines)
    entity = mime.parse_entity(built)
    assert [n for n, _ in entity.headers] == ["Content-Type"]
    assert mime.get_header(entity, "mime-version") is None
    ctype, params = mime.content_type(entity)
    boundary = params["boundary"]
    assert ctype == "multipart/signed"
    assert params["protocol"] == "application/pkcs7-signature"
    assert params["micalg"] == "sha-256"
    assert re.fullmatch(r"----=_smimegate_[0-9a-f]{32}", boundary)
    head = built[: built.index(b"\r\n\r\n")]
    assert head == (
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
        b' micalg=sha-256; boundary="' + boundary.encode() + b'"'
    )
    assert mime.classify(entity) == "signed"
    first, der, micalg = mime.split_multipart_signed(entity)
    assert first == mime.canonicalize(content)
    assert der == sig
    assert micalg == "sha-256"
    sig_part = mime.parse_entity(mime.split_multipart(entity)[1])
    assert sig_part.headers == (
        ("Content-Type", b'application/pkcs7-signature; name="smime.p7s"'),
        ("Content-Transfer-Encoding", b"base64"),
        ("Content-Disposition", b'attachment; filename="smime.p7s"'),
    )
    b64_lines = [line for line in sig_part.body.split(b"\r\n") if line]
    assert {len(line) for line in b64_lines[:-1]} == {76}
    assert built.endswith(b"--" + boundary.encode() + b"--\r\n")
    again = mime.content_type(
        mime.parse_entity(mime.build_multipart_signed(content, sig, "sha-256"))
    )
    assert again[1]["boundary"] != boundary


def test_build_multipart_signed_micalg_and_errors() -> None:
    several = mime.parse_entity(
        mime.build_multipart_signed(b"\r\nx", b"\x30\x00", "sha256, SHA-512")
    )
    assert mime.content_type(several)[1]["micalg"] == "sha-256,sha-512"
    with pytest.raises(Unsupported, match="md5"):
        mime.build_multipart_signed(b"\r\nx", b"\x30\x00", "md5")
    with pytest.raises(ValueError, match="signature_der"):
        mime.build_multipart_signed(b"\r\nx", b"", "sha-256")


def test_boundary_never_occurs_in_content(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = "0" * 32
    content = b"\r\n------=_smimegate_" + taken.encode() + b"\r\n"
    tokens = iter([taken, "1" * 32])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(tokens))
    entity = mime.parse_entity(mime.build_multipart_signed(content, b"\x30\x00", "sha-256"))
    assert mime.content_type(entity)[1]["boundary"] == "----=_smimegate_" + "1" * 32
    assert mime.split_multipart_signed(entity)[0] == content


@pytest.mark.parametrize(
    ("smime_type", "spelled", "kind"),
    [
        ("enveloped-data", b"enveloped-data", "enveloped"),
        ("signed-data", b"signed-data", "opaque-signed"),
        ("authEnveloped-data", b"authEnveloped-data", "auth-enveloped"),
        ("AUTHENVELOPED-DATA", b"authEnveloped-data", "auth-enveloped"),
    ],
)
def test_build_pkcs7_mime_shape(smime_type: str, spelled: bytes, kind: str) -> None:
    der = os.urandom(1000)
    built = mime.build_pkcs7_mime(der, smime_type)
    lines = _lines(built)
    assert all(len(line) < 78 for line in lines)
    entity = mime.parse_entity(built)
    assert entity.headers == (
        (
            "Content-Type",
            b"application/pkcs7-mime; smime-type=" + spelled + b';\r\n name="smime.p7m"',
        ),
        ("Content-Transfer-Encoding", b"base64"),
        ("Content-Disposition", b'attachment; filename="smime.p7m"'),
    )
    assert mime.classify(entity) == kind
    assert mime.decode_smime_body(entity) == der
    body_lines = entity.body.split(b"\r\n")
    assert body_lines[-1] == b""
    assert {len(line) for line in body_lines[:-2]} == {76}


def test_build_pkcs7_mime_errors() -> None:
    with pytest.raises(ValueError, match="smime_type"):
        mime.build_pkcs7_mime(b"\x30\x00", "compressed-data")
    with pytest.raises(ValueError, match="der"):
        mime.build_pkcs7_mime(b"", "enveloped-data")


# ------------------------------------------------------------------ split / join a message


def test_split_message_thunderbird() -> None:
    raw = (TB / "alice.sig.SHA256.opaque.eml").read_bytes()
    outer, entity = mime.split_message(raw)
    assert [n for n, _ in outer] == ["Date", "From", "To", "Subject"]
    assert dict(outer)["Subject"] == b"opaque-signed sig.SHA256"
    header_block = raw[raw.index(b"Content-Type:") : raw.index(b"\r\n\r\n") + 4]
    assert entity == header_block + raw[raw.index(b"\r\n\r\n") + 4 :]
    assert mime.classify(mime.parse_entity(entity)) == "opaque-signed"
    joined = mime.join_message(outer, entity)
    assert joined.count(b"MIME-Version: 1.0\r\n") == 1
    assert joined.endswith(entity)
    again_outer, again_entity = mime.split_message(joined)
    assert again_outer == outer and again_entity == entity


def test_split_message_keeps_interleaved_content_fields_raw() -> None:
    raw = _read("protected-headers/smime-onepart-signed.eml")
    outer, entity = mime.split_message(raw)
    names = [n for n, _ in outer]
    assert names == ["Received", "From", "To", "Date", "Subject", "Message-ID"]
    assert dict(outer)["Received"] == (
        b"from localhost (localhost [127.0.0.1]); Tue, 26 Nov 2019\n 20:06:17 -0400 (UTC-04:00)"
    )
    assert entity.startswith(
        b"Content-Transfer-Encoding: base64\n"
        b'Content-Type: application/pkcs7-mime; name="smime.p7m";\n smime-type="signed-data"\n\n'
    )
    joined = mime.join_message(outer, entity)
    assert joined.startswith(
        b"Received: from localhost (localhost [127.0.0.1]); Tue, 26 Nov 2019\r\n 20:06:17"
    )
    assert b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\n" in joined


def test_split_message_without_content_type() -> None:
    raw = b"From: a@x\nTo: b@y\nMIME-Version: 1.0\nSubject: hi\n\nplain body\n"
    outer, entity = mime.split_message(raw)
    assert outer == [("From", b"a@x"), ("To", b"b@y"), ("Subject", b"hi")]
    assert entity == b"\nplain body\n"
    parsed = mime.parse_entity(entity)
    assert parsed.headers == () and parsed.body == b"plain body\n"
    assert mime.classify(parsed) == "plain"
    assert (
        mime.join_message(outer, entity) == b"From: a@x\r\nTo: b@y\r\nSubject: hi\r\n\nplain body\n"
    )


def test_join_message_keeps_existing_mime_version() -> None:
    entity = mime.build_pkcs7_mime(b"\x30\x00", "enveloped-data")
    joined = mime.join_message([("Mime-Version", b"1.0"), ("Subject", b"s")], entity)
    assert joined.lower().count(b"mime-version") == 1
    assert joined == b"Mime-Version: 1.0\r\nSubject: s\r\n" + entity
    with pytest.raises(ValueError, match="not a header field name"):
        mime.join_message([("Bad Name", b"x")], entity)
    with pytest.raises(ValueError, match="line end that is not folding"):
        mime.join_message([("Subject", b"x\r\nBcc: evil@example.test")], entity)
    folded = mime.join_message([("Subject", b"a\n b")], entity)
    assert folded.startswith(b"Subject: a\r\n b\r\nMIME-Version: 1.0\r\n")


# ----------------------------------------------------------------------------------- micalg


@pytest.mark.parametrize(
    ("digest", "micalg"),
    [
        ("sha1", "sha-1"),
        ("sha224", "sha-224"),
        ("sha256", "sha-256"),
        ("sha384", "sha-384"),
        ("sha512", "sha-512"),
    ],
)
def test_micalg_mapping(digest: str, micalg: str) -> None:
    assert mime.micalg_for_digest(digest) == micalg
    assert mime.micalg_for_digest(digest.upper()) == micalg
    assert mime.digest_for_micalg(micalg) == digest
    assert mime.digest_for_micalg(micalg.upper()) == digest
    assert mime.digest_for_micalg(digest.upper()) == digest


@pytest.mark.parametrize("name", ["md5", "sha3-256", "gostr3411-94", ""])
def test_micalg_unknown_is_unsupported(name: str) -> None:
    with pytest.raises(Unsupported):
        mime.digest_for_micalg(name)
    with pytest.raises(Unsupported):
        mime.micalg_for_digest(name)


# ------------------------------------------------------------------ robustness (hypothesis)

_FRAGMENTS = [
    b"Content-Type: ",
    b"multipart/signed",
    b"application/pkcs7-mime",
    b"; boundary=b",
    b'; protocol="application/pkcs7-signature"',
    b"; smime-type=",
    b"enveloped-data",
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b"--b",
    b"--b--",
    b"Content-Transfer-Encoding: base64",
    b"MAA=",
    b"MIIB",
    b"=",
    b":",
    b'"',
    b"\\",
    b"(",
    b")",
    b"*0*=utf-8''%E2",
    b"\x30\x80",
    b"name=x.p7m",
    b"application/octet-stream",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.binary(max_size=8)), max_size=40))
def test_never_crashes_on_arbitrary_input(pieces: list[bytes]) -> None:
    raw = b"".join(pieces)
    try:
        entity = mime.parse_entity(raw)
        outer, ent = mime.split_message(raw)
        assert mime.parse_entity(ent).body == entity.body
        if mime.classify(entity) == "signed":
            mime.split_multipart_signed(entity)
        mime.content_disposition(entity)
    except SmimeError:
        pass


def test_binary_junk_is_reported_readably() -> None:
    with pytest.raises(Malformed, match=r"line 1 is not a header field: b'0\\x82"):
        mime.parse_entity(b"\x30\x82\x01\x00junk\r\n\r\n")


def test_25_mb_multipart_signed_splits() -> None:
    content = b"Content-Type: text/plain\r\n\r\n" + b"0123456789abcdef--x\r\n" * 1_300_000
    built = mime.build_multipart_signed(content, b"\x30\x00", "sha-256")
    first, der, _ = mime.split_multipart_signed(mime.parse_entity(built))
    assert len(first) > 25_000_000
    assert first == content and der == b"\x30\x00"
