"""Trust decision cost against what the store holds (issue 10 item 5).

    .venv/bin/python bench/trust_bench.py [--quick] [--samples 5] [--big 10000,1000000]
                                          [--mode soft-fail|hard-fail|require] [--cache DIR]

Two series, each through the code the milter runs (smimegate.pki.anchors.load_anchors reads
the store, smimegate.pki.trust.check decides, smimegate.pki.trustcache.TrustCache remembers):

1. store size: a SQLite store holding 10, 1,000 or 10,000 certificates and 1, 100 or 1,000
   CRLs (the 3 x 3 matrix). The certificate checked is a leaf under root R -> intermediate I;
   the store holds R (trusted root), I, other intermediates of R (the issuers of the other
   CRLs, as many as fit in half the certificate budget; the remaining CRLs have issuers the
   store does not hold), and end-entity certificates of other correspondents. CRLs: I's, then
   R's, then one per other issuer, 20 entries each.
2. one big CRL: I's CRL with 10,000 and 1,000,000 entries (random 127-bit serials, as real
   CAs use), in a store that otherwise holds R, I and R's CRL.
Every scenario runs in a process of its own, so that caches and memory are its own.

Per scenario it prints:
  load   load_anchors(store): read roots, certificates and CRLs (the work a reload does)
  first  the first trust.check after the load (anything built lazily is paid here)
  cold   trust.check of a leaf not checked before, median over --samples leaves: what a new
         correspondent costs
  warm   TrustCache.check of a leaf checked before: what the same correspondent costs again
  peak   resident set size growth during the load at its peak (VmHWM, reset before it)
  kept   resident set size growth that stays after the load (the anchors in use)
  py     tracemalloc's peak of Python allocations in a second load (timed loads run untraced)
and the ratio of cold to the smallest store's cold check, the baseline measured in this run.
Aims from the issue (not asserted): warm < 1 ms, cold < 10 ms whatever the store holds; a
1,000,000-entry CRL loaded in < 5 s and < 200 MB.

Generated data (keys, certificates, CRLs) is cached in --cache (default: a directory in the
system temp dir) so that a second run only measures. Filler certificates share one P-256 key:
their signatures are never what is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from smimegate.pki import trust  # noqa: E402
from smimegate.pki.anchors import load_anchors  # noqa: E402
from smimegate.pki.trustcache import TrustCache  # noqa: E402
from smimegate.store import SqlStore  # noqa: E402
from smimegate.store.keys import ensure_master_key  # noqa: E402

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
START = NOW - dt.timedelta(days=30)
END = NOW + dt.timedelta(days=365)
CERT_SIZES = (10, 1000, 10000)
CRL_SIZES = (1, 100, 1000)
ENTRIES_PER_CRL = 20
BUDGET = 30.0  # seconds of cold checks per scenario before sampling stops early


# -- data -------------------------------------------------------------------------------------
class Cache:
    """Keys and DER objects kept on disk between runs (generation is slower than measuring)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)

    def key(self, name: str, make: Callable[[], Any]) -> Any:
        path = self.dir / f"{name}.key.pem"
        if path.exists():
            return serialization.load_pem_private_key(path.read_bytes(), None)
        key = make()
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        return key

    def blob(self, name: str, make: Callable[[], bytes]) -> bytes:
        path = self.dir / name
        if path.exists():
            return path.read_bytes()
        data = make()
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return data


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Trust Bench"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ski(key: Any) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def _cert(subject: str, issuer: str, key: Any, issuer_key: Any, serial: int, *,
          ca: bool, email: str | None = None) -> bytes:
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(START).not_valid_after(END)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(_ski(key), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                   _ski(issuer_key)), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        if email:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.RFC822Name(email)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


# A CRL of a million entries through CertificateRevocationListBuilder takes minutes; the
# TBSCertList (RFC 5280 5.1) is simple enough to encode directly and sign once.
def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _time(moment: dt.datetime) -> bytes:
    return _tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())


