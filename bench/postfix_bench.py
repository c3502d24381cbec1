"""Postfix throughput with and without the smimegate milter (issue 5 item 12).

    .venv/bin/python bench/postfix_bench.py [--messages 1000] [--sessions 8] [--size 10240]
        [--noop] [--minimal] [--engines] [--rounds 3]

One run, several configurations of the same private Postfix (tests/e2e/mta.py, contrib/postfix
rendered in), each loaded by ``smtp-source`` and relaying to ``smtp-sink``:

  baseline   Postfix alone (no milter)
  unix:      + ``smimegate milter`` on a unix: socket
  inet:      + ``smimegate milter`` on an inet: loopback socket
  --workers  the ``[milter] workers`` values of those two (default 0: one per core); with
             several, each gets its rows (``unix: w=1`` ...)
  --noop     also the harness's no-op pymilter milter (tests/e2e/noop_milter.py), both sockets
  --minimal  also bench/minimal_milter.py (cryptography's PKCS7 builders, no store, no policy:
             the "minimal milter" of the issue), both sockets
  --engines  also the floor milter (header edits and body replaced, no S/MIME) on unix: on
             three protocol engines: pymilter on libmilter (minimal_milter.py --floor), and
             Python speaking the protocol itself (engine_floor.py) with a thread per
             connection or on one selector loop
  --rounds   how many times every configuration runs, in turn; each round has its own
             baseline and ratios are taken within a round (the median and range are printed)

Messages of --size bytes from alice@a.test (internal, with a key) to bob@b.test (outside, with
a trusted certificate) arrive on the ORIGINATING submission listener, so every one is signed
and encrypted. Printed for each: messages per second end to end (first message submitted to
last one accepted by the sink, from Postfix's log), the ratio to the baseline, latency
percentiles of Postfix's first ``delays=`` field (arrival to queue manager: the SMTP
transaction including every milter call) and the milter's added latency (the difference from
the baseline's percentile), how busy the host's CPUs were, and the milter process's CPU time
per message. Figures from the INTEROP.md notes and issue 5, for comparison: Postfix alone ~630
msg/s, a minimal PKCS7-builder milter ~375 (0.59), any pymilter milter on inet: 88. The inet:
stall had two halves, both removed: our replies waited for Nagle (TCP_NODELAY, runner.py), and
Postfix's last unanswered packets before cleanup took over the connection waited for our
delayed ACK (DATA is answered now, session.py; bench/inet_stall_bench.py shows it). The
harness's no-op milter has neither fix, so "noop inet:" still shows the stall. Prints, never
asserts.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cost_bench import tree_cpu  # noqa: E402
from tests.e2e.clients import make_pki  # noqa: E402
from tests.e2e.mta import (  # noqa: E402
    MilterProcess,
    Postfix,
    SmtpSink,
    noop_milter,
    open_dir,
    postfix_milter_spec,
    wait_for,
)
from tests.e2e.mta_fixtures import (  # noqa: E402
    ALICE,
    BOB,
    milter_config,
    provision,
    smimegate_milter,
)
from tests.helpers.ports import free_port  # noqa: E402

SENT = re.compile(r" ([0-9A-F]+): to=<[^>]*>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, "
                  r"(?:conn_use=\d+, )?delay=[0-9.]+, delays=([0-9.]+)/[0-9.]+/[0-9.]+/[0-9.]+, "
                  r".*status=sent")


@dataclass(frozen=True)
class Result:
    name: str
    rate: float
    delays: list[float]  # seconds, Postfix's "a" delay per message
    busy: float = 0.0  # share of the host's CPU time in use during the load (0..1)
    milter_cpu: float | None = None  # the milter process's CPU seconds per message


def _host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) a milter used so far, its worker processes included
    ([milter] workers); 0 when it is gone or unknown."""
    return 0.0 if pid is None else tree_cpu(pid)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def load(postfix: Postfix, messages: int, sessions: int, size: int,
         milter_pid: int | None = None) -> Result | None:
    """Send messages with smtp-source; return the end-to-end rate, per-message delays, the
    host's CPU use and the milter's CPU time per message."""
    before = len(SENT.findall(postfix.log()))
    host_before, cpu_before = _host_cpu(), _process_cpu(milter_pid)
    start = time.monotonic()
    subprocess.run(
        ["smtp-source", "-c", "-s", str(sessions), "-m", str(messages), "-l", str(size),
         "-f", ALICE, "-t", BOB, "-S", "bench", f"127.0.0.1:{postfix.submission_port}"],
        stdout=subprocess.DEVNULL, check=True, timeout=3600,
    )
    wait_for(lambda: len(SENT.findall(postfix.log())) >= before + messages,
             f"{messages} messages delivered", timeout=600, log=postfix.log_tail())
    elapsed = time.monotonic() - start
    host_after, cpu_after = _host_cpu(), _process_cpu(milter_pid)
    busy = (host_after[0] - host_before[0]) / max(1, host_after[1] - host_before[1])
    milter_cpu = (cpu_after - cpu_before) / messages if milter_pid is not None else None
    found = SENT.findall(postfix.log())[before:]
    return Result("", messages / elapsed, [float(a) for _, a in found], busy, milter_cpu)


