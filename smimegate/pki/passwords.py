"""Generated passwords for PKCS#12 files that are read off a phone and typed by hand.

Drawn with ``secrets`` from an alphabet without look-alikes, so a password read from an SMS is
typed right the first time: no 0/O/o/Q/D, 1/l/I/i/|, 2/Z/z, 5/S/s, 6/G/b, 8/B, 9/g/q, U/u/V/v, and
of the letters whose capital and small forms look the same (c, k, p, w, x, y) only one form.
"""

from __future__ import annotations

import math
import secrets

ALPHABET = "ACEFHJKLMNPRTWXY" "adefhjmnrt" "347"
# Characters left out because another one looks like them (the tests check ALPHABET).
LOOK_ALIKES = frozenset("0OoQD" "1lIi|" "2Zz" "5Ss" "6Gb" "8B" "9gq" "UuVv" "ckpwxy")
MIN_LENGTH = 16
DEFAULT_LENGTH = 20


def generate_password(length: int = DEFAULT_LENGTH) -> str:
    """A random password of length characters from ALPHABET.

    Raises ValueError when length is below MIN_LENGTH (16).
    """
    if length < MIN_LENGTH:
        raise ValueError(f"password length: must be at least {MIN_LENGTH}, got {length}")
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def entropy_bits(length: int = DEFAULT_LENGTH) -> float:
    """Bits of entropy of a generated password of that length."""
    return length * math.log2(len(ALPHABET))
