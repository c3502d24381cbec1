"""``[milter] workers`` > 1: several milter processes serving one listening socket (issue 11).

One Python process runs its libmilter threads under one GIL and so uses about one core, while
the MTA uses them all. With N workers the process started by ``smimegate milter`` becomes a
supervisor (single-threaded, it never runs libmilter or a store query itself):

1. Privileged set-up, as runner.py does it for one process (DESIGN.md Style 7): the gateway is
   made once (configuration, store, master key, reinjection key, directory password: anything
   wrong stops start-up with one line, as with one process); its store connections are then
   closed, keeping what was read. The listening socket is bound here (unix: stale file
   removed, ``socket_mode`` and owner set; inet:/inet6: SO_REUSEADDR and TCP_NODELAY, which
   accepted connections inherit, see runner.py "Sockets"; fd:N is taken as it is).
2. Privileges are dropped, then the workers are forked, so no worker ever runs as root, also
   one restarted later.
3. Each worker, pinned first to a CPU of its own when ``[milter] cpu_affinity`` (pin_cpu: a
   worker's libmilter threads hand its GIL over at every callback, cheaply on one core,
   expensively across cores), then: new store connections (SqlStore.reconnect: a child must
   not use its parent's connections), at most ``ceil([store] pool_max / workers)`` and at least
   jobs.JOB_POOL_MIN of them; libmilter is given the inherited socket as runner.py does for
   ``fd:N`` (a placeholder of the same family, the socket dup2()ed over it); then runner.serve,
   exactly as one process serves. Worker 0 also runs the background jobs (CRL download,
   delivery queue), so they run once per host; the CRLs it stores reach the other workers'
   caches within services.ANCHORS_MAX_AGE, as a `crl import` by the CLI does. Every worker
   flushes its own message counters, log lines and heartbeat (smimegate.milter.stats).

How several processes share one socket: every worker polls the same listening socket and
calls accept() on it, and the kernel hands each connection to one of them. The socket is
made non-blocking (O_NONBLOCK belongs to the open file, which all workers share): a worker
whose poll() woke for a connection another worker accepted first gets EAGAIN, on which
libmilter (8.17 listener.c, mi_listener) polls again instead of blocking in accept() (a
blocked accept would hold a stopping worker until the next connection). Accepted sockets do
not inherit O_NONBLOCK on Linux (accept(2)). SO_REUSEPORT would spread inet: connections too,
but not unix: or fd: ones; one shared socket works for all four.

Signals (the supervisor takes them synchronously with sigtimedwait, all blocked):

- SIGTERM / SIGINT / SIGHUP: the supervisor closes its copy of the socket, passes the signal
  to every worker, and each drains as one process does (runner.py "Stopping"); once every
  worker has stopped accepting, the socket is closed and peers get ECONNREFUSED. A second
  signal is passed on too (it cuts the workers' wait short, as with one process). A worker
  still running ``stop_timeout`` + KILL_GRACE seconds later is killed. The signal is passed
  on as a real-time signal (runner.FORWARDED_STOP: SIGRTMIN+1 for SIGTERM, +2 for SIGINT, +3
  for SIGHUP), which libmilter's own signal thread in the worker does not wait for: sent as
  itself, now and then it reached that thread instead of our handler, and libmilter then
  ended smfi_main with transactions still open (runner.py "Stopping").
- SIGUSR1: passed to every worker (each reloads its configuration, caches and logging); a
  worker started later reloads once at start, so that it runs what the others run.
- A worker that exits while the supervisor is not stopping is logged and started again after
  a back-off (BACKOFF_FIRST seconds, doubled for each further death of that worker that came
  within BACKOFF_RESET seconds of its start, at most BACKOFF_MAX). Nothing is lost meanwhile:
  the other workers go on accepting, connections wait in the socket's backlog, and the
  transactions the dead worker held are answered by the MTA per milter_default_action
  (tempfail in contrib/postfix), so the client sends them again.

Workers run in process groups of their own, so that a terminal's Ctrl-C (sent to the
foreground process group) reaches them once, through the supervisor, instead of twice; the
systemd unit uses KillMode=mixed for the same reason. A worker whose supervisor is gone
(SIGKILL) notices within runner.POLL and stops as on SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import Milter

from smimegate import log
from smimegate.config import Config
from smimegate.milter import runner
from smimegate.milter.jobs import JOB_POOL_MIN
from smimegate.milter.session import GatewayLike, Runtime, factory

_LOG = logging.getLogger("smimegate.milter.supervisor")

SUPERVISOR_SIGNALS = frozenset(runner.LIBMILTER_SIGNALS | {runner.RELOAD_SIGNAL, signal.SIGCHLD})
BACKOFF_FIRST = 0.5
"""Seconds before a worker that died is started again (doubled for each quick death)."""
BACKOFF_MAX = 60.0
BACKOFF_RESET = 60.0
"""A worker that ran at least this many seconds before it died starts again after
BACKOFF_FIRST: it was not dying at start."""
READY_TIMEOUT = 120.0
"""Seconds the first workers may take to start (store connections, libmilter)."""
KILL_GRACE = 30.0
"""Seconds beyond [milter] stop_timeout a stopping worker gets before it is killed: libmilter
(runner.LIBMILTER_STOP_WAIT) and the background jobs take some after the drain."""
TICK = 1.0


class _Reconnectable(Protocol):
    def close(self) -> None: ...

    def reconnect(self, pool_size: int) -> None: ...


def _store(gateway: GatewayLike) -> _Reconnectable | None:
    """The gateway's store when it can reconnect (the real one); None for tests' stand-ins
    that hold none."""
    store = getattr(gateway, "store", None)
    return store if store is not None and hasattr(store, "reconnect") else None


def pool_size(config: Config, workers: int) -> int:
    """Store connections one worker may open: its share of ``[store] pool_max``, at least
    JOB_POOL_MIN (the CRL job lock holds one; a slow query should not stall the worker)."""
    return max(JOB_POOL_MIN, math.ceil(config.store.pool_max / workers))


# ---------------------------------------------------------------------------------------------
# The listening socket, bound by the supervisor


@dataclass(frozen=True)
class SharedSocket:
    """The socket every worker accepts on, and the unix socket path to remove at exit."""

    sock: socket.socket
    unix_path: str = ""


def bind_socket(spec: runner.SocketSpec, config: Config,
                identity: runner.Identity | None) -> SharedSocket:
    """Bind and listen on ``spec`` (or take fd:N), non-blocking. Raises RunnerError."""
    runner.check_socket(spec)
    if spec.kind == "fd":
        try:
            sock = socket.socket(fileno=spec.fd)
        except OSError as exc:
            raise runner.RunnerError(f"fd:{spec.fd}: not an open socket ({exc.strerror})") from None
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            sock.detach()
            raise runner.RunnerError(f"fd:{spec.fd}: not a listening stream socket")
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return SharedSocket(sock)
    try:
        if spec.kind == "unix":
            return _bind_unix(spec, config, identity)
        return _bind_inet(spec)
    except OSError as exc:
        raise runner.RunnerError(f"{spec.spec}: cannot open the milter socket ({exc})") from None


def _bind_unix(spec: runner.SocketSpec, config: Config,
               identity: runner.Identity | None) -> SharedSocket:
    if runner._unix_socket_in_use(spec.path):
        raise runner.RunnerError(f"{spec.spec}: another milter is listening there")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(spec.path)  # stale: nobody answers on it (checked above)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.ExitStack() as on_failure:
        on_failure.callback(sock.close)
        sock.bind(spec.path)
        on_failure.callback(os.unlink, spec.path)
        sock.listen(socket.SOMAXCONN)
        os.chmod(spec.path, int(config.milter.socket_mode, 8))
        if identity is not None and os.geteuid() == 0:
            os.chown(spec.path, identity.uid, identity.gid)
        sock.setblocking(False)
        on_failure.pop_all()
    return SharedSocket(sock, spec.path)


def _bind_inet(spec: runner.SocketSpec) -> SharedSocket:
    family = socket.AF_INET6 if spec.kind == "inet6" else socket.AF_INET
    host = spec.host.strip("[]")  # libmilter takes inet6:PORT@[::1] too
    address = socket.getaddrinfo(host, spec.port, family, socket.SOCK_STREAM)[0][4]
    sock = socket.socket(family, socket.SOCK_STREAM)
    with contextlib.ExitStack() as on_failure:
        on_failure.callback(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libmilter does
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
        on_failure.pop_all()
    return SharedSocket(sock)


# ---------------------------------------------------------------------------------------------
# One worker process (runs in the forked child and never returns into the supervisor)


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs from the supervisor."""

    index: int
    workers: int
    config: Config
    config_path: str | None
    explicit: bool
    gateway: GatewayLike
    listen_fd: int
    supervisor_pid: int
    reloads: int  # SIGUSR1s the supervisor passed on before this worker started


