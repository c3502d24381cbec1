"""What every response and request of the web front end shares for safety (OWASP ASVS 4.0
level 2 is the yardstick: the numbers below are its requirements).

- Response headers (ASVS 14.4): a Content-Security-Policy without inline script or style and
  with ``frame-ancestors 'none'`` (14.4.3, 14.4.7), ``nosniff`` (14.4.4), no referrer to other sites
  (14.4.5), no caching of pages and API answers (8.2.1), HSTS over HTTPS (14.4.5).
- Cookies (ASVS 3.4): HttpOnly, SameSite=Strict, and over HTTPS Secure with the ``__Host-``
  prefix (3.4.1 to 3.4.4), so no other site or subdomain can set or read them.
- A change (POST, PUT, DELETE) whose Origin header names another site is refused before any
  handler runs, in addition to the CSRF token of each form (ASVS 4.2.2).
- A request whose Host header is not one of the server's own names (``[web] allowed_hosts``,
  loopback, the listen address, the TLS certificate's names) is refused (400) before any
  handler runs: DNS rebinding would otherwise let a page of an attacker's site, its name
  pointed at 127.0.0.1, talk to an admin interface on loopback in the admin's browser (the
  login form, /metrics, the REST API with a token).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from smimegate.store.base import StoreUnavailable

_LOG = logging.getLogger("smimegate.web")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# connect-src 'self': the Logs tab's live tail (static/logs.js) fetches /logs/tail.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form
    # posts, which same_origin() must refuse.
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(header: str) -> str:
    """The name of a Host header value (RFC 9110 7.2: host [":" port], an IPv6 address in
    brackets), lower case, without a trailing dot."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0].rstrip(".") if ":" in host else host.rstrip(".")


class SecurityHeaders:
    """ASGI middleware: the headers above on every response; ``Cache-Control: no-store``
    except on /static/; HSTS over HTTPS. Refuses a request for a host name not in
    ``allowed_hosts`` (None: any) and a change whose Origin is another site."""

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        host = request.headers.get("host")
        # No Host header (HTTP/1.0) is no browser's request, and so no rebinding.
        if (self.allowed_hosts is not None and host is not None
                and host_name(host) not in self.allowed_hosts):
            response = Response("host not served here: add it to [web] allowed_hosts\n",
                                status_code=400, media_type="text/plain")
            await self._with_headers(response, scope, receive, send)
            return
        if request.method not in _SAFE_METHODS and not same_origin(request):
            response = Response("cross-site request refused\n", status_code=403,
                                media_type="text/plain")
            await self._with_headers(response, scope, receive, send)
            return
        static = scope["path"].startswith("/static/")
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [h for h in _HEADERS if h[0] not in names]
                if not static and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                if https:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _with_headers(self, response: Response, scope: Scope, receive: Receive,
                            send: Send) -> None:
        for name, value in _HEADERS:
            response.headers[name.decode()] = value.decode()
        response.headers["cache-control"] = "no-store"
        await response(scope, receive, send)


def store_failure(exc: Exception) -> str:
    """What a caller not yet authenticated is told when the store fails: nothing of its
    location or error text (a file path, a database host; ASVS 7.4.1), which goes to the
    server's log instead."""
    _LOG.warning(f"store failed before authentication: {exc}")
    if isinstance(exc, StoreUnavailable):
        return "the store is not answering; the server's log says why"
    return "the store failed; the server's log says why"


def has_nul(text: str) -> bool:
    """Whether text holds a NUL character. No name, address, search or value of ours has
    one, and PostgreSQL cannot store or even compare one in a text column: a NUL from a
    URL, form or JSON body would reach the store as an error there (a 500), so each front
    door refuses it as bad input first."""
    return "\x00" in text


def nul_in_url(request: Request) -> bool:
    """Whether the request's path or query (percent-decoded) holds a NUL (has_nul)."""
    return has_nul(request.url.path) or has_nul(urllib.parse.unquote(request.url.query))


def same_origin(request: Request) -> bool:
    """False when the request's Origin header names a site other than the one it was sent
    to; True when it matches or is absent (non-browser clients send none)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"{request.url.scheme}://{host}",)


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def cookie_name(request: Request, base: str) -> str:
    """``__Host-`` prefixed over HTTPS (the browser then insists on Secure, Path=/ and no
    Domain); plain over HTTP, where browsers refuse that prefix."""
    return f"__Host-{base}" if is_https(request) else base


def set_cookie(response: Response, request: Request, base: str, value: str) -> None:
    """A session cookie (no Max-Age: the server ends sessions), HttpOnly, SameSite=Strict."""
    response.set_cookie(cookie_name(request, base), value, path="/", secure=is_https(request),
                        httponly=True, samesite="strict")


def clear_cookie(response: Response, request: Request, base: str) -> None:
    response.delete_cookie(cookie_name(request, base), path="/", secure=is_https(request),
                           httponly=True, samesite="strict")


def get_cookie(request: Request, base: str) -> str:
    return request.cookies.get(cookie_name(request, base), "")


def client_address(request: Request) -> str:
    """The client's IP address (uvicorn takes X-Forwarded-For only from trusted proxies)."""
    return request.client.host if request.client else "unknown"


_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]")


def attachment(filename: str) -> str:
    """A Content-Disposition value for a download named after stored text (a CA's name, a
    fingerprint). The name may hold quotes, semicolons, line breaks or non-ASCII letters (a
    CA named after its CN): the plain ``filename`` keeps only safe ASCII, ``filename*``
    carries the rest percent-encoded (RFC 6266 4.3, RFC 8187), so the header can neither be
    split nor fail to encode."""
    name = filename.strip()[:100] or "download"
    plain = _UNSAFE_IN_NAME.sub("_", name)
    encoded = urllib.parse.quote(name, safe="")
    if encoded == plain:
        return f'attachment; filename="{plain}"'
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}"
