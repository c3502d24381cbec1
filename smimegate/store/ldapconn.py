"""One thread-safe, self-reconnecting connection to the directory (ldap3), and filter escaping.

The connection is an ldap3 ``SAFE_RESTARTABLE`` connection over a ``ServerPool`` of the
configured URLs (strategy FIRST: "tried in order", CONTRACT.md; ``active``: a server that does
not answer is skipped). SAFE_RESTARTABLE serialises operations with a lock, so every milter
thread may use the one connection, and reopens, re-binds (and repeats StartTLS) when the server
dropped it, e.g. after a directory restart: no restart of ours is needed.

ldap3's own retry defaults (30 tries, 2 s apart; a 10 s pause after every failed cycle through
the pool) would hold an SMTP session for a minute when the directory is down. A milter must
answer quickly and let the MTA retry (451), so we retry once and then raise
DirectoryUnavailable; the caller tempfails or, with ``on_unavailable = "soft"``, decides
without the directory.

TLS: ldaps:// URLs, or StartTLS (RFC 4513 section 3) before the bind when ``start_tls`` is set,
always with certificate validation (``CERT_REQUIRED``) against ``ca_file`` or the system's CAs.
"""

from __future__ import annotations

import logging
import math
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.config import set_config_parameter

from smimegate.config import LdapConfig
from smimegate.store.base import StoreError, StoreUnavailable

log = logging.getLogger("smimegate.ldap")

# LDAP result codes (RFC 4511 section 4.1.9 and Appendix A).
_SUCCESS = 0
_SIZE_LIMIT_EXCEEDED = 4
_NO_SUCH_OBJECT = 32
_PAGED_RESULTS = "1.2.840.113556.1.4.319"  # RFC 2696
PAGE_SIZE = 500

# Process-wide ldap3 setting (we are its only user in the process): no pause between cycles
# through the server pool when none answered; see the module docstring.
set_config_parameter("POOLING_LOOP_TIMEOUT", 0)


class DirectoryError(StoreError):
    """The directory cannot be used as configured (unreadable password file, a refused
    modification, no entry to publish to). A StoreError, so that the commands and the daemon,
    which report a StoreError in one line, treat a directory set-up error alike."""


class DirectoryUnavailable(DirectoryError, StoreUnavailable):
    """No configured server answered, the bind failed or an operation timed out.

    Transient: a decision that depends on the directory tempfails (451), unless
    ``on_unavailable = "soft"``. It is also a StoreUnavailable, so code that already maps an
    unreachable store to 451 4.7.1 (the milter's action table) treats the directory alike.
    """


@dataclass(frozen=True)
class Entry:
    """One search result: its DN and its attributes as raw values.

    Keys are attribute descriptions as the server returned them (``userCertificate;binary``);
    use ``values`` to find one regardless of case and of the ``;binary`` option.
    """

    dn: str
    attributes: Mapping[str, tuple[bytes, ...]]

    def values(self, description: str) -> tuple[bytes, ...]:
        """Every value of an attribute. The name is matched case-insensitively and with and
        without the ``;binary`` transfer option (RFC 4522 section 2: it changes the transfer
        encoding, not the attribute), so ``userCertificate`` finds ``userCertificate;binary``."""
        want = strip_binary(description).lower()
        found: list[bytes] = []
        for key, values in self.attributes.items():
            if strip_binary(key).lower() == want:
                found.extend(v for v in values if v not in found)
        return tuple(found)

    def texts(self, description: str) -> tuple[str, ...]:
        """Values as text (LDAP strings are UTF-8, RFC 4511 section 4.1.2); undecodable values
        are skipped with a warning."""
        out: list[str] = []
        for raw in self.values(description):
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                log.warning("ldap: %s: %s holds a value that is not UTF-8; ignored",
                            self.dn, description)
        return tuple(out)


