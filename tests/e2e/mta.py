"""A real MTA around the milter: a private Postfix on loopback, an smtp-sink capture, Maildirs.

Follows the recipe "A private Postfix on loopback" of INTEROP.md. One ``Postfix`` instance
lives in its own directory (queue, data, log, Maildirs) and listens on free loopback ports:

- ``smtp_port``: the ``smtp`` service (mail from outside; the milter sees it as inbound unless
  the client is trusted),
- ``submission_port``: the submission service of contrib/postfix/master.cf (it sends
  ``{daemon_name}=ORIGINATING``),
- ``reinject_port``: the re-injection listener of contrib/postfix/master.cf (no milters).

The milter settings come from contrib/postfix/main.cf and master.cf, rendered into the private
instance with only the addresses changed (``render_main_cf``, ``render_master_cf``), so the
files users copy are the files the tests run. Mail for ``internal`` domains is delivered by
Postfix's virtual(8) into ``vmail/ADDRESS/Maildir``; everything else is relayed to an
``SmtpSink`` that writes one file per message.

Postfix must be started as root (``postfix -c DIR start``). Every directory that user postfix
or the virtual delivery user (65534) touches sits under a 0755 directory in /tmp, because
pytest's own temp tree is 0700.

``Sendmail`` (bottom of this module) runs Debian's Sendmail without installing it
("Sendmail without installing it", INTEROP.md): the packages are fetched with ``apt-get
download`` into var/cache/sendmail once and unpacked with ``dpkg -x``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
SINK_USER = "postfix"
TIMEOUT = 30.0

# What contrib/postfix names, and what a private instance puts in its place.
CONTRIB_MILTER = "inet:127.0.0.1:8891"
CONTRIB_REINJECT = "127.0.0.1:10026"


class MtaError(AssertionError):
    """An MTA command failed or a wait timed out; the message says which and shows the log."""



def open_dir(prefix: str) -> Path:
    """A fresh 0755 directory under /tmp that every local user can traverse."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def wait_listening(host: str, port: int, timeout: float = TIMEOUT, log: str = "") -> None:
    """Block until something accepts TCP connections on host:port; raise MtaError if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise MtaError(f"nothing listens on {host}:{port} after {timeout:g}s\n{log}")


def wait_for(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT,
             log: str = "") -> None:
    """Poll a zero-argument callable until it returns true; raise MtaError naming what."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise MtaError(f"timed out after {timeout:g}s waiting for {what}\n{log}")


def run(args: Sequence[str | Path], *, check: bool = True,
        input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a command; raise MtaError with its output when it fails and check is set."""
    proc = subprocess.run([str(a) for a in args], capture_output=True, input=input,
                          timeout=TIMEOUT, check=False)
    if check and proc.returncode != 0:
        raise MtaError(f"{' '.join(map(str, args))} exited {proc.returncode}\n"
                       f"stdout: {proc.stdout.decode(errors='replace')[-3000:]}\n"
                       f"stderr: {proc.stderr.decode(errors='replace')[-3000:]}")
    return proc


def crlf(data: bytes) -> bytes:
    """All line ends to CRLF."""
    return re.sub(rb"\r?\n", b"\r\n", data)


def header_values(message: bytes, name: str) -> list[str]:
    """The unfolded values of every header called name in message's header block."""
    head = re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]
    unfolded = re.sub(rb"\r?\n[ \t]", b" ", head).decode("latin-1")
    out = []
    for line in re.split(r"\r?\n", unfolded):
        field, sep, value = line.partition(":")
        if sep and field.strip().lower() == name.lower():
            out.append(value.strip())
    return out


def headers_with_prefix(message: bytes, prefix: str) -> dict[str, str]:
    """Every header whose name starts with prefix (case-insensitive), name -> unfolded value."""
    head = re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]
    unfolded = re.sub(rb"\r?\n[ \t]", b" ", head).decode("latin-1")
    out = {}
    for line in re.split(r"\r?\n", unfolded):
        field, sep, value = line.partition(":")
        if sep and field.lower().startswith(prefix.lower()):
            out[field.strip()] = value.strip()
    return out


# ---------------------------------------------------------------------------------------------
# The capture server


