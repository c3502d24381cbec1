"""Store lookup latency on SQLite and PostgreSQL with N users and certificates.

    .venv/bin/python bench/store_bench.py [--users 100000] [--samples 5000] [--backend both]

Fills each backend in bulk (users with properties, 1,000 domains, one synthetic certificate
row per user, plus a few real certificates imported through add_certificate), then times
through the real code path:
  - "certificates for this address": SqlStore.find_certificates(recipient)
  - "policy rows for sender + recipient": SqlStore.policy_rows([sender, recipient])
  - "effective policy, sender + recipient": those rows resolved into each address's
    effective policy (smimegate.store.policyrows.address_policy), as the milter does
and, as the baseline measured in the same run, a bare `SELECT 1` through the same connection
pool. Prints p50 / p99 in milliseconds and the ratio to the baseline; asserts nothing.
PostgreSQL is a private cluster (tests/fixtures/pgcluster.py) unless --pg-url is given.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

from smimegate.store import SqlStore  # noqa: E402
from smimegate.store.keys import ensure_master_key  # noqa: E402
from smimegate.store.policyrows import address_policy  # noqa: E402
from tests.fixtures.pgcluster import PgCluster, create_database  # noqa: E402
from tests.helpers.testpki import TestCA  # noqa: E402

DOMAINS = 1000
BATCH = 5000


def _email(i: int) -> str:
    return f"user{i}@d{i % DOMAINS}.example"


def fill(store: SqlStore, users: int, template_der: bytes) -> None:
    """Bulk-insert users, properties, domains and synthetic certificate rows."""
    now = int(time.time())
    with store._db.transaction() as cur:
        cur.many("INSERT INTO settings (name, value) VALUES (?, ?)",
                 [("encrypt_mode", "allow"), ("sign", "yes")])
        cur.many("INSERT INTO domains (name, created) VALUES (?, ?)",
                 [(f"d{d}.example", now) for d in range(DOMAINS)])
        cur.many("INSERT INTO domain_properties (domain, name, value) VALUES (?, ?, ?)",
                 [(f"d{d}.example", "locality", "internal" if d % 2 else "external")
                  for d in range(DOMAINS)])
    for start in range(0, users, BATCH):
        ids = range(start, min(users, start + BATCH))
        fps = [hashlib.sha256(b"synthetic %d" % i).hexdigest() for i in ids]
        with store._db.transaction() as cur:
            cur.many("INSERT INTO users (email, domain, enabled, created) VALUES (?, ?, ?, ?)",
                     [(_email(i), _email(i).split("@")[1], True, now) for i in ids])
            cur.many("INSERT INTO user_properties (email, name, value) VALUES (?, ?, ?)",
                     [(_email(i), "phone", f"+49{i:09d}") for i in ids]
                     + [(_email(i), "encrypt_mode", "mandatory") for i in ids if i % 3 == 0])
            cur.many(
                "INSERT INTO certificates (fingerprint, der, subject, issuer, serial, ski,"
                " not_before, not_after, is_ca, source, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(fp, template_der, f"CN={_email(i)}", "CN=Bench CA", format(i + 1, "X"),
                  fp[:40], now - 3600, now + 86400 * 365, False, "bench", now)
                 for i, fp in zip(ids, fps, strict=True)],
            )
            cur.many("INSERT INTO certificate_emails (email, fingerprint) VALUES (?, ?)",
                     [(_email(i), fp) for i, fp in zip(ids, fps, strict=True)])
    if store.dialect == "postgresql":
        with store._db.connection() as cur:
            cur.run("ANALYZE")
    else:
        with store._db.connection() as cur:
            cur.all("PRAGMA optimize")


def percentiles(call: Callable[[int], object], samples: int, users: int) -> tuple[float, float]:
    rng = random.Random(1)
    times = []
    for _ in range(samples):
        i = rng.randrange(users)
        t0 = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - t0) * 1000)
    q = statistics.quantiles(times, n=100)
    return q[49], q[98]


def run(name: str, url: str, key: Path, users: int, samples: int) -> None:
    store = SqlStore.open(url, key, check_schema=False, create=True)
    try:
        store.migrate()
        ca = TestCA("Bench CA")
        real = [ca.issue(f"real{i}@d{i}.example", "ec-p256") for i in range(5)]
        t0 = time.perf_counter()
        fill(store, users, real[0].cert.public_bytes(Encoding.DER))
        for ident in real:
            store.add_certificate(ident.cert, key=ident.key)
        print(f"{name}: filled {users} users and certificates in {time.perf_counter() - t0:.1f} s")
        assert len(store.find_certificates(_email(users - 1))) == 1
        assert store.find_certificates("real0@d0.example")[0].has_key

        def baseline(_: int) -> object:
            with store._db.connection() as cur:
                return cur.all("SELECT 1")

        def certs(i: int) -> object:
            return store.find_certificates(_email(i))

        def policy(i: int) -> object:
            return store.policy_rows([_email(i), _email((i * 7919) % users)])

        def effective(i: int) -> object:
            sender, recipient = _email(i), _email((i * 7919) % users)
            rows = store.policy_rows([sender, recipient])
            return address_policy(rows, sender), address_policy(rows, recipient)

        for fn in (baseline, certs, policy, effective):  # warm caches and prepared statements
            percentiles(fn, min(samples, 500), users)
        base50, base99 = percentiles(baseline, samples, users)
        print(f"  {'baseline SELECT 1':38s} p50 {base50:6.3f} ms  p99 {base99:6.3f} ms")
        for label, fn in (("certificates for this address", certs),
                          ("policy rows for sender + recipient", policy),
                          ("effective policy, sender + recipient", effective)):
            p50, p99 = percentiles(fn, samples, users)
            print(f"  {label:38s} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms"
                  f"  (x{p50 / base50:.1f} / x{p99 / base99:.1f} baseline)")
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", help="use this PostgreSQL database instead of a private one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smimegate-bench-") as tmp:
        key = Path(tmp) / "master.key"
        ensure_master_key(key)
        if args.backend in ("sqlite", "both"):
            run("sqlite", f"sqlite:///{tmp}/bench.db", key, args.users, args.samples)
        if args.backend in ("postgresql", "both"):
            if args.pg_url:
                run("postgresql", args.pg_url, key, args.users, args.samples)
            else:
                cluster = PgCluster().start()
                try:
                    url = create_database(cluster.url(), "bench")
                    run("postgresql", url, key, args.users, args.samples)
                finally:
                    cluster.destroy()
    return 0

if __name__ == "__main__":
    sys.exit(main())