def worker_main(setup: WorkerSetup, ready_fd: int | None) -> int:
    """Serve as one milter process does (runner.run after its set-up). Writes ``ok`` to
    ``ready_fd`` once libmilter is about to run, or ``error: ...`` when the start failed.
    Returns the exit code. Raises what runner.serve raises."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    os.setpgid(0, 0)  # see the module docstring: one Ctrl-C, not two
    config = setup.config
    # Before any thread starts: the threads made later (libmilter's too) inherit it.
    cpu = pin_cpu(setup.index) if config.milter.cpu_affinity and setup.workers > 1 else None
    jobs = None
    stats = None
    try:
        try:
            # Logging stays as the supervisor set it up: one syslog datagram (or stdout write)
            # per line keeps lines whole across processes, the syslog tag carries each
            # worker's pid, and a fallback warning is not repeated by every worker.
            store = _store(setup.gateway)
            if store is not None:
                store.reconnect(pool_size(config, setup.workers))
            runtime = Runtime(config, setup.gateway)
            Milter.factory = factory(runtime)
            runner._register()
            listener = runner._adopt_fd(setup.listen_fd)
            reloader = runner.Reloader(runtime, setup.config_path, setup.explicit)
            threading.Thread(target=reloader.serve, name="smimegate-reload", daemon=True).start()
            if setup.reloads:
                reloader.reload()
            if setup.index == 0:
                jobs = runner.start_jobs(setup.gateway, runtime)
            stats = runner.start_stats(setup.gateway, runtime, worker=setup.index)
        except Exception as exc:  # noqa: BLE001 - boundary of the worker's start
            text = f"{type(exc).__name__}: {exc}"
            _LOG.error(log.warning_line(None, "worker could not start",
                                        {"worker": setup.index, "error": text}))
            _tell(ready_fd, f"error: {text}")
            return 1
        _LOG.info(f"{log.TAG}: worker started; " + log.format_fields({
            "worker": setup.index, "pid": os.getpid(), "uid": os.getuid(),
            "jobs": jobs is not None, "cpu": "any" if cpu is None else cpu}))
        _tell(ready_fd, "ok")
        runner.serve(runtime, listener,
                     orphaned=lambda: os.getppid() != setup.supervisor_pid)
        return 0
    finally:
        if jobs is not None:
            jobs.stop()
        if stats is not None:
            stats.stop()
        runner.close_gateway(setup.gateway)
        _flush_logs()


def pin_cpu(index: int) -> int | None:
    """Run this process (its calling thread, and every thread it makes from now on) on the
    index-th of the CPUs it may run on, wrapping round; returns that CPU, or None when the
    system refuses (logged once; the kernel then places the worker).

    Why ([milter] cpu_affinity): the libmilter threads of one worker take turns at the GIL,
    one hand-over per callback. When they run on different cores, every hand-over wakes a
    thread on another core with cold caches; measured with bench/milter_bench.py on 2 cores,
    one worker used 1.5-1.6 ms of CPU per outbound message spread, 1.15 ms pinned, and that
    CPU is what a second worker needs. Workers on cores of their own still use every core."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        cpu = cpus[index % len(cpus)]
        os.sched_setaffinity(0, {cpu})
    except (OSError, IndexError) as exc:
        _LOG.warning(log.warning_line(None, "worker not pinned to a CPU", {
            "worker": index, "error": str(exc) or type(exc).__name__}))
        return None
    return cpu