@dataclass(frozen=True)
class Captured:
    """One message as the sink received it: envelope and the message (CRLF line ends)."""

    sender: str
    recipients: tuple[str, ...]
    message: bytes
    path: Path


class SmtpSink:
    """Postfix's smtp-sink writing one file per message (INTEROP.md) on a free port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, SINK_USER)
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start listening; return when it accepts connections."""
        self._proc = subprocess.Popen(
            ["smtp-sink", "-u", SINK_USER, "-d", f"{self.folder}/%Y%m%d%H%M%S.",
             f"127.0.0.1:{self.port}", "256"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        wait_listening("127.0.0.1", self.port)

    def stop(self) -> None:
        """Stop the sink (the files stay)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def files(self) -> list[Path]:
        return sorted((p for p in self.folder.iterdir() if p.is_file()),
                      key=lambda p: (p.stat().st_mtime_ns, p.name))

    def clear(self) -> None:
        """Forget what was captured so far."""
        for path in self.files():
            path.unlink()

    def messages(self) -> list[Captured]:
        """Every captured message, oldest first."""
        return [parse_sink_file(p) for p in self.files()]


def parse_sink_file(path: Path) -> Captured:
    """Split smtp-sink's dump: its X-Mail-Args / X-Rcpt-Args / ... lines and its own Received
    header come first, then the message as received (written with LF line ends)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    sender, recipients, i = "", [], 0
    while i < len(lines) and lines[i].startswith(b"X-") and b": " in lines[i]:
        name, _, value = lines[i].partition(b": ")
        if name == b"X-Mail-Args":
            sender = value.decode().split()[0].strip("<>")
        elif name == b"X-Rcpt-Args":
            recipients.append(value.decode().split()[0].strip("<>"))
        i += 1
    # smtp-sink's own Received: header and its continuation lines.
    if i < len(lines) and lines[i].startswith(b"Received: ") and b"smtp-sink" in b"".join(
        lines[i:i + 3]
    ):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    body = b"\n".join(lines[i:])
    # smtp-sink ends the dump with one extra newline after the message.
    if body.endswith(b"\n\n"):
        body = body[:-1]
    return Captured(sender=sender, recipients=tuple(recipients), message=crlf(body), path=path)


# ---------------------------------------------------------------------------------------------
# Postfix


def render_main_cf(milter: str) -> str:
    """contrib/postfix/main.cf with the milter address replaced by milter (Postfix syntax:
    inet:HOST:PORT or unix:/PATH)."""
    text = (CONTRIB / "postfix" / "main.cf").read_text()
    assert text.count(CONTRIB_MILTER) == 1, f"{CONTRIB_MILTER} must occur once in main.cf"
    return text.replace(CONTRIB_MILTER, milter)


# The private instance has no TLS certificate and no SASL server (no Cyrus or Dovecot), so
# its submission listener accepts loopback clients instead. These lines come after the contrib
# entry's own -o options, and in master.cf the last -o for a parameter wins.
SUBMISSION_TEST_OVERRIDES = (
    "  -o smtpd_tls_security_level=none\n"
    "  -o smtpd_sasl_auth_enable=no\n"
    "  -o smtpd_client_restrictions=permit_mynetworks,reject\n"
    "  -o smtpd_relay_restrictions=permit_mynetworks,reject\n"
)


def render_master_cf(submission_port: int, reinject_port: int) -> str:
    """contrib/postfix/master.cf for a private instance: the submission and re-injection
    listeners on the given loopback ports, not chrooted (the instance has no chroot tree)."""
    text = (CONTRIB / "postfix" / "master.cf").read_text()
    out: list[str] = []
    entries = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("submission "):
            line = f"127.0.0.1:{submission_port} " + line[len("submission "):]
        elif line.startswith(CONTRIB_REINJECT + " "):
            line = f"127.0.0.1:{reinject_port} " + line[len(CONTRIB_REINJECT) + 1:]
        if line[:1] not in ("", " ", "\t", "#", "\n"):
            # A service entry: column 5 is chroot; a private instance runs unchrooted.
            fields = line.split()
            assert len(fields) >= 8, f"unexpected master.cf entry: {line!r}"
            fields[4] = "n"
            line = " ".join(fields) + "\n"
            entries += 1
        out.append(line)
        if line.strip() == "-o milter_macro_daemon_name=ORIGINATING":
            out.append(SUBMISSION_TEST_OVERRIDES)
    rendered = "".join(out)
    assert entries == 2, f"contrib/postfix/master.cf should define 2 services, found {entries}"
    assert SUBMISSION_TEST_OVERRIDES in rendered, "submission entry lost its daemon name"
    return rendered


# Postfix's own services (Debian's master.cf.dist, unchrooted); the smtp listener goes on a
# free port of its own.
BASE_MASTER_CF = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup    unix  n       -       n       1       1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """A private Postfix instance in base (a directory from open_dir).

    milter: the smtpd_milters value (inet:127.0.0.1:PORT or unix:/PATH), or "" for none.
    mailboxes: internal addresses delivered into Maildirs; their domains are the virtual
    mailbox domains. relay_port: where everything else goes (an SmtpSink).
    """

    def __init__(
        self,
        base: Path,
        *,
        milter: str,
        mailboxes: Sequence[str],
        relay_port: int,
        extra_main: Mapping[str, str] | None = None,
    ) -> None:
        self.base = base
        self.conf = base / "conf"
        self.spool = base / "spool"
        self.vmail = base / "vmail"
        self.logfile = base / "postfix.log"
        self.milter = milter
        self.mailboxes = tuple(mailboxes)
        self.relay_port = relay_port
        self.smtp_port = free_port()
        self.submission_port = free_port()
        self.reinject_port = free_port()
        self.extra_main = dict(extra_main or {})
        self._started = False
        self._write_config()

    # -- configuration

    def _write_config(self) -> None:
        for d in (self.conf, self.spool, self.base / "data", self.vmail):
            d.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.base / "data", "postfix")
        shutil.chown(self.vmail, 65534, 65534)
        domains = sorted({m.split("@", 1)[1] for m in self.mailboxes})
        inline = ", ".join(f"{m}={m}/Maildir/" for m in self.mailboxes)
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.spool),
            "data_directory": str(self.base / "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": str(self.logfile),
            # A log path outside these prefixes makes every command fail silently (INTEROP.md).
            "maillog_file_prefixes": f"/var, /dev/stdout, {self.base}",
            "myhostname": "mta.smimegate.test",
            "mydomain": "smimegate.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": f"[127.0.0.1]:{self.relay_port}",
            "virtual_mailbox_domains": " ".join(domains),
            "virtual_mailbox_base": str(self.vmail),
            "virtual_mailbox_maps": f"inline:{{ {inline} }}" if inline else "",
            "virtual_uid_maps": "static:65534",
            "virtual_gid_maps": "static:65534",
            "virtual_mailbox_limit": "0",
            "message_size_limit": "0",
            "smtputf8_enable": "no",
            "biff": "no",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "smtp_host_lookup": "native",
            "append_dot_mydomain": "no",
            "default_process_limit": "32",
            # Retry quickly: tests wait for deferred mail.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "delay_warning_time": "0",
            "smtp_connection_cache_on_demand": "yes",
        }
        settings.update(self.extra_main)
        base = "".join(f"{k} = {v}\n" for k, v in settings.items())
        main = base
        if self.milter:
            main += "\n# ---- contrib/postfix/main.cf ----\n" + render_main_cf(self.milter)
        (self.conf / "main.cf").write_text(main)
        master = BASE_MASTER_CF.format(smtp_port=self.smtp_port)
        master += "\n# ---- contrib/postfix/master.cf ----\n" + render_master_cf(
            self.submission_port, self.reinject_port
        )
        (self.conf / "master.cf").write_text(master)

    def postconf(self, *settings: str) -> None:
        """Change main.cf settings (NAME=VALUE) and reload a running instance."""
        run(["postconf", "-c", self.conf, "-e", *settings])
        if self._started:
            run(["postfix", "-c", self.conf, "reload"])

    # -- life cycle

    def start(self) -> None:
        """Start the instance; return when its three listeners accept connections."""
        run(["postfix", "-c", self.conf, "check"])
        run(["postfix", "-c", self.conf, "start"])
        self._started = True
        for port in (self.smtp_port, self.submission_port, self.reinject_port):
            wait_listening("127.0.0.1", port, log=self.log_tail())

    def master_pid(self) -> int | None:
        path = self.spool / "pid" / "master.pid"
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop the instance (postfix stop), then kill the master if it lingers."""
        if not self._started:
            return
        run(["postfix", "-c", self.conf, "stop"], check=False)
        pid = self.master_pid()
        deadline = time.monotonic() + 10
        while pid is not None and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid is not None and _alive(pid):
            # Only this instance's master (and its process group when it leads one).
            if _is_group_leader(pid):
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        self._started = False

    # -- using it

    def send(
        self,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        *,
        port: int | None = None,
    ) -> dict[str, tuple[int, bytes]]:
        """Submit one message over SMTP (smtplib); returns the refused recipients.

        Raises smtplib's exceptions as a client would see them (SMTPRecipientsRefused,
        SMTPDataError with the code and text of the reply).
        """
        with smtplib.SMTP("127.0.0.1", port or self.smtp_port, timeout=TIMEOUT) as client:
            client.ehlo("client.smimegate.test")
            refused: dict[str, tuple[int, bytes]] = client.sendmail(
                sender, list(recipients), crlf(message)
            )
            return refused

    def sendmail_command(self, sender: str, recipients: Sequence[str], message: bytes) -> None:
        """Submit through Postfix's sendmail(1): the non-SMTP path (non_smtpd_milters)."""
        run(["/usr/sbin/sendmail", "-C", self.conf, "-f", sender, "-i", "--", *recipients],
            input=message.replace(b"\r\n", b"\n"))

    def queue(self) -> list[dict[str, object]]:
        """The queue as postqueue -j lists it (one JSON object per message)."""
        out = run(["postqueue", "-c", self.conf, "-j"]).stdout.decode()
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def maildrop(self) -> list[Path]:
        """Files waiting in the maildrop directory (not yet taken by pickup)."""
        folder = self.spool / "maildrop"
        return sorted(folder.iterdir()) if folder.exists() else []

    def flush(self) -> None:
        """postqueue -f: deliver deferred mail and rescan the maildrop now."""
        run(["postqueue", "-c", self.conf, "-f"])

    def wait_idle(self, timeout: float = TIMEOUT) -> None:
        """Wait until the queue and the maildrop are empty."""
        wait_for(lambda: not self.queue() and not self.maildrop(), "an empty Postfix queue",
                 timeout, self.log_tail())

    def maildir(self, address: str) -> list[bytes]:
        """Messages delivered to address (new/ of its Maildir), oldest first, CRLF."""
        folder = self.vmail / address / "Maildir" / "new"
        if not folder.exists():
            return []
        files = sorted(folder.iterdir(), key=lambda p: (p.stat().st_mtime, p.name))
        return [crlf(p.read_bytes()) for p in files]

    def clear_maildirs(self) -> None:
        for address in self.mailboxes:
            folder = self.vmail / address / "Maildir" / "new"
            if folder.exists():
                for path in folder.iterdir():
                    path.unlink()

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


