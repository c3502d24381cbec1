"""Run the milter: privileged set-up, the listening socket, signals, then libmilter's loop.

Order (DESIGN.md Style 7, after dkimpy-milter's ``main()``):

1. Logging (smimegate.log.setup_logging: syslog, stdout or stderr; an unreachable syslog
   socket is a warning and stderr until it answers, never a failed start).
2. SIGHUP/SIGINT/SIGTERM and SIGUSR1 blocked in this thread BEFORE any thread starts, so that
   every thread started from here on inherits the mask. SIGUSR1 is ours: a thread sigwaits it
   and reloads the configuration, the gateway's caches and logging.
3. The gateway: configuration, store pools (at least jobs.JOB_POOL_MIN connections: the CRL
   job lock holds one), master key, reinjection key (Gateway.create).
4. The socket (libmilter smfi_setconn/smfi_opensocket), then its fix-ups below.
5. Privileges dropped to ``[milter] user``/``group`` when started as root (setgroups, setgid,
   setuid); running on as root without a user configured is allowed with a warning.
6. Background jobs (smimegate.milter.jobs: CRL download, delivery queue), as the dropped user.
7. ``smfi_main`` in a thread of its own, while the main thread waits for a stop signal.

That is one process, ``[milter] workers = 1``. With more workers (the default 0 means one per
core) this process becomes the supervisor of smimegate.milter.supervisor instead: it does steps
1 to 5 itself, binding the socket in place of libmilter, and forks the workers, each of which
goes on from step 6 (background jobs in worker 0 only) on the shared socket.

Stopping (issue 5 item 1: SIGTERM/SIGINT stop cleanly, messages in flight finish). What stock
libmilter (8.17, signal.c/listener.c/engine.c) does is not enough: ``smfi_main`` starts a
thread that sigwaits SIGHUP/SIGTERM/SIGINT; SIGHUP/SIGTERM set MILTER_STOP (listening socket
closed, smfi_main returns within MI_CHK_TIME, 5 s, sessions are left running), SIGINT sets
MILTER_ABRT (every session ends at its next command). When smfi_main returns, pymilter's
``main()`` returns too and clears its interpreter pointer, so the process exits and cuts what
is in flight, and a connection accepted just before would make pymilter create a thread state
for a NULL interpreter. So the stop signals are taken before libmilter sees them:

- smfi_main runs in a thread; the main thread keeps the three signals UNBLOCKED with Python
  handlers, every other thread has them blocked (libmilter's signal thread sigwaits them).
  Linux gives a process-directed signal to the thread the sender named (the main thread: its
  id is the process id) whenever that thread does not block it (kernel/signal.c
  complete_signal), so our handler gets SIGTERM/SIGINT/SIGHUP, not libmilter. Should
  libmilter's thread win anyway (the main thread had a signal pending already: a second
  signal while the first is delivered), smfi_main returns by itself and the stop below still
  runs, with libmilter's semantics for SIGINT, and is logged as ``signal=libmilter``. Then
  libmilter has already torn down its listener under the transactions still open, and their
  ends touch memory it freed: glibc aborted the process at its exit ("free(): corrupted
  unsorted chunks", 5 of 8 runs of tests/milter/test_runner_stop.py's test of this path)
  after every transaction had finished. Workers never get these signals as themselves:
  their supervisor passes a stop on as a real-time signal (FORWARDED_STOP), which libmilter
  does not wait for.
- The process ends with os._exit once it has logged ``stopped`` and flushed its logs, as
  workers always did: libmilter's session threads outlive smfi_main (a connection the MTA
  keeps open between transactions, or one libmilter left running as above) and call into
  Python when their connection ends, so no interpreter shutdown may run under them.
- On the first signal: new transactions on open connections are refused (Runtime.stop:
  ``451 4.3.2`` at RCPT); no new connections are taken: a listening socket nobody can reach
  (non-blocking, so libmilter's accept() cannot hang) is dup2()ed over libmilter's listening
  descriptor, which closes the real one (peers get ECONNREFUSED) while smfi_main keeps
  running; the transactions in progress get up to ``[milter] stop_timeout`` seconds to reach
  their end-of-message reply (a second signal cuts the wait short); then smfi_stop, and the
  placeholder is connected to once per 0.1 s so that libmilter's poll() wakes up and
  smfi_main returns at once instead of after MI_CHK_TIME.
- What did not finish in time is cut, and the MTA answers its client per
  milter_default_action (tempfail in contrib/postfix), so nothing is lost; the count is
  logged. Exit status 0.

Sockets:

- ``inet:PORT@HOST`` / ``inet6:PORT@HOST``. The loopback stall of issue 5 item 12 (a fixed
  ~40-90 ms per message on inet:, none on unix:) is Nagle's algorithm (RFC 896) meeting
  delayed ACKs (RFC 1122 4.2.3.2): at end of message libmilter writes every modification
  (SMFIR_CHGHEADER, SMFIR_ADDHEADER, SMFIR_REPLBODY ...) and then the final reply as separate
  small segments, the MTA reads them without sending anything back, so each segment after the
  first waits for the MTA's delayed ACK (40 ms minimum on Linux). libmilter never sets
  TCP_NODELAY on the connections it accepts, but Linux gives an accepted socket the
  TCP_NODELAY of its listening socket, so we set it on libmilter's listening socket once
  smfi_opensocket has made it (found through /proc/self/fd). Measured with
  tests/milter/client.py, 10 KB messages with three header edits over one connection: 23
  msg/s before, several thousand after (tests/milter/test_runner.py keeps it that way).
  The other half of the stall is on Postfix's side and is removed by answering SMFIC_DATA
  (session.py ``data``; bench/inet_stall_bench.py). ``quickack 1`` on the loopback route
  (``ip route change local 127.0.0.1 dev lo ... table local quickack 1``) removes both halves
  for any milter, at the cost of one ACK per segment on that route.
- ``unix:/PATH``. A stale socket file (nobody answers on it) is removed; one a running milter
  answers on stops start-up. After creation the file gets ``socket_mode`` (default 0660) and,
  when started as root, the owner ``user`` and group ``group``. So that Postfix can write to
  it, either add user postfix to that group (``usermod -aG smimegate postfix``), or set
  ``socket_mode = "0666"`` and keep the socket in a directory of mode 0750 with group postfix
  (contrib/systemd/smimegate.service does this with RuntimeDirectory).
- ``fd:N`` (systemd socket activation, contrib/systemd/smimegate.socket). Debian's libmilter
  (8.17) knows only unix:, local:, inet: and inet6: in smfi_setconn. So libmilter opens a
  placeholder listener of the same address family (an ephemeral loopback port, or a unix
  socket in a private temporary directory) and we dup2() the inherited socket over the
  placeholder's descriptor: libmilter accepts on that descriptor number from then on (it
  checks only that accepted peers have the family it opened). The descriptor is checked to be
  a listening stream socket first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import grp
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import Milter
import milter

from smimegate import config as config_module
from smimegate import log
from smimegate.config import Config, ConfigError
from smimegate.milter.jobs import JOB_POOL_MIN, BackgroundJobs
from smimegate.milter.session import GatewayLike, Runtime, factory
from smimegate.milter.stats import StatsFlusher
from smimegate.store.base import Store, StoreError
from smimegate.store.sql import SqlStore

_LOG = logging.getLogger("smimegate.milter.runner")

MILTER_NAME = "smimegate"
# Signals libmilter's signal thread sigwaits (stop / abort); ours stop gracefully instead.
LIBMILTER_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGTERM})
# What a supervisor sends its workers for each stop signal (smimegate.milter.supervisor):
# real-time signals, which libmilter's signal thread does not sigwait(), so a stop passed on
# can only reach our handler (see "Stopping" above: libmilter's thread taking the signal
# ends smfi_main with transactions still open).
FORWARDED_STOP: dict[int, int] = {signal.SIGTERM: signal.SIGRTMIN + 1,
                                  signal.SIGINT: signal.SIGRTMIN + 2,
                                  signal.SIGHUP: signal.SIGRTMIN + 3}
_FORWARDED_NAMES = {forwarded: signal.Signals(sig).name
                    for sig, forwarded in FORWARDED_STOP.items()}
STOP_SIGNALS = LIBMILTER_SIGNALS | frozenset(FORWARDED_STOP.values())
RELOAD_SIGNAL = signal.SIGUSR1
# How often the main thread looks at the stop signals and libmilter's thread (seconds).
POLL = 0.2
# After an end-of-message callback returned, libmilter still writes its reply to the MTA; the
# stop waits until the MTA's next command on that connection shows it was written, at most
# this long (an MTA may keep the connection idle) (seconds).
REPLY_GRACE = 0.2
# How long smfi_main may take to return after smfi_stop (libmilter polls every 5 s).
LIBMILTER_STOP_WAIT = 10.0


class RunnerError(Exception):
    """The milter cannot start: one line for the operator (exit 1)."""


@dataclass(frozen=True)
class SocketSpec:
    """A parsed libmilter socket spec: kind "inet" | "inet6" | "unix" | "fd"."""

    kind: str
    spec: str
    path: str = ""  # unix
    host: str = ""  # inet, inet6
    port: int = 0  # inet, inet6
    fd: int = -1  # fd


def parse_socket(spec: str) -> SocketSpec:
    """Parse ``inet:PORT@HOST``, ``inet6:PORT@HOST``, ``unix:/PATH``, ``local:/PATH`` or
    ``fd:N``. Raises ValueError naming the spec."""
    m = re.fullmatch(r"(inet6?):([0-9]{1,5})(?:@(\S+))?", spec)
    if m:
        port = int(m.group(2))
        if not 0 < port < 65536:
            raise ValueError(f'bad port in milter socket "{spec}"')
        default = "::" if m.group(1) == "inet6" else "0.0.0.0"
        return SocketSpec(m.group(1), spec, host=m.group(3) or default, port=port)
    m = re.fullmatch(r"(?:unix|local):(/\S+)", spec)
    if m:
        return SocketSpec("unix", f"unix:{m.group(1)}", path=m.group(1))
    m = re.fullmatch(r"fd:([0-9]+)", spec)
    if m:
        return SocketSpec("fd", spec, fd=int(m.group(1)))
    raise ValueError(
        f'not a milter socket: "{spec}" (expected inet:PORT@HOST, inet6:PORT@HOST, '
        "unix:/PATH or fd:N)"
    )


# ---------------------------------------------------------------------------------------------
# Checks shared with `milter -n`


@dataclass(frozen=True)
class Identity:
    """Who to run as after set-up: None when no change is wanted or possible."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str