_SHA256_RSA = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a864886f70d01010b")) + b"\x05\x00")
_SHA256_ECDSA = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a8648ce3d040302")))


def big_crl(issuer: str, issuer_key: Any, serials: Sequence[int], number: int) -> bytes:
    """A v2 CRL (RFC 5280 5.1) of ``issuer`` listing ``serials``, with cRLNumber and AKI."""
    revoked_at = _time(START + dt.timedelta(days=1))
    entries = b"".join(_tlv(0x30, _integer(s) + revoked_at) for s in serials)
    rsa_key = isinstance(issuer_key, rsa.RSAPrivateKey)
    algorithm = _SHA256_RSA if rsa_key else _SHA256_ECDSA
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer_key))
    extensions = _tlv(0x30, b"".join((
        _tlv(0x30, _tlv(0x06, bytes.fromhex("551d23")) + _tlv(0x04, aki.public_bytes())),
        _tlv(0x30, _tlv(0x06, bytes.fromhex("551d14"))
             + _tlv(0x04, x509.CRLNumber(number).public_bytes())),
    )))
    tbs = _tlv(0x30, b"".join((
        _integer(1), algorithm, _name(issuer).public_bytes(), _time(NOW - dt.timedelta(hours=1)),
        _time(NOW + dt.timedelta(days=7)), _tlv(0x30, entries) if entries else b"",
        _tlv(0xA0, extensions),
    )))
    if rsa_key:
        signature = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _tlv(0x30, tbs + algorithm + _tlv(0x03, b"\x00" + signature))


@dataclass
class Pki:
    """The path under test and the filler, all as DER."""

    root: bytes
    intermediate: bytes
    leaves: list[bytes]
    root_key: Any
    intermediate_key: Any
    filler_key: Any


def core(cache: Cache, samples: int) -> Pki:
    def rsa_key() -> Any:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    root_key = cache.key("root", rsa_key)
    inter_key = cache.key("intermediate", rsa_key)
    leaf_key = cache.key("leaf", rsa_key)
    filler_key = cache.key("filler", lambda: ec.generate_private_key(ec.SECP256R1()))
    root = cache.blob("root.der", lambda: _cert("Bench Root", "Bench Root", root_key, root_key,
                                                1, ca=True))
    inter = cache.blob("intermediate.der", lambda: _cert(
        "Bench Intermediate", "Bench Root", inter_key, root_key, 2, ca=True))
    leaves = [cache.blob(f"leaf{i}.der", lambda i=i: _cert(
        f"Leaf {i}", "Bench Intermediate", leaf_key, inter_key, 10_000_000 + i, ca=False,
        email=f"leaf{i}@bench.example")) for i in range(samples + 1)]
    return Pki(root, inter, leaves, root_key, inter_key, filler_key)


def other_ca(cache: Cache, pki: Pki, index: int) -> bytes:
    return cache.blob(f"ca{index}.der", lambda: _cert(
        f"Other CA {index}", "Bench Root", pki.filler_key, pki.root_key, 100 + index, ca=True))


def filler_leaf(cache: Cache, pki: Pki, index: int) -> bytes:
    return cache.blob(f"ee{index}.der", lambda: _cert(
        f"Correspondent {index}", "Bench Intermediate", pki.filler_key, pki.intermediate_key,
        1_000_000 + index, ca=False, email=f"user{index}@bench.example"))


def small_crl(cache: Cache, name: str, issuer: str, key: Any, seed: int) -> bytes:
    rng = random.Random(seed)
    serials = [rng.getrandbits(127) for _ in range(ENTRIES_PER_CRL)]
    return cache.blob(name, lambda: big_crl(issuer, key, serials, seed + 1))


# -- measuring --------------------------------------------------------------------------------
def _rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _check(cert: x509.Certificate, anchors: trust.TrustAnchors) -> trust.TrustResult:
    return trust.check(cert, anchors, purpose="sign")


