"""``smimegate ldap``: the directory.

    smimegate ldap sync [--dry-run] [--remove] [--json]
        provision users and their policy from the directory into the store; users gone from
        it are disabled, or removed with --remove (smimegate.store.ldapsync says exactly how)
    smimegate ldap lookup EMAIL [--json]
        show what the directory says about an address, as the milter sees it

Publishing an issued certificate (``[ldap] publish_certificates``) is part of ``cert issue``
in every front end: smimegate.service.publishing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from smimegate.cli.common import OperationFailed, UsageError, print_json
from smimegate.cli.config import load_from_args
from smimegate.cli.context import open_store
from smimegate.store.certinfo import cert_info

if TYPE_CHECKING:
    from smimegate.config import Config
    from smimegate.store.ldap import DirectoryUsers

# smimegate.store.ldap (ldap3) is imported where a directory is used: `user show` calls in
# here and, without an [ldap] section, starts without it (issue 9).


def register(sub: Any) -> None:
    parser = sub.add_parser("ldap", help="users, policy and certificates from the directory")
    commands = parser.add_subparsers(dest="ldap_command", metavar="ACTION", required=True)

    s = commands.add_parser("sync", help="provision users and their policy from the directory")
    s.add_argument("--dry-run", action="store_true", help="report the changes, write nothing")
    s.add_argument("--remove", action="store_true",
                   help="remove users gone from the directory instead of disabling them")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=_sync)

    lk = commands.add_parser("lookup", help="what the directory says about an address")
    lk.add_argument("email", metavar="EMAIL")
    lk.add_argument("--json", action="store_true", help="print JSON")
    lk.set_defaults(func=_lookup)


def _directory(config: Config) -> DirectoryUsers:
    """Raises UsageError without an [ldap] section, OperationFailed for an unreadable
    password file."""
    from smimegate.store.ldap import DirectoryError, DirectoryUsers

    if not config.ldap.enabled:
        raise UsageError("no [ldap] section in the configuration (or enabled = false)")
    try:
        return DirectoryUsers(config.ldap)
    except DirectoryError as exc:
        raise OperationFailed(str(exc)) from None


def _sync(args: argparse.Namespace) -> int:
    from smimegate.store.ldap import DirectoryError
    from smimegate.store.ldapsync import managed_properties, sync

    with open_store(args) as ctx:
        directory = _directory(ctx.config)
        try:
            users = directory.all_users()  # before any write: a failed search changes nothing
        except DirectoryError as exc:
            raise OperationFailed(str(exc)) from None
        finally:
            directory.close()
        report = sync(ctx.store, users, managed_properties(ctx.config.ldap),
                      remove=args.remove, dry_run=args.dry_run)
    if args.json:
        print_json(report.as_dict())
        return 0
    for change in report.changes:
        detail = f" ({'; '.join(change.details)})" if change.details else ""
        print(f"{change.action} {change.email}{detail}")
    print(report.summary())
    return 0


def _lookup(args: argparse.Namespace) -> int:
    from smimegate.store.ldap import DirectoryError

    config = load_from_args(args)
    directory = _directory(config)
    try:
        user = directory.fetch(args.email)
    except DirectoryError as exc:
        raise OperationFailed(str(exc)) from None
    finally:
        directory.close()
    if user is None:
        raise OperationFailed(f"no directory entry for {args.email}")
    data = {
        "dn": user.dn,
        "email": user.email,
        "addresses": list(user.addresses),
        "properties": dict(user.properties),
        "groups": list(user.groups),
        "certificates": [cert_info(c).fingerprint for c in user.certificates],
    }
    if args.json:
        print_json(data)
        return 0
    print(f"dn: {user.dn}")
    print(f"addresses: {', '.join(user.addresses)}")
    for name, value in user.properties.items():
        print(f"  {name} = {value}")
    for group in user.groups:
        print(f"group: {group}")
    for cert in user.certificates:
        info = cert_info(cert)
        print(f"certificate: {info.fingerprint} {info.subject}")
    return 0


def directory_values(config: Config, email: str) -> Mapping[str, str] | None:
    """The directory's policy values for email (level "ldap"), as the milter applies them
    (smimegate.milter.services: DirectoryUser.properties after the store's rows).

    None when no directory is configured or it has no entry for email. When the directory
    cannot be asked, prints a one-line warning on stderr and returns None, so a ``show``
    still gives the store's values. Never raises for the directory.
    """
    if not config.ldap.enabled:
        return None
    from smimegate.store.ldap import DirectoryError, DirectoryUsers

    try:
        directory = DirectoryUsers(config.ldap)
        try:
            user = directory.fetch(email)
        finally:
            directory.close()
    except DirectoryError as exc:
        reason = " ".join(str(exc).split())
        print(f"smimegate: warning: directory not asked ({reason}); showing the store's "
              "values only", file=sys.stderr)
        return None
    return user.properties if user is not None else None