def resolve_identity(config: Config) -> Identity | None:
    """``[milter] user``/``group`` as ids. None when user is "" (stay as we are).
    Raises RunnerError for an unknown user or group."""
    user, group = config.milter.user, config.milter.group
    if not user:
        if group:
            raise RunnerError('[milter] group is set but user is not; set user too')
        return None
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise RunnerError(f'[milter] user: no such user "{user}"') from None
    gid = pw.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise RunnerError(f'[milter] group: no such group "{group}"') from None
    groups = tuple(sorted(set(os.getgrouplist(user, gid))))
    return Identity(pw.pw_uid, gid, groups, user)


def check_socket(spec: SocketSpec) -> None:
    """What can be checked without opening the socket. Raises RunnerError."""
    if spec.kind == "unix":
        parent = Path(spec.path).parent
        if not parent.is_dir():
            raise RunnerError(f"{spec.spec}: directory {parent} does not exist")
        if len(os.fsencode(spec.path)) > 107:  # sizeof(sun_path) - 1 on Linux
            raise RunnerError(f"{spec.spec}: path too long for a unix socket")
    elif spec.kind in ("inet", "inet6"):
        family = socket.AF_INET6 if spec.kind == "inet6" else socket.AF_INET
        try:
            socket.getaddrinfo(spec.host, spec.port, family, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise RunnerError(f"{spec.spec}: cannot resolve {spec.host}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Socket set-up


def _listening_sockets() -> list[tuple[int, socket.socket]]:
    """Every listening stream socket of this process, as (fd, a dup of it). Close the dups."""
    # All links first, before we dup anything: a dup could otherwise take a number listed
    # (the one listdir used) and be mistaken for a socket of libmilter's.
    links: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listdir fd itself, closed by now
            links[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    found = []
    for fd, link in sorted(links.items()):
        if not link.startswith("socket:"):
            continue
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue  # not a socket after all
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:
            listening = 0
        if listening and sock.type == socket.SOCK_STREAM:
            found.append((fd, sock))
        else:
            sock.close()
    return found


def _find_listener(match: Callable[[socket.socket], bool]) -> int:
    """The descriptor of the one listening socket ``match`` accepts. Raises RunnerError when
    there is none or more than one."""
    hits = []
    for fd, sock in _listening_sockets():
        with sock:
            if match(sock):
                hits.append(fd)
    if len(hits) != 1:
        raise RunnerError(f"cannot find libmilter's listening socket ({len(hits)} candidates)")
    return hits[0]


def _inode(sock: socket.socket) -> int:
    """The socket's inode: the same for every descriptor of one socket."""
    return os.fstat(sock.fileno()).st_ino


def _same_address(spec: SocketSpec) -> Callable[[socket.socket], bool]:
    def match(sock: socket.socket) -> bool:
        if spec.kind == "unix":
            return sock.family == socket.AF_UNIX and sock.getsockname() == spec.path
        family = socket.AF_INET6 if spec.kind == "inet6" else socket.AF_INET
        return sock.family == family and sock.getsockname()[1] == spec.port

    return match


def set_nodelay(fd: int) -> None:
    """TCP_NODELAY on a listening socket; accepted connections inherit it (see the module
    docstring: Nagle + delayed ACK)."""
    with socket.socket(fileno=os.dup(fd)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _unix_socket_in_use(path: str) -> bool:
    """True when something answers on the unix socket ``path``; a stale file answers ECONNREFUSED.
    Raises RunnerError when ``path`` exists and is not a socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise RunnerError(f"unix:{path}: exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(path)
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return False
            raise RunnerError(f"unix:{path}: {exc.strerror}") from None
        return True


def _libmilter_open(spec: str) -> None:
    """smfi_setconn + smfi_opensocket(remove stale). Raises RunnerError."""
    try:
        milter.setconn(spec)
        milter.opensocket(True)
    except milter.error as exc:
        raise RunnerError(f"{spec}: cannot open the milter socket ({exc})") from None


@dataclass(frozen=True)
class Listener:
    """libmilter's listening socket: its descriptor and address family, and the unix socket
    path to remove at exit ("" for none)."""

    fd: int
    family: int
    unix_path: str = ""


def open_socket(spec: SocketSpec, config: Config, identity: Identity | None) -> Listener:
    """Make libmilter listen on ``spec``. Raises RunnerError."""
    check_socket(spec)
    if spec.kind == "unix":
        if _unix_socket_in_use(spec.path):
            raise RunnerError(f"{spec.spec}: another milter is listening there")
        _libmilter_open(spec.spec)
        mode = int(config.milter.socket_mode, 8)
        os.chmod(spec.path, mode)
        if identity is not None and os.geteuid() == 0:
            os.chown(spec.path, identity.uid, identity.gid)
        return Listener(_find_listener(_same_address(spec)), socket.AF_UNIX, spec.path)
    if spec.kind in ("inet", "inet6"):
        _libmilter_open(spec.spec)
        fd = _find_listener(_same_address(spec))
        set_nodelay(fd)
        family = socket.AF_INET6 if spec.kind == "inet6" else socket.AF_INET
        return Listener(fd, family)
    return _adopt_fd(spec.fd)


def _adopt_fd(fd: int) -> Listener:
    """Make libmilter serve the inherited listening socket ``fd`` (see the module docstring).
    Raises RunnerError."""
    try:
        inherited = socket.socket(fileno=os.dup(fd))
    except OSError as exc:
        raise RunnerError(f"fd:{fd}: not an open socket ({exc.strerror})") from None
    with inherited:
        if inherited.type != socket.SOCK_STREAM or not inherited.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            raise RunnerError(f"fd:{fd}: not a listening stream socket")
        family = inherited.family
        inherited_inode = _inode(inherited)
    tmpdir = None
    if family == socket.AF_UNIX:
        tmpdir = tempfile.mkdtemp(prefix="smimegate-fd-")
        placeholder = SocketSpec("unix", f"unix:{tmpdir}/placeholder", path=f"{tmpdir}/placeholder")
    elif family == socket.AF_INET6:
        placeholder = SocketSpec("inet6", "inet6:0@::1", host="::1")
    elif family == socket.AF_INET:
        placeholder = SocketSpec("inet", "inet:0@127.0.0.1", host="127.0.0.1")
    else:
        raise RunnerError(f"fd:{fd}: unsupported address family {family!r}")
    try:
        _libmilter_open(placeholder.spec)
        target = _find_listener(
            lambda s: s.family == family and _inode(s) != inherited_inode
        )
        os.dup2(fd, target, inheritable=False)
        os.close(fd)
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    if family in (socket.AF_INET, socket.AF_INET6):
        set_nodelay(target)
    return Listener(target, family)


# ---------------------------------------------------------------------------------------------
# Privileges, signals, reload


def drop_privileges(identity: Identity | None) -> None:
    """setgroups, setgid, setuid to ``identity`` when running as root. Raises RunnerError."""
    if os.geteuid() != 0:
        if identity is not None and identity.uid != os.geteuid():
            _LOG.warning(log.warning_line(
                None, "not started as root: [milter] user ignored", {"user": identity.name}))
        return
    if identity is None:
        _LOG.warning(log.warning_line(
            None, "running as root: set [milter] user to drop privileges"))
        return
    try:
        os.setgroups(list(identity.groups))
        os.setgid(identity.gid)
        os.setuid(identity.uid)
    except OSError as exc:
        raise RunnerError(f"cannot drop privileges to {identity.name}: {exc}") from None
    if os.getuid() != identity.uid or os.geteuid() != identity.uid:
        raise RunnerError(f"privileges not dropped to {identity.name}")


class Reloader:
    """SIGUSR1: re-read the configuration file, re-install logging, hand the new configuration
    to the gateway (which clears its caches). A file that does not load keeps the old
    configuration running, with a warning. Options read only at start-up (socket, user, store,
    [crl] fetch_interval) need a restart; a change to them is logged. ``[queue]`` and
    ``stop_timeout`` are read when used, so a reload changes them."""

    RESTART_ONLY = ("socket", "socket_mode", "user", "group", "workers")

    def __init__(self, runtime: Runtime, path: str | None, explicit: bool) -> None:
        self.runtime = runtime
        self.path = path
        self.explicit = explicit
        self.count = 0

    def reload(self) -> None:
        old = self.runtime.config
        try:
            new = config_module.load(self.path, explicit=self.explicit)
        except ConfigError as exc:
            _LOG.warning(log.warning_line(None, "reload failed, keeping the old configuration",
                                          {"error": str(exc)}))
            return
        changed = [n for n in self.RESTART_ONLY
                   if getattr(old.milter, n) != getattr(new.milter, n)]
        if old.store != new.store:
            changed.append("[store]")
        if old.crl.fetch_interval != new.crl.fetch_interval:
            # The CRL fetcher's thread keeps its pace (jobs.py); the queue worker reads anew.
            changed.append("[crl] fetch_interval")
        if changed:
            _LOG.warning(log.warning_line(None, "these options take effect after a restart",
                                          {"options": ",".join(changed)}))
            new = dataclasses.replace(
                new,
                store=old.store,
                milter=dataclasses.replace(
                    new.milter, **{n: getattr(old.milter, n) for n in self.RESTART_ONLY}),
            )
        try:
            log.setup_logging(new)
        except OSError as exc:
            _LOG.warning(log.warning_line(None, "logging not changed", {"error": str(exc)}))
        try:
            self.runtime.replace(new)
        except Exception as exc:  # noqa: BLE001 - boundary: a failed reload must not kill us
            _LOG.warning(log.warning_line(None, "reload failed, keeping the old configuration",
                                          {"error": f"{type(exc).__name__}: {exc}"}))
            return
        self.count += 1
        _LOG.info(f"{log.TAG}: configuration reloaded; " + log.format_fields({"count": self.count}))

    def serve(self) -> None:
        """Run forever in a daemon thread: sigwait SIGUSR1 (blocked in every thread)."""
        while True:
            signal.sigwait({RELOAD_SIGNAL})
            self.reload()


def block_signals() -> None:
    """Block libmilter's signals and ours in this thread, so every thread started later
    inherits the mask (libmilter and our reload thread sigwait them)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS) | {RELOAD_SIGNAL})


def _register() -> None:
    """Install pymilter's dispatch (as Milter.runmilter does) and register the filter."""
    milter.set_connect_callback(Milter.connect_callback)
    milter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    milter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    milter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    milter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    milter.set_close_callback(Milter.close_callback)
    milter.register(
        MILTER_NAME,
        data=lambda ctx: ctx.getpriv().data(),
        unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
        negotiate=Milter.negotiate_callback,
    )


def close_gateway(gateway: GatewayLike) -> None:
    """Close the gateway's store pools and directory connection at shutdown; a store that
    fails to close is logged (the process is going anyway)."""
    try:
        gateway.close()
    except (StoreError, OSError) as exc:
        _LOG.warning(log.warning_line(None, "closing the gateway failed",
                                      {"error": f"{type(exc).__name__}: {exc}"}))


def default_gateway(config: Config) -> GatewayLike:
    """The real gateway, over a store whose pool allows the background jobs (JOB_POOL_MIN).

    Raises what store.configured.open_configured and Gateway.create raise.
    """
    from smimegate.milter.gateway import Gateway
    from smimegate.store.configured import open_configured

    store = open_configured(config.store, pool_size=max(config.store.pool_max, JOB_POOL_MIN))
    with contextlib.ExitStack() as on_failure:
        on_failure.callback(store.close)
        gateway = Gateway.create(config, store)
        on_failure.pop_all()
    return gateway


def start_jobs(gateway: GatewayLike, runtime: Runtime) -> BackgroundJobs | None:
    """CRL download and delivery queue over the gateway's store; None for a gateway without
    one (tests' stand-ins). A refresh after a CRL download reloads the gateway's caches; the
    queue worker gets the marker key the gateway read before the privilege drop."""
    store: Store | None = getattr(gateway, "store", None)
    if store is None:
        return None

    def refresh() -> None:
        runtime.gateway.reload()

    def marker_secret() -> bytes | None:
        read: Callable[[], bytes | None] | None = getattr(runtime.gateway, "marker_secret",
                                                         None)
        return read() if read is not None else None

    return BackgroundJobs(store, lambda: runtime.config, refresh, marker_secret).start()


def start_stats(gateway: GatewayLike, runtime: Runtime, worker: int = 0) -> StatsFlusher | None:
    """The flush thread of this worker's message counters, log lines and heartbeat
    (smimegate.milter.stats) over the gateway's store; None for a gateway without an SQL
    store (tests' stand-ins, which keep no counters)."""
    store: Store | None = getattr(gateway, "store", None)
    if not isinstance(store, SqlStore):
        return None
    return StatsFlusher(runtime.stats, store, lambda: runtime.config, worker=worker).start()


# ---------------------------------------------------------------------------------------------
# Serving and stopping (see the module docstring, "Stopping")


class StopSignals:
    """Python handlers for SIGTERM/SIGINT/SIGHUP in the main thread, which alone has them
    unblocked. The handler only records the signal: it runs between bytecodes of the main
    thread, possibly inside a lock's wait, so it takes no lock."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)

    def install(self) -> StopSignals:
        """Install the handlers, then unblock the signals in this (the main) thread.
        Raises ValueError when not called from the main thread."""
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(STOP_SIGNALS))
        return self

    def restore(self) -> None:
        """Block the signals again and put the previous handlers back."""
        signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def first(self) -> str:
        """The first signal's name; a stop passed on by the supervisor by the signal the
        supervisor got (SIGTERM for its SIGRTMIN+1 ...)."""
        if not self.received:
            return "none"
        signo = self.received[0]
        return _FORWARDED_NAMES.get(signo) or signal.Signals(signo).name


class LibmilterThread:
    """``smfi_main`` (pymilter ``milter.main``) in a daemon thread with the stop signals
    blocked, so that only the main thread takes them."""

    def __init__(self) -> None:
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="smimegate-libmilter",
                                        daemon=True)

    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
        try:
            milter.main()
        except milter.error as exc:
            self.error = str(exc) or "smfi_main failed"

    def start(self) -> LibmilterThread:
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def stop_accepting(listener: Listener) -> socket.socket | None:
    """Put a listening socket that nobody can reach over libmilter's listening descriptor, so
    that no new connection is taken while smfi_main goes on serving the open ones; the real
    socket closes (unless the poll() in progress still holds it: then when that returns).
    Returns the placeholder (to wake libmilter's poll() later), or None when it cannot be
    made; the caller then lets libmilter accept on (Runtime.stop refuses new transactions)."""
    family = listener.family
    placeholder = socket.socket(family, socket.SOCK_STREAM)
    try:
        with socket.socket(fileno=os.dup(listener.fd)) as real:
            real_address = real.getsockname()
        if family == socket.AF_UNIX:
            placeholder.bind("")  # Linux autobind: an abstract address, no file to remove
        elif family == socket.AF_INET6:
            placeholder.bind(("::1", 0))
        else:
            placeholder.bind(("127.0.0.1", 0))
        placeholder.listen(8)
        # libmilter calls a blocking accept() after poll(): on the placeholder it must fail
        # with EAGAIN (libmilter then polls again), never wait. O_NONBLOCK belongs to the
        # open file, so the dup2 below shares it.
        placeholder.setblocking(False)
        os.dup2(placeholder.fileno(), listener.fd, inheritable=False)
    except OSError as exc:
        placeholder.close()
        _LOG.warning(log.warning_line(None, "cannot close the listening socket before the stop",
                                      {"error": str(exc)}))
        return None
    # libmilter's poll() in progress still watches the real socket (poll holds a reference
    # to it, for up to MI_CHK_TIME) and would only look at the placeholder after it: with a
    # connection waiting on the placeholder, one to the real address wakes that poll, the
    # re-scan finds the descriptor readable, libmilter accepts our connection (and sees it
    # close), and polls the placeholder from then on; the real socket is released.
    _poke(family, placeholder.getsockname())
    _poke(family, real_address)
    return placeholder


def _poke(family: int, address: Any) -> None:
    """Connect to ``address`` and hang up at once, so that a poll() on it returns."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        with contextlib.suppress(OSError):
            probe.connect(address)


def stop_libmilter(thread: LibmilterThread, placeholder: socket.socket | None) -> None:
    """smfi_stop, and wait (up to LIBMILTER_STOP_WAIT) for smfi_main to return."""
    # smfi_stop takes the listener's mutex, which libmilter holds while it polls (up to
    # MI_CHK_TIME): call it from a thread of its own and wake the poll meanwhile.
    threading.Thread(target=milter.stop, name="smimegate-smfi-stop", daemon=True).start()
    deadline = time.monotonic() + LIBMILTER_STOP_WAIT
    while thread.is_alive() and time.monotonic() < deadline:
        if placeholder is not None:
            _poke(placeholder.family, placeholder.getsockname())
        thread.join(0.1)


def drain(runtime: Runtime, stop: StopSignals, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the transactions in progress to end; a further stop
    signal ends the wait. True when none is left."""
    deadline = time.monotonic() + timeout
    signals = len(stop.received)
    while True:
        left = deadline - time.monotonic()
        if runtime.wait_idle(max(0.0, min(POLL, left))):
            return True
        if left <= 0 or len(stop.received) > signals:
            return False


def serve(runtime: Runtime, listener: Listener,
          orphaned: Callable[[], bool] | None = None) -> None:
    """Run smfi_main until a stop signal (or until it returns by itself, or ``orphaned``
    says the worker's supervisor is gone), then stop as the module docstring says (waiting up
    to ``[milter] stop_timeout`` as configured then). Raises RunnerError when smfi_main
    fails."""
    stop = StopSignals().install()
    runtime.skip_data = listener.family == socket.AF_UNIX
    placeholder: socket.socket | None = None
    gone = orphaned or (lambda: False)
    try:
        thread = LibmilterThread().start()
        while not stop.received and thread.is_alive() and not gone():
            thread.join(POLL)
        in_progress = runtime.stop()
        if stop.received:
            reason = stop.first
        elif orphaned is not None and gone():
            reason = "orphaned"
        else:
            # smfi_main returned by itself: libmilter's signal thread took the stop signal
            # before our handler (see the module docstring), or it failed (thread.error).
            reason = "libmilter"
        _LOG.info(f"{log.TAG}: stopping; " + log.format_fields(
            {"signal": reason, "in_progress": in_progress}))
        if thread.is_alive():
            placeholder = stop_accepting(listener)
        finished = drain(runtime, stop, runtime.config.milter.stop_timeout)
        cut = runtime.active
        if cut:
            _LOG.warning(log.warning_line(
                None, "transactions cut at stop; the MTA tempfails them", {"in_progress": cut}))
        elif in_progress:
            runtime.wait_replies(REPLY_GRACE)
        _LOG.info(f"{log.TAG}: drained; " + log.format_fields(
            {"finished": finished, "cut": cut}))
        if thread.is_alive():
            stop_libmilter(thread, placeholder)
        if thread.error is not None:
            raise RunnerError(f"libmilter: {thread.error}")
    finally:
        stop.restore()
        if placeholder is not None:
            placeholder.close()


def worker_count(config: Config) -> int:
    """``[milter] workers``, with 0 meaning one per CPU core this process may run on (its
    affinity mask, which taskset and cgroup cpusets narrow)."""
    return config.milter.workers or len(os.sched_getaffinity(0))


def run(
    config: Config,
    *,
    config_path: str | None,
    explicit: bool,
    socket_spec: str | None = None,
    make_gateway: Callable[[Config], GatewayLike] | None = None,
) -> int:
    """Run the milter in the foreground until SIGTERM/SIGHUP/SIGINT. With ``[milter]
    workers`` other than 1 this process supervises that many workers
    (smimegate.milter.supervisor) and returns the exit code; as one process it ends the process
    itself after a clean stop (exit status 0, os._exit: the module docstring, "Stopping").

    ``config_path``/``explicit`` say where SIGUSR1 re-reads the configuration.
    ``make_gateway`` replaces the real gateway (tests). Must be called from the main thread.
    Raises RunnerError when it cannot start, ConfigError for a bad socket spec, and what
    Gateway.create raises (store errors).
    """
    spec_text = socket_spec or config.milter.socket
    try:
        spec = parse_socket(spec_text)
    except ValueError as exc:
        raise ConfigError("--socket" if socket_spec else "config", "[milter] socket",
                          str(exc)) from None
    if socket_spec:
        config = dataclasses.replace(
            config, milter=dataclasses.replace(config.milter, socket=spec.spec))
    identity = resolve_identity(config)
    log.setup_logging(config)
    block_signals()
    workers = worker_count(config)
    if workers > 1:
        from smimegate.milter.supervisor import Supervisor

        return Supervisor(config, spec, identity, make_gateway or default_gateway,
                          workers=workers, config_path=config_path, explicit=explicit).run()
    gateway = (make_gateway or default_gateway)(config)
    listener: Listener | None = None
    jobs: BackgroundJobs | None = None
    stats: StatsFlusher | None = None
    try:
        runtime = Runtime(config, gateway)
        Milter.factory = factory(runtime)
        _register()
        listener = open_socket(spec, config, identity)
        drop_privileges(identity)
        reloader = Reloader(runtime, config_path, explicit)
        threading.Thread(target=reloader.serve, name="smimegate-reload", daemon=True).start()
        jobs = start_jobs(gateway, runtime)
        stats = start_stats(gateway, runtime)
        _LOG.info(f"{log.TAG}: starting; " + log.format_fields(
            {"socket": spec.spec, "pid": os.getpid(), "uid": os.getuid()}))
        serve(runtime, listener)
    finally:
        if jobs is not None:
            jobs.stop()
        if stats is not None:
            stats.stop()
        close_gateway(gateway)
        if listener is not None and listener.unix_path:
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(listener.unix_path).st_mode):
                    os.unlink(listener.unix_path)
    _LOG.info(f"{log.TAG}: stopped")
    for handler in logging.getLogger(log.LOGGER_NAME).handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter shutdown under libmilter's threads: module docstring, "Stopping"
