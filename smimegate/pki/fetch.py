"""CRL download from the distribution points of the stored certificates (issue 4, item 8).

``fetch_all`` collects the fullName URIs of the cRLDistributionPoints extension (RFC 5280
4.2.1.13) of every usable certificate in the store, CA certificates included, downloads each
CRL (http/https through urllib, ldap/ldaps through ldap3 per RFC 4516), checks it and keeps it
in the store when it is newer than the one held. One URL's failure is an outcome, never an
exception: the report says per URL fetched / unchanged / failed and why.

Every well-formed CRL is kept (smimegate.pki.crlstore, issue 10 item 1): complete, delta and
partitioned CRLs side by side, also one whose issuer is not a CA of the store yet (checked when
a certificate path needs it). Refused: what does not parse (DER, or PEM as some servers publish
it), a thisUpdate in the future (CLOCK_SKEW allowed) and a nextUpdate before the thisUpdate. A
CRL past its nextUpdate is still kept when it is the newest we can get (its listings still
count, trust.py) and reported as stale. One whose signature does not verify with the CA
certificates of its issuer's name is kept as unverified (never used for a decision: trust.py
checks each CRL against the path) and reported as failed, so that an administrator sees it.

A verified CRL replaces the older one of the same issuer, key and scope (the store's rule:
later thisUpdate, then higher cRLNumber); one that is not newer leaves the store unchanged.

``PeriodicFetcher`` runs fetch_all in a daemon thread of the milter every
``[crl] fetch_interval`` seconds; on PostgreSQL only the node that takes the job lock runs.
Its store needs a pool of at least two connections (the lock holds one for the run).
"""

from __future__ import annotations

import datetime as dt
import math
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from cryptography import x509

from smimegate import __version__, dn
from smimegate.config import Config
from smimegate.log import TAG, format_fields, get_logger, warning_line
from smimegate.pki.crl import crl_number, load_crl
from smimegate.pki.crlstore import CrlKeeper
from smimegate.pki.httpclient import HttpError, exchange
from smimegate.store.base import InvalidData, Store, StoreError
from smimegate.store.certinfo import crl_info
from smimegate.x509errors import EXTENSION_LOOKUP_ERRORS, X509_ERRORS

__all__ = [
    "CLOCK_SKEW",
    "JOB_NAME",
    "MAX_CRL_BYTES",
    "FetchError",
    "FetchOutcome",
    "FetchReport",
    "LdapUrl",
    "PeriodicFetcher",
    "crl_urls",
    "distribution_points",
    "download",
    "fetch_all",
    "fetch_url",
    "log_report",
    "parse_ldap_url",
]

MAX_CRL_BYTES = 20 * 1024 * 1024
"""Largest CRL we download; the biggest public CAs' full CRLs stay well below this."""

CLOCK_SKEW = dt.timedelta(minutes=5)
"""How far a CRL's thisUpdate may lie ahead of our clock (the publisher's clock may be fast)."""

JOB_NAME = "crl-fetch"
"""The job lock's name: one node of those sharing a PostgreSQL store runs each fetch."""

SCHEMES = ("http", "https", "ldap", "ldaps")
# RFC 4523 2.17: the attribute a CRL distribution point entry holds its CRL in; the ;binary
# transfer option (RFC 4522) is how servers are asked for the DER value.
_CRL_ATTRIBUTE = "certificateRevocationList;binary"

Status = Literal["fetched", "unchanged", "failed"]


class FetchError(Exception):
    """One CRL could not be downloaded or was refused; the message says why in one line."""


@dataclass(frozen=True)
class FetchOutcome:
    """What happened to one distribution point URL.

    status: fetched (a newer CRL is now in the store), unchanged (the store holds this one or
    a newer one) or failed. detail: for failed the reason, else a description of the CRL.
    """

    url: str
    status: Status
    detail: str
    issuer: str | None = None
    crl_number: int | None = None


@dataclass(frozen=True)
class FetchReport:
    """The outcomes of one run, in URL order."""

    outcomes: tuple[FetchOutcome, ...] = ()

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def all_failed(self) -> bool:
        """True when there were URLs and every one failed."""
        return bool(self.outcomes) and self.count("failed") == len(self.outcomes)

    def summary(self) -> str:
        return (f"{self.count('fetched')} fetched, {self.count('unchanged')} unchanged, "
                f"{self.count('failed')} failed")


# --- which URLs ------------------------------------------------------------------------------


def distribution_points(cert: x509.Certificate) -> list[str]:
    """The fullName URIs of cert's CRL distribution points with a scheme we fetch, in order.

    relativeName points (RFC 5280 4.2.1.13, relative to the CRL issuer's name) and other
    schemes (file:, ftp: ...) are left out. An unreadable extension gives [].
    """
    try:
        ext = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    except EXTENSION_LOOKUP_ERRORS:
        return []
    urls: list[str] = []
    for point in ext.value:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier):
                scheme = urllib.parse.urlsplit(name.value).scheme.lower()
                if scheme in SCHEMES and name.value not in urls:
                    urls.append(name.value)
    return urls


