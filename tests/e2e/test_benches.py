"""Every script in bench/ still runs: each one once with the smallest sizes it takes.

The benches are how speed and memory aims are measured (bench/README.md) and none of them is
part of the product, so nothing else would notice one that no longer starts after a change of
the code it drives. This runs each as `make bench` would, with tiny figures, and checks that it
exits 0 and prints the rows it is for. It asserts nothing about the figures themselves (no
timed assertions in tests); where a bench checks that the product did its job (postfix_bench's
warning when the milter did not sign and encrypt), that is asserted too. postfix_bench and
inet_stall_bench run a private Postfix, as tests/e2e does (root).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (script and arguments, lines the output must contain)
BENCHES: list[tuple[list[str], list[str]]] = [
    (["smime_bench.py", "--quick"], ["worst of ours:"]),
    (["pqc_bench.py", "--quick"], ["x rsa (out/in/size)", "parallel"]),
    (["gateway_bench.py", "--messages", "5"],
     ["outbound: sign + encrypt", "inbound: decrypt + verify", "warm     mean"]),
    (["store_bench.py", "--users", "50", "--samples", "5", "--backend", "sqlite"],
     ["baseline SELECT 1", "effective policy, sender + recipient"]),
    (["trust_bench.py", "--quick", "--samples", "5"],
     ["1,000 certs, 100 CRLs", "1 CRL of "]),
    (["ocsp_bench.py", "--samples", "5"], ["no-ocsp", "client warm", "responder"]),
    (["crl_bench.py", "--entries", "1000", "--backend", "sqlite"],
     ["baseline: cryptography builder alone", "crl create, next call"]),
    (["startup_bench.py", "--runs", "1"], ["smimegate cert list (3 certs)"]),
    (["cost_bench.py", "--messages", "5", "--rounds", "1"],
     ["rsa-2048 sign", "outbound", "inbound", "floor", "bound out", "bound in"]),
    (["milter_bench.py", "--messages", "20", "--workers", "1,2", "--rounds", "1"],
     ["1 outbound", "2 mixed", "2 unpinned inbound", "scaling:"]),
    (["postfix_bench.py", "--messages", "20", "--rounds", "1", "--noop", "--minimal",
      "--engines"],
     ["baseline", "noop unix:", "minimal inet:", "floor pymilter unix:", "floor threads unix:",
      "floor loop unix:", "unix:", "inet:"]),
    (["inet_stall_bench.py", "--messages", "10", "--sizes", "1024", "--variants", "plain,data"],
     ["baseline", "plain", "data"]),
]


@pytest.mark.parametrize(("argv", "expected"), BENCHES, ids=[argv[0] for argv, _ in BENCHES])
def test_bench_runs(argv: list[str], expected: list[str]) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / argv[0]), *argv[1:]],
                          cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    said = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, said
    assert "Traceback" not in done.stdout + done.stderr, said
    lines = done.stdout.splitlines()
    for text in expected:
        assert any(text in line for line in lines), f"no line with {text!r}\n{said}"
    # postfix_bench warns when a smimegate row's milter did not sign and encrypt.
    assert "did not sign+encrypt" not in done.stdout + done.stderr, said
