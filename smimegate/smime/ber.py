"""A minimal BER/DER tag-length-value reader and DER header writer over memoryview.

Why not asn1crypto for the outer layers of an EnvelopedData: asn1crypto slices (copies) the
contents at every nesting level it parses, so a 25 MB encryptedContent would be copied four or
five times. This reader walks the outer levels by offset only; the small inner structures
(RecipientInfos, AlgorithmIdentifiers) are still parsed by asn1crypto.

BER (X.690 8.1) is accepted on input because Thunderbird/NSS write indefinite lengths and
constructed OCTET STRINGs; we only ever write DER (X.690 10).
"""

from __future__ import annotations

from typing import NamedTuple

from smimegate.smime.errors import Malformed

UNIVERSAL, APPLICATION, CONTEXT, PRIVATE = 0, 1, 2, 3

# Nesting bound for indefinite-length elements: real CMS needs fewer than 10 levels.
MAX_DEPTH = 32
# Bound on the elements inside one constructed element. NSS and OpenSSL stream encryptedContent
# in chunks of 1-4 KB (25 MB -> under 30,000); a flood of 2-byte chunks would otherwise cost a
# Python object each (memory and time out of proportion to the input).
MAX_CHILDREN = 262_144


class Tlv(NamedTuple):
    """One element: identifier at ``start``, contents in ``[body, end)``, next element at ``after``.

    A NamedTuple rather than a frozen dataclass: an EnvelopedData's frame makes a dozen of
    them per message, and a frozen dataclass costs three times as much to build
    (bench/cost_bench.py)."""

    tag_class: int
    constructed: bool
    number: int
    start: int
    body: int
    end: int
    after: int

    def is_(self, tag_class: int, number: int, constructed: bool | None = None) -> bool:
        """Whether the element has this tag (and, if given, this form)."""
        if constructed is not None and constructed != self.constructed:
            return False
        return self.tag_class == tag_class and self.number == number


Memo = dict[int, Tlv]
"""Elements already read, by position: finding the end of an indefinite-length element reads
everything inside it, so a caller that then reads the elements inside, level by level, would
read the innermost ones once per level above them."""


def read(buf: memoryview, pos: int, limit: int, what: str, depth: int = 0,
         memo: Memo | None = None) -> Tlv:
    """Read the element at ``pos`` that must end by ``limit``.

    memo: elements read before in the same buffer (filled as they are read).
    Raises Malformed (naming ``what``) on truncation, bad lengths or too deep nesting.
    """
    if memo is not None:
        known = memo.get(pos)
        if known is not None and known.after <= limit:
            return known
    if depth > MAX_DEPTH:
        raise Malformed(f"{what}: nesting deeper than {MAX_DEPTH}")
    if pos >= limit:
        raise Malformed(f"{what}: truncated (no tag)")
    start = pos
    first = buf[pos]
    tag_class, constructed, number = first >> 6, bool(first & 0x20), first & 0x1F
    pos += 1
    if number == 0x1F:
        # X.690 8.1.2.4: high tag number form, base 128.
        number = 0
        while True:
            if pos >= limit:
                raise Malformed(f"{what}: truncated tag")
            octet = buf[pos]
            pos += 1
            number = (number << 7) | (octet & 0x7F)
            if number > 0xFFFFFF:
                raise Malformed(f"{what}: tag number too large")
            if not octet & 0x80:
                break
    if pos >= limit:
        raise Malformed(f"{what}: truncated (no length)")
    octet = buf[pos]
    pos += 1
    if octet == 0x80:
        # X.690 8.1.3.6: indefinite form, constructed only, ends with an end-of-contents pair.
        if not constructed:
            raise Malformed(f"{what}: indefinite length on a primitive element")
        child = pos
        for _ in range(MAX_CHILDREN + 1):
            if child + 2 <= limit and buf[child] == 0 and buf[child + 1] == 0:
                tlv = Tlv(tag_class, constructed, number, start, pos, child, child + 2)
                if memo is not None:
                    memo[start] = tlv
                return tlv
            child = read(buf, child, limit, what, depth + 1, memo).after
        raise Malformed(f"{what}: more than {MAX_CHILDREN} elements in one constructed element")
    if octet & 0x80:
        count = octet & 0x7F
        if count > 8 or pos + count > limit:
            raise Malformed(f"{what}: bad length encoding")
        length = int.from_bytes(buf[pos : pos + count], "big")
        pos += count
    else:
        length = octet
    end = pos + length
    if end > limit:
        raise Malformed(f"{what}: length {length} runs past the end of its container")
    return Tlv(tag_class, constructed, number, start, pos, end, end)


def children(buf: memoryview, parent: Tlv, what: str, memo: Memo | None = None) -> list[Tlv]:
    """The elements inside a constructed element, in order (memo: as for read). Raises
    Malformed."""
    if not parent.constructed:
        raise Malformed(f"{what}: expected a constructed element")
    out: list[Tlv] = []
    pos = parent.body
    while pos < parent.end:
        if len(out) >= MAX_CHILDREN:
            raise Malformed(f"{what}: more than {MAX_CHILDREN} elements in one constructed element")
        tlv = read(buf, pos, parent.end, what, memo=memo)
        out.append(tlv)
        pos = tlv.after
    return out


def octet_chunks(buf: memoryview, tlv: Tlv, what: str, depth: int = 0,
                 memo: Memo | None = None) -> list[memoryview]:
    """The data of an OCTET STRING, primitive or constructed (X.690 8.7.3), as views without
    copying (memo: as for read)."""
    if not tlv.constructed:
        return [buf[tlv.body : tlv.end]]
    if depth > MAX_DEPTH:
        raise Malformed(f"{what}: nesting deeper than {MAX_DEPTH}")
    out: list[memoryview] = []
    for child in children(buf, tlv, what, memo):
        if not child.is_(UNIVERSAL, 4):
            raise Malformed(f"{what}: constructed OCTET STRING holds a non-OCTET STRING")
        out.extend(octet_chunks(buf, child, what, depth + 1, memo))
        if len(out) > MAX_CHILDREN:
            raise Malformed(f"{what}: more than {MAX_CHILDREN} OCTET STRING chunks")
    return out


def der_header(identifier: int, length: int) -> bytes:
    """DER identifier octet (low tag form) and definite length (X.690 10.1)."""
    if length < 0x80:
        return bytes((identifier, length))
    size = (length.bit_length() + 7) // 8
    return bytes((identifier, 0x80 | size)) + length.to_bytes(size, "big")