def crl_urls(store: Store, at: dt.datetime | None = None) -> list[str]:
    """Every distribution point URL named by a stored certificate, once, in store order.

    Blocked certificates and certificates expired at ``at`` (default now) are left out: no
    trust decision needs their revocation status. Raises StoreError from the store.
    """
    moment = at or dt.datetime.now(dt.UTC)
    urls: dict[str, None] = {}
    for record in store.list_certificates():
        if record.blocked or record.not_after < moment:
            continue
        try:
            cert = record.certificate()
        except ValueError:
            continue
        for url in distribution_points(cert):
            urls.setdefault(url, None)
    return list(urls)


# --- downloading -----------------------------------------------------------------------------


def _http(url: str, timeout: float, max_bytes: int) -> bytes:
    request = urllib.request.Request(
        url,
        headers={
            "User-Agent": f"smimegate/{__version__}",
            # RFC 2585 4.2 names the type of a DER CRL.
            "Accept": "application/pkix-crl, application/x-pkcs7-crl, */*;q=0.5",
        },
    )
    try:
        return exchange(request, timeout, max_bytes)
    except HttpError as exc:
        raise FetchError(str(exc)) from None


@dataclass(frozen=True)
class LdapUrl:
    """The parts of an RFC 4516 LDAP URL that a CRL download uses."""

    use_ssl: bool
    host: str
    port: int
    dn: str
    attributes: tuple[str, ...]
    scope: Literal["base", "one", "sub"]
    filter: str


def parse_ldap_url(url: str) -> LdapUrl:
    """Split ``ldap[s]://host[:port]/dn[?attrs[?scope[?filter[?exts]]]]`` (RFC 4516 2).

    Without attributes the CRL attribute (certificateRevocationList;binary) is asked for;
    scope defaults to base and filter to (objectClass=*) (RFC 4516 2). Raises FetchError for
    a URL without host or DN, a bad scope or port, or a critical extension (RFC 4516 2.3:
    a critical extension we do not implement forbids using the URL).
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ldap", "ldaps"):
        raise FetchError(f"not an LDAP URL: {url}")
    if not parts.hostname:
        # RFC 4516 allows "ldap:///dn" (client's default server): we have none to offer.
        raise FetchError("LDAP URL names no host")
    try:
        port = parts.port or (636 if scheme == "ldaps" else 389)
    except ValueError:
        raise FetchError("LDAP URL has a bad port") from None
    # urlsplit puts "?..." into query; RFC 4516 fields are separated by "?" and
    # percent-encoded, so split before decoding.
    dn = urllib.parse.unquote(parts.path.lstrip("/"))
    if not dn:
        raise FetchError("LDAP URL names no entry (DN)")
    fields = parts.query.split("?") if parts.query else []
    fields += [""] * (4 - len(fields))
    attrs_text, scope_text, filter_text, exts_text = fields[:4]
    attributes = tuple(
        urllib.parse.unquote(a) for a in attrs_text.split(",") if a
    ) or (_CRL_ATTRIBUTE,)
    scope = (scope_text or "base").lower()
    if scope not in ("base", "one", "sub"):
        raise FetchError(f"LDAP URL has an unknown scope {scope_text!r}")
    for ext in exts_text.split(","):
        if urllib.parse.unquote(ext).startswith("!"):
            raise FetchError(f"LDAP URL has a critical extension we do not support: {ext}")
    return LdapUrl(
        use_ssl=scheme == "ldaps",
        host=parts.hostname,
        port=port,
        dn=dn,
        attributes=attributes,
        scope=scope,  # type: ignore[arg-type]  # checked above
        filter=urllib.parse.unquote(filter_text) or "(objectClass=*)",
    )


def _base_name(attribute: str) -> str:
    return attribute.split(";", 1)[0].lower()


def _ldap(url: str, timeout: float, max_bytes: int) -> bytes:
    # Imported here: every CLI command loads this module, few ever fetch over LDAP.
    import ldap3
    from ldap3.core.exceptions import LDAPException

    spec = parse_ldap_url(url)
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED) if spec.use_ssl else None
    server = ldap3.Server(spec.host, port=spec.port, use_ssl=spec.use_ssl, tls=tls,
                          connect_timeout=timeout, get_info=ldap3.NONE)
    scope = {"base": ldap3.BASE, "one": ldap3.LEVEL, "sub": ldap3.SUBTREE}[spec.scope]
    wanted = {_base_name(a) for a in spec.attributes}
    try:
        # Anonymous bind: CRLs are public (RFC 4523), and no credentials go to a server named
        # by a certificate someone else issued.
        # ldap3 packs receive_timeout into SO_RCVTIMEO as whole seconds.
        conn = ldap3.Connection(server, auto_bind=True, receive_timeout=max(1, math.ceil(timeout)),
                                read_only=True, raise_exceptions=False)
        try:
            conn.search(spec.dn, spec.filter, search_scope=scope,
                        attributes=list(spec.attributes), time_limit=max(1, int(timeout)))
            entries = [r for r in (conn.response or []) if r.get("type") == "searchResEntry"]
            if not entries:
                desc = conn.result.get("description") if conn.result else None
                raise FetchError(f"LDAP: no entry {spec.dn}" + (f" ({desc})" if desc else ""))
            for entry in entries:
                for name, values in (entry.get("raw_attributes") or {}).items():
                    # ";binary" is a transfer option: servers answer with or without it.
                    if _base_name(name) in wanted and values:
                        value = bytes(values[0])
                        if len(value) > max_bytes:
                            raise FetchError(f"larger than {max_bytes} bytes")
                        return value
            raise FetchError(f"LDAP: entry {spec.dn} has no {', '.join(spec.attributes)}")
        finally:
            conn.unbind()
    except LDAPException as exc:
        raise FetchError(f"LDAP: {exc}") from None
    except OSError as exc:
        raise FetchError(f"LDAP: {exc.strerror or exc}") from None
    except ValueError as exc:  # ldap3: a DN or filter it cannot encode
        raise FetchError(f"LDAP: {exc}") from None


def download(url: str, *, timeout: float, max_bytes: int = MAX_CRL_BYTES) -> bytes:
    """The bytes published at a distribution point URL (http, https, ldap, ldaps).

    Raises FetchError (one line: HTTP status, timeout, refused connection, too large, no such
    LDAP entry or attribute, unsupported scheme ...).
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return _http(url, timeout, max_bytes)
    if scheme in ("ldap", "ldaps"):
        return _ldap(url, timeout, max_bytes)
    raise FetchError(f"unsupported URL scheme {scheme or '(none)'!r}")


