"""Content encryption: AES-CBC (RFC 3565), AES-GCM (RFC 5084), 3DES-CBC read only (RFC 3370 5.1).

Memory: a message can be tens of megabytes, so the cipher writes straight into the one buffer
that becomes the result (``update_into`` on a view of a preallocated ``io.BytesIO``, whose
``getvalue`` hands its buffer over without a copy). Encryption makes the whole DER in place;
decryption makes the plaintext in place.
"""

from __future__ import annotations

import functools
import hmac
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asn1crypto import algos as aalgos
from asn1crypto import core
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, algorithms, modes

from smimegate.smime.algorithms import (
    CONTENT_CIPHER_BY_OID,
    REFUSED_CONTENT_CIPHERS,
    ContentCipher,
)
from smimegate.smime.ber import der_header
from smimegate.smime.cms import guard, oid_dotted
from smimegate.smime.envelope import MAC_HEADER, GCMParameters
from smimegate.smime.errors import Malformed, Unsupported

GCM_NONCE_BYTES = 12  # RFC 5084 3.2: a 12-octet nonce is RECOMMENDED
GCM_TAG_BYTES = 16  # RFC 5084 3.2 allows 12..16; the longest is the safe choice
SLACK = 15  # update_into wants block_size - 1 spare bytes after its output


class ContentDecryptionFailed(Exception):
    """Bad padding or bad GCM tag. Internal: decrypt.py turns it into NoDecryptionKey."""


def build_bytes(size: int, fill: Callable[[memoryview], int]) -> bytes:
    """Make a bytes object by letting ``fill`` write into a zeroed buffer of ``size`` bytes.

    fill returns how many bytes to keep (<= size); the buffer is trimmed in place. Avoids the
    copy that ``bytes(bytearray)`` would make.
    """
    out = io.BytesIO()
    if size:
        out.seek(size - 1)
        out.write(b"\x00")
    with out.getbuffer() as view:
        keep = fill(view)
    out.truncate(keep)
    return out.getvalue()


@dataclass(frozen=True)
class Parameters:
    """Fresh IV (CBC) or nonce (GCM) and the contentEncryptionAlgorithm DER that carries it."""

    iv: bytes
    algorithm_der: bytes


def new_parameters(cipher: ContentCipher) -> Parameters:
    """Random IV / nonce from os.urandom. Raises ValueError for a read-only cipher."""
    if not cipher.writable:
        raise ValueError(f"cipher {cipher.name!r} is read only")
    # Written as DER (X.690 8.1; asn1crypto's building cost as much as the AES of a 10 KB
    # message); tests/unit/smime/test_encrypt.py pins the bytes to asn1crypto's.
    if cipher.mode == "gcm":
        # RFC 5084 3.2 GCMParameters: SEQUENCE { aes-nonce OCTET STRING, aes-ICVlen INTEGER }.
        nonce = os.urandom(GCM_NONCE_BYTES)
        params = der_header(0x30, len(nonce) + 5) + der_header(0x04, len(nonce)) + nonce \
            + bytes((0x02, 0x01, GCM_TAG_BYTES))
    else:
        # RFC 3565 4.1: the IV as an OCTET STRING.
        nonce = os.urandom(16)
        params = der_header(0x04, len(nonce)) + nonce
    oid = _oid_der(cipher.oid)
    return Parameters(nonce, der_header(0x30, len(oid) + len(params)) + oid + params)


@functools.lru_cache(maxsize=16)
def _oid_der(oid: str) -> bytes:
    return bytes(core.ObjectIdentifier(oid).dump())


def ciphertext_length(cipher: ContentCipher, length: int) -> int:
    """Bytes of ciphertext for ``length`` bytes of content (CBC adds 1..16 bytes of padding)."""
    return length if cipher.mode == "gcm" else length + 16 - length % 16


def encrypt_into(
    cipher: ContentCipher, key: bytes, params: Parameters, content: bytes, out: memoryview
) -> None:
    """Write the ciphertext to out[0:], then for GCM ``MAC_HEADER + tag``.

    out must hold ciphertext_length() bytes plus SLACK (GCM: plus the mac, which covers SLACK).
    """
    view = memoryview(content)
    if cipher.mode == "gcm":
        gcm = Cipher(algorithms.AES(key), modes.GCM(params.iv)).encryptor()
        written = gcm.update_into(view, out) if len(view) else 0
        gcm.finalize()
        out[written : written + len(MAC_HEADER)] = MAC_HEADER
        out[written + len(MAC_HEADER) : written + len(MAC_HEADER) + GCM_TAG_BYTES] = gcm.tag
        return
    cbc = Cipher(algorithms.AES(key), modes.CBC(params.iv)).encryptor()
    # PKCS#7 padding (RFC 5652 6.3) on the last block only: no padded copy of the content.
    full = len(view) - len(view) % 16
    pad = 16 - len(view) % 16
    written = cbc.update_into(view[:full], out) if full else 0
    last = cbc.update(bytes(view[full:]) + bytes((pad,)) * pad) + cbc.finalize()
    out[written : written + len(last)] = last


