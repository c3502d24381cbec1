"""Read the numbered migrations shipped in smimegate/sql (see sql/README.md) and apply them."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from smimegate.store.base import SchemaError
from smimegate.store.dialect import Backend, Cursor

DIALECTS = ("sqlite", "postgresql")
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(sqlite|postgresql))?\.sql$")

_BOOTSTRAP = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied BIGINT NOT NULL)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(text: str) -> list[str]:
    """Statements of a migration file: `--` comments dropped, split at `;` ending a line."""
    lines = [line.split("--", 1)[0].rstrip() for line in text.splitlines()]
    statements, current = [], []
    for line in lines:
        if not line.strip():
            continue
        current.append(line)
        if line.endswith(";"):
            statements.append("\n".join(current)[:-1].strip())
            current = []
    if current:
        raise SchemaError(f"migration statement without a final ';': {current[0].strip()!r}")
    return statements


def load_migrations(dialect: str) -> list[Migration]:
    """Every migration for dialect, in order. Raises SchemaError when the files are missing."""
    folder = resources.files("smimegate") / "sql"
    if not folder.is_dir():
        raise SchemaError("the sql/ migrations are not installed with smimegate")
    parts: dict[int, dict[str, tuple[str, str]]] = {}
    for entry in folder.iterdir():
        m = _FILE.match(entry.name)
        if not m:
            continue
        version, name, which = int(m.group(1)), m.group(2), m.group(3) or ""
        parts.setdefault(version, {})[which] = (name, entry.read_text(encoding="utf-8"))
    result = []
    for version in sorted(parts):
        files = parts[version]
        names = {n for n, _ in files.values()}
        if len(names) != 1:
            raise SchemaError(f"migration {version:04d} has files with different names: {names}")
        # The dialect file first: it creates what differs, the shared file builds on it.
        statements = []
        for which in (dialect, ""):
            if which in files:
                statements += split_statements(files[which][1])
        result.append(Migration(version, names.pop(), tuple(statements)))
    if [m.version for m in result] != list(range(1, len(result) + 1)):
        raise SchemaError("migration numbers are not 0001, 0002, ... without gaps")
    return result


def current_version(cur: Cursor) -> int:
    row = cur.one("SELECT MAX(version) FROM schema_version")
    return int(row[0]) if row and row[0] is not None else 0


def migrate(backend: Backend, target: int | None = None) -> list[int]:
    """Apply pending migrations up to target (default: the newest); return versions applied.

    Each migration runs in its own transaction with its schema_version row, under a schema
    lock, so a failed one leaves the previous version intact and two concurrent runs apply
    each migration once. Raises SchemaError when the database is newer than this code.
    """
    migrations = load_migrations(backend.name)
    newest = len(migrations)
    target = newest if target is None else target
    if not 0 <= target <= newest:
        raise SchemaError(f"no schema version {target}; this smimegate knows 1..{newest}")
    with backend.transaction() as cur:
        backend.lock_schema(cur)
        cur.run(_BOOTSTRAP)
        _refuse_newer(current_version(cur), newest)
    applied = []
    for migration in migrations[:target]:
        with backend.transaction() as cur:
            backend.lock_schema(cur)
            version = current_version(cur)
            _refuse_newer(version, newest)
            if version >= migration.version:
                continue
            for statement in migration.statements:
                cur.run(statement)
            step = DATA_STEPS.get(migration.name)
            if step is not None:
                step(cur)
            cur.run(
                "INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)",
                (migration.version, migration.name, int(time.time())),
            )
            applied.append(migration.version)
    return applied


def _rewrite_name_strings(cur: Cursor) -> None:
    """0006: subject/issuer text of stored certificates and CRLs in smimegate.dn's form.

    A row whose DER cryptography no longer reads keeps its old text: it could not have been
    stored so, and nothing looks it up by a name it cannot produce anyway.
    """
    from cryptography import x509

    from smimegate.dn import name_string

    rows = []
    for fingerprint, der in cur.all("SELECT fingerprint, der FROM certificates"):
        try:
            cert = x509.load_der_x509_certificate(bytes(der))
            rows.append((name_string(cert.subject), name_string(cert.issuer), fingerprint))
        except ValueError:
            continue
    cur.many("UPDATE certificates SET subject = ?, issuer = ? WHERE fingerprint = ?", rows)
    crls = []
    for fingerprint, der in cur.all("SELECT fingerprint, der FROM crls"):
        try:
            crls.append((name_string(x509.load_der_x509_crl(bytes(der)).issuer), fingerprint))
        except ValueError:
            continue
    cur.many("UPDATE crls SET issuer = ? WHERE fingerprint = ?", crls)


# Migrations whose data change SQL cannot express, by migration name (not number, so a
# renumbered file keeps its step); each runs after the SQL of its migration, in its
# transaction.
DATA_STEPS: dict[str, Callable[[Cursor], None]] = {
    "name_strings": _rewrite_name_strings,
}


def _refuse_newer(version: int, newest: int) -> None:
    if version > newest:
        raise SchemaError(
            f"store schema version {version} is newer than this smimegate "
            f"(knows up to {newest}): upgrade smimegate"
        )


def schema_version(backend: Backend) -> int:
    """The applied version; 0 when the database is empty."""
    try:
        with backend.connection() as cur:
            return current_version(cur)
    except SchemaError:  # no schema_version table yet
        return 0
