"""Fixtures for the end-to-end tests through a real MTA: the real ``smimegate milter`` process
between a private Postfix (or Sendmail) and an smtp-sink, with a store set up through the
``smimegate`` command line exactly as an administrator would.

Import the fixtures you use into the test module (``from tests.e2e.mta_fixtures import
postfix_world  # noqa: F401``); they build on the session ``pki`` of tests/e2e/conftest.py, so
the client wrappers (openssl, gpgsm, NSS) hold the same keys as the store.

The world (issue 5, CONTRACT.md):
- a.test is internal; alice@a.test has a key and certificate (imported PKCS#12) and a Maildir;
- bob@b.test is outside with a trusted certificate (his key is only in the clients);
- carol@c.test is outside without a certificate (encrypt_mode allow: she gets it in clear);
- m.test requires encryption (encrypt_mode mandatory) and dave@m.test has no certificate.
The milter trusts no network: outbound mail is what arrives on the ORIGINATING submission
listener, so the tests exercise {daemon_name} from contrib/postfix/master.cf.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.clients import P12_PASSWORD, Pki
from tests.e2e.mta import MilterProcess, MtaError, Postfix, Sendmail, SmtpSink, open_dir
from tests.helpers.ports import free_port

SMIMEGATE = str(Path(sys.executable).with_name("smimegate"))
PREFIX = "X-Smimegate-Info-"
AUTHSERV_ID = "mta.smimegate.test"

INTERNAL = "a.test"
ALICE = "alice@a.test"
BOB = "bob@b.test"
CAROL = "carol@c.test"
DAVE = "dave@m.test"


def milter_config(base: Path, *, socket: str, reinject_port: int, store: Path) -> Path:
    """Write a milter configuration under base; the store is shared between instances."""
    path = base / "smimegate.toml"
    path.write_text(
        "[store]\n"
        f'url = "sqlite:///{store / "smimegate.db"}"\n'
        f'master_key_file = "{store / "master.key"}"\n'
        "[milter]\n"
        f'socket = "{socket}"\n'
        'log = "stdout"\n'
        "trusted_networks = []\n"
        'originating_daemons = ["ORIGINATING"]\n'
        f'reinject = "smtp:127.0.0.1:{reinject_port}"\n'
        f'reinject_secret_file = "{store / "reinject.key"}"\n'
        f'authserv_id = "{AUTHSERV_ID}"\n'
    )
    return path


def smimegate(config: Path, *args: str) -> str:
    """Run one ``smimegate -c config ...`` command; raise MtaError with its output if it fails."""
    proc = subprocess.run([SMIMEGATE, "-c", str(config), *args], capture_output=True,
                          timeout=60, check=False)
    if proc.returncode != 0:
        raise MtaError(f"smimegate {' '.join(args)} exited {proc.returncode}: "
                       f"{proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def provision(config: Path, pki: Pki) -> None:
    """The store of the world described in the module docstring, through the CLI."""
    smimegate(config, "db", "init")
    smimegate(config, "root", "add", str(pki.ca_crt))
    smimegate(config, "domain", "add", INTERNAL, "--locality", "internal")
    smimegate(config, "domain", "add", "m.test", "--encrypt-mode", "mandatory")
    smimegate(config, "cert", "import", str(pki.alice.p12), "--password", P12_PASSWORD)
    smimegate(config, "cert", "import", str(pki.bob.crt))


def smimegate_milter(config: Path, socket: str, logfile: Path) -> MilterProcess:
    """The real milter daemon, ``smimegate -c config milter``, in the foreground."""
    return MilterProcess([SMIMEGATE, "-c", str(config), "milter"], socket, logfile)


@contextlib.contextmanager
def running(sink: SmtpSink, milter: MilterProcess, mta: Postfix | Sendmail) -> Iterator[None]:
    """Start the sink, the milter and the MTA; stop them all at the end."""
    try:
        sink.start()
        milter.start()
        mta.start()
        yield
    finally:
        milter.signal_stop()  # libmilter takes seconds to return: overlap with the MTA's stop
        mta.stop()
        milter.stop()
        sink.stop()


@dataclass
class PostfixWorld:
    """A running Postfix + smimegate milter + smtp-sink, and the pki the clients share."""

    base: Path
    pki: Pki
    config: Path
    postfix: Postfix
    sink: SmtpSink
    milter: MilterProcess

    def reset(self) -> None:
        """Forget captured and delivered mail (between tests)."""
        self.postfix.wait_idle()
        self.sink.clear()
        self.postfix.clear_maildirs()


@pytest.fixture(scope="session")
def store_dir(pki: Pki) -> Iterator[Path]:
    """A provisioned SQLite store (and its master key), shared by the Postfix and Sendmail
    worlds of one session."""
    base = open_dir("smimegate-store-")
    config = milter_config(base, socket="inet:1@127.0.0.1", reinject_port=1, store=base)
    provision(config, pki)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postfix_world(pki: Pki, store_dir: Path) -> Iterator[PostfixWorld]:
    """Postfix with contrib/postfix rendered in, the real milter on inet:, an smtp-sink."""
    base = open_dir("smimegate-postfix-")
    sink = SmtpSink(base / "sink")
    socket = f"inet:{free_port()}@127.0.0.1"
    postfix = Postfix(base / "postfix", milter=_postfix_spec(socket), mailboxes=[ALICE],
                      relay_port=sink.port)
    config = milter_config(base, socket=socket, reinject_port=postfix.reinject_port,
                           store=store_dir)
    milter = smimegate_milter(config, socket, base / "milter.log")
    with running(sink, milter, postfix):
        yield PostfixWorld(base, pki, config, postfix, sink, milter)
    shutil.rmtree(base, ignore_errors=True)


def _postfix_spec(spec: str) -> str:
    port, _, host = spec.removeprefix("inet:").partition("@")
    return f"inet:{host}:{port}"


@pytest.fixture()
def world(postfix_world: PostfixWorld) -> Iterator[PostfixWorld]:
    """The session's Postfix world, emptied of earlier tests' mail, milter running."""
    if not postfix_world.milter.running:
        postfix_world.milter.start()
    postfix_world.reset()
    yield postfix_world


@dataclass
class SendmailWorld:
    base: Path
    pki: Pki
    sendmail: Sendmail
    sink: SmtpSink
    milter: MilterProcess


@pytest.fixture(scope="module", params=["inet", "unix"])
def sendmail_world(request: pytest.FixtureRequest, pki: Pki, store_dir: Path
                   ) -> Iterator[SendmailWorld]:
    """Debian's Sendmail (unpacked) with contrib/sendmail rendered in, the same store; the
    milter on inet: as contrib has it, and on unix:, where the milter negotiates DATA away
    (smimegate/milter/session.py)."""
    base = open_dir("smimegate-sendmail-")
    sink = SmtpSink(base / "sink")
    run_dir: Path | None = None
    if request.param == "unix":
        # Not under /tmp: Sendmail refuses a local socket below a world-writable directory
        # ("local socket name ... unsafe: World writable directory"), as an admin's would be
        # in /run. Sendmail runs as root here (its own UTS namespace), so /run is writable.
        run_dir = Path(tempfile.mkdtemp(prefix="smimegate-sendmail-", dir="/run"))
        run_dir.chmod(0o755)
        socket = f"unix:{run_dir / 'milter.sock'}"
        sendmail_spec = f"local:{run_dir / 'milter.sock'}"
    else:
        port = free_port()
        socket = sendmail_spec = f"inet:{port}@127.0.0.1"
    sendmail = Sendmail(base / "sendmail", milter=sendmail_spec, relay_port=sink.port)
    config = milter_config(base, socket=socket, reinject_port=sendmail.reinject_port,
                           store=store_dir)
    milter = smimegate_milter(config, socket, base / "milter.log")
    with running(sink, milter, sendmail):
        yield SendmailWorld(base, pki, sendmail, sink, milter)
    shutil.rmtree(base, ignore_errors=True)
    if run_dir is not None:
        shutil.rmtree(run_dir, ignore_errors=True)
