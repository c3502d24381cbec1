"""Configuration: one declarative table of options, read from TOML into a frozen, typed Config.

The table is the section dataclasses below. Each field is one row: its section (the class), its
name, its type (the annotation), its default and its doc (both given to ``opt``), and optionally
a ``check`` that validates and normalises one value. ``OPTIONS`` flattens them into ``Option``
rows for the sample configuration (``smimegate config sample``) and anything else generated from
the table. To add an option, add one field with ``opt(...)`` to its section class; to add a
section, add a class and one ``section(...)`` field to ``Config`` (DESIGN.md, Style 6: OpenDKIM's
``opendkim-config.h``, Postfix ``postconf``).

Types understood by the loader: ``str``, ``int`` (never a boolean), ``float`` (an integer is
accepted), ``bool``, ``Literal[...]`` of strings (the allowed values), ``tuple[X, ...]`` (a TOML
array), a nested section class (a TOML table), ``tuple[SectionClass, ...]`` (an array of tables,
``[[...]]``), and ``Mapping[str, X]`` (a table with open-ended keys: the only place where keys are
not fixed by the table; the entries a file gives are merged over the default entries).

File rules:
- An unknown section or key, a wrong type and a bad value raise ConfigError naming the file and
  the key, e.g. ``/etc/x.toml: [milter] socket: expected a string, got integer``.
- A file named explicitly (``-c``, ``$SMIMEGATE_CONFIG``) must exist. When the default path
  (``DEFAULT_PATH``) does not exist, every option has its default: a fresh install runs without
  a file, and ``smimegate config sample`` shows what those defaults are.
- Relative file paths in options marked ``path=True`` are taken relative to the directory of the
  configuration file, so a configuration under ./var can name its neighbours.
- LDAP is used when the file has an ``[ldap]`` table, unless it says ``enabled = false``.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import re
import textwrap
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args, get_origin, get_type_hints

DEFAULT_PATH = "/etc/smimegate/smimegate.toml"

T = TypeVar("T")
Check = Callable[[Any], Any]


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file and the key.

    ``source`` is the file (or another label for where the text came from), ``key`` the option as
    ``[section] name`` (empty when the whole file is at fault).
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


# ---------------------------------------------------------------------------------------------
# How a row is declared


def opt(
    default: T,
    doc: str,
    *,
    check: Check | None = None,
    path: bool = False,
    required: bool = False,
    one_or_many: bool = False,
    key_check: Check | None = None,
) -> T:
    """Declare one option (a dataclass field) with its default and doc.

    ``check(value)`` validates one scalar value (each item of an array, each value of an
    open-ended table) and returns it, possibly normalised; it raises ValueError with a message
    for the user. ``path``: a file path, relative ones are resolved against the config file's
    directory. ``required``: the key must be given (used inside arrays of tables).
    ``one_or_many``: an array option that also accepts a single string. ``key_check``: validates
    the keys of an open-ended table.
    """
    meta = {
        "doc": doc,
        "check": check,
        "path": path,
        "required": required,
        "one_or_many": one_or_many,
        "key_check": key_check,
    }
    if isinstance(default, Mapping):
        frozen = types.MappingProxyType(dict(default))
        return cast(T, field(default_factory=lambda: frozen, metadata=meta))
    return field(default=default, metadata=meta)


def section(cls: Callable[[], T], doc: str) -> T:
    """Declare a nested section (a TOML table) whose options are the fields of ``cls``."""
    return field(default_factory=cls, metadata={"doc": doc})


# ---------------------------------------------------------------------------------------------
# Checks: validate one value, return it normalised, raise ValueError with the reason


def _nonempty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _at_least(minimum: float) -> Check:
    def check(value: float) -> float:
        if value < minimum:
            raise ValueError(f"must be at least {minimum:g}, got {value:g}")
        return value

    return check


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value:g}")
    return value


_PORT = r"[0-9]{1,5}"


def _port_ok(port: str) -> bool:
    return 0 < int(port) < 65536


def _milter_socket(value: str) -> str:
    """libmilter's socket spec (smfi_setconn): inet:PORT@HOST, inet6:PORT@HOST, unix:PATH,
    local:PATH, and fd:N for systemd socket activation."""
    m = re.fullmatch(rf"(inet6?):({_PORT})(@[^@\s]+)?", value)
    if m and _port_ok(m.group(2)):
        return value
    if re.fullmatch(r"(unix|local):/\S+", value) or re.fullmatch(r"fd:[0-9]+", value):
        return value
    raise ValueError(
        f'not a milter socket: "{value}" (expected inet:PORT@HOST, inet6:PORT@HOST, '
        "unix:/PATH or fd:N)"
    )


def _host_port(value: str) -> str:
    m = re.fullmatch(rf"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):({_PORT})", value)
    if not m or not _port_ok(m.group(2)):
        raise ValueError(f'expected HOST:PORT (IPv6 as [ADDR]:PORT), got "{value}"')
    return value


def _web_host(value: str) -> str:
    if value == "*" or re.fullmatch(r"[A-Za-z0-9.\-]+|[0-9A-Fa-f:.]+", value):
        return value
    raise ValueError(f'expected a host name, an IP address or "*", got "{value}"')


def _reinject(value: str) -> str:
    if not value.startswith("smtp:"):
        raise ValueError(f'expected smtp:HOST:PORT, got "{value}"')
    _host_port(value[len("smtp:") :])
    return value


def _network(value: str) -> str:
    try:
        # strict=False: "192.168.1.7/24" means the /24, as Postfix mynetworks reads it.
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f'not an IP network: "{value}"') from None


def _header_prefix(value: str) -> str:
    # RFC 5322 section 3.6.8: a field name is printable US-ASCII except ":".
    if not re.fullmatch(r"[!-9;-~]+", value):
        raise ValueError(f'not a header field name prefix: "{value}"')
    return value


def _authserv_id(value: str) -> str:
    # RFC 8601 section 2.5: authserv-id is a value; keep to a host-name-like token.
    if not re.fullmatch(r"[A-Za-z0-9._\-]*", value):
        raise ValueError(f'not a host-name-like authserv-id: "{value}"')
    return value


def _octal_mode(value: str) -> str:
    if not re.fullmatch(r"0?[0-7]{3}", value):
        raise ValueError(f'expected an octal file mode such as "0660", got "{value}"')
    return value


def _store_url(value: str) -> str:
    if value.startswith("sqlite:///") or re.match(r"postgres(ql)?://", value):
        return value
    raise ValueError(f'expected "sqlite:////PATH" or "postgresql://...", got "{value}"')


def _http_url(value: str) -> str:
    if value and not re.match(r"https?://\S+$", value):
        raise ValueError(f'expected an http:// or https:// URL, got "{value}"')
    return value


def _ldap_url(value: str) -> str:
    if not re.match(r"ldaps?://[^\s/]+/?$", value):
        raise ValueError(f'expected ldap://HOST[:PORT] or ldaps://HOST[:PORT], got "{value}"')
    return value


def _user_filter(value: str) -> str:
    if "{email}" not in value or not (value.startswith("(") and value.endswith(")")):
        raise ValueError(
            f'expected an LDAP filter in parentheses containing {{email}}, got "{value}"'
        )
    return value


_ATTRIBUTE = re.compile(r"([A-Za-z][A-Za-z0-9\-]*|[0-9]+(\.[0-9]+)+)(;[A-Za-z0-9\-]+)*")


def _ldap_attribute(value: str) -> str:
    # RFC 4512 section 2.5: descr or numeric OID, then ";option"s (RFC 4522 ";binary").
    if not _ATTRIBUTE.fullmatch(value):
        raise ValueError(f'not an LDAP attribute description: "{value}"')
    return value


PUBLISH_ATTRIBUTES = ("userSMIMECertificate;binary", "userCertificate;binary")


def _publish_attribute(value: str) -> str:
    for known in PUBLISH_ATTRIBUTES:
        if value.lower() == known.lower():
            return known
    raise ValueError(f'"{value}" is not one of ' + ", ".join(f'"{a}"' for a in PUBLISH_ATTRIBUTES))


def _property_name(value: str) -> str:
    # Names only: the policy layer checks that the property exists when it reads the directory.
    if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
        raise ValueError("not a property name (lower-case letters, digits and _)")
    return value


# ---------------------------------------------------------------------------------------------
# The table


OnInternalError = Literal["tempfail", "accept", "reject"]
OnMalformed = Literal["deliver", "tempfail", "reject"]
LogTarget = Literal["syslog", "stdout", "stderr"]
LogLevel = Literal["debug", "info", "warning"]
Facility = Literal[
    "mail", "daemon", "user", "auth", "authpriv",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
]  # fmt: skip
RevocationMode = Literal["soft-fail", "hard-fail", "require"]
SmsTransport = Literal["http", "command", "file"]
HttpMethod = Literal["POST", "PUT"]
OnUnavailable = Literal["tempfail", "soft"]


@dataclass(frozen=True)
class StoreConfig:
    url: str = opt(
        "sqlite:////var/lib/smimegate/smimegate.db",
        'Database: "sqlite:////ABSOLUTE/PATH.db" (embedded, one node) or '
        '"postgresql://USER@HOST/DBNAME" (shared by every node).',
        check=_store_url,
    )
    master_key_file: str = opt(
        "/etc/smimegate/master.key",
        "Key that wraps private keys at rest; `smimegate db init` creates it (mode 0600) "
        "if absent.",
        check=_nonempty,
        path=True,
    )
    connect_timeout: float = opt(5.0, "Seconds to wait for a database connection.", check=_positive)
    query_timeout: float = opt(
        10.0,
        "Seconds a query may take (PostgreSQL statement_timeout, SQLite busy timeout).",
        check=_positive,
    )
    pool_min: int = opt(1, "PostgreSQL: connections the pool keeps open.", check=_at_least(0))
    pool_max: int = opt(
        10,
        "PostgreSQL: most connections the pool opens (about one per concurrent SMTP session); "
        "with [milter] workers > 1 the milter's workers share them (each opens at most "
        "pool_max / workers, and at least 2).",
        check=_at_least(1),
    )


@dataclass(frozen=True)
class MilterConfig:
    socket: str = opt(
        "inet:8891@127.0.0.1",
        "Where the MTA connects: inet:PORT@HOST, inet6:PORT@HOST, unix:/PATH or fd:N "
        "(systemd socket activation).",
        check=_milter_socket,
    )
    socket_mode: str = opt(
        "0660",
        "File mode of a unix: socket, so that the MTA's user (postfix) can write to it.",
        check=_octal_mode,
    )
    user: str = opt(
        "",
        'User to run as after opening keys, pools and the socket; "" keeps the user we were '
        "started as.",
    )
    group: str = opt("", 'Group to run as; "" means the primary group of user.')
    header_prefix: str = opt(
        "X-Smimegate-Info-",
        "Prefix of the result headers; headers with this prefix that arrive from outside are "
        "removed.",
        check=_header_prefix,
    )
    authserv_id: str = opt(
        "",
        'authserv-id of our Authentication-Results headers (RFC 8601); "" uses the host name.',
        check=_authserv_id,
    )
    trusted_networks: tuple[str, ...] = opt(
        ("127.0.0.0/8", "::1/128"),
        "Clients whose mail counts as sent by internal users (CIDR networks).",
        check=_network,
    )
    originating_daemons: tuple[str, ...] = opt(
        ("ORIGINATING",),
        "Postfix {daemon_name} values that mark mail submitted by internal users.",
        check=_nonempty,
    )
    reinject: str = opt(
        "smtp:127.0.0.1:10026",
        "Where split copies of a message are re-submitted (an MTA listener without milters).",
        check=_reinject,
    )
    reinject_secret_file: str = opt(
        "/etc/smimegate/reinject.key",
        "HMAC key of the marker on re-submitted copies, so that outsiders cannot forge it; "
        "created (mode 0600) when absent.",
        check=_nonempty,
        path=True,
    )
    reinject_marker: bool = opt(
        False,
        "Mark re-submitted copies with that HMAC header: set it when the reinject listener "
        "runs this milter too (the milter then passes marked copies unchanged); leave it off "
        "when the listener runs no milters, so the marker never reaches recipients.",
    )
    max_message_size: int = opt(
        52428800,
        "Messages larger than this many bytes pass unchanged and are logged; 0: no limit.",
        check=_at_least(0),
    )
    on_internal_error: OnInternalError = opt(
        "tempfail", "What to answer when something unexpected fails inside the milter."
    )
    on_malformed: OnMalformed = opt(
        "deliver",
        "Inbound S/MIME that is malformed or cannot be decrypted: deliver it unchanged with "
        "headers saying what failed, tempfail (451) or reject (554).",
    )
    header_protection: bool = opt(
        True,
        "RFC 9788 header protection. Outbound: what we sign or encrypt carries the message's "
        'header fields inside (Content-Type hp="clear" or hp="cipher"); an encrypted copy '
        'shows Subject "[...]" outside and drops Keywords and Comments (the baseline Header '
        "Confidentiality Policy hcp_baseline, RFC 9788 section 3), its text starting with a legacy display "
        "element (Subject: ...) for clients without RFC 9788. Inbound: protected header fields "
        "of a verified or decrypted part are restored outside (Protected-Headers result "
        "header), the legacy display element removed where no kept signature covers it, and "
        "an inner field that contradicts the outer one is reported, the outer one kept. "
        "false: messages pass as before.",
    )
    stop_timeout: float = opt(
        30.0,
        "Seconds a stop (SIGTERM/SIGINT/SIGHUP) waits for messages in progress to finish before "
        "it cuts them (the MTA then tempfails them).",
        check=_at_least(0),
    )
    workers: int = opt(
        0,
        "Milter worker processes serving the socket (one Python process uses about one core); "
        "0: one per CPU core this process may run on. With more than one, a supervisor process "
        "holds the socket, starts the workers after the privilege drop, restarts one that dies "
        "and passes SIGTERM/SIGINT/SIGHUP (as SIGRTMIN+1/+2/+3) and SIGUSR1 on to every "
        "worker; the background jobs run in one worker. 1: a single process, no supervisor.",
        check=_at_least(0),
    )
    cpu_affinity: bool = opt(
        True,
        "With more than one worker: worker i runs on the i-th CPU this process may run on "
        "(wrapping round), all its threads with it. A worker's libmilter threads hand the GIL "
        "to each other at every callback; spread over several cores each hand-over wakes a "
        "thread on another core, with cold caches, and costs CPU the other workers need "
        "(bench/milter_bench.py prints both). false: the kernel places the workers. Read "
        "when a worker starts; ignored with workers = 1.",
    )
    stats_interval: int = opt(
        30,
        "Seconds between two writes of each worker's message counters, latency histogram, "
        "message log lines and heartbeat to the store (one transaction each, from a thread of "
        "its own, never on a message's path); the web admin's Dashboard, Logs and /metrics "
        "read them. A worker not heard from for three intervals shows as down. 0: off.",
        check=_at_least(0),
    )
    message_log_days: int = opt(
        7,
        "Days the message log lines kept in the store (the web admin's Logs tab) are kept.",
        check=_at_least(1),
    )
    message_log_rows: int = opt(
        100000,
        "Most message log lines kept in the store (the oldest go first); 0: none are stored "
        "(the counters still are). Syslog keeps every line regardless.",
        check=_at_least(0),
    )
    log: LogTarget = opt(
        "syslog",
        "Where the log goes. syslog: while syslog_socket cannot be reached (a container "
        "without syslogd) one warning on stderr, then the log goes to stderr until the socket "
        "answers again; never a failed start.",
    )
    log_level: LogLevel = opt("info", "Least severe level that is logged.")
    syslog_facility: Facility = opt("mail", "syslog facility.")
    syslog_socket: str = opt(
        "/dev/log", "Local syslog socket (datagram or stream).", check=_nonempty, path=True
    )


@dataclass(frozen=True)
class CrlConfig:
    fetch_interval: int = opt(
        43200,
        "Seconds between downloads of the CRLs named by the distribution points of stored "
        "certificates; 0 turns the periodic download off (`smimegate crl fetch` still works).",
        check=_at_least(0),
    )
    fetch_timeout: float = opt(30.0, "Seconds one CRL download may take.", check=_positive)
    revocation_mode: RevocationMode = opt(
        "soft-fail",
        "No usable CRL or OCSP answer for a link of the path: soft-fail -> trusted (the log "
        "line says revocation=unknown); hard-fail -> not trusted when a CRL or OCSP responder "
        "is named but unavailable; require -> not trusted without one (PKITS's rule). Not "
        "trusted always comes with Trusted-Info saying why. A CRL that says revoked always "
        "wins.",
    )
    ocsp: bool = opt(
        True,
        "Ask the OCSP responder of a certificate's AIA (RFC 6960, with a nonce) when no current "
        "CRL says; answers are kept until their nextUpdate.",
    )
    ocsp_timeout: float = opt(
        5.0,
        "Seconds one OCSP exchange may take; a responder that failed is asked again about the "
        "same certificate after 60 s.",
        check=_positive,
    )


def _resolver(value: str) -> str:
    # An address, not a name: resolving the resolver's name would need a resolver.
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        host = ""
    else:
        if (address.version == 6) != bracketed:  # "::1:53" would be ambiguous
            host = ""
    if not sep or not host or not _port_ok(port):
        raise ValueError(f'expected IP:PORT of a validating resolver (IPv6 as [ADDR]:PORT), '
                         f'got "{value}"')
    return value


@dataclass(frozen=True)
class SmimeaConfig:
    lookup: bool = opt(
        False,
        "Look up an external recipient without a stored certificate in the DNS: SMIMEA "
        "records (RFC 8162) at <sha256(local part)>._smimecert.<domain>. A certificate found "
        "is stored (source smimea) and used like one harvested from signed mail.",
    )
    resolver: str = opt(
        "127.0.0.1:53",
        "IP:PORT of a validating resolver (unbound, BIND, Knot Resolver) we trust: only its "
        "answers with the AD bit count. Unreachable: the message is decided without SMIMEA "
        "(logged), and the resolver is asked again after 60 s.",
        check=_resolver,
    )
    trust_dane_ee: bool = opt(
        True,
        "Certificates of usage 3 (DANE-EE) records are trusted by the DNSSEC answer alone "
        "(their key usage and EKU must still allow encryption); false: they must pass the "
        "same path validation as any other (usage 1, PKIX-EE, always must).",
    )


@dataclass(frozen=True)
class SmtpConfig:
    relay: str = opt(
        "127.0.0.1:25",
        "SMTP server (HOST:PORT) that takes our own mail (PKCS#12 delivery). It may be the "
        "MTA's normal port, where this milter runs: our own mail carries the HMAC marker keyed "
        "by [milter] reinject_secret_file, so the milter passes it unchanged instead of "
        "encrypting it to the certificate whose key it carries.",
        check=_host_port,
    )
    sender: str = opt(
        "postmaster@example.com", "Envelope and From address of our own mail.", check=_nonempty
    )
    timeout: float = opt(30.0, "Seconds an SMTP conversation may take.", check=_positive)


@dataclass(frozen=True)
class SmsConfig:
    transport: SmsTransport = opt(
        "http",
        "How passwords reach phones: http (a request to url), command (run a program) or "
        "file (append to a file; for tests).",
    )
    url: str = opt("https://sms.example/api/send", "http: the gateway's URL.", check=_http_url)
    method: HttpMethod = opt("POST", "http: request method.")
    content_type: str = opt(
        "application/x-www-form-urlencoded", "http: Content-Type of the body.", check=_nonempty
    )
    body_template: str = opt(
        "to={phone}&text={text}",
        "http: request body; {phone} and {text} are replaced by the number and the message, "
        "escaped to suit content_type (URL-encoded for forms, JSON strings for "
        "application/json).",
    )
    auth_header_file: str = opt(
        "",
        'http: file holding one "Name: value" header line (e.g. Authorization) added to the '
        'request; kept out of this file so that it can stay world-readable. "": none.',
        path=True,
    )
    command: tuple[str, ...] = opt(
        (),
        "command: program and arguments, run without a shell; {phone} and {text} in an "
        "argument are replaced.",
    )
    file: str = opt("", "file: the file each message is appended to.", path=True)
    timeout: float = opt(30.0, "Seconds one message may take to send.", check=_positive)


@dataclass(frozen=True)
class QueueConfig:
    retry_initial: int = opt(
        60, "Seconds before the first retry of a failed delivery; each retry doubles it.",
        check=_at_least(1),
    )
    retry_max: int = opt(
        21600, "Most seconds between two retries of a delivery.", check=_at_least(1)
    )
    give_up_days: float = opt(
        5.0,
        "Days after which a delivery that keeps failing is given up (status failed; "
        "`smimegate queue retry ID` tries it again).",
        check=_positive,
    )
    interval: int = opt(
        60,
        "Seconds between runs of the delivery queue in the milter process; 0 turns the worker "
        "off (`smimegate queue run` from cron or a timer then sends).",
        check=_at_least(0),
    )


@dataclass(frozen=True)
class WebConfig:
    listen: str = opt(
        "127.0.0.1:8080",
        "HOST:PORT where `smimegate web` serves the admin interface and the REST API. "
        "Loopback by default: put it behind a TLS proxy, or give tls_cert and tls_key, "
        "before opening it to a network.",
        check=_host_port,
    )
    tls_cert: str = opt(
        "", 'PEM certificate (chain) for HTTPS; "": plain HTTP (loopback or behind a proxy).',
        path=True,
    )
    tls_key: str = opt("", "PEM private key of tls_cert.", path=True)
    allowed_hosts: tuple[str, ...] = opt(
        (),
        "Host names the web interface answers to besides localhost, 127.0.0.1, ::1, the host "
        "of listen and the names of tls_cert: a request whose Host header names another is "
        "refused (400), so that a site whose name an attacker points at this server (DNS "
        "rebinding) cannot reach it. Give the public name when a proxy forwards it; \"*\" "
        "answers to any.",
        check=_web_host,
    )
    session_idle: int = opt(
        1800, "Seconds without a request after which a web session ends.", check=_at_least(60)
    )
    session_max: int = opt(
        43200, "Seconds after sign-in after which a web session ends in any case.",
        check=_at_least(60),
    )
    login_window: int = opt(
        900, "Seconds over which failed sign-ins are counted for throttling.",
        check=_at_least(1),
    )
    login_failures_per_user: int = opt(
        5, "Failed sign-ins for one user name within login_window before more are refused.",
        check=_at_least(1),
    )
    login_failures_per_address: int = opt(
        20, "Failed sign-ins from one client address within login_window before more are "
        "refused.", check=_at_least(1),
    )
    reauth_window: int = opt(
        300, "Seconds for which giving the password (and TOTP code) again allows exporting a "
        "private key, creating a CA or changing admin accounts and tokens; after that the "
        "password is asked for again.",
        check=_at_least(30),
    )


@dataclass(frozen=True)
class LdapGroup:
    """One group rule: members of the group get the given property values."""

    dn: str = opt("", "DN of the group entry.", check=_nonempty, required=True)
    member_attribute: str = opt(
        "member",
        "Attribute of the group entry that lists members by DN (member, uniqueMember).",
        check=_ldap_attribute,
    )
    properties: Mapping[str, str] = opt(
        {},
        'Property values for members, as `smimegate settings set` takes them (sign = "no").',
        key_check=_property_name,
    )


@dataclass(frozen=True)
class LdapConfig:
    enabled: bool = opt(
        False,
        "Use the directory. Off without an [ldap] table in the file; a file with an [ldap] "
        "table turns it on unless that table sets enabled to false.",
    )
    urls: tuple[str, ...] = opt(
        ("ldap://127.0.0.1:389",),
        "Servers, tried in order: ldap://HOST[:PORT] or ldaps://HOST[:PORT].",
        check=_ldap_url,
        one_or_many=True,
    )
    bind_dn: str = opt("cn=smimegate,dc=example,dc=com", 'DN to bind as; "" binds anonymously.')
    password_file: str = opt(
        "/etc/smimegate/ldap.secret",
        "File holding the bind password (one line).",
        path=True,
    )
    start_tls: bool = opt(False, "Send StartTLS on ldap:// connections.")
    ca_file: str = opt(
        "",
        'CA certificates (PEM) that TLS server certificates must chain to; "": the system\'s.',
        path=True,
    )
    base_dn: str = opt("ou=people,dc=example,dc=com", "Where users are searched.")
    user_filter: str = opt(
        "(|(mail={email})(mailAlternateAddress={email}))",
        "Filter that finds a user; {email} is replaced by the address (escaped, RFC 4515).",
        check=_user_filter,
    )
    timeout: float = opt(5.0, "Seconds to wait for a connection or an answer.", check=_positive)
    cache_ttl: int = opt(
        300, "Seconds an answer found in the directory is cached.", check=_at_least(0)
    )
    negative_cache_ttl: int = opt(
        60, 'Seconds a "no such user" answer is cached.', check=_at_least(0)
    )
    on_unavailable: OnUnavailable = opt(
        "tempfail",
        "Directory down: tempfail (451) decisions that depend on it, or soft: decide without it.",
    )
    publish_certificates: tuple[str, ...] = opt(
        (),
        "Attributes that certificates issued by the built-in CA are written to "
        '("userSMIMECertificate;binary" as PKCS#7, "userCertificate;binary"); empty: none.',
        check=_publish_attribute,
    )
    attributes: Mapping[str, tuple[str, ...]] = opt(
        {
            "mail": ("mail",),
            "alternate_mail": ("mailAlternateAddress",),
            "certificates": ("userSMIMECertificate", "userCertificate;binary"),
            "phone": ("mobile",),
            "encrypt_mode": ("smimegateEncryptMode",),
        },
        "Directory attribute(s) read for each thing: mail, alternate_mail, certificates "
        '(";binary" is a transfer option: both forms match), phone, and any policy property '
        "by its name (the only table whose keys are open). A value is one attribute or an "
        "array; [] turns a default off. Entries given here are merged over these defaults.",
        check=_ldap_attribute,
        one_or_many=True,
        key_check=_property_name,
    )
    groups: tuple[LdapGroup, ...] = opt(
        (),
        "Group rules, one [[ldap.groups]] table each: members of the group (found through "
        "member_attribute) get the properties. Their values enter the inheritance at the "
        'directory level ("from": "ldap"), below the user\'s own directory attributes; '
        "for a user in several groups the first rule in file order that sets a property wins.",
    )


@dataclass(frozen=True)
class Config:
    store: StoreConfig = section(StoreConfig, "Keys, certificates, CRLs, CAs and policy.")
    milter: MilterConfig = section(MilterConfig, "The milter daemon.")
    crl: CrlConfig = section(CrlConfig, "Revocation: CRL download and the missing-CRL rule.")
    smimea: SmimeaConfig = section(
        SmimeaConfig, "RFC 8162 certificate discovery in DNSSEC-signed DNS."
    )
    smtp: SmtpConfig = section(SmtpConfig, "Outgoing notifications (PKCS#12 delivery).")
    sms: SmsConfig = section(SmsConfig, "Sending PKCS#12 passwords by SMS.")
    queue: QueueConfig = section(
        QueueConfig, "Retries of queued deliveries (PKCS#12 mail, SMS)."
    )
    web: WebConfig = section(
        WebConfig, "`smimegate web`: the admin interface and its REST API."
    )
    ldap: LdapConfig = section(
        LdapConfig, "Optional: users, policy and certificates from a directory."
    )


@dataclass(frozen=True)
class Option:
    """One row of the table, flattened: ``section`` is the TOML table ("ldap.attributes")."""

    section: str
    name: str
    type: Any
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    check: Check | None = None
    array_of_tables: bool = False


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"option {f.name} has no default")  # a mistake in the table itself


def _rows(cls: type, prefix: str) -> list[Option]:
    hints = get_type_hints(cls)
    rows: list[Option] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = f"{prefix}.{f.name}" if prefix else f.name
        if _is_section(tp):
            rows.extend(_rows(tp, name))
            continue
        item = _item_type(tp)
        rows.append(
            Option(
                section=prefix,
                name=f.name,
                type=tp,
                default=_default_of(f),
                doc=f.metadata["doc"],
                choices=_choices(item),
                check=f.metadata.get("check"),
                array_of_tables=_is_section(item),
            )
        )
    return rows


def _item_type(tp: Any) -> Any:
    """The scalar type inside tuple[X, ...] or Mapping[str, X] (or tp itself)."""
    origin = get_origin(tp)
    if origin is tuple:
        return get_args(tp)[0]
    if origin is Mapping:
        return _item_type(get_args(tp)[1])
    return tp


def _choices(tp: Any) -> tuple[str, ...]:
    return tuple(get_args(tp)) if get_origin(tp) is Literal else ()


OPTIONS: tuple[Option, ...] = tuple(_rows(Config, ""))
"""Every option, in file order: the table the sample configuration is rendered from."""


# ---------------------------------------------------------------------------------------------
# Loading


def _toml_type(value: Any) -> str:
    """The TOML name of a parsed value's type, for messages."""
    if isinstance(value, bool):
        return "boolean"
    names = {str: "string", int: "integer", float: "float", list: "array", dict: "table"}
    for py, name in names.items():
        if isinstance(value, py):
            return name
    return type(value).__name__  # datetime, date, time