# ---------------------------------------------------------------------------------------------
# Milter processes


class MilterProcess:
    """A milter program run as a child process, listening on spec (libmilter syntax).

    ``postfix_spec`` is the same socket in Postfix's syntax for smtpd_milters.
    """

    def __init__(self, argv: Sequence[str], spec: str, logfile: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.spec = spec
        self.logfile = logfile
        self.env = dict(os.environ) | dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def postfix_spec(self) -> str:
        return postfix_milter_spec(self.spec)

    def start(self, timeout: float = TIMEOUT) -> None:
        """Start it; return when its socket accepts connections."""
        with self.logfile.open("ab") as log:
            self._proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                          env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        kind, _, rest = self.spec.partition(":")
        while True:
            if self._proc.poll() is not None:
                raise MtaError(f"milter {self.argv} exited {self._proc.returncode}:\n"
                               + self.log()[-3000:])
            try:
                if kind == "inet":
                    port, _, host = rest.partition("@")
                    with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1):
                        return
                else:
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                        s.connect(rest)
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise MtaError(
                        f"milter {self.spec} not listening:\n{self.log()[-3000:]}"
                    ) from None
                time.sleep(0.05)

    def signal_stop(self) -> None:
        """Send SIGTERM without waiting (stop() then waits): lets teardowns overlap."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; only this process (and its session)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""


def postfix_milter_spec(spec: str) -> str:
    """libmilter's inet:PORT@HOST (or unix:/PATH) in Postfix's inet:HOST:PORT syntax."""
    kind, _, rest = spec.partition(":")
    if kind == "inet":
        port, _, host = rest.partition("@")
        return f"inet:{host or '127.0.0.1'}:{port}"
    return spec


NOOP_MILTER = Path(__file__).with_name("noop_milter.py")


def noop_milter(spec: str, logfile: Path) -> MilterProcess:
    """The harness's own trivial pymilter milter (tests/e2e/noop_milter.py)."""
    return MilterProcess([sys.executable, str(NOOP_MILTER), spec], spec, logfile)