def _tell(fd: int | None, line: str) -> None:
    """One status line to the supervisor (first start only); a supervisor that stopped
    listening is not an error of ours."""
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(fd, line.encode(errors="replace")[:4000] + b"\n")
    with contextlib.suppress(OSError):
        os.close(fd)


def _flush_logs() -> None:
    for handler in logging.getLogger(log.LOGGER_NAME).handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# The supervisor


@dataclass
class _Slot:
    """One worker place: its process (pid 0: none), and its back-off."""

    index: int
    pid: int = 0
    started: float = 0.0
    deaths: int = 0  # deaths in a row, each within BACKOFF_RESET of its start
    restart_at: float | None = None


def describe_status(status: int) -> tuple[str, object]:
    """A wait status as one log field: ("signal", "SIGKILL") or ("status", 1)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return "signal", signal.Signals(sig).name
        except ValueError:
            return "signal", sig
    return "status", os.waitstatus_to_exitcode(status)


class Supervisor:
    """Binds the socket, forks the workers, restarts them, passes signals on (module
    docstring). Run from the main thread of a process with no other threads."""

    def __init__(
        self,
        config: Config,
        spec: runner.SocketSpec,
        identity: runner.Identity | None,
        make_gateway: Callable[[Config], GatewayLike],
        *,
        workers: int,
        config_path: str | None,
        explicit: bool,
    ) -> None:
        self.config = config
        self.spec = spec
        self.identity = identity
        self.make_gateway = make_gateway
        self.config_path = config_path
        self.explicit = explicit
        self.slots = [_Slot(i) for i in range(workers)]
        self.reloads = 0
        self.stopping: str | None = None  # the signal that began the stop
        self.kill_at = math.inf
        self.failed_stops = 0
        self._gateway: GatewayLike | None = None
        self._shared: SharedSocket | None = None

    # -- start ----------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until a stop signal; returns the exit code (0: every worker stopped
        cleanly). Raises RunnerError when the socket cannot be opened or a first worker
        cannot start, and what make_gateway raises (store errors)."""
        signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISOR_SIGNALS)
        gateway = self.make_gateway(self.config)
        self._gateway = gateway
        try:
            store = _store(gateway)
            if store is not None:
                store.close()  # no connections or pool threads across fork()
            self._shared = bind_socket(self.spec, self.config, self.identity)
            runner.drop_privileges(self.identity)
            if threading.active_count() != 1:  # fork() copies only this thread
                raise runner.RunnerError("cannot start workers: the supervisor has threads")
            _LOG.info(f"{log.TAG}: starting; " + log.format_fields({
                "socket": self.spec.spec, "pid": os.getpid(), "uid": os.getuid(),
                "workers": len(self.slots)}))
            self._start_first()
            self._loop()
        finally:
            self._close_socket()
            if self._shared is not None and self._shared.unix_path:
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(os.lstat(self._shared.unix_path).st_mode):
                        os.unlink(self._shared.unix_path)
            runner.close_gateway(gateway)
        _LOG.info(f"{log.TAG}: stopped; " + log.format_fields(
            {"workers_failed": self.failed_stops}))
        _flush_logs()
        return 0 if self.failed_stops == 0 else 1

    def _start_first(self) -> None:
        """Fork every worker and wait until each says it serves. Raises RunnerError (after
        stopping the others) when one cannot start."""
        pipes = {slot.index: self._spawn(slot, ready=True) for slot in self.slots}
        deadline = time.monotonic() + READY_TIMEOUT
        for slot in self.slots:
            status = _read_status(pipes[slot.index], deadline)
            if status != "ok":
                self._abort_start()
                reason = status.removeprefix("error: ") if status else "it exited; see its log"
                raise runner.RunnerError(f"worker {slot.index} could not start: {reason}")

    def _abort_start(self) -> None:
        for slot in self.slots:
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.milter.stop_timeout + KILL_GRACE
        for slot in self.slots:
            if slot.pid:
                _wait_or_kill(slot.pid, deadline)
                slot.pid = 0

    def _spawn(self, slot: _Slot, *, ready: bool = False) -> int:
        """Fork the worker of ``slot``; returns the read end of its status pipe (-1 when
        ``ready`` is False: nobody waits for a restarted worker)."""
        read_fd, write_fd = os.pipe() if ready else (-1, -1)
        assert self._shared is not None and self._gateway is not None
        setup = WorkerSetup(
            index=slot.index, workers=len(self.slots), config=self.config,
            config_path=self.config_path, explicit=self.explicit, gateway=self._gateway,
            listen_fd=self._shared.sock.fileno(), supervisor_pid=os.getpid(),
            reloads=self.reloads,
        )
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's frames
            code = 1
            try:
                if ready:
                    os.close(read_fd)
                code = worker_main(setup, write_fd if ready else None)
            except Exception as exc:  # noqa: BLE001 - boundary of the worker process
                _LOG.error(log.warning_line(None, "worker failed", {
                    "worker": slot.index, "error": f"{type(exc).__name__}: {exc}"}),
                    exc_info=True)
            finally:
                _flush_logs()
                os._exit(code)
        if ready:
            os.close(write_fd)
        slot.pid, slot.started, slot.restart_at = pid, time.monotonic(), None
        return read_fd

    # -- running --------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            info = signal.sigtimedwait(SUPERVISOR_SIGNALS, self._timeout())
            if info is not None:
                self._on_signal(info.si_signo)
            self._reap()
            if self.stopping is not None:
                if not any(slot.pid for slot in self.slots):
                    return
                if time.monotonic() >= self.kill_at:
                    self._kill_left()
            else:
                self._restart_due()

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [s.restart_at - now for s in self.slots if s.restart_at is not None]
        return max(0.0, min([TICK, *due]))

    def _on_signal(self, signo: int) -> None:
        if signo == signal.SIGCHLD:
            return
        name = signal.Signals(signo).name
        if signo == runner.RELOAD_SIGNAL:
            self.reloads += 1
            _LOG.info(f"{log.TAG}: reload passed on; " + log.format_fields(
                {"workers": self._forward(signo)}))
            return
        if self.stopping is None:
            self.stopping = name
            self.kill_at = time.monotonic() + self.config.milter.stop_timeout + KILL_GRACE
            for slot in self.slots:
                slot.restart_at = None
            self._close_socket()  # the workers close theirs as they stop accepting
        _LOG.info(f"{log.TAG}: stopping workers; " + log.format_fields(
            {"signal": name, "workers": self._forward(runner.FORWARDED_STOP[signo])}))

    def _forward(self, signo: int) -> int:
        sent = 0
        for slot in self.slots:
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signo)
                    sent += 1
        return sent

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            slot.pid = 0
            key, value = describe_status(status)
            if self.stopping is not None:
                clean = key == "status" and value == 0
                if not clean:
                    self.failed_stops += 1
                (_LOG.info if clean else _LOG.warning)(
                    f"{log.TAG}: worker stopped; " + log.format_fields(
                        {"worker": slot.index, "pid": pid, key: value}))
                continue
            now = time.monotonic()
            if now - slot.started >= BACKOFF_RESET:
                slot.deaths = 0
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** slot.deaths)
            slot.deaths += 1
            slot.restart_at = now + delay
            _LOG.warning(log.warning_line(None, "worker died; starting it again", {
                "worker": slot.index, "pid": pid, key: value, "restart_in": delay}))

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now and not slot.pid:
                try:
                    self._spawn(slot)
                except OSError as exc:  # fork() itself failed (EAGAIN, ENOMEM): later again
                    delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** slot.deaths)
                    slot.deaths += 1
                    slot.restart_at = now + delay
                    _LOG.warning(log.warning_line(None, "cannot start a worker", {
                        "worker": slot.index, "error": str(exc), "restart_in": delay}))
                    continue
                _LOG.info(f"{log.TAG}: worker restarted; " + log.format_fields(
                    {"worker": slot.index, "pid": slot.pid}))

    def _kill_left(self) -> None:
        for slot in self.slots:
            if slot.pid:
                _LOG.warning(log.warning_line(None, "worker did not stop in time; killed", {
                    "worker": slot.index, "pid": slot.pid}))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGKILL)
        self.kill_at = math.inf

    def _close_socket(self) -> None:
        if self._shared is not None:
            self._shared.sock.close()


def _read_status(fd: int, deadline: float) -> str:
    """The status line a starting worker writes ("" when it exited without one)."""
    data = b""
    try:
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                return "error: no answer within the start-up time"
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    return data.decode(errors="replace").strip()


def _wait_or_kill(pid: int, deadline: float) -> None:
    """Wait for the child ``pid`` until ``deadline``, then kill it."""
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)