def _key(where: str, name: str) -> str:
    return f"{where} {name}" if where else name


def _table_name(where: str) -> str:
    """ "[ldap]" -> "ldap"; arrays of tables are only supported inside plain tables."""
    if where.startswith("[[") or not where.startswith("["):
        raise TypeError(f"unsupported nesting under {where!r}")  # a mistake in the table
    return where[1:-1]


class _Loader:
    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def section(self, cls: type[T], data: Any, where: str) -> T:
        """Build section ``cls`` from a TOML table; ``where`` labels it ("" for the file)."""
        if not isinstance(data, dict):
            raise self.fail(where, f"expected a table, got {_toml_type(data)}")
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key, raw in data.items():
            if key in fields:
                continue
            near = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            if where:
                raise self.fail(f"{where} {key}", f"unknown key{hint}")
            if isinstance(raw, dict):
                hint = hint or " (known: " + ", ".join(fields) + ")"
                raise self.fail(f"[{key}]", f"unknown section{hint}")
            raise self.fail(key, "unknown top-level key (options belong in a [section])")
        values: dict[str, Any] = {}
        for name, f in fields.items():
            tp = hints[name]
            if _is_section(tp):
                if name in data:
                    values[name] = self.section(tp, data[name], f"[{name}]")
                continue
            if name not in data:
                if f.metadata.get("required"):
                    raise self.fail(_key(where, name), "required")
                continue
            values[name] = self.value(tp, data[name], where, name, f)
        return cls(**values)

    def value(self, tp: Any, raw: Any, where: str, name: str, f: dataclasses.Field[Any]) -> Any:
        """Convert option ``name`` of table ``where`` (a scalar, array, table or array of
        tables)."""
        key = _key(where, name)
        origin = get_origin(tp)
        meta = f.metadata
        if origin is tuple:
            item = get_args(tp)[0]
            if _is_section(item):
                if not isinstance(raw, list):
                    raise self.fail(key, f"expected an array of tables, got {_toml_type(raw)}")
                table = f"{_table_name(where)}.{name}"
                return tuple(
                    self.section(item, entry, f"[[{table}]] #{i + 1}")
                    for i, entry in enumerate(raw)
                )
            if isinstance(raw, str) and meta.get("one_or_many"):
                raw = [raw]
            if not isinstance(raw, list):
                what = "a string or an array" if meta.get("one_or_many") else "an array"
                raise self.fail(key, f"expected {what}, got {_toml_type(raw)}")
            return tuple(self.scalar(item, v, f"{key}[{i}]", meta) for i, v in enumerate(raw))
        if origin is Mapping:
            if not isinstance(raw, dict):
                raise self.fail(key, f"expected a table, got {_toml_type(raw)}")
            merged = dict(_default_of(f))
            value_type = get_args(tp)[1]
            key_check = meta.get("key_check")
            # "[ldap.attributes] phone", or "[[ldap.groups]] #1 properties.sign" inside an
            # array element, which has no name of its own to extend.
            sub_where, prefix = (
                (where, f"{name}.")
                if where.startswith("[[")
                else (f"[{_table_name(where)}.{name}]", "")
            )
            for k, v in raw.items():
                if key_check is not None:
                    try:
                        key_check(k)
                    except ValueError as exc:
                        raise self.fail(_key(sub_where, prefix + k), str(exc)) from None
                merged[k] = self.value(value_type, v, sub_where, prefix + k, f)
            return types.MappingProxyType(merged)
        return self.scalar(tp, raw, key, meta)

    def scalar(self, tp: Any, raw: Any, key: str, meta: Mapping[str, Any]) -> Any:
        choices = _choices(tp)
        value: Any
        if choices:
            if not isinstance(raw, str) or raw not in choices:
                allowed = ", ".join(f'"{c}"' for c in choices)
                got = f'"{raw}"' if isinstance(raw, str) else _toml_type(raw)
                raise self.fail(key, f"expected one of {allowed}, got {got}")
            value = raw
        elif tp is bool:
            if not isinstance(raw, bool):
                raise self.fail(key, f"expected a boolean, got {_toml_type(raw)}")
            value = raw
        elif tp is int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise self.fail(key, f"expected an integer, got {_toml_type(raw)}")
            value = raw
        elif tp is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise self.fail(key, f"expected a number, got {_toml_type(raw)}")
            value = float(raw)
        elif tp is str:
            if not isinstance(raw, str):
                raise self.fail(key, f"expected a string, got {_toml_type(raw)}")
            value = raw
            if meta.get("path") and value and self.base_dir is not None:
                value = str(self.base_dir / value)  # an absolute value stays as it is
        else:  # a mistake in the table itself, not in the file
            raise TypeError(f"{key}: unsupported option type {tp!r}")
        check = meta.get("check")
        if check is not None:
            try:
                value = check(value)
            except ValueError as exc:
                raise self.fail(key, str(exc)) from None
        return value


