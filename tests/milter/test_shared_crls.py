"""Several milter processes over one store (issue 10 item 6): a CRL imported by another process
reaches every Services within its anchors' max age (reloaded in the background, no message
waits) or at once on reload (SIGUSR1), on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.milter import services as svc
from smimegate.milter.services import Services
from smimegate.pki import trust
from smimegate.store.keys import ensure_master_key
from smimegate.store.sql import SqlStore
from tests.helpers.testpki import TestCA

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture()
def world(url: str, tmp_path: Path) -> Iterator[tuple[str, Path, TestCA, x509.Certificate]]:
    ensure_master_key(tmp_path / "master.key")
    store = SqlStore.open(url, tmp_path / "master.key", check_schema=False, create=True)
    store.migrate()
    ca = TestCA("Shared Root")
    store.add_root(ca.cert)
    leaf = ca.issue("carol@partner.test").cert
    store.close()
    yield url, tmp_path, ca, leaf


def revoking_crl(ca: TestCA, leaf: x509.Certificate) -> bytes:
    now = dt.datetime.now(dt.UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
           .last_update(now - dt.timedelta(minutes=1)).next_update(now + dt.timedelta(days=1))
           .add_extension(x509.CRLNumber(7), critical=False)
           .add_revoked_certificate(x509.RevokedCertificateBuilder()
                                    .serial_number(leaf.serial_number)
                                    .revocation_date(now - dt.timedelta(minutes=1)).build())
           .sign(ca.key, hashes.SHA256()))
    return crl.public_bytes(Encoding.PEM)


def import_in_another_process(url: str, tmp_path: Path, pem: bytes) -> None:
    """What `smimegate crl import` does, run by a separate Python process."""
    path = tmp_path / "partner.crl.pem"
    path.write_bytes(pem)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from smimegate.pki.crlstore import CrlKeeper, read_bundle\n"
        "from smimegate.store.sql import SqlStore\n"
        "store = SqlStore.open(sys.argv[1], Path(sys.argv[2]))\n"
        "for item in read_bundle(Path(sys.argv[3]).read_bytes()):\n"
        "    CrlKeeper(store).keep(item.crl, source='import:other-process')\n"
        "store.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", code, url, str(tmp_path / "master.key"),
                           str(path)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def status(services: Services, leaf: x509.Certificate) -> str:
    return trust.check(leaf, services.anchors(), purpose="encrypt").revocation


def test_a_crl_imported_elsewhere_reaches_every_milter(
        world: tuple[str, Path, TestCA, x509.Certificate],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url, tmp_path, ca, leaf = world
    # Two milter processes' services, each with its own connections (pool) to the store.
    monkeypatch.setattr(svc, "ANCHORS_MAX_AGE", 0.5)
    store_a = SqlStore.open(url, tmp_path / "master.key")
    store_b = SqlStore.open(url, tmp_path / "master.key")
    try:
        aged = Services(store_a)  # reloads in the background after ANCHORS_MAX_AGE
        monkeypatch.setattr(svc, "ANCHORS_MAX_AGE", 3600.0)
        signalled = Services(store_b)  # effectively only on reload (SIGUSR1)
        assert status(aged, leaf) == status(signalled, leaf) == "unknown"

        import_in_another_process(url, tmp_path, revoking_crl(ca, leaf))

        # Within max age, without any signal; messages meanwhile get the old value at once.
        assert wait_for(lambda: status(aged, leaf) == "revoked")
        assert status(signalled, leaf) == "unknown"
        signalled.reload()
        assert status(signalled, leaf) == "revoked"
        assert not trust.check(leaf, signalled.anchors(), purpose="encrypt").trusted
        # The reload was incremental: the next one parses nothing again.
        parsed = signalled.anchors().crls[0]
        signalled.reload()
        assert signalled.anchors().crls[0] is parsed
    finally:
        store_a.close()
        store_b.close()
