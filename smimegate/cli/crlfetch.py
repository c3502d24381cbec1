"""``smimegate crl fetch``: download the CRLs named by the stored certificates, once.

    smimegate crl fetch [--url URL]... [--json]

Without --url every distribution point of the stored certificates is fetched
(smimegate.pki.fetch). One line per URL (fetched / unchanged / failed with the reason), then a
summary. Exit 0 when at least one URL worked or there was none; 1 when every URL failed.
Like every change, it is recorded in the audit log (``crl.fetch``, with the summary).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from smimegate.cli.common import OperationFailed, print_json
from smimegate.cli.context import open_store


def _url(text: str) -> str:
    # Imported when used: the cert and crl parsers are built for every command of theirs, and
    # pki.fetch brings urllib, ssl and http.client (issue 9).
    from smimegate.pki.fetch import SCHEMES

    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme not in SCHEMES:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an {', '.join(SCHEMES)} URL")
    return text


def register_fetch(commands: Any) -> None:
    """Add ``fetch`` to the ``crl`` group's subparsers."""
    fetch = commands.add_parser(
        "fetch", help="download the CRLs of the distribution points",
        description="Download the CRLs named by the CRL distribution points of the stored "
        "certificates (HTTP and LDAP), check that a known CA signed them, and keep each one "
        "that is newer than the CRL the store holds.",
    )
    fetch.add_argument("--url", action="append", type=_url, metavar="URL",
                       help="fetch this URL instead of the distribution points; repeatable")
    fetch.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    fetch.set_defaults(func=cmd_fetch)


def cmd_fetch(args: argparse.Namespace) -> int:
    """Handler of ``crl fetch``. Raises OperationFailed (exit 1) when every URL failed or the
    store cannot be used; ConfigError (exit 2) for a bad configuration."""
    from smimegate.service import crls
    from smimegate.service.actor import cli_actor

    with open_store(args) as ctx:
        # The service writes the audit row and keeps each URL's outcome for the Dashboard,
        # as the CRLs tab's "Download now" does.
        report = crls.fetch(ctx.store, cli_actor(), ctx.config.crl.fetch_timeout, args.url)
    if args.json:
        print_json([dataclasses.asdict(o) for o in report.outcomes])
    else:
        for outcome in report.outcomes:
            print(f"{outcome.status:9}  {outcome.url}  {outcome.detail}")
        if report.outcomes:
            print(report.summary())
        else:
            print("no CRL distribution points in the stored certificates", file=sys.stderr)
    if report.all_failed:
        raise OperationFailed(f"every CRL download failed ({len(report.outcomes)} URLs)")
    return 0
