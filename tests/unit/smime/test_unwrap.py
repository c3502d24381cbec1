"""unwrap(): layers outermost first, one result-header LEVEL per layer, every way of nesting."""

from __future__ import annotations

import pytest
from asn1crypto import cms as acms
from asn1crypto import x509 as ax509

from smimegate.smime import mime
from smimegate.smime.encrypt import encrypt
from smimegate.smime.errors import Malformed
from smimegate.smime.results import result_headers
from smimegate.smime.sign import sign, sign_der
from smimegate.smime.unwrap import delivered_message, unwrap
from tests.helpers.testpki import TestCA

TEXT = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob,\r\nthe plan stands.\r\n"
OUTER = (
    b"Received: from a.test by b.test; Mon, 2 Feb 2026 10:00:00 +0000\r\n"
    b"From: Alice <alice@a.test>\r\n"
    b"To: Bob <bob@b.test>\r\n"
    b"Subject: plan\r\n"
    b"MIME-Version: 1.0\r\n"
)


@pytest.fixture(scope="module")
def pki():
    ca = TestCA()
    return {
        "ca": ca,
        "alice": ca.issue("alice@a.test"),
        "bob": ca.issue("bob@b.test"),
        "carol": ca.issue("carol@b.test"),
        "dave": ca.issue("dave@a.test", "ec-p256"),
    }


def message(entity: bytes) -> bytes:
    return mime.join_message(mime.split_message(OUTER + b"\r\n")[0], entity)


def bob_keys(pki):
    return [(pki["bob"].cert, pki["bob"].key)]


def header_names(result):
    return [name for name, _ in result_headers(result.layers)]


def test_plain_message_has_no_layers():
    result = unwrap(message(TEXT))
    assert result.layers == ()
    assert result.error is None
    assert result.content == TEXT


def test_bare_entity_is_accepted(pki):
    signed = sign(TEXT, pki["alice"].key, pki["alice"].cert)
    result = unwrap(signed)
    assert [layer.kind for layer in result.layers] == ["signed"]
    assert result.content == TEXT


@pytest.mark.parametrize("detached", [True, False])
def test_signed_layer(pki, detached):
    alice = pki["alice"]
    result = unwrap(message(sign(TEXT, alice.key, alice.cert, detached=detached)))
    (layer,) = result.layers
    assert layer.kind == "signed"
    assert layer.detached is detached
    (signer,) = layer.signers
    assert signer.valid is True
    assert signer.certificate == alice.cert
    assert signer.trusted is False and signer.trust_info == "trust not evaluated"
    assert result.content == TEXT
    assert header_names(result) == [
        "X-Smimegate-Info-Signer-ID-0-0",
        "X-Smimegate-Info-Signer-Verified-0-0",
        "X-Smimegate-Info-Signer-Trusted-0-0",
        "X-Smimegate-Info-Signer-Trusted-Info-0-0",
    ]


def test_sign_then_encrypt_is_enveloped_outside_signed_inside(pki):
    alice, bob, carol = pki["alice"], pki["bob"], pki["carol"]
    wrapped = encrypt(sign(TEXT, alice.key, alice.cert), [bob.cert, carol.cert])
    result = unwrap(message(wrapped), bob_keys(pki))
    assert [layer.kind for layer in result.layers] == ["enveloped", "signed"]
    enveloped, signed = result.layers
    assert enveloped.decrypted is True
    assert enveloped.cipher == "AES256" and enveloped.key_size == 256
    assert len(enveloped.recipients) == 2
    assert signed.signers[0].valid is True
    assert result.content == TEXT
    # CONTRACT.md example: LEVEL 0 is the encryption, LEVEL 1 the signature inside it.
    assert header_names(result)[:4] == [
        "X-Smimegate-Info-Encryption-Algorithm-0",
        "X-Smimegate-Info-Encryption-Recipient-0-0",
        "X-Smimegate-Info-Encryption-Recipient-1-0",
        "X-Smimegate-Info-Signer-ID-0-1",
    ]
    assert dict(result_headers(result.layers))["X-Smimegate-Info-Signer-Verified-0-1"] == "True"


def test_encrypt_then_sign_is_signed_outside(pki):
    alice, bob = pki["alice"], pki["bob"]
    wrapped = sign(encrypt(TEXT, [bob.cert]), alice.key, alice.cert)
    result = unwrap(message(wrapped), bob_keys(pki))
    assert [layer.kind for layer in result.layers] == ["signed", "enveloped"]
    assert result.layers[0].signers[0].valid is True
    assert result.layers[1].decrypted is True
    assert result.content == TEXT