# ---------------------------------------------------------------------------------------------
# Sendmail, unpacked from Debian's packages (installing it would remove Postfix)

SENDMAIL_CACHE = ROOT / "var" / "cache" / "sendmail"
SENDMAIL_PACKAGES = ("sendmail-bin", "sendmail-cf", "sendmail-base", "m4")
CONTRIB_SENDMAIL_MILTER = "S=inet:8891@127.0.0.1"
SENDMAIL_HOSTNAME = "sm.smimegate.test"


def sendmail_tree(cache: Path = SENDMAIL_CACHE) -> Path:
    """The unpacked packages (usr/libexec/sendmail/sendmail, usr/share/sendmail/cf, m4).

    Downloaded with ``apt-get download`` and unpacked with ``dpkg -x`` on first use (after
    ``apt-get update`` if the package lists are missing); later runs reuse the cache.
    """
    tree = cache / "tree"
    done = cache / ".unpacked"
    if done.exists():
        return tree
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if _user_exists("_apt"):
        shutil.chown(debs, "_apt")  # apt downloads as _apt, which must be able to write here
    proc = subprocess.run(["apt-get", "download", *SENDMAIL_PACKAGES], cwd=debs,
                          capture_output=True, timeout=300, check=False)
    if proc.returncode != 0:
        run(["apt-get", "update", "-qq"])
        proc = subprocess.run(["apt-get", "download", *SENDMAIL_PACKAGES], cwd=debs,
                              capture_output=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise MtaError(f"apt-get download {' '.join(SENDMAIL_PACKAGES)} failed:\n"
                       + proc.stderr.decode(errors="replace"))
    tree.mkdir(parents=True, exist_ok=True)
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg", "-x", deb, tree])
    done.write_text("")
    return tree


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def render_sendmail_mc(milter: str, submission_port: int, reinject_port: int) -> str:
    """contrib/sendmail/smimegate.mc for a private instance: the milter socket (Sendmail's
    ``S=`` value: ``inet:PORT@HOST`` or ``local:/PATH``), submission and re-injection ports
    replaced; no SMTP AUTH on submission (there is no SASL server)."""
    text = (CONTRIB / "sendmail" / "smimegate.mc").read_text()
    replacements = {
        CONTRIB_SENDMAIL_MILTER: f"S={milter}",
        "`Port=submission, Name=ORIGINATING, M=Ea'":
            f"`Port={submission_port}, Addr=127.0.0.1, Name=ORIGINATING, M=E'",
        "`Port=10026, Addr=127.0.0.1,": f"`Port={reinject_port}, Addr=127.0.0.1,",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{old!r} must occur once in contrib/sendmail/smimegate.mc"
        text = text.replace(old, new)
    return text


# The private instance around the contrib lines: its own files, an inbound daemon named MTA,
# and every address relayed to [127.0.0.1]:relay_port (LOCAL_RULE_0: SMART_HOST alone still
# looks up MX records). promiscuous_relay: loopback clients only, on a private port.
SENDMAIL_MC_HEAD = """\
divert(-1)
divert(0)dnl
OSTYPE(`linux')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confDEF_USER_ID', `65534:65534')dnl
define(`QUEUE_DIR', `{base}/mqueue')dnl
define(`MSP_QUEUE_DIR', `{base}/clientmqueue')dnl
define(`confPID_FILE', `{base}/sendmail.pid')dnl
define(`STATUS_FILE', `{base}/sendmail.st')dnl
define(`confHELP_FILE', `')dnl
define(`confSERVICE_SWITCH_FILE', `{base}/service.switch')dnl
define(`confHOSTS_FILE', `/etc/hosts')dnl
define(`confCON_EXPENSIVE', `False')dnl
define(`confTO_QUEUEWARN', `0')dnl
define(`confMIN_QUEUE_AGE', `0')dnl
define(`confDELIVERY_MODE', `background')dnl
define(`confPRIVACY_FLAGS', `goaway')dnl
define(`confLOG_LEVEL', `9')dnl
define(`SMART_HOST', `[127.0.0.1]')dnl
define(`RELAY_MAILER_ARGS', `TCP $h {relay_port}')dnl
define(`ESMTP_MAILER_ARGS', `TCP $h {relay_port}')dnl
define(`SMTP_MAILER_ARGS', `TCP $h {relay_port}')dnl
undefine(`ALIAS_FILE')dnl
FEATURE(`promiscuous_relay')dnl
FEATURE(`no_default_msa')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`accept_unqualified_senders')dnl
DAEMON_OPTIONS(`Port={smtp_port}, Addr=127.0.0.1, Name=MTA')dnl
"""

SENDMAIL_MC_TAIL = """\
MAILER(`local')dnl
MAILER(`smtp')dnl
LOCAL_RULE_0
R$* < @ $* > $*\t$#esmtp $@ [127.0.0.1] $: $1 < @ $2 > $3
"""


class Sendmail:
    """Debian's Sendmail 8.17, unpacked, as a foreground daemon (-bD) in base.

    Listens on smtp_port (Name=MTA, mail from outside), submission_port (Name=ORIGINATING)
    and reinject_port (no milters); relays everything to relay_port.
    """

    def __init__(self, base: Path, *, milter: str, relay_port: int) -> None:
        self.tree = sendmail_tree()
        self.base = base
        self.relay_port = relay_port
        self.smtp_port = free_port()
        self.submission_port = free_port()
        self.reinject_port = free_port()
        for d in ("mqueue", "clientmqueue"):
            (base / d).mkdir(mode=0o700, parents=True, exist_ok=True)
        (base / "service.switch").write_text("hosts files\naliases files\n")
        mc = SENDMAIL_MC_HEAD.format(base=base, relay_port=relay_port, smtp_port=self.smtp_port)
        mc += render_sendmail_mc(milter, self.submission_port, self.reinject_port)
        mc += SENDMAIL_MC_TAIL
        self.mc = base / "sendmail.mc"
        self.mc.write_text(mc)
        self.cf = base / "sendmail.cf"
        cf_dir = self.tree / "usr" / "share" / "sendmail" / "cf"
        m4 = shutil.which("m4") or str(self.tree / "usr" / "bin" / "m4")
        cf = run([m4, f"-D_CF_DIR_={cf_dir}/", cf_dir / "m4" / "cf.m4", self.mc]).stdout
        self.cf.write_bytes(cf)
        self.binary = self.tree / "usr" / "libexec" / "sendmail" / "sendmail"
        self.logfile = base / "sendmail.out"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Run the daemon in the foreground (-bD), queue runs every few seconds.

        Sendmail sleeps 60 s at start-up when the host name has no dot ("My unqualified host
        name ... unknown; sleeping for retry"), as here ("vm"): it runs in its own UTS
        namespace whose host name is qualified, leaving the machine's own untouched.
        """
        command = (f"hostname {SENDMAIL_HOSTNAME} && exec {self.binary} -C {self.cf}"
                   " -bD -q3s")
        with self.logfile.open("ab") as log:
            self._proc = subprocess.Popen(
                ["unshare", "--uts", "sh", "-c", command],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        for port in (self.smtp_port, self.submission_port, self.reinject_port):
            wait_listening("127.0.0.1", port, log=self.log())

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def send(self, sender: str, recipients: Sequence[str], message: bytes, *,
             port: int | None = None) -> dict[str, tuple[int, bytes]]:
        """Submit one message over SMTP; raises smtplib's exceptions as a client sees them."""
        with smtplib.SMTP("127.0.0.1", port or self.smtp_port, timeout=TIMEOUT) as client:
            client.ehlo("client.smimegate.test")
            refused: dict[str, tuple[int, bytes]] = client.sendmail(
                sender, list(recipients), crlf(message)
            )
            return refused

    def queue_files(self) -> list[Path]:
        return sorted((self.base / "mqueue").iterdir())

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""
