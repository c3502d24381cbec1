"""The inet: milter stall (issue 5 item 12): which side, which sizes, which remedy.

    .venv/bin/python bench/inet_stall_bench.py [--messages 200] [--sizes 1024,10240,30720]
        [--variants plain,nodelay,...] [--route-quickack]

Postfix (tests/e2e/mta.py, contrib/postfix) loaded by smtp-source, relaying to smtp-sink, with
a no-op pymilter milter run by this script (``serve``) on an inet: loopback socket, in
variants that each change one thing on the milter's side:

  plain      like the harness's no-op milter (tests/e2e/noop_milter.py): only envfrom and
               eom, so Postfix sends no headers or body (SMFIP_NOHDRS/NOBODY); Nagle on
  nodelay    + TCP_NODELAY on the listening socket (accepted sockets inherit it), as
               smimegate/milter/runner.py does
  body       + nodelay + connect/helo/header/eoh/body callbacks, each answered
  noreply    + nodelay + the same callbacks @noreply (Postfix does not wait for them)
  rcpt       + noreply + RCPT answered (as smimegate's session.py before this fix)
  data       + rcpt + DATA answered (as smimegate's session.py now)
  listen-qa  + noreply + TCP_QUICKACK set on the listening socket (remedy b)
  rcvbuf     + noreply + SO_RCVBUF 8 KB on the listening socket (remedy c)
  unix       data on a unix: socket, for reference

--route-quickack also runs every variant with ``quickack 1`` on the 127.x routes of the local
routing table (remedy a), restoring them afterwards even on failure. Prints messages per second
(first message submitted to last accepted by the sink) and the p50 of Postfix's 'a' delay, for
each size. A fixed ~40 ms per message (Linux's delayed-ACK timer) shows as a rate near
sessions / 0.04 s and a p50 of 40-50 ms. Prints, never asserts.

What it showed (Linux 6.18 in a Firecracker VM, Postfix 3.7; see smimegate/milter/session.py
``data``): every variant up to ``rcpt`` stalls ~40 ms per message at 1 KB as at 10 KB, so it
is not the body being split into several writes. Postfix buffers milter packets in a VSTREAM
and flushes them only when it waits for a reply. smtpd's last packets (the DATA-stage macros,
always sent, and SMFIC_DATA if negotiated) are flushed without a reply when smtpd hands the
milter connection to cleanup; cleanup's first write (headers, body, end of message) then
finds unacknowledged data, Nagle holds it, and the milter, which has nothing to send, delays
its ACK. Answering SMFIC_DATA (``data``) makes smtpd wait for a reply, which carries the ACK:
the stall is gone (~150 -> ~350 msg/s at 10 KB, as on unix:). ``quickack 1`` on the route
removes it too (the mechanism confirmed). TCP_QUICKACK on the listening socket and a small
SO_RCVBUF change nothing; SO_RCVLOWAT above a packet's size makes libmilter's poll() miss
small packets (Postfix times out and answers 451), so it is not offered here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = ("plain", "nodelay", "body", "noreply", "rcpt", "data", "listen-qa", "rcvbuf", "unix")


# ---------------------------------------------------------------------------------------------
# The milter (``inet_stall_bench.py serve SPEC VARIANT``)

def serve(spec: str, variant: str) -> None:
    import Milter
    import milter

    from smimegate.milter.runner import _find_listener, _same_address, parse_socket

    quiet = variant not in ("plain", "nodelay", "body")
    class Noop(Milter.Base):  # type: ignore[misc]
        def eom(self) -> int:
            self.addheader("X-Noop-Milter", self.getsymval("i") or "NOQUEUE")
            return int(Milter.ACCEPT)

    def callback(name: str) -> Callable[..., int]:
        def func(self: Any, *args: Any) -> int:
            return int(Milter.CONTINUE)
        func.__name__ = name
        return Milter.noreply(func) if quiet else func

    names = ("envfrom",) if variant in ("plain", "nodelay") else (
        "connect", "hello", "envfrom", "header", "eoh", "body")
    for name in names:
        setattr(Noop, name, callback(name))
    if variant in ("rcpt", "data"):
        # As smimegate's session: RCPT answered (a refusal may be known there) ...
        Noop.envrcpt = lambda self, *args: int(Milter.CONTINUE)
    if variant == "data":
        # ... and DATA answered too: smtpd's last packets get a reply (see the docstring).
        Noop.data = lambda self: int(Milter.CONTINUE)

    real_open = milter.opensocket

    def opensocket(rmsock: bool) -> None:
        real_open(rmsock)
        if spec.startswith("unix:"):
            return
        fd = _find_listener(_same_address(parse_socket(spec)))
        with socket.socket(fileno=os.dup(fd)) as sock:
            if variant != "plain":
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if variant == "listen-qa":
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            if variant == "rcvbuf":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)

    milter.opensocket = opensocket
    os.umask(0)
    Milter.factory = Noop
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("stall", spec, timeout=60)


# ---------------------------------------------------------------------------------------------
# The loopback routes' quickack (remedy a)

def _local_routes() -> list[str]:
    out = subprocess.run(["ip", "route", "show", "table", "local"], capture_output=True,
                         text=True, check=True).stdout
    return [line.strip() for line in out.splitlines()
            if line.startswith("local 127.") and " dev lo " in line]


@contextlib.contextmanager
def route_quickack() -> Iterator[None]:
    """quickack 1 on the local table's 127.x routes; the original routes back afterwards."""
    before = _local_routes()
    try:
        for line in before:
            subprocess.run(["ip", "route", "change", *line.split(), "table", "local",
                            "quickack", "1"], check=True)
        print("routes now:", *_local_routes(), sep="\n  ")
        yield
    finally:
        for line in before:
            subprocess.run(["ip", "route", "replace", *line.split(), "table", "local"],
                           check=False)
        after = _local_routes()
        print("routes restored:", *after, sep="\n  ")
        if after != before:
            print(f"warning: routes differ from before: {before}")