def _cross_checks(config: Config, source: str) -> None:
    """Rules that involve more than one option."""
    if config.store.pool_min > config.store.pool_max:
        raise ConfigError(source, "[store] pool_min", "must not be greater than pool_max")
    sms = config.sms
    if sms.transport == "http" and not sms.url:
        raise ConfigError(source, "[sms] url", 'required when transport = "http"')
    if sms.transport == "command" and not sms.command:
        raise ConfigError(source, "[sms] command", 'required when transport = "command"')
    if sms.transport == "file" and not sms.file:
        raise ConfigError(source, "[sms] file", 'required when transport = "file"')
    if bool(config.web.tls_cert) != bool(config.web.tls_key):
        raise ConfigError(source, "[web] tls_key" if config.web.tls_cert else "[web] tls_cert",
                          "tls_cert and tls_key go together")
    if config.ldap.enabled and not config.ldap.urls:
        raise ConfigError(source, "[ldap] urls", "at least one URL is required")


def from_mapping(data: Mapping[str, Any], source: str, base_dir: Path | None = None) -> Config:
    """Build a Config from parsed TOML.

    ``source`` names the origin in messages; ``base_dir`` resolves relative paths (None: leave
    them as they are). Raises ConfigError.
    """
    config = _Loader(source, base_dir).section(Config, dict(data), "")
    ldap = data.get("ldap")
    if isinstance(ldap, dict) and "enabled" not in ldap:
        config = dataclasses.replace(config, ldap=dataclasses.replace(config.ldap, enabled=True))
    _cross_checks(config, source)
    return config