def test_triple_wrapping_three_levels(pki):
    # RFC 2634 1.1: sign, encrypt, sign again (inner author, outer e.g. a mail list or gateway).
    alice, bob, dave = pki["alice"], pki["bob"], pki["dave"]
    inner = sign(TEXT, alice.key, alice.cert, detached=False)
    wrapped = sign(encrypt(inner, [bob.cert], cipher="aes128-gcm"), dave.key, dave.cert)
    result = unwrap(message(wrapped), bob_keys(pki))
    assert [layer.kind for layer in result.layers] == ["signed", "auth-enveloped", "signed"]
    assert result.layers[0].signers[0].certificate == dave.cert
    assert result.layers[1].cipher == "AES128-GCM"
    assert result.layers[2].signers[0].certificate == alice.cert
    names = header_names(result)
    assert "X-Smimegate-Info-Signer-ID-0-0" in names
    assert "X-Smimegate-Info-Encryption-Algorithm-1" in names
    assert "X-Smimegate-Info-Signer-ID-0-2" in names
    assert result.content == TEXT


def test_opened_is_the_entity_right_after_the_innermost_decrypted_layer(pki):
    # What a gateway delivers: the signed entity inside the encryption, still verifiable.
    alice, bob, dave = pki["alice"], pki["bob"], pki["dave"]
    signed = sign(TEXT, alice.key, alice.cert)
    result = unwrap(message(encrypt(signed, [bob.cert])), bob_keys(pki))
    assert result.content == TEXT
    assert result.opened is not None
    assert mime.classify(mime.parse_entity(result.opened)) == "signed"
    assert unwrap(result.opened).layers[0].signers[0].valid is True
    # Signed around the encryption: still the entity the decryption gave.
    outer = sign(encrypt(signed, [bob.cert]), dave.key, dave.cert)
    assert unwrap(message(outer), bob_keys(pki)).opened == result.opened
    # Nothing decrypted: nothing opened.
    assert unwrap(message(signed)).opened is None
    assert unwrap(message(encrypt(signed, [bob.cert]))).opened is None


def test_bad_outer_signature_does_not_hide_inner_layers(pki):
    alice, bob, dave = pki["alice"], pki["bob"], pki["dave"]
    inner = sign(TEXT, alice.key, alice.cert)
    outer = sign(encrypt(inner, [bob.cert]), dave.key, dave.cert)
    # Break the outer signature without touching the ciphertext: change a header field of the
    # signed first body part.
    first, _sig, _micalg = mime.split_multipart_signed(mime.parse_entity(outer))
    assert b"name=\"smime.p7m\"" in first
    tampered = outer.replace(first, first.replace(b"name=\"smime.p7m\"", b"name=\"smime.p7x\""))
    result = unwrap(message(tampered), bob_keys(pki))
    assert [layer.kind for layer in result.layers] == ["signed", "enveloped", "signed"]
    assert result.layers[0].signers[0].valid is False
    assert result.layers[0].signers[0].reason
    assert result.layers[2].signers[0].valid is True
    headers = dict(result_headers(result.layers))
    assert headers["X-Smimegate-Info-Signer-Verified-0-0"] == "False"
    assert headers["X-Smimegate-Info-Signer-Verified-0-2"] == "True"


def test_no_key_records_the_layer_and_stops(pki):
    alice, bob = pki["alice"], pki["bob"]
    encrypted = encrypt(sign(TEXT, alice.key, alice.cert), [bob.cert])
    result = unwrap(message(encrypted))
    (layer,) = result.layers
    assert layer.kind == "enveloped"
    assert layer.decrypted is False
    assert len(layer.recipients) == 1
    assert result.error and result.error.startswith("not decrypted")
    # The still-encrypted entity is the content, so the message can be delivered as it came.
    assert mime.classify(mime.parse_entity(result.content)) == "enveloped"
    assert header_names(result) == [
        "X-Smimegate-Info-Encryption-Algorithm-0",
        "X-Smimegate-Info-Encryption-Recipient-0-0",
    ]


def test_wrong_key_is_the_same_outcome_as_no_key(pki):
    bob, carol = pki["bob"], pki["carol"]
    encrypted = encrypt(TEXT, [bob.cert])
    result = unwrap(message(encrypted), [(carol.cert, carol.key)])
    assert result.layers[0].decrypted is False
    assert result.error and result.error.startswith("not decrypted")


def test_undecryptable_inner_layer_keeps_outer_results(pki):
    alice, carol = pki["alice"], pki["carol"]
    wrapped = sign(encrypt(TEXT, [carol.cert]), alice.key, alice.cert)
    result = unwrap(message(wrapped), bob_keys(pki))
    assert [layer.kind for layer in result.layers] == ["signed", "enveloped"]
    assert result.layers[0].signers[0].valid is True
    assert result.layers[1].decrypted is False
    assert result.error


def _nest(pki, count: int) -> bytes:
    alice = pki["alice"]
    entity = TEXT
    for _ in range(count):
        entity = sign(entity, alice.key, alice.cert, detached=False, capabilities=())
    return entity


def test_depth_limit_is_enforced(pki):
    assert len(unwrap(_nest(pki, 8)).layers) == 8
    with pytest.raises(Malformed, match="nesting deeper than 8 layers"):
        unwrap(_nest(pki, 9))
    with pytest.raises(Malformed, match="deeper than 2"):
        unwrap(_nest(pki, 3), max_depth=2)
    assert len(unwrap(_nest(pki, 3), max_depth=3).layers) == 3