def run_config(name: str, base: Path, milter: MilterProcess | None, args: argparse.Namespace,
               sink_port: int, round_: int = 0) -> Result:
    spec = milter.postfix_spec if milter else ""
    directory = base / f"postfix-{name.replace(' ', '-').replace(':', '')}-{round_}"
    postfix = Postfix(directory, milter=spec, mailboxes=[ALICE],
                      relay_port=sink_port, extra_main={"default_process_limit": "100"})
    try:
        if milter:
            milter.start()
        postfix.start()
        load(postfix, min(100, args.messages), args.sessions, args.size)  # warm-up
        pid = milter._proc.pid if milter and milter._proc else None
        result = load(postfix, args.messages, args.sessions, args.size, pid)
        assert result is not None
        if milter and name.startswith(("unix:", "inet:")) and (
                "action=sign+encrypt" not in milter.log()):
            print(f"warning: {name}: the milter did not sign+encrypt:\n{milter.log()[-1500:]}")
        return dataclasses.replace(result, name=name)
    finally:
        if milter:
            milter.signal_stop()
        postfix.stop()
        if milter:
            milter.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--rounds", type=int, default=3,
                        help="times every configuration is run, each round with its baseline")
    parser.add_argument("--workers", default="0",
                        help="comma-separated [milter] workers values for the smimegate rows "
                             "(default 0: one per core, the default configuration)")
    parser.add_argument("--noop", action="store_true",
                        help="also measure the harness's no-op pymilter milter (unix:, inet:)")
    parser.add_argument("--minimal", action="store_true",
                        help="also measure bench/minimal_milter.py, cryptography's PKCS7 "
                             "builders with no store or policy (unix:, inet:)")
    parser.add_argument("--engines", action="store_true",
                        help="also measure the floor milter (header edits and body replaced, "
                             "no S/MIME) on three protocol engines, unix:: pymilter on "
                             "libmilter (bench/minimal_milter.py --floor), and Python "
                             "reading the packets itself with a thread per connection or one "
                             "selector loop (bench/engine_floor.py)")
    args = parser.parse_args()

    base = open_dir("smimegate-bench-")
    pki_dir = base / "pki"
    pki_dir.mkdir()
    pki = make_pki(pki_dir)
    store = base / "store"
    store.mkdir()
    provision(milter_config(store, socket="inet:1@127.0.0.1", reinject_port=1, store=store), pki)
    sink = SmtpSink(base / "sink")
    # Counting only: smtp-sink without -d writes nothing.
    sink_proc = subprocess.Popen(["smtp-sink", "-u", "postfix", f"127.0.0.1:{sink.port}", "256"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    configs: list[tuple[str, MilterProcess | None]] = [("baseline", None)]
    sock_dir = base / "sock"
    sock_dir.mkdir(mode=0o755)
    if args.noop:
        for name, spec in (("noop unix:", f"unix:{sock_dir}/noop.sock"),
                           ("noop inet:", f"inet:{free_port()}@127.0.0.1")):
            configs.append((name, noop_milter(spec, base / "noop.log")))
    if args.minimal:
        for name, spec in (("minimal unix:", f"unix:{sock_dir}/minimal.sock"),
                           ("minimal inet:", f"inet:{free_port()}@127.0.0.1")):
            configs.append((name, MilterProcess(
                [sys.executable, str(ROOT / "bench" / "minimal_milter.py"), spec,
                 str(pki.alice.key), str(pki.alice.crt), str(pki.bob.crt)],
                spec, base / "minimal.log")))
    if args.engines:
        floor_argv = {"floor pymilter": [str(ROOT / "bench" / "minimal_milter.py"), "--floor"],
                      "floor threads": [str(ROOT / "bench" / "engine_floor.py"), "--threads"],
                      "floor loop": [str(ROOT / "bench" / "engine_floor.py"), "--loop"]}
        for name, (script, *mode) in floor_argv.items():
            spec = f"unix:{sock_dir}/{name.split()[1]}.sock"
            configs.append((f"{name} unix:", MilterProcess(
                [sys.executable, script, spec, *mode], spec, base / "floor.log")))
    counts = [int(w) for w in args.workers.split(",")]
    for workers in counts:
        for kind, spec in (("unix:", f"unix:{sock_dir}/milter.sock"),
                           ("inet:", f"inet:{free_port()}@127.0.0.1")):
            name = kind if len(counts) == 1 else f"{kind} w={workers}"
            conf_dir = base / f"milter-{kind.rstrip(':')}-{workers}"
            conf_dir.mkdir()
            config = milter_config(conf_dir, socket=spec, reinject_port=1, store=store)
            with config.open("a") as f:
                # Postfix's smtpd (user postfix) must be able to write a unix: socket.
                f.write(f'socket_mode = "0666"\nworkers = {workers}\n')
            milter = smimegate_milter(config, spec, conf_dir / "milter.log")
            assert milter.postfix_spec == postfix_milter_spec(spec)
            configs.append((name, milter))

    # Rounds, each running every configuration in turn with its own baseline: the host's
    # speed drifts (Postfix alone has measured 317 to 675 msg/s on this machine in one day),
    # so a ratio is taken within a round, and the median over the rounds is printed with
    # the least and greatest.
    rounds: list[dict[str, Result]] = []
    try:
        for round_ in range(args.rounds):
            results: dict[str, Result] = {}
            for name, process in configs:
                results[name] = run_config(name, base, process, args, sink.port, round_)
                for leftover in sock_dir.glob("*.sock"):
                    leftover.unlink(missing_ok=True)
            rounds.append(results)
            print(f"  (round {round_ + 1}: " + ", ".join(
                f"{name} {r.rate:.0f}" for name, r in results.items()) + " msg/s)",
                file=sys.stderr)
    finally:
        sink_proc.terminate()
        sink_proc.wait()
        if args.keep:
            print(f"work directory: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    print(f"\nPostfix -> smtp-sink, {args.messages} messages of {args.size} bytes, "
          f"{args.sessions} sessions, outbound sign + encrypt (RSA 2048, AES-256-CBC), "
          f"median of {args.rounds} rounds")
    print(f"{'config':<21} {'msg/s':>8} {'ratio':>6} {'ratio range':>12} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'added p50':>10} {'added p99':>10} {'host cpu':>9} {'milter cpu':>11}")
    for name, _ in configs:
        runs = [results[name] for results in rounds]
        bases = [results["baseline"] for results in rounds]
        ratios = sorted(r.rate / b.rate for r, b in zip(runs, bases, strict=True))
        median = statistics.median
        p50 = median(percentile(r.delays, 50) for r in runs) * 1000
        p99 = median(percentile(r.delays, 99) for r in runs) * 1000
        b50 = median(percentile(b.delays, 50) for b in bases) * 1000
        b99 = median(percentile(b.delays, 99) for b in bases) * 1000
        added = (f"{'':>10} {'':>10}" if name == "baseline"
                 else f"{p50 - b50:>10.0f} {p99 - b99:>10.0f}")
        cpus = [r.milter_cpu for r in runs if r.milter_cpu is not None]
        cpu = f"{median(cpus) * 1000:>8.2f} ms" if cpus else ""
        spread = f"{ratios[0]:.2f}-{ratios[-1]:.2f}"
        print(f"{name:<21} {median(r.rate for r in runs):>8.1f} {median(ratios):>6.2f} "
              f"{spread:>12} {p50:>7.0f} {p99:>7.0f} {added} "
              f"{median(r.busy for r in runs) * 100:>8.0f}% {cpu:>11}")
    print("(ratio: to the same round's baseline, median and range over the rounds; latency:"
          " Postfix's delays 'a' field, arrival to queue manager, 10 ms resolution; host cpu:"
          f" busy share of all {os.cpu_count()} CPUs during the load; milter cpu: the milter"
          " processes' user + system time per message; w=N: [milter] workers)")


if __name__ == "__main__":
    main()