def _reset_peak() -> None:
    """Make VmHWM the current RSS (Linux 4.0+, proc(5) clear_refs "5"); no-op elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        pass


@dataclass
class Figures:
    label: str
    load: float
    first: float
    cold: float
    warm: float
    peak_mib: float
    kept_mib: float
    py_peak_mib: float
    outcome: str


def measure(label: str, store: SqlStore, pki: Pki, mode: trust.RevocationMode,
            samples: int) -> Figures:
    leaves = [x509.load_der_x509_certificate(d) for d in pki.leaves]
    # The load, timed without tracemalloc (it slows every allocation several times over):
    # RSS growth at its peak and what stays after it.
    rss_before = _rss_kib()
    _reset_peak()
    t0 = time.perf_counter()
    anchors = load_anchors(store, revocation_mode=mode)
    load = time.perf_counter() - t0
    peak = (_rss_kib("VmHWM") - rss_before) / 1024
    kept = (_rss_kib() - rss_before) / 1024
    # Python's own allocations at the peak of a second, traced load (thrown away).
    tracemalloc.start()
    load_anchors(store, revocation_mode=mode)
    _size, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    t0 = time.perf_counter()
    result = _check(leaves[0], anchors)
    first = time.perf_counter() - t0
    colds = []
    for leaf in leaves[1:samples + 1]:
        t0 = time.perf_counter()
        _check(leaf, anchors)
        colds.append(time.perf_counter() - t0)
        if sum(colds) > BUDGET:
            break  # a pathological store: fewer samples rather than an endless run
    cache = TrustCache()
    cache.check(leaves[0], anchors, purpose="sign")
    warms = []
    for _ in range(max(samples, 20)):
        t0 = time.perf_counter()
        cache.check(leaves[0], anchors, purpose="sign")
        warms.append(time.perf_counter() - t0)
    outcome = "trusted" if result.trusted else f"untrusted ({result.reason})"
    outcome += f", revocation {result.revocation}"
    return Figures(label, load, first, statistics.median(colds), statistics.median(warms),
                   peak, kept, py_peak / 2**20, outcome)


@contextlib.contextmanager
def _path_store(pki: Pki) -> Iterator[SqlStore]:
    """A new SQLite store in a temp dir holding R (as root) and I; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="trust-bench-") as tmp:
        directory = Path(tmp)
        ensure_master_key(directory / "master.key")
        store = SqlStore.open(f"sqlite:///{directory / 'store.db'}", directory / "master.key",
                              check_schema=False, create=True)
        try:
            store.migrate()
            store.add_root(pki.root)
            store.add_certificate(pki.intermediate, source="bench")
            yield store
        finally:
            store.close()


def matrix_scenario(cache: Cache, pki: Pki, certs: int, crls: int, mode: trust.RevocationMode,
                    samples: int) -> Figures:
    with _path_store(pki) as store:
        others = max(0, crls - 2)
        in_store = min(others, certs // 2)
        for i in range(in_store):
            store.add_certificate(other_ca(cache, pki, i), source="bench")
        for i in range(max(0, certs - 2 - in_store)):
            store.add_certificate(filler_leaf(cache, pki, i), source="bench")
        store.add_crl(small_crl(cache, "crl-intermediate.der", "Bench Intermediate",
                                pki.intermediate_key, 1))
        if crls >= 2:
            store.add_crl(small_crl(cache, "crl-root.der", "Bench Root", pki.root_key, 2))
        for i in range(others):
            store.add_crl(small_crl(cache, f"crl-ca{i}.der", f"Other CA {i}",
                                    pki.filler_key, 100 + i))
        return measure(f"{certs:,} certs, {crls:,} CRLs", store, pki, mode, samples)


def big_scenario(cache: Cache, pki: Pki, entries: int, mode: trust.RevocationMode,
                 samples: int) -> Figures:
    rng = random.Random(entries)
    name = f"crl-big-{entries}.der"
    t0 = time.perf_counter()
    der = cache.blob(name, lambda: big_crl("Bench Intermediate", pki.intermediate_key,
                                           [rng.getrandbits(127) for _ in range(entries)], 7))
    made = time.perf_counter() - t0
    print(f"  ({name}: {len(der) / 2**20:.1f} MiB, ready in {made:.1f} s)", flush=True)
    del der
    with _path_store(pki) as store:
        store.add_crl(small_crl(cache, "crl-root.der", "Bench Root", pki.root_key, 2))
        t0 = time.perf_counter()
        store.add_crl((cache.dir / name).read_bytes(), source="bench")
        stored = time.perf_counter() - t0
        print(f"  (store.add_crl of the {entries:,}-entry CRL: {stored:.2f} s)", flush=True)
        return measure(f"1 CRL of {entries:,} entries", store, pki, mode, samples)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:9.2f}"


