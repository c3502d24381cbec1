"""The errors service functions raise besides the store's; each front end maps them once.

CLI (smimegate.cli.main): InvalidInput is a usage error (exit 2), OperationFailed exit 1.
Web: InvalidInput is shown beside its field. API: 400, 403, 404 (Missing), 409 (see
smimegate.web.api).
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the errors raised by smimegate.service."""


class InvalidInput(ServiceError, ValueError):
    """A bad name or value given by the caller. The message is one line for a person;
    field names the input it is about ("property", "value", "domain" ...), None if none."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class OperationFailed(ServiceError):
    """The operation could not be done (a bad row in the store, a failed delivery ...)."""


class Missing(OperationFailed, LookupError):
    """The row the caller named is not there (no certificate with that fingerprint, no CA of
    that name): exit 1 in the CLI like any failed operation, 404 in the API."""


class Forbidden(OperationFailed):
    """The actor's role may not do this (an auditor asking for a change)."""
