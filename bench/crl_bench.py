"""`smimegate crl create` with many revocations, on SQLite and PostgreSQL.

    .venv/bin/python bench/crl_bench.py [--entries 20000,100000] [--backend both]

For each size N, on a fresh store with a built-in CA (EC P-256, as `ca create --key-type
ec-p256`), runs the command in-process through the console entry point, as a user would:
  - "first call": `crl create --revoke-file F` with N serials in F (records N revocations,
    then issues a CRL listing them all);
  - "next call": `crl create --revoke S` (one more; the CRL lists N + 1 entries);
and, as the baseline measured in the same run, cryptography's CertificateRevocationListBuilder
alone building and signing a CRL of the same N entries with the same key (RevokedCertificate-
Builder per entry, the list handed to the builder at once: the quickest use of that API).
Prints wall and CPU seconds and the ratio to the baseline; asserts nothing beyond checking
that each CRL lists what it should. PostgreSQL is a private cluster (tests/fixtures/pgcluster.py)
unless --pg-url names a server where databases may be created.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402

from smimegate.cli import main as cli_main  # noqa: E402
from smimegate.pki import authority  # noqa: E402
from smimegate.store import SqlStore  # noqa: E402
from smimegate.store.keys import ensure_master_key  # noqa: E402
from tests.fixtures.pgcluster import PgCluster, create_database  # noqa: E402

FIRST_SERIAL = 0x1000


def timed(call: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of call (CPU: this process only; the machine may be shared)."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def baseline(store: SqlStore, n: int) -> tuple[float, float]:
    ca = authority.load_ca(store)
    key = store.get_private_key(ca.record.intermediate_fingerprint)
    now = dt.datetime.now(dt.UTC)

    def build() -> object:
        revoked = [x509.RevokedCertificateBuilder().serial_number(FIRST_SERIAL + i)
                   .revocation_date(now).build() for i in range(n)]
        builder = x509.CertificateRevocationListBuilder(
            issuer_name=ca.intermediate.subject, last_update=now,
            next_update=now + dt.timedelta(days=365), revoked_certificates=revoked,
            extensions=[x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(1))])
        return builder.sign(key, hashes.SHA256())

    return timed(build)


def cli(config: Path, *argv: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main.main(["-c", str(config), *argv])
    if rc != 0:
        raise SystemExit(f"smimegate {' '.join(argv[:2])} failed ({rc}): "
                         f"{err.getvalue().strip()[:300]}")


def run(name: str, url_for: Callable[[int], str], key: Path, tmp: Path,
        sizes: list[int]) -> None:
    """Each size on a store of its own: url_for(n) names an empty database."""
    for n in sizes:
        url = url_for(n)
        config = tmp / f"{name}-{n}.toml"
        config.write_text(f'[store]\nurl = "{url}"\nmaster_key_file = "{key}"\n')
        cli(config, "db", "init")
        cli(config, "ca", "create", "--root-cn", f"Bench Root {n}", "--intermediate-cn",
            f"Bench CA {n}", "--key-type", "ec-p256")
        store = SqlStore.open(url, key)
        try:
            ca_name = authority.load_ca(store).name
            serials = tmp / f"serials-{n}.txt"
            serials.write_text("".join(f"{FIRST_SERIAL + i:X}\n" for i in range(n)))
            base_wall, base_cpu = baseline(store, n)
            first = timed(functools.partial(cli, config, "crl", "create", "--ca", ca_name,
                                            "--revoke-file", str(serials)))
            second = timed(functools.partial(cli, config, "crl", "create", "--ca", ca_name,
                                             "--revoke", "1"))
            crl = authority.current_crl(store, authority.load_ca(store, ca_name))
            assert crl is not None and len(crl) == n + 1, "the CRL lists every revocation"
        finally:
            store.close()
        print(f"{name}, {n} entries:")
        print(f"  {'baseline: cryptography builder alone':40s} wall {base_wall:6.2f} s"
              f"  cpu {base_cpu:6.2f} s")
        for label, (wall, cpu) in (("crl create, first call (records N)", first),
                                   ("crl create, next call (N + 1)", second)):
            print(f"  {label:40s} wall {wall:6.2f} s  cpu {cpu:6.2f} s"
                  f"  (x{wall / base_wall:.2f} baseline wall)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", default="20000,100000",
                        help="comma-separated CRL sizes (default 20000,100000)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", help="PostgreSQL URL of a user who may create databases (default: a "
                             "private cluster)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.entries.split(",")]
    with tempfile.TemporaryDirectory(prefix="smimegate-bench-") as name:
        tmp = Path(name)
        key = tmp / "master.key"
        ensure_master_key(key)
        if args.backend in ("sqlite", "both"):
            run("sqlite", lambda n: f"sqlite:///{tmp}/bench-{n}.db", key, tmp, sizes)
        if args.backend in ("postgresql", "both"):
            admin = args.pg_url
            cluster = None if admin else PgCluster().start()
            try:
                if cluster is not None:
                    admin = cluster.url()
                assert admin is not None
                run("postgresql", lambda n: create_database(admin, f"smimegate_crl_bench_{n}"),
                    key, tmp, sizes)
            finally:
                if cluster is not None:
                    cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