def loads(text: str, source: str = "<string>", base_dir: Path | None = None) -> Config:
    """Parse TOML text into a Config. Raises ConfigError (syntax errors included)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from None
    return from_mapping(data, source, base_dir)


def load(path: str | Path | None = None, *, explicit: bool = True) -> Config:
    """Read the configuration file at ``path`` (None: DEFAULT_PATH, not explicit).

    A missing file is an error when ``explicit`` (named with -c or $SMIMEGATE_CONFIG); when not
    explicit, a missing file gives the defaults. Raises ConfigError for a file that is missing
    (explicit), unreadable, not UTF-8, not TOML, or has an unknown key, a wrong type or a bad value.
    """
    if path is None:
        path, explicit = DEFAULT_PATH, False
    p = Path(path)
    source = str(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(source, "", "no such file") from None
        return Config()
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "", f"not UTF-8 (byte {exc.start})") from None
    return loads(text, source, p.resolve().parent)


# ---------------------------------------------------------------------------------------------
# The sample configuration

SAMPLE_HEADER = """\
# smimegate configuration: every option with its default value and what it does.
#
# Generated from the option table in smimegate/config.py by `smimegate config sample`; do not
# edit by hand (a test fails when this file is out of date). Every setting is commented out:
# uncomment the section header and the lines you change. Unknown keys are an error.
# Relative paths are resolved against the directory of this file.
"""


def toml_value(value: Any) -> str:
    """A boolean, number, string or array as a TOML value. Raises TypeError for other types."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON's string escapes are all TOML basic-string escapes; TOML also wants DEL escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r} as TOML")


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=98, initial_indent="# ", subsequent_indent="# ")