def report(rows: Sequence[Figures], baseline: float | None, header: bool = True) -> None:
    if header:
        print(f"{'scenario':<30}{'load ms':>10}{'first ms':>10}{'cold ms':>10}{'warm ms':>10}"
              f"{'peak MiB':>9}{'kept MiB':>9}{'py MiB':>8}{'cold/base':>10}  outcome")
    for f in rows:
        ratio = f"{f.cold / baseline:9.1f}x" if baseline else ""
        print(f"{f.label:<30}{_ms(f.load)} {_ms(f.first)} {_ms(f.cold)} {_ms(f.warm)}"
              f"{f.peak_mib:9.1f}{f.kept_mib:9.1f}{f.py_peak_mib:8.1f}{ratio:>10}  {f.outcome}",
              flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller series: 10 and 1,000 certificates, 1 and 100 CRLs, "
                             "a 10,000-entry CRL")
    parser.add_argument("--samples", type=int, default=5, help="distinct leaves for 'cold'")
    parser.add_argument("--big", default="10000,1000000",
                        help="entries of the single big CRL, comma-separated")
    parser.add_argument("--mode", default="soft-fail", choices=trust.REVOCATION_MODES,
                        help="[crl] revocation_mode of the trust decisions (default soft-fail)")
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "smimegate-trust-bench")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one scenario, JSON out
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples: at least 1")
    if args.child:
        cache = Cache(args.cache)
        pki = core(cache, args.samples)
        kind, _sep, sizes = args.child.partition(":")
        if kind == "big":
            figures = big_scenario(cache, pki, int(sizes), args.mode, args.samples)
        else:
            certs, crls = (int(n) for n in sizes.split(","))
            figures = matrix_scenario(cache, pki, certs, crls, args.mode, args.samples)
        print("RESULT " + json.dumps(figures.__dict__))
        return 0

    print(f"revocation_mode: {args.mode}; data cached in {args.cache}; "
          "each scenario in a process of its own", flush=True)
    cert_sizes = CERT_SIZES[:2] if args.quick else CERT_SIZES
    crl_sizes = CRL_SIZES[:2] if args.quick else CRL_SIZES
    bigs = [10000] if args.quick else [int(n) for n in args.big.split(",") if n]
    scenarios = [f"matrix:{certs},{crls}" for certs in cert_sizes for crls in crl_sizes]
    scenarios += [f"big:{entries}" for entries in bigs]
    rows: list[Figures] = []
    report([], None)
    for scenario in scenarios:
        # A process per scenario: no cache (parsed names, checked signatures) and no freed
        # memory carries over from one store to the next, as in a milter that just started.
        command = [sys.executable, __file__, "--child", scenario, "--samples",
                   str(args.samples), "--cache", str(args.cache), "--mode", args.mode]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            if line.startswith("RESULT "):
                rows.append(Figures(**json.loads(line[7:])))
                report(rows[-1:], rows[0].cold, header=False)
            else:
                print(line)
        if done.returncode != 0:
            print(f"  {scenario} failed: {done.stderr.strip()[-400:]}")
    if rows:
        print()
        print("summary (baseline: cold check with the smallest store, measured above)")
        report(rows, rows[0].cold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