# --- checking and keeping --------------------------------------------------------------------


def _describe(crl: x509.CertificateRevocationList, stale: bool = False) -> str:
    number = crl_number(crl)
    nxt = crl.next_update_utc
    text = (f"CRL {'#' + str(number) if number is not None else 'without number'} of "
            f"{dn.name_string(crl.issuer)}, {len(crl)} revoked, ")
    text += f"next update {nxt:%Y-%m-%d %H:%M} UTC" if nxt is not None else "no next update"
    return text + (" (stale: past its next update)" if stale else "")


def _check_times(crl: x509.CertificateRevocationList, moment: dt.datetime) -> bool:
    """Whether crl is stale. Raises FetchError for times that make no sense."""
    this_update = crl.last_update_utc
    if this_update > moment + CLOCK_SKEW:
        raise FetchError(f"refused: thisUpdate {this_update:%Y-%m-%d %H:%M} UTC is in the future")
    next_update = crl.next_update_utc
    if next_update is not None and next_update < this_update:
        raise FetchError("refused: nextUpdate is before thisUpdate")
    return next_update is not None and next_update < moment


def fetch_url(
    store: Store,
    url: str,
    *,
    timeout: float,
    keeper: CrlKeeper | None = None,
    max_bytes: int = MAX_CRL_BYTES,
    at: dt.datetime | None = None,
) -> FetchOutcome:
    """Download, check and keep the CRL at url; see the module docstring.

    ``keeper``: the run's CrlKeeper (it reads the store's CA certificates once per run).
    Download and check problems are a failed outcome; raises StoreError only (the store is
    needed for every URL, so there is no point going on without it).
    """
    moment = at or dt.datetime.now(dt.UTC)
    keeper = keeper or CrlKeeper(store)
    try:
        data = download(url, timeout=timeout, max_bytes=max_bytes)
        try:
            crl = load_crl(data)
            fingerprint = crl_info(crl).fingerprint
        except X509_ERRORS + (InvalidData,):
            raise FetchError("not a CRL (neither DER nor PEM)") from None
        stale = _check_times(crl, moment)
    except FetchError as exc:
        return FetchOutcome(url, "failed", str(exc))
    name, number = dn.name_string(crl.issuer), crl_number(crl)
    if store.get_crls([fingerprint]):
        return FetchOutcome(url, "unchanged", "the store holds this one: "
                            + _describe(crl, stale), name, number)
    record = keeper.keep(crl, source=f"fetch:{url}")
    if record.fingerprint != fingerprint:
        # Never replace a newer CRL by an older one (a stale mirror, a replayed file).
        newer = x509.load_der_x509_crl(record.der)
        return FetchOutcome(url, "unchanged", "the store holds a newer one: "
                            + _describe(newer), name, number)
    if record.verified is False:
        return FetchOutcome(url, "failed", "signature does not verify with the CA certificates "
                            f"of {name} (kept, not used): " + _describe(crl, stale), name, number)
    note = " (issuer not a CA of the store yet)" if record.verified is None else ""
    return FetchOutcome(url, "fetched", _describe(crl, stale) + note, name, number)


