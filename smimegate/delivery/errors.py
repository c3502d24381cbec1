"""The one error type of the delivery package."""

from __future__ import annotations


class DeliveryError(Exception):
    """One delivery attempt failed, or a delivery cannot be set up.

    The message is one line for ``queue list`` and the log: it never contains the password, the
    PKCS#12 or an authentication header. ``permanent`` marks failures that retrying cannot fix
    (an SMTP 5xx reply, an HTTP 4xx status other than 408 and 429): the queue gives such an item
    up at once instead of backing off. Mistakes in our own configuration are not permanent:
    once fixed, the next retry goes through.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """text with every occurrence of each non-empty secret replaced by ``[redacted]``.

    For output of programs and servers we quote in an error (an SMS command's stderr), which
    may echo what it was given.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
