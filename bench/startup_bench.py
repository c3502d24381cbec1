"""Start-up time of the command line, beside the interpreter's own start-up in the same run.

    .venv/bin/python bench/startup_bench.py [--runs 9]

Runs each command as a fresh process ``--runs`` times, interleaved so that machine load hits
them alike, and prints in milliseconds the best and the median wall time and the best CPU time
(user + system, which load disturbs least), each also less the baseline (``python -c pass``),
and which heavy libraries the command imported (from ``python -X importtime``). The commands: ``smimegate --help``, and on an SQLite store made in a
temporary directory ``domain list``, ``cert list`` on the empty store and ``cert list`` with a
root and two end-entity certificates (that one validates paths, so it imports
pyhanko-certvalidator on purpose). Asserts nothing (issue 9 aims: --help under 0.15 s, a store
command under 0.3 s on the development machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.testpki import TestCA  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
HEAVY = ("cryptography", "asn1crypto", "pyhanko_certvalidator", "ldap3", "psycopg",
         "psycopg_pool", "Milter")


def _setup(directory: Path) -> tuple[Path, Path]:
    """An empty store and one with a root and two certificates; their config files."""
    configs = []
    for name in ("empty", "certs"):
        config = directory / f"{name}.toml"
        config.write_text(f'[store]\nurl = "sqlite:///{directory}/{name}.db"\n'
                          f'master_key_file = "{name}.key"\n')
        _smimegate(config, "db", "init")
        configs.append(config)
    ca = TestCA("Bench Root")
    pem = directory / "certs.pem"
    pem.write_bytes(ca.cert_pem() + ca.issue("a@example.com").cert_pem()
                    + ca.issue("b@example.com").cert_pem())
    _smimegate(configs[1], "root", "add", str(directory / "root.pem"), write=ca.cert_pem())
    _smimegate(configs[1], "cert", "import", str(pem))
    return configs[0], configs[1]


def _smimegate(config: Path, *argv: str, write: bytes | None = None) -> None:
    if write is not None:
        Path(argv[-1]).write_bytes(write)
    subprocess.run([PYTHON, "-m", "smimegate", "-c", str(config), *argv], check=True,
                   capture_output=True, cwd=ROOT)


def _time(argv: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system, from wait4) of one run; CPU time is the figure
    that machine load disturbs least."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv}: exit {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def _heavy(argv: list[str]) -> str:
    """The heavy top-level packages the command imports, by -X importtime."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True,
                          text=True, check=True, cwd=ROOT)
    found = set()
    for line in done.stderr.splitlines():
        name = line.rsplit("|", 1)[-1].strip()
        if name.split(".")[0] in HEAVY:
            found.add(name.split(".")[0])
    return ", ".join(sorted(found)) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    runs = parser.parse_args().runs
    env_cmd = [PYTHON, "-m", "smimegate"]
    with tempfile.TemporaryDirectory() as tmp:
        empty, certs = _setup(Path(tmp))
        commands = {
            "python -c pass (baseline)": [PYTHON, "-c", "pass"],
            "smimegate --help": [*env_cmd, "--help"],
            "smimegate domain list": [*env_cmd, "-c", str(empty), "domain", "list"],
            "smimegate cert list (empty)": [*env_cmd, "-c", str(empty), "cert", "list"],
            "smimegate cert list (3 certs)": [*env_cmd, "-c", str(certs), "cert", "list"],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                wall, cpu = _time(argv)
                walls[name].append(wall)
                cpus[name].append(cpu)
        base = min(walls["python -c pass (baseline)"])
        base_cpu = min(cpus["python -c pass (baseline)"])
        print(f"{runs} runs each, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
              "milliseconds")
        print(f"{'command':<32}{'wall best':>10}{'median':>8}{'-base':>7}"
              f"{'cpu best':>10}{'-base':>7}  heavy imports")
        for name, argv in commands.items():
            best, median, cpu = min(walls[name]), statistics.median(walls[name]), min(cpus[name])
            print(f"{name:<32}{best * 1000:>10.0f}{median * 1000:>8.0f}"
                  f"{(best - base) * 1000:>7.0f}{cpu * 1000:>10.0f}"
                  f"{(cpu - base_cpu) * 1000:>7.0f}  {_heavy(argv)}")


if __name__ == "__main__":
    main()
