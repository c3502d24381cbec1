"""Post-quantum S/MIME cost beside RSA-2048 (issue 14 item 5), measured in one run.

    .venv/bin/python bench/pqc_bench.py [--quick]

For a 10 KB MIME entity, three set-ups, each as the gateway does it (smimegate.smime recipes):
  - rsa:    RSA-2048 signer, RSA-2048 recipient (PKCS#1 v1.5), AES-256-CBC (today's default)
  - pq:     ML-DSA-65 signer (RFC 9882), ML-KEM-768 recipient (RFC 9629 / RFC 9936)
  - pq-512: the same with an ML-KEM-512 recipient, which is pure Python (kyber-py, as
            cryptography has no ML-KEM-512): the difference to pq is that backend's cost
  - both:   ML-DSA-65 signer, encrypted to an RSA-2048 and an ML-KEM-768 recipient in one
            message (a recipient holding both certificates); opened with the ML-KEM key
  - prefer: what pqc = prefer writes for a sender and a recipient holding both kinds: RSA-2048
            and ML-DSA-65 signers (the ML-DSA one as a countersignature, the default
            pqc_signature), RSA-2048 and ML-KEM-768 recipients; opened with the ML-KEM key,
            both signatures verified
  - parallel: the same with pqc_signature = parallel (two SignerInfos)
Printed per set-up: ms per message for sign + encrypt and for unwrap (decrypt + verify), the
message size, and the ratio of each figure to the rsa row. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smimegate.smime.encrypt import encrypt  # noqa: E402
from smimegate.smime.sign import Arrangement, Signer, sign, sign_several  # noqa: E402
from smimegate.smime.unwrap import unwrap  # noqa: E402
from tests.helpers.testpki import Identity, TestCA  # noqa: E402


def entity_of(size: int) -> bytes:
    """A text/plain MIME entity of about ``size`` bytes, CRLF lines."""
    line = b"The quick brown fox jumps over the lazy dog, post-quantum edition 0123.\r\n"
    return b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + line * (size // len(line))


def ms_per_call(fn: Callable[[], object], budget: float) -> float:
    """Milliseconds per call: at least 5 calls and ``budget`` seconds, after one warm-up."""
    fn()
    count, start = 0, time.perf_counter()
    while count < 5 or time.perf_counter() - start < budget:
        fn()
        count += 1
    return (time.perf_counter() - start) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.3 s per figure instead of 2 s")
    args = parser.parse_args()
    budget = 0.3 if args.quick else 2.0
    ca = TestCA()
    ids = {kind: ca.issue(f"{kind}@example.test", kind)
           for kind in ("rsa2048", "ml-dsa-65", "ml-kem-512", "ml-kem-768")}
    entity = entity_of(10 * 1024)
    both_keys = [ids["rsa2048"], ids["ml-dsa-65"]]
    setups: dict[str, tuple[list[Identity], list[Identity], Identity, Arrangement | None]] = {
        # name: (signers, recipients, the recipient whose key opens it, arrangement)
        "rsa": ([ids["rsa2048"]], [ids["rsa2048"]], ids["rsa2048"], None),
        "pq": ([ids["ml-dsa-65"]], [ids["ml-kem-768"]], ids["ml-kem-768"], None),
        "pq-512": ([ids["ml-dsa-65"]], [ids["ml-kem-512"]], ids["ml-kem-512"], None),
        "both": ([ids["ml-dsa-65"]], [ids["rsa2048"], ids["ml-kem-768"]], ids["ml-kem-768"],
                 None),
        "prefer": (both_keys, [ids["rsa2048"], ids["ml-kem-768"]], ids["ml-kem-768"],
                   "countersignature"),
        "parallel": (both_keys, [ids["rsa2048"], ids["ml-kem-768"]], ids["ml-kem-768"],
                     "parallel"),
    }
    print(f"10 KB entity ({len(entity)} bytes), {budget} s per figure")
    print(f"{'set-up':8} {'sign+encrypt ms':>16} {'unwrap ms':>10} {'size':>8} "
          f"{'x rsa (out/in/size)':>22}")
    base: tuple[float, float, int] | None = None
    for name, (signers, recipients, opener, arrangement) in setups.items():
        certs = [r.cert for r in recipients]

        def outbound(signers: list[Identity] = signers, certs: list = certs,  # type: ignore[type-arg]
                     arrangement: Arrangement | None = arrangement) -> bytes:
            if arrangement is None:
                signed = sign(entity, signers[0].key, signers[0].cert, [ca.cert])
            else:
                signed = sign_several(entity, [Signer(i.key, i.cert, (ca.cert,)) for i in signers],
                                      arrangement=arrangement)
            return encrypt(signed, certs)

        message = b"Subject: bench\r\n" + outbound()
        check = unwrap(message, [(opener.cert, opener.key)])
        assert check.error is None and len(check.layers[1].signers) == len(signers)
        assert all(s.valid for s in check.layers[1].signers)
        out_ms = ms_per_call(outbound, budget)
        in_ms = ms_per_call(lambda m=message, o=opener: unwrap(m, [(o.cert, o.key)]), budget)
        if base is None:
            base = (out_ms, in_ms, len(message))
        ratios = f"{out_ms / base[0]:.2f}/{in_ms / base[1]:.2f}/{len(message) / base[2]:.2f}"
        print(f"{name:8} {out_ms:16.2f} {in_ms:10.2f} {len(message):8} {ratios:>22}")


if __name__ == "__main__":
    main()