def test_max_depth_must_be_positive():
    with pytest.raises(ValueError, match="max_depth"):
        unwrap(TEXT, max_depth=0)


INNER_MESSAGE = (
    b"From: Alice <alice@a.test>\r\n"
    b"To: Bob <bob@b.test>\r\n"
    b"Subject: the real subject\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"protected\r\n"
)


def test_message_rfc822_inside_a_layer_is_entered(pki):
    # RFC 8551 3.1: header protection wraps a whole message in message/rfc822.
    alice = pki["alice"]
    wrapper = b"Content-Type: message/rfc822\r\n\r\n" + INNER_MESSAGE
    result = unwrap(message(sign(wrapper, alice.key, alice.cert)))
    assert [layer.kind for layer in result.layers] == ["signed"]
    # Nothing more is wrapped: the content is the inner message, protected fields included.
    assert result.content == INNER_MESSAGE
    protected, entity = mime.split_message(result.content)
    assert dict(protected)["Subject"] == b"the real subject"
    assert mime.content_type(mime.parse_entity(entity))[0] == "text/plain"


def test_message_rfc822_with_more_layers_inside(pki):
    alice, bob = pki["alice"], pki["bob"]
    inner_entity = encrypt(sign(TEXT, alice.key, alice.cert), [bob.cert])
    inner_message = mime.join_message(
        [("From", b"Alice <alice@a.test>"), ("Subject", b"protected")], inner_entity
    )
    wrapper = b"Content-Type: message/rfc822\r\n\r\n" + inner_message
    result = unwrap(message(sign(wrapper, alice.key, alice.cert)), bob_keys(pki))
    assert [layer.kind for layer in result.layers] == ["signed", "enveloped", "signed"]
    assert result.content == TEXT


def test_top_level_message_rfc822_is_not_entered():
    # Without a CMS layer around it, a message/rfc822 body is a forwarded message, not header
    # protection: it is content.
    entity = b"Content-Type: message/rfc822\r\n\r\n" + INNER_MESSAGE
    result = unwrap(message(entity))
    assert result.layers == ()
    assert result.content == entity


def test_delivered_message_keeps_outer_headers_and_drops_protected_ones(pki):
    alice = pki["alice"]
    wrapper = b"Content-Type: message/rfc822\r\n\r\n" + INNER_MESSAGE
    original = message(sign(wrapper, alice.key, alice.cert))
    delivered = delivered_message(original, unwrap(original))
    outer, entity = mime.split_message(delivered)
    assert [name for name, _ in outer] == ["Received", "From", "To", "Subject"]
    assert dict(outer)["Subject"] == b"plan"
    assert delivered.count(b"MIME-Version:") == 1
    assert entity.endswith(b"\r\n\r\nprotected\r\n")
    assert mime.content_type(mime.parse_entity(entity))[0] == "text/plain"


def test_delivered_message_after_decryption(pki):
    alice, bob = pki["alice"], pki["bob"]
    original = message(encrypt(sign(TEXT, alice.key, alice.cert), [bob.cert]))
    delivered = delivered_message(original, unwrap(original, bob_keys(pki)))
    assert delivered == mime.join_message(mime.split_message(original)[0], TEXT)
    assert delivered.startswith(b"Received: from a.test")
    assert b"pkcs7" not in delivered


def test_lf_line_ends_are_accepted(pki):
    alice = pki["alice"]
    signed = message(sign(TEXT, alice.key, alice.cert, detached=False))
    result = unwrap(signed.replace(b"\r\n", b"\n"))
    assert result.layers[0].signers[0].valid is True


def test_garbage_smime_body_is_malformed():
    entity = (
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        b"MIIBnotreallyCMS\r\n"
    )
    with pytest.raises(Malformed):
        unwrap(message(entity))


def test_forged_signer_identifier_cannot_split_a_result_header(pki):
    # The SignerIdentifier is not signed: a sender can put any issuer name there. A CR/LF in it
    # must not become a second header line (cms.name_to_str hex-escapes controls, RFC 4514 2.4).
    alice = pki["alice"]
    info = acms.ContentInfo.load(sign_der(TEXT, alice.key, alice.cert, detached=False))
    forged = "x\r\nX-Smimegate-Info-Signer-Verified-0-0: True"
    info["content"]["signer_infos"][0]["sid"] = acms.SignerIdentifier({
        "issuer_and_serial_number": {
            "issuer": ax509.Name.build({"common_name": forged}),
            "serial_number": 5,
        }
    })
    entity = mime.build_pkcs7_mime(info.dump(force=True), "signed-data")
    result = unwrap(message(entity))
    assert result.layers[0].signers[0].valid is False
    headers = result_headers(result.layers)
    assert all("\r" not in value and "\n" not in value for _name, value in headers)
    assert dict(headers)["X-Smimegate-Info-Signer-Verified-0-0"] == "False"
    assert dict(headers)["X-Smimegate-Info-Signer-ID-0-0"].startswith("CN=x\\0D\\0AX-Smimegate")
