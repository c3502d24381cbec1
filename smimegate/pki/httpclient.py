"""One bounded HTTP exchange through urllib, for CRL downloads (fetch.py) and OCSP (ocsp.py).

Every failure is an HttpError whose message says why in one line (HTTP status, timeout,
connection refused, too large, malformed answer), so that callers can report it as an outcome.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from typing import Any

__all__ = ["HttpError", "exchange"]


class HttpError(Exception):
    """The exchange failed; the message says why in one line."""


def _read_limited(response: Any, max_bytes: int, deadline: float, timeout: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise HttpError(f"timed out after {timeout:g} s")
        chunk = response.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise HttpError(f"larger than {max_bytes} bytes")
        chunks.append(chunk)


def exchange(request: urllib.request.Request, timeout: float, max_bytes: int) -> bytes:
    """Send request and return the body of a 2xx answer, at most max_bytes long.

    urllib's timeout applies to each socket operation; a deadline of ``timeout`` seconds also
    bounds the whole exchange against a server that trickles bytes. Raises HttpError.
    """
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise HttpError(f"larger than {max_bytes} bytes (Content-Length {length})")
            return _read_limited(response, max_bytes, deadline, timeout)
    except urllib.error.HTTPError as exc:
        raise HttpError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise HttpError(f"timed out after {timeout:g} s") from None
        raise HttpError(f"cannot connect: {reason}") from None
    except TimeoutError:
        raise HttpError(f"timed out after {timeout:g} s") from None
    except OSError as exc:
        raise HttpError(f"download failed: {exc.strerror or exc}") from None
    except http.client.HTTPException as exc:  # IncompleteRead, a malformed status line ...
        raise HttpError(f"bad HTTP answer: {type(exc).__name__} {exc}"[:200]) from None
    except ValueError as exc:  # urllib: a URL it cannot use (bad port, control characters)
        raise HttpError(f"bad URL: {exc}") from None
