"""``[milter] workers``: several milter processes on one socket behind a supervisor (issue 11).

The real ``smimegate milter`` runner in a subprocess, with tests/milter/fakegateway.py (its
``Seen`` header names the process that served a message and how often it reloaded) or the
real gateway over SQLite, driven by the protocol client over the real sockets.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from smimegate.milter.runner import FORWARDED_STOP
from tests.helpers.ports import free_port
from tests.milter import client as mc
from tests.milter.client import MessageResult, MilterClient
from tests.milter.daemon import (
    PYTHON,
    ROOT,
    Daemon,
    fake_argv,
    has,
    libmilter_signal_thread,
    milter_argv,
    refuses_connections,
    session,
    start,
    thread_signals,
    write_config,
)

HEADERS = [("From", "alice@inside.test"), ("To", "bob@outside.test"), ("Subject", "hi")]
STARTED = re.compile(r"worker started; worker=(\d+) pid=(\d+) uid=\d+ jobs=(yes|no)")
CORES = len(os.sched_getaffinity(0))


def _eventually(what: str, check: Callable[[], object], daemon: Daemon,
                timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen; log:\n{daemon.output()}"
        time.sleep(0.05)


def _workers(daemon: Daemon) -> dict[int, int]:
    """Worker index -> pid of its latest start, from the log."""
    return {int(m.group(1)): int(m.group(2)) for m in STARTED.finditer(daemon.output())}


def _wait_workers(daemon: Daemon, count: int) -> dict[int, int]:
    _eventually(f"{count} workers", lambda: len(_workers(daemon)) == count, daemon)
    return _workers(daemon)


def _cpus(status: Path) -> set[int]:
    """The CPUs a process or thread may run on (Cpus_allowed_list of /proc/.../status)."""
    listed = re.search(r"^Cpus_allowed_list:\s*(\S+)$", status.read_text(), re.M)
    assert listed is not None
    cpus: set[int] = set()
    for part in listed.group(1).split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def _thread_cpus(pid: int) -> list[set[int]]:
    return [_cpus(task / "status") for task in Path(f"/proc/{pid}/task").iterdir()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0


def _seen(result: MessageResult) -> dict[str, str]:
    assert result.eom is not None and result.eom.reply.cmd == mc.SMFIR_CONTINUE, result
    (seen,) = [a for a in result.eom.of("addheader") if a.name.endswith("-Seen")]
    return dict(part.split("=", 1) for part in (seen.value or "").split() if "=" in part)


def _message(c: MilterClient, rcpt: str = "bob@outside.test", queue_id: str = "Q1"
             ) -> dict[str, str]:
    return _seen(c.message("a@inside.test", [rcpt], HEADERS, b"x\r\n", queue_id=queue_id))


def _connection_per_worker(spec: str, pids: set[int], stack: ExitStack,
                           daemon: Daemon) -> dict[int, MilterClient]:
    """Open connections (each sends a message to learn which worker serves it) until every
    worker in ``pids`` holds one; the kernel chooses, so this may take a few."""
    held: dict[int, MilterClient] = {}
    deadline = time.monotonic() + 30
    n = 0
    while set(held) != pids:
        assert time.monotonic() < deadline, f"workers served: {sorted(held)}\n{daemon.output()}"
        c = stack.enter_context(session(spec))
        n += 1
        pid = int(_message(c, queue_id=f"QPROBE{n}")["pid"])
        assert pid in pids, (pid, pids)
        held.setdefault(pid, c)
    return held


def _serving_pid(c: MilterClient, spec: str, pids: set[int], daemon: Daemon) -> int:
    """Which of ``pids`` holds the server side of the inet: connection ``c`` (/proc/net/tcp
    and the processes' descriptors): for the real gateway, whose replies do not say."""
    assert c._sock is not None
    local_port = c._sock.getsockname()[1]
    milter_port = int(spec.split(":")[1].split("@")[0])
    deadline = time.monotonic() + 10
    while True:
        inodes = set()
        for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = row.split()  # sl local_address rem_address st ... inode
            if (int(fields[1].split(":")[1], 16) == milter_port
                    and int(fields[2].split(":")[1], 16) == local_port):
                inodes.add(f"socket:[{fields[9]}]")
        for pid in pids:
            for name in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{name}") in inodes:
                        return pid
                except OSError:
                    continue  # closed meanwhile
        assert time.monotonic() < deadline, f"no worker holds the connection\n{daemon.output()}"
        time.sleep(0.02)


def _real_connection_per_worker(spec: str, pids: set[int], stack: ExitStack,
                                daemon: Daemon) -> dict[int, MilterClient]:
    """As _connection_per_worker, for the real gateway (inet: only)."""
    held: dict[int, MilterClient] = {}
    deadline = time.monotonic() + 30
    while set(held) != pids:
        assert time.monotonic() < deadline, f"workers served: {sorted(held)}\n{daemon.output()}"
        c = stack.enter_context(session(spec))
        held.setdefault(_serving_pid(c, spec, pids, daemon), c)
    return held


def _spec(kind: str, tmp_path: Path) -> str:
    return (f"unix:{tmp_path}/milter.sock" if kind == "unix"
            else f"inet6:{free_port()}@::1" if kind == "inet6"
            else f"inet:{free_port()}@127.0.0.1")


def _supervised(argv: list[str], tmp_path: Path, spec: str, config: Path
                ) -> Iterator[tuple[Daemon, str, Path]]:
    """Start ``argv``; at the end kill it and any worker it left (a worker outlives its
    killed supervisor only until it notices)."""
    daemon = start(argv, tmp_path / "milter.log", spec)
    try:
        yield daemon, spec, config
    finally:
        for pid in _workers(daemon).values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        daemon.stop()


@pytest.fixture()
def two(tmp_path: Path) -> Iterator[tuple[Daemon, str, Path]]:
    """The fake milter with workers = 2 on inet:."""
    spec = _spec("inet", tmp_path)
    config = write_config(tmp_path, spec, workers=2)
    yield from _supervised(fake_argv(config), tmp_path, spec, config)


@pytest.fixture()
def real_two(tmp_path: Path) -> Iterator[tuple[Daemon, str, Path]]:
    """``smimegate milter`` itself (the real gateway, an SQLite store) with workers = 2."""
    spec = _spec("inet", tmp_path)
    config = write_config(tmp_path, spec, workers=2)
    done = subprocess.run([PYTHON, "-m", "smimegate", "-c", str(config), "db", "init"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    yield from _supervised(milter_argv(config), tmp_path, spec, config)


FORGED = [("From", "alice@inside.test"), ("X-Reloaded-Foo", "forged"),
          ("X-Smimegate-Info-Signer-ID-0-0", "forged"), ("Subject", "hi")]


def _stripped(c: MilterClient, queue_id: str = "QREAL") -> list[str]:
    """The real gateway on one message with forged result headers: the names it deletes."""
    r = c.message("a@x.test", ["b@y.test"], FORGED, b"x\r\n", queue_id=queue_id)
    assert r.eom is not None and r.eom.reply.cmd in (mc.SMFIR_CONTINUE, mc.SMFIR_ACCEPT), r
    return sorted(a.name for a in r.eom.of("chgheader") if not a.value)


@pytest.mark.parametrize("kind", ["inet", "inet6", "unix"])
def test_two_workers_serve_one_socket_and_stop_cleanly(tmp_path: Path, kind: str) -> None:
    spec = _spec(kind, tmp_path)
    config = write_config(tmp_path, spec, workers=2)
    daemon = start(fake_argv(config), tmp_path / "milter.log", spec)
    try:
        pids = _wait_workers(daemon, 2)
        assert len(set(pids.values())) == 2 and daemon.proc.pid not in pids.values()
        for pid in pids.values():  # children of the supervisor, in process groups of their own
            stat_fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            assert int(stat_fields[1]) == daemon.proc.pid  # ppid
            assert int(stat_fields[2]) == pid  # pgrp
        with ExitStack() as stack:
            held = _connection_per_worker(spec, set(pids.values()), stack, daemon)
            assert len(held) == 2
            # [milter] cpu_affinity (default): each worker, every thread of it (libmilter's
            # for the connection held open too), on a CPU of its own, taken in turn from the
            # supervisor's.
            allowed = sorted(_cpus(Path(f"/proc/{daemon.proc.pid}/status")))
            for index, pid in pids.items():
                mine = {allowed[index % len(allowed)]}
                assert all(cpus == mine for cpus in _thread_cpus(pid)), (index, mine)
                assert f"worker={index} pid={pid} uid={os.getuid()} jobs=no cpu={min(mine)}" \
                    in daemon.output()
            # The stop the supervisor passes on (SIGRTMIN+1 for SIGTERM) is caught by the
            # worker's main thread alone; libmilter's signal thread, which sigwait()s for
            # SIGTERM itself, has it blocked, so it can never take a passed-on stop.
            forwarded = FORWARDED_STOP[signal.SIGTERM]
            for pid in pids.values():
                masks = thread_signals(pid)
                blocked, caught = masks[pid]
                assert has(caught, forwarded) and not has(blocked, forwarded)
                assert has(masks[libmilter_signal_thread(pid)][0], forwarded)
        assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        daemon.stop()
    out = daemon.output()
    assert f"socket={spec} pid={daemon.proc.pid}" in out and "workers=2" in out
    assert out.count("worker stopped;") == 2 and "status=0" in out
    assert out.count("smimegate: stopping; signal=SIGTERM in_progress=0") == 2, out
    assert "smimegate: stopped; workers_failed=0" in out
    assert "warning" not in out.replace("warning: running as root", "")
    if kind == "unix":
        assert not (tmp_path / "milter.sock").exists()


def test_stop_drains_the_transactions_in_progress_in_every_worker(
    real_two: tuple[Daemon, str, Path]
) -> None:
    daemon, spec, _ = real_two
    pids = set(_wait_workers(daemon, 2).values())
    with ExitStack() as stack:
        held = _real_connection_per_worker(spec, pids, stack, daemon)
        for pid, c in held.items():  # a transaction open in each worker: body not yet sent
            c.mail("a@x.test", macros={"i": f"QOPEN{pid}"})
            assert c.rcpt("b@y.test") == mc.Reply(mc.SMFIR_CONTINUE)
            c.header("X-Smimegate-Info-Signer-ID-0-0", "forged")
            c.eoh()
        daemon.proc.send_signal(signal.SIGTERM)
        _eventually("both stopping", lambda: daemon.output().count(
            "smimegate: stopping; signal=SIGTERM in_progress=1") == 2, daemon)
        # No new connections once every worker began its stop.
        _eventually("connections refused", lambda: refuses_connections(spec), daemon,
                    timeout=3)
        for c in held.values():  # each goes on and gets its reply, edits included
            c.body(b"x\r\n")
            done = c.eom()
            assert done.reply.cmd in (mc.SMFIR_CONTINUE, mc.SMFIR_ACCEPT)
            assert [a.name for a in done.of("chgheader")] == ["X-Smimegate-Info-Signer-ID-0-0"]
        assert daemon.proc.wait(30) == 0
    out = daemon.output()
    assert out.count("smimegate: drained; finished=yes cut=0") == 2
    assert all(f"QOPEN{pid}: smimegate: " in out for pid in pids)
    assert "transactions cut" not in out


def test_killed_worker_restarts_with_back_off_and_the_others_serve_on(
    real_two: tuple[Daemon, str, Path]
) -> None:
    daemon, spec, _ = real_two
    first = _wait_workers(daemon, 2)
    os.kill(first[1], signal.SIGKILL)
    with session(spec) as c:  # served meanwhile, by worker 0 or the new worker 1
        assert _stripped(c) == ["X-Smimegate-Info-Signer-ID-0-0"]
    _eventually("restart", lambda: _workers(daemon)[1] != first[1], daemon)
    second = _workers(daemon)[1]
    os.kill(second, signal.SIGKILL)  # dies again at once: twice the wait
    _eventually("second restart", lambda: _workers(daemon)[1] != second, daemon)
    out = daemon.output()
    assert (f"warning: worker died; starting it again; worker=1 pid={first[1]} "
            "signal=SIGKILL restart_in=0.5") in out
    assert (f"warning: worker died; starting it again; worker=1 pid={second} "
            "signal=SIGKILL restart_in=1.0") in out
    assert _workers(daemon)[0] == first[0] and _alive(first[0])
    with ExitStack() as stack:
        held = _real_connection_per_worker(spec, set(_workers(daemon).values()), stack, daemon)
        for c in held.values():  # both serve, the restarted one included
            assert _stripped(c) == ["X-Smimegate-Info-Signer-ID-0-0"]
    assert daemon.stop(signal.SIGTERM, timeout=30) == 0


def test_sigusr1_reaches_every_worker_and_a_restarted_one(
    real_two: tuple[Daemon, str, Path]
) -> None:
    daemon, spec, config = real_two
    pids = _wait_workers(daemon, 2)
    config.write_text(config.read_text().replace(
        "[milter]", '[milter]\nheader_prefix = "X-Reloaded-"'))
    daemon.proc.send_signal(signal.SIGUSR1)
    _eventually("two reloads", lambda: daemon.output().count("configuration reloaded") == 2,
                daemon)
    with ExitStack() as stack:
        held = _real_connection_per_worker(spec, set(pids.values()), stack, daemon)
        for c in held.values():  # every worker strips the new prefix, not the old one
            assert _stripped(c) == ["X-Reloaded-Foo"]
    # A worker started after the reload runs the reloaded configuration too.
    os.kill(pids[0], signal.SIGKILL)
    _eventually("restart", lambda: _workers(daemon)[0] != pids[0], daemon)
    _eventually("third reload", lambda: daemon.output().count("configuration reloaded") == 3,
                daemon)
    with ExitStack() as stack:
        held = _real_connection_per_worker(spec, set(_workers(daemon).values()), stack, daemon)
        assert _stripped(held[_workers(daemon)[0]]) == ["X-Reloaded-Foo"]
    assert "reload passed on; workers=2" in daemon.output()
    assert daemon.stop(signal.SIGTERM, timeout=30) == 0


def _uids(pid: int) -> list[str]:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]


def test_workers_start_after_the_privilege_drop(tmp_path: Path) -> None:
    # No skip (project rule): the drop needs root, and CI runs as root.
    assert os.geteuid() == 0, "run the suite as root (as CI does) to test the privilege drop"
    spec = _spec("unix", tmp_path)
    config = write_config(tmp_path, spec, workers=2, user="nobody", socket_mode="0666")
    daemon = start(fake_argv(config), tmp_path / "milter.log", spec)
    try:
        pids = _wait_workers(daemon, 2)
        assert _uids(daemon.proc.pid) == ["65534"] * 4
        for pid in pids.values():
            assert _uids(pid) == ["65534"] * 4
        os.kill(pids[1], signal.SIGKILL)  # a worker started later: never root either
        _eventually("restart", lambda: _workers(daemon)[1] != pids[1], daemon)
        assert _uids(_workers(daemon)[1]) == ["65534"] * 4
        with ExitStack() as stack:
            _connection_per_worker(spec, set(_workers(daemon).values()), stack, daemon)
        assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        daemon.stop()
    assert daemon.output().count("uid=65534") == 4  # supervisor, two workers, the restart


def test_workers_stop_when_the_supervisor_is_killed(two: tuple[Daemon, str, Path]) -> None:
    daemon, spec, _ = two
    pids = _wait_workers(daemon, 2)
    daemon.proc.kill()
    daemon.proc.wait(5)
    for pid in pids.values():
        _eventually(f"worker {pid} gone", lambda pid=pid: not _alive(pid), daemon, timeout=20)
    assert daemon.output().count("stopping; signal=orphaned in_progress=0") == 2
    assert refuses_connections(spec)


def test_socket_activation_fd3_with_two_workers(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    spec = f"inet:{listener.getsockname()[1]}@127.0.0.1"
    config = write_config(tmp_path, "fd:3", workers=2)
    launcher = (f"import os, sys; os.dup2({listener.fileno()}, 3); "
                "os.execv(sys.argv[1], sys.argv[1:])")
    daemon = start([PYTHON, "-c", launcher, *fake_argv(config)], tmp_path / "milter.log",
                   None, pass_fds=[listener.fileno()])
    listener.close()
    try:
        pids = _wait_workers(daemon, 2)
        with ExitStack() as stack:
            assert len(_connection_per_worker(spec, set(pids.values()), stack, daemon)) == 2
        assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        daemon.stop()
    assert "socket=fd:3" in daemon.output()


def test_a_worker_that_cannot_start_stops_start_up(tmp_path: Path) -> None:
    spec = f"unix:{tmp_path}/milter.sock"
    config = write_config(tmp_path, spec, workers=2)
    done = subprocess.run([*fake_argv(config), "--unreachable-store"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 1, done
    assert ("worker 0 could not start: StoreUnavailable: postgresql://db.example/smimegate: "
            "connection refused") in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "milter.sock").exists()


def test_cpu_affinity_false_leaves_the_workers_to_the_kernel(tmp_path: Path) -> None:
    spec = _spec("unix", tmp_path)
    config = write_config(tmp_path, spec, workers=2, cpu_affinity=False)
    daemon = start(fake_argv(config), tmp_path / "milter.log", spec)
    try:
        pids = _wait_workers(daemon, 2)
        allowed = _cpus(Path(f"/proc/{daemon.proc.pid}/status"))
        for pid in pids.values():
            assert all(cpus == allowed for cpus in _thread_cpus(pid))
        assert daemon.output().count("cpu=any") == 2
        assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        daemon.stop()


def test_workers_1_is_one_process(tmp_path: Path) -> None:
    spec = _spec("inet", tmp_path)
    config = write_config(tmp_path, spec, workers=1)
    daemon = start(fake_argv(config), tmp_path / "milter.log", spec)
    try:
        with session(spec) as c:
            assert int(_message(c)["pid"]) == daemon.proc.pid
        children = Path(f"/proc/{daemon.proc.pid}/task/{daemon.proc.pid}/children").read_text()
        assert children.split() == []
        # As before workers existed: not pinned (cpu_affinity is for workers > 1).
        assert _cpus(Path(f"/proc/{daemon.proc.pid}/status")) == os.sched_getaffinity(0)
        assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        daemon.stop()
    assert "worker" not in daemon.output()


def test_default_is_one_worker_per_core(tmp_path: Path) -> None:
    spec = _spec("inet", tmp_path)
    daemon = start(fake_argv(write_config(tmp_path, spec)), tmp_path / "milter.log", spec)
    try:
        if CORES > 1:
            assert len(_wait_workers(daemon, CORES)) == CORES
            assert f"workers={CORES}" in daemon.output()
        else:
            assert "worker" not in daemon.output()
        assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        daemon.stop()


# -- the real gateway ---------------------------------------------------------------------------


def test_real_milter_runs_background_jobs_in_one_worker(tmp_path: Path) -> None:
    spec = _spec("inet", tmp_path)
    sms_file = tmp_path / "sms.txt"
    config = write_config(tmp_path, spec, workers=2, tables=(
        '[sms]\ntransport = "file"\nfile = "sms.txt"\n[queue]\ninterval = 1\n'))
    done = subprocess.run([PYTHON, "-m", "smimegate", "-c", str(config), "db", "init"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    from smimegate.delivery.queue import SMS, SmsJob
    from smimegate.store import SqlStore

    daemon = start(milter_argv(config), tmp_path / "milter.log", spec)
    store = SqlStore.open(f"sqlite:///{tmp_path}/smimegate.db", tmp_path / "master.key")
    try:
        pids = _wait_workers(daemon, 2)
        store.enqueue(SMS, SmsJob("dave@partner.test", "+4917099887766", "pw 1").payload())
        _eventually("SMS delivery", lambda: not store.list_queue(), daemon)
        out = daemon.output()
        assert out.count("background jobs;") == 1
        assert re.search(r"worker started; worker=0 pid=\d+ uid=\d+ jobs=yes", out)
        assert re.search(r"worker started; worker=1 pid=\d+ uid=\d+ jobs=no", out)
        # The real gateway serves in both workers.
        with ExitStack() as stack:
            for pid in pids.values():
                assert _alive(pid)
            for _ in range(6):
                c = stack.enter_context(session(spec))
                r = c.message("a@inside.test", ["bob@outside.test"], HEADERS, b"x\r\n")
                assert r.eom is not None and r.eom.reply.cmd == mc.SMFIR_CONTINUE
        # Worker 0 restarted: the jobs come back with it, still once.
        os.kill(pids[0], signal.SIGKILL)
        _eventually("restart", lambda: _workers(daemon)[0] != pids[0], daemon)
        _eventually("jobs again", lambda: daemon.output().count("background jobs;") == 2,
                    daemon)
        store.enqueue(SMS, SmsJob("erin@partner.test", "+4917099887700", "pw 2").payload())
        _eventually("second SMS", lambda: not store.list_queue(), daemon)
        assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        store.close()
        daemon.stop()
    lines = sms_file.read_text().splitlines()
    assert [line.split("\t")[1:] for line in lines] == [
        ["+4917099887766", "pw 1"], ["+4917099887700", "pw 2"]]


def test_every_worker_flushes_counters_log_lines_and_a_heartbeat(tmp_path: Path) -> None:
    spec = _spec("inet", tmp_path)
    config = write_config(tmp_path, spec, workers=2, stats_interval=1)
    done = subprocess.run([PYTHON, "-m", "smimegate", "-c", str(config), "db", "init"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    from smimegate.store import SqlStore
    from smimegate.store.operations import operations_of

    daemon = start(milter_argv(config), tmp_path / "milter.log", spec)
    store = SqlStore.open(f"sqlite:///{tmp_path}/smimegate.db", tmp_path / "master.key")
    ops = operations_of(store)
    try:
        _wait_workers(daemon, 2)
        _eventually("two heartbeats", lambda: len(ops.workers()) == 2, daemon)
        for _ in range(6):
            with session(spec) as c:
                r = c.message("a@inside.test", ["bob@outside.test"], HEADERS, b"x\r\n")
                assert r.eom is not None
        _eventually("six counted", lambda: sum(n for *_, n, _us in ops.totals()) == 6, daemon)
        _eventually("six lines", lambda: len(ops.log_lines()) == 6, daemon)
        logged = [ln for ln in daemon.output().splitlines() if "result=" in ln]
        stored = {ln.line for ln in ops.log_lines()}
        assert len(logged) == 6 and all(any(s in ln for s in stored) for ln in logged)
        assert sum(n for _d, _le, n in ops.latency_totals()) == 6
        assert sorted(w.worker for w in ops.workers()) == [0, 1]
        assert daemon.stop(signal.SIGTERM, timeout=30) == 0
        assert ops.workers() == []  # stopped cleanly: not shown as down
    finally:
        store.close()
        daemon.stop()


# -- the supervisor's small pieces ------------------------------------------------------------


@pytest.mark.parametrize(("pool_max", "workers", "expected"),
                         [(10, 2, 5), (10, 3, 4), (10, 16, 2), (1, 2, 2), (40, 4, 10)])
def test_workers_share_the_store_pool(pool_max: int, workers: int, expected: int) -> None:
    from smimegate.config import loads
    from smimegate.milter.supervisor import pool_size

    config = loads(f"[store]\npool_max = {pool_max}\n", "test.toml")
    assert pool_size(config, workers) == expected


def test_wait_status_as_a_log_field() -> None:
    from smimegate.milter.supervisor import describe_status

    pid = os.fork()
    if pid == 0:
        os._exit(3)
    assert describe_status(os.waitpid(pid, 0)[1]) == ("status", 3)
    pid = os.fork()
    if pid == 0:
        signal.pause()  # until killed
        os._exit(0)
    os.kill(pid, signal.SIGKILL)
    assert describe_status(os.waitpid(pid, 0)[1]) == ("signal", "SIGKILL")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=lambda sig: sig.name)
def test_the_supervisor_passes_a_stop_on_as_a_real_time_signal(sig: signal.Signals) -> None:
    """What a worker is sent for each stop signal: the real-time signal of
    runner.FORWARDED_STOP (never the signal itself, which libmilter's own signal thread in the
    worker sigwait()s for), received here by a stand-in worker that waits for either."""
    from smimegate.config import Config
    from smimegate.milter.runner import parse_socket
    from smimegate.milter.supervisor import Supervisor

    waited = {sig, *FORWARDED_STOP.values()}
    stand_in = subprocess.Popen(
        [PYTHON, "-c",
         "import signal, sys; s = set(map(int, sys.argv[1:])); "
         "signal.pthread_sigmask(signal.SIG_BLOCK, s); print('ready', flush=True); "
         "print(signal.sigtimedwait(s, 30).si_signo, flush=True)",
         *map(str, sorted(waited))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert stand_in.stdout is not None and stand_in.stdout.readline() == "ready\n"
        supervisor = Supervisor(Config(), parse_socket("inet:1@127.0.0.1"), None,
                                lambda config: None, workers=1, config_path=None,
                                explicit=False)
        supervisor.slots[0].pid = stand_in.pid
        supervisor._on_signal(sig)
        assert supervisor.stopping == sig.name
        assert int(stand_in.stdout.readline()) == FORWARDED_STOP[sig]
        assert stand_in.wait(10) == 0
    finally:
        stand_in.kill()
        stand_in.wait()