def cipher_of(algorithm: aalgos.EncryptionAlgorithm) -> ContentCipher:
    """The allow-listed cipher of a contentEncryptionAlgorithm. Raises Unsupported."""
    with guard("contentEncryptionAlgorithm"):
        oid = oid_dotted(algorithm["algorithm"])
    cipher = CONTENT_CIPHER_BY_OID.get(oid)
    if cipher is None:
        name = REFUSED_CONTENT_CIPHERS.get(oid, oid)
        raise Unsupported(f"content encryption algorithm {name} is not supported")
    return cipher


def _block_cipher(cipher: ContentCipher, key: bytes) -> CipherAlgorithm:
    if cipher.name == "des-ede3-cbc":
        return TripleDES(key)
    return algorithms.AES(key)


def decrypt(
    cipher: ContentCipher,
    algorithm: aalgos.EncryptionAlgorithm,
    key: bytes,
    chunks: Sequence[memoryview],
    *,
    mac: bytes | None = None,
    aad: bytes | None = None,
) -> bytes:
    """Decrypt the chunks (in order). Raises Malformed for bad parameters or lengths (checked
    before any key is used) and ContentDecryptionFailed for a wrong key (bad padding or tag),
    found only after the whole content ran through the cipher."""
    total = sum(len(c) for c in chunks)
    if cipher.mode == "gcm":
        nonce, icv_len = _gcm_params(algorithm)
        if mac is None or len(mac) != icv_len:
            raise Malformed("AuthEnvelopedData: mac length does not match aes-ICVlen")
        gcm = Cipher(algorithms.AES(key), modes.GCM(nonce, mac, min_tag_length=12)).decryptor()
        if aad is not None:
            gcm.authenticate_additional_data(aad)

        def fill_gcm(view: memoryview) -> int:
            pos = _run(gcm.update_into, chunks, view)
            try:
                gcm.finalize()
            except InvalidTag as exc:
                raise ContentDecryptionFailed("GCM tag mismatch") from exc
            return pos

        return build_bytes(total + SLACK, fill_gcm)
    block = 8 if cipher.name == "des-ede3-cbc" else 16
    with guard("CBC parameters"):
        iv = algorithm["parameters"].native
    if not isinstance(iv, bytes) or len(iv) != block:
        raise Malformed(f"{cipher.name}: the IV must be {block} bytes")
    if total == 0 or total % block:
        raise Malformed(f"{cipher.name}: ciphertext length {total} is not a multiple of {block}")
    cbc = Cipher(_block_cipher(cipher, key), modes.CBC(iv)).decryptor()

    def fill_cbc(view: memoryview) -> int:
        pos = _run(cbc.update_into, chunks, view)
        cbc.finalize()
        # PKCS#7 padding (RFC 5652 6.3): every pad byte must equal the count.
        pad = view[pos - 1]
        ok = 1 <= pad <= block
        expected = bytes((pad,)) * pad if ok else b"\x00"
        if not ok or not hmac.compare_digest(bytes(view[pos - pad : pos]), expected):
            raise ContentDecryptionFailed("bad padding")
        return pos - pad

    return build_bytes(total + SLACK, fill_cbc)


def _run(
    update_into: Callable[[memoryview, memoryview], int],
    chunks: Sequence[memoryview],
    view: memoryview,
) -> int:
    pos = 0
    for chunk in chunks:
        if len(chunk):
            pos += update_into(chunk, view[pos:])
    return pos


def _gcm_params(algorithm: aalgos.EncryptionAlgorithm) -> tuple[bytes, int]:
    with guard("GCMParameters"):
        params = GCMParameters.load(algorithm["parameters"].dump())
        nonce = bytes(params["aes_nonce"].native)
        icv_len = int(params["aes_icvlen"].native)
    if not 12 <= icv_len <= 16:
        raise Malformed(f"GCMParameters: aes-ICVlen {icv_len} is not 12..16 (RFC 5084 3.2)")
    if not 8 <= len(nonce) <= 64:
        raise Malformed(f"GCMParameters: nonce of {len(nonce)} bytes")
    return nonce, icv_len
