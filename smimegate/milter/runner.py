"""Run the milter: privileged set-up, the listening socket, signals, then libmilter's loop.

Order (DESIGN.md Style 7, after dkimpy-milter's ``main()``):

1. Logging (smimegate.log.setup_logging: syslog or stdout).
2. Signals blocked in this thread BEFORE any thread starts, so that every thread inherits the
   mask: libmilter's own signal thread sigwaits SIGHUP/SIGTERM (stop: no new connections,
   ``smfi_main`` returns) and SIGINT (abort), and Python handlers would never run while
   libmilter serves anyway (INTEROP.md "pymilter facts"). SIGUSR1 is ours: a thread sigwaits
   it and reloads the configuration, the gateway's caches and logging.
3. The gateway: configuration, store pools, master key, reinjection key (Gateway.create).
4. The socket (libmilter smfi_setconn/smfi_opensocket), then its fix-ups below.
5. Privileges dropped to ``[milter] user``/``group`` when started as root (setgroups, setgid,
   setuid); running on as root without a user configured is allowed with a warning.
6. ``smfi_main``. On SIGTERM/SIGHUP/SIGINT libmilter stops accepting, ends the sessions it
   serves, and smfi_main returns within its poll interval (MI_CHK_TIME, 5 s); pymilter runs
   no Python callback after that. A transaction still open is therefore cut, and the MTA
   answers its client per milter_default_action (tempfail in contrib/postfix), so the client
   retries and nothing is lost; the count of cut transactions is logged. Exit status 0.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import Milter
import milter

from smimegate import config as config_module
from smimegate import log
from smimegate.config import Config, ConfigError
from smimegate.milter.session import GatewayLike, Runtime, factory

_LOG = logging.getLogger("smimegate.milter.runner")

MILTER_NAME = "smimegate"
# Signals libmilter's signal thread sigwaits (stop / abort), and ours (reload).
LIBMILTER_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGTERM})
RELOAD_SIGNAL = signal.SIGUSR1


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


def open_socket(spec: SocketSpec, config: Config, identity: Identity | None) -> str | None:
    """Make libmilter listen on ``spec``. Returns the unix socket path to remove at exit, if
    any. Raises RunnerError."""
    check_socket(spec)
    if spec.kind == "unix":
        if _unix_socket_in_use(spec.path):
            raise RunnerError(f"{spec.spec}: another milter is listening there")
        _libmilter_open(spec.spec)
        mode = int(config.milter.socket_mode, 8)
        os.chmod(spec.path, mode)
        if identity is not None and os.geteuid() == 0:
            os.chown(spec.path, identity.uid, identity.gid)
        return spec.path
    if spec.kind in ("inet", "inet6"):
        _libmilter_open(spec.spec)
        set_nodelay(_find_listener(_same_address(spec)))
        return None
    _adopt_fd(spec.fd)
    return None


def _adopt_fd(fd: int) -> None:
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
    configuration running, with a warning. Options read only at start-up (socket, user, store)
    need a restart; a change to them is logged."""

    RESTART_ONLY = ("socket", "socket_mode", "user", "group")

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
    signal.pthread_sigmask(signal.SIG_BLOCK, set(LIBMILTER_SIGNALS) | {RELOAD_SIGNAL})


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


def _close_gateway(gateway: GatewayLike) -> None:
    store = getattr(gateway, "store", None)
    close = getattr(store, "close", None)
    if close is not None:
        try:
            close()
        except Exception as exc:  # noqa: BLE001 - shutting down: log and go on
            _LOG.warning(log.warning_line(None, "closing the store failed",
                                          {"error": f"{type(exc).__name__}: {exc}"}))


def run(
    config: Config,
    *,
    config_path: str | None,
    explicit: bool,
    socket_spec: str | None = None,
    make_gateway: Callable[[Config], GatewayLike] | None = None,
) -> int:
    """Run the milter in the foreground until SIGTERM/SIGHUP/SIGINT; returns the exit code.

    ``config_path``/``explicit`` say where SIGUSR1 re-reads the configuration.
    ``make_gateway`` replaces Gateway.create (tests). Raises RunnerError when it cannot start,
    ConfigError for a bad socket spec, and what Gateway.create raises (store errors).
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
    if make_gateway is None:
        from smimegate.milter.gateway import Gateway

        make_gateway = Gateway.create
    gateway = make_gateway(config)
    unix_path: str | None = None
    try:
        runtime = Runtime(config, gateway)
        Milter.factory = factory(runtime)
        _register()
        unix_path = open_socket(spec, config, identity)
        drop_privileges(identity)
        reloader = Reloader(runtime, config_path, explicit)
        threading.Thread(target=reloader.serve, name="smimegate-reload", daemon=True).start()
        _LOG.info(f"{log.TAG}: starting; " + log.format_fields(
            {"socket": spec.spec, "pid": os.getpid(), "uid": os.getuid()}))
        try:
            milter.main()
        except milter.error as exc:
            raise RunnerError(f"libmilter: {exc}") from None
        active = runtime.active
        _LOG.info(f"{log.TAG}: stopping; " + log.format_fields({"in_progress": active}))
        if active:
            _LOG.warning(log.warning_line(
                None, "transactions cut at stop; the MTA tempfails them",
                {"in_progress": active}))
    finally:
        _close_gateway(gateway)
        if unix_path is not None:
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(unix_path).st_mode):
                    os.unlink(unix_path)
    _LOG.info(f"{log.TAG}: stopped")
    for handler in logging.getLogger(log.LOGGER_NAME).handlers:
        handler.flush()
    sys.stdout.flush()
    return 0