def strip_binary(description: str) -> str:
    """The attribute description without a ``;binary`` option (other options are kept)."""
    parts = description.split(";")
    return ";".join(p for i, p in enumerate(parts) if i == 0 or p.lower() != "binary")


def escape_filter_value(value: str) -> str:
    """Escape a value for an LDAP filter (RFC 4515 section 3): ``*``, ``(``, ``)``, ``\\`` and
    NUL become ``\\2a``, ``\\28``, ``\\29``, ``\\5c`` and ``\\00``, so an address cannot change
    the filter's meaning."""
    table = {"\\": r"\5c", "*": r"\2a", "(": r"\28", ")": r"\29", "\x00": r"\00"}
    return "".join(table.get(ch, ch) for ch in value)


def user_filter(template: str, address: str) -> str:
    """The configured user filter with every ``{email}`` replaced by the escaped address."""
    return template.replace("{email}", escape_filter_value(address))


def read_password(config: LdapConfig) -> str | None:
    """The bind password (first line of password_file), or None for an anonymous bind.

    Raises DirectoryError when a bind DN is configured and the file cannot be read.
    """
    if not config.bind_dn:
        return None
    try:
        text = Path(config.password_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DirectoryError(f"[ldap] password_file {config.password_file}: {detail}") from None
    return text.splitlines()[0] if text else ""


class DirectoryConnection:
    """The connection every lookup shares. Opened on first use, so that the milter starts
    while the directory is down; thread-safe."""

    def __init__(self, config: LdapConfig, password: str | None = None) -> None:
        """Raises DirectoryError when the password file cannot be read."""
        self._config = config
        self._password = password if password is not None else read_password(config)
        self._lock = threading.Lock()
        self._conn: ldap3.Connection | None = None
        tls = None
        if config.start_tls or any(u.lower().startswith("ldaps://") for u in config.urls):
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED,
                ca_certs_file=config.ca_file or None,
                version=ssl.PROTOCOL_TLS_CLIENT,
            )
        servers = [
            ldap3.Server(
                url,
                use_ssl=url.lower().startswith("ldaps://"),
                tls=tls,
                connect_timeout=config.timeout,
                get_info=ldap3.NONE,  # we read raw values and need no schema
            )
            for url in config.urls
        ]
        self._pool = ldap3.ServerPool(servers, ldap3.FIRST, active=1, exhaust=False)

    def _connection(self) -> ldap3.Connection:
        with self._lock:
            if self._conn is not None:
                return self._conn
            timeout = max(1, math.ceil(self._config.timeout))  # ldap3 packs it as an integer
            try:
                conn = ldap3.Connection(
                    self._pool,
                    user=self._config.bind_dn or None,
                    password=self._password,
                    client_strategy=ldap3.SAFE_RESTARTABLE,
                    auto_bind=ldap3.AUTO_BIND_NONE,
                    receive_timeout=timeout,
                    return_empty_attributes=False,
                    raise_exceptions=False,
                )
                # One quick retry after a dropped connection (see the module docstring); set
                # before the first open, which uses the same retry machinery.
                conn.strategy.restartable_tries = 1
                conn.strategy.restartable_sleep_time = 0.05
                conn.open(read_server_info=False)
                if self._config.start_tls and not conn.server.ssl:
                    if not _ok(conn.start_tls(read_server_info=False)):
                        raise DirectoryUnavailable(
                            f"ldap: StartTLS failed: {conn.last_error or 'refused'}"
                        )
                status = conn.bind(read_server_info=False)
                if not _ok(status):
                    result = status[1] if isinstance(status, tuple) else conn.result
                    raise DirectoryUnavailable(f"ldap: bind failed: {_describe(result)}")
            except LDAPException as exc:
                raise DirectoryUnavailable(f"ldap: cannot connect and bind: {_reason(exc)}") from exc
            self._conn = conn
            return conn

    def _forget(self, conn: ldap3.Connection) -> None:
        """Drop a connection that failed beyond its own retries; the next call opens anew."""
        with self._lock:
            if self._conn is conn:
                self._conn = None
        try:
            conn.unbind()
        except (LDAPException, OSError):
            pass  # already broken: nothing to release beyond the socket

    def search(
        self,
        base: str,
        search_filter: str,
        attributes: Sequence[str],
        *,
        scope: str = ldap3.SUBTREE,
        paged: bool = False,
    ) -> list[Entry]:
        """Entries under base matching the filter, with the requested attributes.

        A base that does not exist gives no entries. ``paged``: fetch in pages (RFC 2696), for
        searches that may exceed the server's size limit (``ldap sync``).
        Raises DirectoryUnavailable when no server answers or the server refuses the search.
        """
        conn = self._connection()
        entries: list[Entry] = []
        cookie: Any = None
        while True:
            try:
                status, result, response, _ = conn.search(
                    base,
                    search_filter,
                    search_scope=scope,
                    attributes=list(attributes),
                    time_limit=max(1, math.ceil(self._config.timeout)),
                    paged_size=PAGE_SIZE if paged else None,
                    paged_cookie=cookie,
                )
            except LDAPException as exc:
                self._forget(conn)
                raise DirectoryUnavailable(f"ldap: search failed: {_reason(exc)}") from exc
            code = result.get("result") if result else None
            if code == _NO_SUCH_OBJECT:
                return entries
            if code not in (_SUCCESS, _SIZE_LIMIT_EXCEEDED):
                raise DirectoryUnavailable(f"ldap: search under {base} failed: {_describe(result)}")
            if code == _SIZE_LIMIT_EXCEEDED:
                log.warning("ldap: search under %s hit the server's size limit", base)
            for item in response or ():
                if item.get("type") == "searchResEntry":
                    raw = item.get("raw_attributes") or {}
                    attrs = {str(k): tuple(bytes(v) for v in vals) for k, vals in raw.items()}
                    entries.append(Entry(str(item["dn"]), attrs))
            cookie = _page_cookie(result) if paged else None
            if not cookie:
                return entries

    def modify(self, dn: str, changes: Mapping[str, list[tuple[str, list[bytes]]]]) -> None:
        """Apply ldap3 modify changes to dn.

        Raises DirectoryUnavailable when no server answers, DirectoryError when the server
        refuses the change (no such entry, access denied, schema violation).
        """
        conn = self._connection()
        try:
            status, result, _, _ = conn.modify(dn, dict(changes))
        except LDAPException as exc:
            self._forget(conn)
            raise DirectoryUnavailable(f"ldap: modify failed: {_reason(exc)}") from exc
        if not status:
            raise DirectoryError(f"ldap: cannot modify {dn}: {_describe(result)}")

    def close(self) -> None:
        """Unbind; a later call opens a new connection."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.unbind()
            except (LDAPException, OSError):
                pass  # closing a broken connection: nothing left to release


def _ok(value: Any) -> bool:
    """The status of an ldap3 call: thread-safe strategies return (status, result, ...)."""
    return bool(value[0] if isinstance(value, tuple) else value)


def _page_cookie(result: Mapping[str, Any]) -> Any:
    controls = result.get("controls") or {}
    control = controls.get(_PAGED_RESULTS) or {}
    return (control.get("value") or {}).get("cookie")


def _describe(result: Mapping[str, Any] | None) -> str:
    if not result:
        return "no answer"
    text = str(result.get("description") or result.get("result"))
    if result.get("message"):
        text += f" ({result['message']})"
    return text


def _reason(exc: BaseException) -> str:
    args: tuple[object, ...] = exc.args
    text = str(exc) or type(exc).__name__
    history = args[1] if len(args) > 1 else None
    if isinstance(history, list) and history:
        text += f": {history[-1]}"  # LDAPMaximumRetriesError carries the last real error
    return text