def fetch_all(
    store: Store,
    *,
    timeout: float,
    urls: Iterable[str] | None = None,
    max_bytes: int = MAX_CRL_BYTES,
    at: dt.datetime | None = None,
) -> FetchReport:
    """Fetch every distribution point URL of the store (crl_urls), or the given ``urls``.

    Each URL is tried once, one after the other, each download bounded by ``timeout``
    seconds. Raises StoreError from the store (StoreUnavailable ...); per-URL problems are
    failed outcomes in the report.
    """
    moment = at or dt.datetime.now(dt.UTC)
    todo = list(dict.fromkeys(urls)) if urls is not None else crl_urls(store, moment)
    if not todo:
        return FetchReport()
    keeper = CrlKeeper(store)
    outcomes = [
        fetch_url(store, url, timeout=timeout, keeper=keeper, max_bytes=max_bytes, at=moment)
        for url in todo
    ]
    return FetchReport(tuple(outcomes))


# --- periodic download in the milter ---------------------------------------------------------


@runtime_checkable
class _JobLocking(Protocol):
    def job_lock(self, name: str) -> AbstractContextManager[bool]: ...


def _job_lock(store: Store) -> AbstractContextManager[bool]:
    # SqlStore has job_lock (PostgreSQL advisory lock); other stores run on one node.
    if isinstance(store, _JobLocking):
        return store.job_lock(JOB_NAME)
    return nullcontext(True)


def log_report(report: FetchReport) -> None:
    """One INFO line for the run, one WARNING line per failed URL (smimegate.log format)."""
    logger = get_logger()
    for outcome in report.outcomes:
        if outcome.status == "failed":
            logger.warning(warning_line(None, "CRL download failed",
                                        {"url": outcome.url, "reason": outcome.detail}))
    logger.info(f"{TAG}: crl-fetch " + format_fields({
        "urls": len(report.outcomes), "fetched": report.count("fetched"),
        "unchanged": report.count("unchanged"), "failed": report.count("failed"),
    }))


class PeriodicFetcher:
    """Runs fetch_all every ``[crl] fetch_interval`` seconds in a daemon thread.

    The first run comes ``first_delay`` seconds after start(), so the milter is serving before
    it downloads anything. Each run takes the store's job lock (PostgreSQL: an advisory lock):
    while one node runs, the others skip that round. After a run that stored a CRL, ``refresh``
    (when given) is called: e.g. CachedAnchors.refresh, or the milter's reload of its caches. ``on_report`` receives each run's report (default: log_report).
    A fetch_interval of 0 turns the thread off; start() then does nothing.
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        refresh: Callable[[], object] | None = None,
        first_delay: float = 10.0,
        on_report: Callable[[FetchReport], None] = log_report,
    ) -> None:
        if first_delay < 0:
            raise ValueError(f"first_delay: must not be negative, got {first_delay}")
        self._store = store
        self._interval = float(config.crl.fetch_interval)
        self._timeout = float(config.crl.fetch_timeout)
        self._refresh = refresh
        self._first_delay = first_delay
        self._on_report = on_report
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> PeriodicFetcher:
        """Start the thread (once); returns self. Raises RuntimeError when already started."""
        if self._thread is not None:
            raise RuntimeError("PeriodicFetcher already started")
        if self._interval <= 0:
            return self
        self._thread = threading.Thread(target=self._loop, name="smimegate-crl-fetch",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to end and wait for it (up to timeout seconds).

        A download in progress finishes first (it is bounded by fetch_timeout).
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> FetchReport | None:
        """One run under the job lock; None when another node holds it.

        Raises StoreError from the store.
        """
        with _job_lock(self._store) as mine:
            if not mine:
                return None
            report = fetch_all(self._store, timeout=self._timeout)
        if self._refresh is not None and report.count("fetched"):
            self._refresh()
        return report

    def _loop(self) -> None:
        delay = self._first_delay
        while not self._stop.wait(delay):
            delay = self._interval
            try:
                report = self.run_once()
            except StoreError as exc:
                get_logger().warning(warning_line(None, "CRL download skipped",
                                                  {"reason": str(exc)}))
                continue
            except Exception as exc:  # noqa: BLE001
                # Boundary of a daemon thread: anything unexpected is logged and the next
                # round still comes, instead of the thread dying silently.
                get_logger().exception(warning_line(None, "CRL download crashed",
                                                    {"reason": repr(exc)}))
                continue
            if report is not None:
                self._on_report(report)
