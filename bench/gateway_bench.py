"""Per-message CPU of Gateway.process, cold vs warm caches (issue 5 item 12).

    .venv/bin/python bench/gateway_bench.py [--messages 300] [--size 10240] [--profile]

The store is built through the ``smimegate`` command line exactly as bench/postfix_bench.py
builds it (tests/e2e/mta_fixtures.provision): an SQLite file with a trusted root, the internal
sender alice@a.test with a key (imported PKCS#12) and the external recipient bob@b.test with a
trusted certificate. Every message is signed and encrypted (RSA 2048, AES-256-CBC), as in the
Postfix bench. Printed, per message (milliseconds):

  cold    every cache emptied before each message (Gateway.reload, what SIGUSR1 does): trust
          path validation, key unwrapping, policy rows and anchors each time
  warm    the caches as a running milter has them after the first message
  smime   the smimegate.smime sign + encrypt calls alone on the same entity: the floor that
          caching cannot go below

--profile prints the top of a cProfile of the warm (and cold) loop. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smimegate.config import load as load_config  # noqa: E402
from smimegate.milter.gateway import Gateway  # noqa: E402
from smimegate.milter.transaction import Envelope  # noqa: E402
from smimegate.smime import encrypt as smime_encrypt  # noqa: E402
from smimegate.smime import sign as smime_sign  # noqa: E402
from tests.e2e.clients import Pki, make_pki  # noqa: E402
from tests.e2e.mta import open_dir  # noqa: E402
from tests.e2e.mta_fixtures import ALICE, BOB, milter_config, provision  # noqa: E402


def message(size: int) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and a CRLF body of about ``size`` bytes, like smtp-source's."""
    headers = [("From", f"<{ALICE}>"), ("To", f"<{BOB}>"), ("Subject", "bench"),
               ("Message-ID", "<bench@a.test>"), ("Date", "Sun, 29 Nov 2026 00:00:00 +0000")]
    line = b"La de da de da 1. La de da de da 2. La de da de da 3. La de da de da 4.\r\n"
    body = (line * (size // len(line) + 1))[:size]
    return headers, body


def inbound_message(pki: Pki, size: int, capabilities: Sequence[str] | None = None
                    ) -> tuple[list[tuple[str, str]], bytes]:
    """bob (outside) signs and encrypts to alice: headers and body as the MTA hands them on.
    ``capabilities``: what bob's signature announces (None: the defaults)."""
    _, body = message(size)
    entity = b"Content-Type: text/plain\r\n\r\n" + body
    signed = smime_sign.sign(entity, pki.bob.private_key, pki.bob.cert, (pki.ca.cert,),
                             capabilities=capabilities)
    sealed = smime_encrypt.encrypt(signed, [smime_encrypt.Recipient(pki.alice.cert)])
    head, _, content = sealed.partition(b"\r\n\r\n")
    unfolded = re.sub(rb"\r\n[ \t]+", b" ", head).decode()
    entity_headers = [tuple(x.strip() for x in line.split(":", 1)) for line in
                      unfolded.split("\r\n")]
    headers = [("From", f"<{BOB}>"), ("To", f"<{ALICE}>"), ("Subject", "bench in"),
               ("Message-ID", "<bench-in@b.test>"), ("MIME-Version", "1.0"),
               *((n, v) for n, v in entity_headers)]
    return headers, content


def per_message(run: Callable[[], object], count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter()
        run()
        out.append(time.perf_counter() - start)
    return out


def show(name: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    print(f"{name:<8} mean {statistics.mean(ms):7.2f}  p50 {ms[len(ms) // 2]:7.2f}  "
          f"p99 {ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]:7.2f}  "
          f"({1000 / statistics.mean(ms):6.0f} msg/s in one thread)")


def profile(name: str, run: Callable[[], object], count: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(count):
        run()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("cumulative")
    stats.print_stats(25)
    # Below the recipes: the gateway's own work (lookups, caches, MIME, headers, log).
    stats.print_stats(r"smimegate/(milter|store|policy|pki|log)", 25)
    print(f"\n--- cProfile, {name}, {count} messages ---")
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    base = open_dir("smimegate-gwbench-")
    try:
        (base / "pki").mkdir()
        pki = make_pki(base / "pki")
        config_path = milter_config(base, socket="inet:1@127.0.0.1", reinject_port=1,
                                    store=base)
        provision(config_path, pki)
        config = load_config(config_path)
        gateway = Gateway.create(config)
        envelope = Envelope("BENCH", ALICE, (BOB,), client_addr="127.0.0.1",
                            daemon_name="ORIGINATING")
        headers, body = message(args.size)

        def process() -> None:
            outcome = gateway.process(envelope, headers, body)
            if "result=ok" not in outcome.log_line or "sign+encrypt" not in outcome.log_line:
                raise SystemExit(f"unexpected outcome: {outcome.log_line}")

        def cold() -> None:
            gateway.reload()
            process()

        identity = gateway.services.signing_identity(ALICE)
        choice = gateway.services.encryption_certificate(BOB)
        assert identity is not None and choice.certificate is not None
        entity = b"Content-Type: text/plain\r\n\r\n" + body
        target = [smime_encrypt.Recipient(choice.certificate, "rsa-pkcs1")]

        def smime() -> None:
            signed = smime_sign.sign(entity, identity.key, identity.certificate, identity.chain)
            smime_encrypt.encrypt(signed, target)

        in_envelope = Envelope("BENCHIN", BOB, (ALICE,), client_addr="192.0.2.7")
        in_headers, in_body = inbound_message(pki, args.size)

        def inbound() -> None:
            outcome = gateway.process(in_envelope, in_headers, in_body)
            line = outcome.log_line
            if "direction=inbound" not in line or "trusted=yes" not in line:
                raise SystemExit(f"unexpected inbound outcome: {line}")

        def inbound_cold() -> None:
            gateway.reload()
            inbound()

        process()  # imports, first connection
        inbound()
        count = args.messages
        print(f"Gateway.process of {args.size} bytes, SQLite store, {count} messages each "
              "(ms per message)")
        print("outbound: sign + encrypt (RSA 2048, AES-256-CBC)")
        show("cold", per_message(cold, max(20, count // 5)))
        show("warm", per_message(process, count))
        show("smime", per_message(smime, count))
        print("inbound: decrypt + verify + trust + harvest")
        show("cold", per_message(inbound_cold, max(20, count // 5)))
        show("warm", per_message(inbound, count))
        if args.profile:
            profile("outbound warm", process, count)
            profile("outbound cold", cold, max(20, count // 5))
            profile("inbound warm", inbound, count)
        gateway.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
