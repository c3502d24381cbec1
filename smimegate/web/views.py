"""The lists the web pages and the API show, in the objects the CLI's ``--json`` prints and
made by the service functions the CLI calls (smimegate.service.certificates, roots, crls, cas,
queues), so the three front ends cannot drift apart."""

from __future__ import annotations

from typing import Any

from smimegate.service import cas as ca_service
from smimegate.service import certificates as cert_service
from smimegate.service import queues as queue_service
from smimegate.service import roots as root_service
from smimegate.service.crls import crl_rows
from smimegate.store import CertificateRecord, SqlStore

QUEUE_STATUSES = queue_service.STATUSES


def certificates(store: SqlStore, email: str | None = None,
                 revocation_mode: str | None = None) -> list[dict[str, Any]]:
    """As ``cert list [--email E] --json`` (``[crl] revocation_mode`` as the CLI passes it)."""
    return cert_service.listing(store, email, revocation_mode)


def describe(store: SqlStore, record: CertificateRecord,
             revocation_mode: str | None = None) -> dict[str, Any]:
    """One certificate as ``cert show --json`` prints it."""
    return cert_service.describe(record, cert_service.anchors_of(store, revocation_mode))


def roots(store: SqlStore) -> list[dict[str, Any]]:
    """The trusted roots, each as ``cert show --json`` describes a certificate."""
    return root_service.listing(store)


def crls(store: SqlStore) -> list[dict[str, Any]]:
    """As ``crl list --json``."""
    return crl_rows(store)


def cas(store: SqlStore) -> list[dict[str, Any]]:
    """As ``ca list --json``."""
    return ca_service.listing(store)


def queue(store: SqlStore, status: str | None = None) -> list[dict[str, Any]]:
    """As ``queue list [--status S] --json``. Raises InvalidInput (field "status"),
    MasterKeyError without the master key (payloads are sealed)."""
    return queue_service.listing(store, status)
