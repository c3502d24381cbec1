"""Migrations: shipped files, idempotent init, upgrade in place, newer schema refused."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from smimegate.store import SchemaError, SqlStore, init_database
from smimegate.store.migrations import DATA_STEPS, load_migrations, split_statements
from tests.helpers.testpki import TestCA

ROOT = Path(__file__).resolve().parents[3]


def test_split_statements() -> None:
    text = "-- header; not a statement\nCREATE TABLE a (\n  x TEXT -- note;\n);\n\nSELECT 1;\n"
    assert split_statements(text) == ["CREATE TABLE a (\n  x TEXT\n)", "SELECT 1"]
    with pytest.raises(SchemaError, match="final ';'"):
        split_statements("SELECT 1")


def test_both_dialects_have_every_migration() -> None:
    sqlite, pg = load_migrations("sqlite"), load_migrations("postgresql")
    assert [m.version for m in sqlite] == [m.version for m in pg] == list(
        range(1, len(sqlite) + 1))
    assert len(sqlite) >= 2
    # Every migration does something: SQL, or a Python data step (0006 name_strings).
    assert all(m.statements or m.name in DATA_STEPS for m in sqlite + pg)


def test_init_is_idempotent(open_store: Callable[..., SqlStore]) -> None:
    store = open_store()
    assert store.schema_version() == 0
    with pytest.raises(SchemaError, match="db init"):
        store.check_schema()
    newest = store.latest_version()
    assert store.migrate() == list(range(1, newest + 1))
    assert store.migrate() == []
    assert store.schema_version() == newest
    store.check_schema()
    # A second process opening it with the default schema check is happy too.
    open_store(check_schema=True, create=False).check_schema()


def test_upgrade_from_0001_keeps_data(open_store: Callable[..., SqlStore]) -> None:
    store = open_store()
    assert store.migrate(target=1) == [1]
    with pytest.raises(SchemaError, match="version is 1"):
        open_store(check_schema=True)
    ca = TestCA()
    alice = ca.issue("alice@example.com")
    # Written as a version-1 smimegate wrote it (today's policy writes also count in the
    # generations table of 0008).
    with store._db.connection() as cur:
        cur.run("INSERT INTO domains (name, created) VALUES ('example.com', 0)")
        cur.run("INSERT INTO domain_properties (domain, name, value)"
                " VALUES ('example.com', 'locality', 'internal')")
    fp = store.add_certificate(alice.cert, key=alice.key).fingerprint
    with pytest.raises(SchemaError):  # the queue arrives in 0002
        store.enqueue("sms", b"x")
    assert store.migrate() == list(range(2, store.latest_version() + 1))
    assert store.get_domain("example.com").properties == {"locality": "internal"}
    assert store.get_private_key(fp).public_key().public_numbers() == (
        alice.key.public_key().public_numbers())
    assert store.enqueue("sms", b"x") >= 1


def test_newer_schema_is_refused(open_store: Callable[..., SqlStore]) -> None:
    store = open_store()
    store.migrate()
    with store._db.connection() as cur:
        cur.run("INSERT INTO schema_version (version, name, applied) VALUES (999, 'future', 0)")
    with pytest.raises(SchemaError, match="newer than this smimegate"):
        store.migrate()
    with pytest.raises(SchemaError, match="upgrade smimegate"):
        open_store(check_schema=True)


def test_missing_sqlite_file_is_a_schema_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="does not exist.*db init"):
        SqlStore.open(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()


def test_wheel_ships_the_migrations(tmp_path: Path) -> None:
    """A plain (non-editable) wheel contains sql/ as smimegate/sql through the symlink."""
    src = tmp_path / "src"
    shutil.copytree(
        ROOT, src, symlinks=True,
        ignore=shutil.ignore_patterns(".git", ".venv", "*_cache", "var", "build", "dist",
                                      "*.egg-info", "__pycache__", "tests", ".hypothesis"),
    )
    out = tmp_path / "wheel"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("smimegate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.removeprefix("smimegate/sql/") for n in names if n.startswith("smimegate/sql/")}
    expected = {p.name for p in (ROOT / "sql").glob("*.sql")}
    assert expected and expected <= shipped
    assert "README.md" in shipped

    # The unpacked wheel, not this checkout, finds and applies its migrations.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        "import sys, smimegate, smimegate.store as s\n"
        f"assert smimegate.__file__.startswith({str(site)!r}), smimegate.__file__\n"
        f"r = s.init_database('sqlite:///{tmp_path}/w.db', '{tmp_path}/w.key')\n"
        "print(r.version, len(r.applied))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=60,
                         cwd=tmp_path)  # not the checkout: python -c puts cwd first
    assert run.returncode == 0, run.stderr
    version, applied = run.stdout.split()
    assert int(version) == int(applied) == len(load_migrations("sqlite"))


def test_init_database(store_url: str, tmp_path: Path) -> None:
    if store_url.startswith("sqlite:///"):
        store_url = f"sqlite:///{tmp_path / 'var' / 'lib' / 'store.db'}"  # directories made
    key = tmp_path / "master.key"
    first = init_database(store_url, key)
    assert first.key_created and first.applied and first.version == len(first.applied)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = init_database(store_url, key)
    assert (again.key_created, again.applied, again.version) == (False, (), first.version)
    SqlStore.open(store_url, key).check_schema()


def test_0006_rewrites_name_strings_of_stored_rows(open_store: Callable[..., SqlStore]) -> None:
    """Rows stored before 0006 carry cryptography's RFC 4514 text (emailAddress as an OID,
    "," between RDNs); 0006 writes them as smimegate.dn does, so lookups by issuer find them
    and listings show names."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from smimegate.pki.crl import build_crl

    store = open_store()
    store.migrate(target=5)
    ca = TestCA()
    alice = ca.issue("alice@example.com")
    # A certificate whose subject holds emailAddress, stored the old way.
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Old Org"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Old"),
                         x509.NameAttribute(NameOID.EMAIL_ADDRESS, "old@example.com")])
    old = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject)
           .public_key(alice.cert.public_key()).serial_number(77)
           .not_valid_before(alice.cert.not_valid_before_utc)
           .not_valid_after(alice.cert.not_valid_after_utc).sign(ca.key, hashes.SHA256()))
    fp = store.add_certificate(old).fingerprint
    crl = build_crl(ca.cert, ca.key, [], 1)
    crl_fp = store.add_crl(crl).fingerprint
    with store._db.transaction() as cur:
        cur.run("UPDATE certificates SET subject = ?, issuer = ? WHERE fingerprint = ?",
                (subject.rfc4514_string(), ca.cert.subject.rfc4514_string(), fp))
        cur.run("UPDATE crls SET issuer = ? WHERE fingerprint = ?",
                (ca.cert.subject.rfc4514_string(), crl_fp))
    assert "1.2.840.113549.1.9.1=old@example.com" in store.get_certificate(fp).subject
    assert store.migrate() == [6, *range(7, store.latest_version() + 1)]
    record = store.get_certificate(fp)
    assert record.subject == "emailAddress=old@example.com, CN=Old, O=Old Org"
    assert [r.fingerprint for r in store.find_by_issuer_serial(ca.cert.subject, 77)] == [fp]
    assert [r.fingerprint for r in store.crls_for_issuer(ca.cert.subject)] == [crl_fp]