# ---------------------------------------------------------------------------------------------
# The load

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--sizes", default="1024,10240,30720")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--route-quickack", action="store_true")
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
        return
    args = parser.parse_args()

    from tests.e2e.mta import MilterProcess, Postfix, SmtpSink, open_dir
    from tests.e2e.mta_fixtures import ALICE, BOB
    from tests.helpers.ports import free_port

    sizes = [int(s) for s in args.sizes.split(",")]
    variants = args.variants.split(",")
    base = open_dir("smimegate-stall-")
    sink = SmtpSink(base / "sink")
    sink_proc = subprocess.Popen(["smtp-sink", "-u", "postfix", f"127.0.0.1:{sink.port}", "256"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: list[tuple[str, int, float, float]] = []

    def one(name: str, spec: str | None, size: int) -> None:
        milter = None
        if spec is not None:
            milter = MilterProcess([sys.executable, __file__, "serve", spec, name.split()[0]],
                                   spec, base / "milter.log")
        postfix = Postfix(base / f"pf-{len(rows)}", milter=milter.postfix_spec if milter else "",
                          mailboxes=[ALICE], relay_port=sink.port,
                          extra_main={"default_process_limit": "100"})
        try:
            if milter:
                milter.start()
            postfix.start()
            rate, p50 = load(postfix, args.messages, args.sessions, size, ALICE, BOB)
            rows.append((name, size, rate, p50))
            print(f"{name:<22} {size:>7} {rate:>8.1f} {p50:>7.0f}", flush=True)
        finally:
            if milter:
                milter.signal_stop()
            postfix.stop()
            if milter:
                milter.stop()
            shutil.rmtree(base / f"pf-{len(rows) - 1}", ignore_errors=True)

    def all_variants(suffix: str) -> None:
        for size in sizes:
            one(f"baseline{suffix}", None, size)
            for variant in variants:
                if variant == "unix":
                    spec = f"unix:{base}/stall.sock"
                    Path(f"{base}/stall.sock").unlink(missing_ok=True)
                else:
                    spec = f"inet:{free_port()}@127.0.0.1"
                one(f"{variant}{suffix}", spec, size)

    print(f"{'config':<22} {'size':>7} {'msg/s':>8} {'p50 ms':>7}")
    try:
        all_variants("")
        if args.route_quickack:
            with route_quickack():
                all_variants(" +route-qa")
    finally:
        sink_proc.terminate()
        sink_proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def load(postfix: Any, messages: int, sessions: int, size: int, sender: str,
         rcpt: str) -> tuple[float, float]:
    """Warm up, then send ``messages``; (msg/s, p50 of Postfix's 'a' delay in ms)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from postfix_bench import SENT, percentile

    from tests.e2e.mta import wait_for

    def send(count: int) -> float:
        before = len(SENT.findall(postfix.log()))
        start = time.monotonic()
        subprocess.run(["smtp-source", "-c", "-s", str(sessions), "-m", str(count), "-l",
                        str(size), "-f", sender, "-t", rcpt, "-S", "stall",
                        f"127.0.0.1:{postfix.submission_port}"],
                       stdout=subprocess.DEVNULL, check=True, timeout=600)
        def done() -> bool:
            return len(SENT.findall(postfix.log())) >= before + count

        wait_for(done, f"{count} delivered", timeout=300, log=postfix.log_tail())
        return time.monotonic() - start

    send(min(50, messages))
    before = len(SENT.findall(postfix.log()))
    elapsed = send(messages)
    delays = [float(a) for _, a in SENT.findall(postfix.log())[before:]]
    return messages / elapsed, percentile(delays, 50) * 1000


if __name__ == "__main__":
    main()
