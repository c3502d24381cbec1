"""``smimegate web``: the admin interface and the REST API, in the foreground.

    smimegate web [--listen HOST:PORT]

Serves at ``[web] listen`` (default 127.0.0.1:8080), over HTTPS when ``[web] tls_cert`` and
``tls_key`` are set. Behind a reverse proxy on the same host, X-Forwarded-For and
X-Forwarded-Proto from 127.0.0.1 are believed (uvicorn's proxy_headers), so client addresses
in the audit log and the ``__Host-`` cookies over HTTPS come out right.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from smimegate.cli.common import OperationFailed, UsageError
from smimegate.cli.config import load_from_args
from smimegate.config import _host_port
from smimegate.store import StoreError
from smimegate.store.configured import open_configured


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "web", help="run the admin web interface and REST API",
        description="Serve the admin pages (/login), the REST API (/api/v1/) and Prometheus "
                    "metrics (/metrics, with an API token of either role: "
                    "`smimegate admin token NAME --role auditor`). It reads the master key "
                    "when it may: key exports, the queue and TOTP codes need it.")
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help="where to listen (default: [web] listen)")
    parser.set_defaults(func=_run)


def split_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [ADDR]:PORT) as uvicorn takes it. Raises UsageError."""
    try:
        _host_port(text)
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from None
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _run(args: argparse.Namespace) -> int:
    import uvicorn  # only this command needs the server

    from smimegate.web.app import build_app

    config = load_from_args(args)
    host, port = split_listen(args.listen or config.web.listen)
    tls = config.web
    for path in (tls.tls_cert, tls.tls_key):
        if path and not os.access(path, os.R_OK):
            raise OperationFailed(f"[web] TLS file {path} cannot be read")
    # The master key only serves the queue's sealed payloads here: without read access to it
    # the admin still runs, and /api/v1/queue says the key is missing.
    keys = os.access(config.store.master_key_file, os.R_OK)
    try:
        store = open_configured(config.store, keys=keys)
    except StoreError as exc:
        raise OperationFailed(str(exc)) from None
    app = build_app(store, config, close_store=True)
    scheme = "https" if tls.tls_cert else "http"
    print(f"smimegate web: serving {scheme}://{args.listen or config.web.listen}/", flush=True)
    uvicorn.run(app, host=host, port=port, ssl_certfile=tls.tls_cert or None,
                ssl_keyfile=tls.tls_key or None, proxy_headers=True,
                forwarded_allow_ips="127.0.0.1", server_header=False, date_header=True,
                log_level="info")
    return 0