def render_sample() -> str:
    """The sample configuration: every option of OPTIONS, commented out, with its doc.

    Settings are written as ``#key = value`` and headers as ``#[section]`` (no space after ``#``)
    so that uncommenting them gives exactly the defaults; prose and examples are written as
    ``# text``. Within a section, plain options come first and sub-tables after them, because
    in TOML every key after a ``[table]`` header belongs to that table.
    """
    lines = [SAMPLE_HEADER.rstrip("\n")]
    section_docs = {f.name: f.metadata["doc"] for f in dataclasses.fields(Config)}
    sections = list(dict.fromkeys(row.section for row in OPTIONS))
    for name in sections:
        rows = [row for row in OPTIONS if row.section == name]
        lines.append("")
        lines.extend(_comment(section_docs[name]))
        lines.append(f"#[{name}]")
        for row in rows:
            if isinstance(row.default, Mapping) or row.array_of_tables:
                continue
            doc = row.doc
            if row.choices:
                doc += " One of: " + ", ".join(row.choices) + "."
            lines.extend(_comment(doc))
            lines.append(f"#{row.name} = {toml_value(row.default)}")
        for row in rows:
            if isinstance(row.default, Mapping):
                lines.append("")
                lines.extend(_comment(row.doc))
                lines.append(f"#[{row.section}.{row.name}]")
                for k, v in row.default.items():
                    lines.append(f"#{k} = {toml_value(_compact(v))}")
        for row in rows:
            if row.array_of_tables:
                lines.append("")
                lines.extend(_comment(row.doc))
                lines.extend(_array_of_tables_example(f"{row.section}.{row.name}", row.type))
    return "\n".join(lines) + "\n"


def _compact(value: Any) -> Any:
    """One-element arrays of open-ended tables render as the bare string, as people write them."""
    if isinstance(value, tuple) and len(value) == 1:
        return value[0]
    return value


def _array_of_tables_example(table: str, tp: Any) -> list[str]:
    """Doc of each key of an array-of-tables entry, then an example entry (as prose comments:
    the default is no entry at all)."""
    item = get_args(tp)[0]
    hints = get_type_hints(item)
    docs: list[str] = []
    example = [f"# [[{table}]]"]
    samples: dict[str, Any] = {"dn": "cn=encrypt-always,ou=groups,dc=example,dc=com"}
    for f in dataclasses.fields(item):
        required = " Required." if f.metadata.get("required") else ""
        docs.extend(_comment(f"{f.name}: {f.metadata['doc']}{required}"))
        if get_origin(hints[f.name]) is Mapping:
            example.append(f'# {f.name} = {{ encrypt_mode = "mandatory", sign = "yes" }}')
        else:
            example.append(f"# {f.name} = {toml_value(samples.get(f.name, _default_of(f)))}")
    return docs + ["# For example:"] + example
