"""S/MIME engine speed and memory beside cryptography's PKCS7 builders and `openssl cms`.

    .venv/bin/python bench/smime_bench.py [--quick]

Speed: operations per second for sign, verify, encrypt and decrypt of a 10 KB and a 1 MB MIME
entity (RSA-2048 signer and recipient, SHA-256, AES-256-CBC, RSA PKCS#1 v1.5: the gateway's
defaults), three ways, all in this run:
  - ours:     smimegate.smime sign() / verify() / encrypt() / decrypt(), MIME entity in and out
  - builders: cryptography's PKCS7SignatureBuilder (S/MIME detached) and PKCS7EnvelopeBuilder
              (cryptography 50 has no pkcs7_encrypt_der; the envelope builder with DER output
              is its DER encryption), pkcs7_decrypt_der; the builders cannot verify
  - openssl:  one `openssl cms` process per message (subprocess), as a shell pipeline would
The ratio column is our time / the builders' time (1.00 = as fast, 2.00 = twice as slow).
"decrypt" reads the same MIME entity on both sides (pkcs7_decrypt_smime for the builders),
"decrypt DER" the same DER (pkcs7_decrypt_der).

Memory: encrypt and decrypt of a 25 MB entity, each in a fresh subprocess, as a multiple of
25 MB: the peak of Python allocations made by the operation (tracemalloc; the input is not
counted), and the growth of the process's peak RSS over its RSS just before the operation
(resource.getrusage, which also sees OpenSSL's own buffers).

Aims reported against (printed, never asserted): sign+encrypt of 10 KB within 1.25x of the
builders' time; 25 MB encrypt or decrypt under 4x its size in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.ciphers import algorithms  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs7  # noqa: E402

from smimegate.smime import mime  # noqa: E402
from smimegate.smime.decrypt import decrypt, decrypt_der  # noqa: E402
from smimegate.smime.encrypt import encrypt  # noqa: E402
from smimegate.smime.sign import sign  # noqa: E402
from smimegate.smime.unwrap import unwrap  # noqa: E402
from smimegate.smime.verify import verify  # noqa: E402
from tests.helpers.testpki import Identity, TestCA  # noqa: E402

MB = 1024 * 1024
BIG = 25 * MB
AIM_TIME = 1.25
AIM_MEMORY = 4.0


def entity_of(size: int) -> bytes:
    """A MIME entity of about ``size`` bytes: base64 attachment lines, CRLF, as mail carries."""
    head = (
        b"Content-Type: application/octet-stream; name=report.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="report.bin"\r\n\r\n'
    )
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n"
    lines = max(1, (size - len(head)) // len(line))
    # Vary the lines a little so nothing compresses or caches specially.
    body = b"".join(line[:70] + b"%04d" % (i % 10000) + b"\r\n" for i in range(lines))
    return head + body


def rate(fn: Callable[[], object], budget: float, minimum: int = 3) -> float:
    """Operations per second: run fn at least ``minimum`` times and for ``budget`` seconds."""
    fn()  # warm-up (imports, caches)
    count = 0
    start = time.perf_counter()
    elapsed = 0.0
    while count < minimum or elapsed < budget:
        fn()
        count += 1
        elapsed = time.perf_counter() - start
    return count / elapsed


class OpenSSL:
    """`openssl cms` per message, files in a temporary folder."""

    def __init__(self, folder: Path, signer: Identity, recipient: Identity) -> None:
        self.folder = folder
        self.signer_key, self.signer_crt = signer.write(folder, "signer")
        self.recip_key, self.recip_crt = recipient.write(folder, "recipient")

    def _run(self, *args: str) -> None:
        subprocess.run(["openssl", "cms", *args], check=True, capture_output=True)

    def prepare(self, entity: bytes, signed: bytes, enveloped: bytes) -> None:
        (self.folder / "in.txt").write_bytes(entity)
        (self.folder / "signed.eml").write_bytes(signed)
        (self.folder / "enveloped.eml").write_bytes(enveloped)

    def sign(self) -> None:
        self._run("-sign", "-binary", "-in", str(self.folder / "in.txt"), "-signer",
                  str(self.signer_crt), "-inkey", str(self.signer_key), "-md", "sha256",
                  "-out", str(self.folder / "o-signed.eml"))

    def verify(self) -> None:
        # -noverify: signature only, no path validation (ours leaves trust to pki/ too).
        self._run("-verify", "-noverify", "-in", str(self.folder / "signed.eml"),
                  "-out", str(self.folder / "o-verified.txt"))

    def encrypt(self) -> None:
        self._run("-encrypt", "-binary", "-aes256", "-in", str(self.folder / "in.txt"),
                  "-out", str(self.folder / "o-enveloped.eml"), str(self.recip_crt))

    def decrypt(self) -> None:
        self._run("-decrypt", "-binary", "-in", str(self.folder / "enveloped.eml"),
                  "-inkey", str(self.recip_key), "-recip", str(self.recip_crt),
                  "-out", str(self.folder / "o-decrypted.txt"))


def speed(signer: Identity, recipient: Identity, sizes: list[int], budget: float) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    keys = [(recipient.cert, recipient.key)]
    with tempfile.TemporaryDirectory(prefix="smime-bench-") as tmp:
        ossl = OpenSSL(Path(tmp), signer, recipient)
        for size in sizes:
            entity = entity_of(size)
            signed = sign(entity, signer.key, signer.cert)
            enveloped = encrypt(entity, [recipient.cert])
            der = mime.decode_smime_body(mime.parse_entity(enveloped))
            ossl.prepare(entity, signed, enveloped)
            # Sanity: everything round-trips before it is timed.
            assert mime.canonicalize(verify(signed)[0]) == entity
            assert decrypt(enveloped, keys)[0] == entity
            assert pkcs7.pkcs7_decrypt_der(der, recipient.cert, recipient.key, []) == entity
            assert pkcs7.pkcs7_decrypt_smime(enveloped, recipient.cert, recipient.key, []) == entity

            sig_builder = (
                pkcs7.PKCS7SignatureBuilder()
                .set_data(entity)
                .add_signer(signer.cert, signer.key, hashes.SHA256())
            )
            env_builder = (
                pkcs7.PKCS7EnvelopeBuilder()
                .set_data(entity)
                .add_recipient(recipient.cert)
                .set_content_encryption_algorithm(algorithms.AES256)
            )
            ops: dict[str, dict[str, Any]] = {
                "sign": {
                    "ours": lambda e=entity: sign(e, signer.key, signer.cert),
                    "builders": lambda b=sig_builder: b.sign(
                        serialization.Encoding.SMIME,
                        [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
                    ),
                    "openssl": ossl.sign,
                },
                "verify": {
                    "ours": lambda s=signed: verify(s),
                    "builders": None,
                    "openssl": ossl.verify,
                },
                "encrypt": {
                    "ours": lambda e=entity: encrypt(e, [recipient.cert]),
                    "builders": lambda b=env_builder: b.encrypt(
                        serialization.Encoding.SMIME, [pkcs7.PKCS7Options.Binary]
                    ),
                    "openssl": ossl.encrypt,
                },
                "decrypt": {
                    "ours": lambda m=enveloped: decrypt(m, keys),
                    "builders": lambda m=enveloped: pkcs7.pkcs7_decrypt_smime(
                        m, recipient.cert, recipient.key, []
                    ),
                    "openssl": ossl.decrypt,
                },
                "decrypt DER": {
                    "ours": lambda d=der: decrypt_der(d, keys),
                    "builders": lambda d=der: pkcs7.pkcs7_decrypt_der(
                        d, recipient.cert, recipient.key, []
                    ),
                    "openssl": None,
                },
            }
            for op, impls in ops.items():
                row: dict[str, Any] = {"op": op, "size": size}
                for impl, fn in impls.items():
                    # openssl pays a process start per message; fewer rounds are enough.
                    minimum = 2 if impl == "openssl" else 3
                    row[impl] = rate(fn, budget, minimum) if fn is not None else None
                rows.append(row)
    return {"rows": rows}


def _print_speed(rows: list[dict[str, Any]]) -> None:
    print("Speed (operations per second; ratio = our time / builders' time)")
    print(f"  {'operation':<12} {'size':>6} {'ours':>10} {'builders':>10} {'openssl':>10} "
          f"{'ratio':>7} {'vs openssl':>10}")
    for row in rows:
        ours, builders, ossl = row["ours"], row["builders"], row["openssl"]
        ratio = f"{builders / ours:7.2f}" if builders else f"{'-':>7}"
        vs_ossl = f"{ossl / ours:10.2f}" if ossl else f"{'-':>10}"
        size = f"{row['size'] // 1024} KB" if row["size"] < MB else f"{row['size'] // MB} MB"
        print(f"  {row['op']:<12} {size:>6} {ours:10.1f} {_fmt(builders):>10} {_fmt(ossl):>10} "
              f"{ratio} {vs_ossl}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _aim_time(rows: list[dict[str, Any]]) -> None:
    by = {(r["op"], r["size"]): r for r in rows}
    small = min(r["size"] for r in rows)
    ours = 1 / by[("sign", small)]["ours"] + 1 / by[("encrypt", small)]["ours"]
    builders = 1 / by[("sign", small)]["builders"] + 1 / by[("encrypt", small)]["builders"]
    ratio = ours / builders
    verdict = "meets" if ratio <= AIM_TIME else "MISSES"
    print(f"  sign+encrypt {small // 1024} KB: ours {ours * 1000:.2f} ms, builders "
          f"{builders * 1000:.2f} ms, ratio {ratio:.2f} ({verdict} the aim of {AIM_TIME}x)")


# --- memory, one fresh process per measurement ----------------------------------------------


def _rss_now() -> int:
    """Current resident set size in bytes (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _peak_rss(reset: bool) -> int:
    if reset:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def child(mode: str, folder: Path) -> None:
    """Run one 25 MB operation and print {"traced": peak bytes, "rss": peak growth} as JSON."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((folder / "recipient.crt").read_bytes())
    key: Any = serialization.load_pem_private_key((folder / "recipient.key").read_bytes(), None)
    if mode.startswith("encrypt"):
        data = (folder / "entity.eml").read_bytes()
    else:
        data = (folder / ("enveloped.der" if mode.endswith("builders") else "enveloped.eml")
                ).read_bytes()
    operations: dict[str, Callable[[], object]] = {
        "encrypt": lambda: encrypt(data, [cert]),
        "decrypt": lambda: decrypt(data, [(cert, key)]),
        "unwrap": lambda: unwrap(data, [(cert, key)]),
        "encrypt-builders": lambda: pkcs7.PKCS7EnvelopeBuilder()
        .set_data(data)
        .add_recipient(cert)
        .set_content_encryption_algorithm(algorithms.AES256)
        .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]),
        "decrypt-builders": lambda: pkcs7.pkcs7_decrypt_der(data, cert, key, []),
    }
    operation = operations[mode]
    tracemalloc.start()
    tracemalloc.stop()  # tracemalloc's own first-start allocations, outside the figure
    reset = _reset_peak_rss()
    before = _rss_now()
    tracemalloc.start()
    result = operation()
    _size, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = _peak_rss(reset) - before
    del result
    print(json.dumps({"traced": traced, "rss": rss}))


def memory(recipient: Identity, size: int) -> list[tuple[str, dict[str, int]]]:
    out: list[tuple[str, dict[str, int]]] = []
    with tempfile.TemporaryDirectory(prefix="smime-bench-mem-") as tmp:
        folder = Path(tmp)
        recipient.write(folder, "recipient")
        entity = entity_of(size)
        (folder / "entity.eml").write_bytes(entity)
        enveloped = encrypt(entity, [recipient.cert])
        (folder / "enveloped.eml").write_bytes(enveloped)
        (folder / "enveloped.der").write_bytes(
            mime.decode_smime_body(mime.parse_entity(enveloped))
        )
        del entity, enveloped
        for mode in ("encrypt", "decrypt", "unwrap", "encrypt-builders", "decrypt-builders"):
            proc = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(folder)],
                check=True, capture_output=True, text=True,
            )
            out.append((mode, json.loads(proc.stdout.strip().splitlines()[-1])))
    return out


def _print_memory(results: list[tuple[str, dict[str, int]]], size: int) -> None:
    print(f"Memory for a {size // MB} MB entity (multiples of {size // MB} MB; input not counted)")
    print(f"  {'operation':<18} {'tracemalloc peak':>17} {'peak RSS growth':>16}")
    for mode, figures in results:
        print(f"  {mode:<18} {figures['traced'] / size:16.2f}x {figures['rss'] / size:15.2f}x")
    ours = [f for m, f in results if not m.endswith("builders")]
    worst = max(max(f["traced"], f["rss"]) for f in ours) / size
    verdict = "meets" if worst < AIM_MEMORY else "MISSES"
    print(f"  worst of ours: {worst:.2f}x ({verdict} the aim of under {AIM_MEMORY}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing rounds")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    budget = 0.3 if args.quick else 1.5
    started = time.perf_counter()
    ca = TestCA()
    signer, recipient = ca.issue("alice@x.test", "rsa2048"), ca.issue("bob@x.test", "rsa2048")
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=True)
    print(f"smimegate S/MIME benchmark; {version.stdout.strip()}; RSA-2048, SHA-256, AES-256-CBC")
    result = speed(signer, recipient, [10 * 1024, MB], budget)
    _print_speed(result["rows"])
    _aim_time(result["rows"])
    print()
    _print_memory(memory(recipient, BIG), BIG)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
