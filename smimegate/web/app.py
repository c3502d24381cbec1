"""The Starlette application of ``smimegate web``: pages, the REST API, static files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from smimegate.config import Config
from smimegate.service.sessions import Limits
from smimegate.store import SqlStore
from smimegate.web import api, api_ops, api_pki, metrics, pages
from smimegate.web.security import LOOPBACK_NAMES, ASGIApp, SecurityHeaders
from smimegate.x509errors import EXTENSION_LOOKUP_ERRORS

MAX_BODY = 1024 * 1024  # forms and JSON are small; certificate uploads come later


def limits_of(config: Config) -> Limits:
    web = config.web
    return Limits(idle=web.session_idle, absolute=web.session_max, window=web.login_window,
                  per_user=web.login_failures_per_user,
                  per_address=web.login_failures_per_address)


async def _home(request: Request) -> Response:
    return RedirectResponse("/dashboard", status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    """No route (404), a wrong method (405), a body too large (413), a bug (500, run by
    Starlette's ServerErrorMiddleware, which logs the traceback): JSON under /api/, plain text
    elsewhere; never the exception's own text (ASVS 7.4.1)."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    headers = getattr(exc, "headers", None) if isinstance(exc, HTTPException) else None
    if request.url.path == "/api" or request.url.path.startswith("/api/"):
        return JSONResponse({"error": detail}, status_code=status, headers=headers)
    return PlainTextResponse(f"{detail}\n", status_code=status, headers=headers)


class _App(Starlette):
    """Starlette with SecurityHeaders outside everything: as a user middleware it would sit
    inside Starlette's error and body-limit middleware, whose 500 and 413 answers would then
    go out without CSP, nosniff, no-store or HSTS (ASVS 14.4: every response)."""

    allowed_hosts: frozenset[str] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), self.allowed_hosts)


def allowed_hosts(config: Config) -> frozenset[str] | None:
    """The host names the server answers to (security.SecurityHeaders); None: any.

    Loopback, the host of ``listen`` (unless a wildcard address), the DNS names and addresses
    of ``tls_cert`` (what a browser checks the server against anyway), and ``allowed_hosts``.
    """
    web = config.web
    if "*" in web.allowed_hosts:
        return None
    names = set(LOOPBACK_NAMES) | {h.lower().rstrip(".") for h in web.allowed_hosts}
    listen_host = web.listen.rpartition(":")[0].strip("[]").lower()
    if listen_host not in ("0.0.0.0", "::", ""):
        names.add(listen_host)
    if web.tls_cert:
        names |= _certificate_names(web.tls_cert)
    return frozenset(names)


def _certificate_names(path: str) -> set[str]:
    """The subjectAltName DNS names and IP addresses of the first certificate of a PEM file;
    none when it cannot be read (the TLS set-up itself reports that)."""
    from cryptography import x509  # noqa: PLC0415 - only with TLS

    try:
        with open(path, "rb") as pem:
            cert = x509.load_pem_x509_certificate(pem.read())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except EXTENSION_LOOKUP_ERRORS + (OSError,):
        return set()
    return ({name.lower().rstrip(".") for name in san.get_values_for_type(x509.DNSName)}
            | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)})


def build_app(store: SqlStore, config: Config, *, close_store: bool = False) -> Starlette:
    """The application over an open store. close_store: close it when the server stops."""
    routes = [
        Route("/", _home),
        *pages.ROUTES,
        Route("/api/v1/openapi.json", api.openapi),
        Route("/api/v1/settings", api.endpoint(api.get_settings)),
        Route("/api/v1/settings/{property}", api.endpoint(api.put_setting), methods=["PUT"]),
        Route("/api/v1/settings/{property}", api.endpoint(api.delete_setting),
              methods=["DELETE"]),
        Route("/api/v1/domains", api.endpoint(api.list_domains)),
        Route("/api/v1/domains", api.endpoint(api.add_domain, 201), methods=["POST"]),
        Route("/api/v1/domains/{domain}", api.endpoint(api.get_domain)),
        Route("/api/v1/domains/{domain}", api.endpoint(api.delete_domain), methods=["DELETE"]),
        Route("/api/v1/domains/{domain}/{property}", api.endpoint(api.put_domain_property),
              methods=["PUT"]),
        Route("/api/v1/domains/{domain}/{property}", api.endpoint(api.delete_domain_property),
              methods=["DELETE"]),
        Route("/api/v1/users", api.endpoint(api.list_users)),
        Route("/api/v1/users", api.endpoint(api.add_user, 201), methods=["POST"]),
        Route("/api/v1/users/{email}", api.endpoint(api.get_user)),
        Route("/api/v1/users/{email}", api.endpoint(api.delete_user), methods=["DELETE"]),
        Route("/api/v1/users/{email}/{property}", api.endpoint(api.put_user_property),
              methods=["PUT"]),
        Route("/api/v1/users/{email}/{property}", api.endpoint(api.delete_user_property),
              methods=["DELETE"]),
        *api_pki.ROUTES,
        *api_ops.ROUTES,
        Route("/api/v1/explain", api.endpoint(api.explain_message, reads=True),
              methods=["POST"]),
        Route("/metrics", metrics.metrics),
        Mount("/static", StaticFiles(packages=[("smimegate.web", "static")]), name="static"),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if close_store:
                store.close()

    app = _App(routes=routes, exception_handlers={HTTPException: _http_error,
                                                  Exception: _http_error},
               lifespan=lifespan, max_body_size=MAX_BODY)
    app.allowed_hosts = allowed_hosts(config)
    app.state.web = pages.Web(store, config, limits_of(config), pages.templates())
    return app
