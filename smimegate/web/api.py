"""The REST API under /api/v1/ (CONTRACT.md "The web interface and the REST API").

``Authorization: Bearer TOKEN`` (``smimegate admin token``) on every call but the OpenAPI
document: none or a malformed header is 401, an unknown token 401 with ``invalid_token``
(RFC 6750 3.1). An auditor's token gets 403 on any change (PUT, POST, DELETE), before its
input is looked at. JSON in and out, the objects the CLI's ``--json`` prints, produced by the
same functions; files travel as base64 in JSON on the way in, and as themselves (PEM,
PKCS#12) on the way out. Errors are ``{"error": MESSAGE}`` (plus ``"field"`` for bad input):
400 bad input, 404 no such row, 409 conflict, 429 too many failed re-authentications, 503
store unavailable.

This module holds the mechanics and the policy endpoints (settings, domains, users);
smimegate.web.api_pki the certificates, roots, CRLs and CAs, smimegate.web.api_ops the
queue, the audit log and the SMS test.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from smimegate.pki.errors import PkiError
from smimegate.service import accounts, domains, explain, paging, settings, users
from smimegate.service.actor import Actor
from smimegate.service.errors import Forbidden, InvalidInput, Missing, OperationFailed
from smimegate.service.sessions import Throttled
from smimegate.store import (
    Conflict,
    InvalidData,
    MasterKeyError,
    NotFound,
    StoreError,
    StoreUnavailable,
)
from smimegate.web.openapi import document
from smimegate.web.pages import Web
from smimegate.web.pages.base import MAX_UPLOAD
from smimegate.web.security import client_address, has_nul, nul_in_url, store_failure

_CHANGES = frozenset({"PUT", "POST", "DELETE", "PATCH"})


@dataclass(frozen=True)
class Call:
    web: Web
    request: Request
    actor: Actor
    body: Any

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def value(self) -> str | bool:
        """The ``value`` of a ``{"value": ...}`` body: text, or true/false for yes/no
        properties. Raises InvalidInput."""
        if not isinstance(self.body, dict) or "value" not in self.body:
            raise InvalidInput('the body must be a JSON object {"value": ...}', "value")
        value = self.body["value"]
        if not isinstance(value, str | bool):
            raise InvalidInput("value must be a string (or true/false)", "value")
        return value

    # -- a JSON object body, field by field; each refusal names its field ----------------

    def fields(self, allowed: Collection[str]) -> dict[str, Any]:
        """The body as an object (none: empty). Raises InvalidInput for another JSON value or
        a field not in allowed (a misspelt option is refused, not silently ignored)."""
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise InvalidInput("the body must be a JSON object", "body")
        for name in self.body:
            if name not in allowed:
                raise InvalidInput(f"unknown field {name!r}: one of {', '.join(allowed)}",
                                   str(name)[:64])
        return self.body

    def text(self, fields: dict[str, Any], name: str, *, required: bool = False,
             limit: int = 1024) -> str | None:
        value = fields.get(name)
        if value is None or value == "":
            if required:
                raise InvalidInput(f"{name} is required", name)
            return None
        if not isinstance(value, str) or len(value) > limit:
            raise InvalidInput(f"{name} must be a string of at most {limit} characters", name)
        return value

    def flag(self, fields: dict[str, Any], name: str) -> bool:
        value = fields.get(name, False)
        if not isinstance(value, bool):
            raise InvalidInput(f"{name} must be true or false", name)
        return value

    def number(self, fields: dict[str, Any], name: str, low: int = 1,
               high: int = 999999) -> int | None:
        value = fields.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidInput(f"{name} must be a whole number from {low} to {high}", name)
        return value

    def texts(self, fields: dict[str, Any], name: str, most: int = 32) -> list[str]:
        value = fields.get(name) or []
        if (not isinstance(value, list) or len(value) > most
                or not all(isinstance(v, str) and 0 < len(v) <= 1024 for v in value)):
            raise InvalidInput(f"{name} must be a list of at most {most} strings", name)
        return value

    def upload(self, fields: dict[str, Any], name: str = "data") -> bytes:
        """A file sent as base64 (RFC 4648 4) in the body. Raises InvalidInput."""
        text = self.text(fields, name, required=True, limit=4 * MAX_UPLOAD // 3 + 4)
        try:
            data = base64.b64decode(str(text), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{name} must be base64 (RFC 4648)", name) from None
        if not data:
            raise InvalidInput(f"{name} is empty", name)
        if len(data) > MAX_UPLOAD:
            raise InvalidInput(f"{name}: larger than {MAX_UPLOAD // 1024} KiB", name)
        return data

    # -- query parameters of a listing --------------------------------------------------

    def query(self, name: str, limit: int = paging.MAX_QUERY) -> str:
        text = self.request.query_params.get(name, "")
        if len(text) > limit:
            raise InvalidInput(f"{name}: at most {limit} characters", name)
        return text

    def query_number(self, name: str, default: int, low: int, high: int) -> int:
        text = self.query(name, 12).strip()
        if not text:
            return default
        if not text.isdigit() or not low <= int(text) <= high:
            raise InvalidInput(f"{name} must be a whole number from {low} to {high}", name)
        return int(text)


Handler = Callable[[Call], Any]


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status,
                        headers={"www-authenticate": 'Bearer realm="smimegate"'}
                        if status == 401 else None)


MAX_DEPTH = 16  # our bodies are objects of values and lists: two or three levels


def unsound(body: Any) -> str:
    """Why a parsed JSON body is refused, "" when it is not: nested deeper than MAX_DEPTH,
    a string (or key) with a NUL (security.has_nul) or a lone UTF-16 surrogate, which JSON's
    \\u escapes can spell but no UTF-8 text holds (RFC 8259 8.2): echoed in an answer or
    written to the store it would fail there, a 500 instead of a 400."""
    stack: list[tuple[Any, int]] = [(body, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep"
        texts: list[str] = []
        if isinstance(value, str):
            texts = [value]
        elif isinstance(value, dict):
            texts = list(value)
            stack += [(v, depth + 1) for v in value.values()]
        elif isinstance(value, list):
            stack += [(v, depth + 1) for v in value]
        for text in texts:
            if has_nul(text):
                return "a string holds a NUL character"
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds a lone UTF-16 surrogate (RFC 8259 8.2)"
    return ""


def endpoint(handler: Handler, status: int = 200, *,
             reads: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """reads: a POST that changes nothing (a question too large for a query string, as
    POST /api/v1/explain): an auditor's token may call it."""

    async def run(request: Request) -> Response:
        web = request.app.state.web
        # The token and the role first, the body after: an unknown token or an auditor's
        # change is refused before a byte of its input is read (up to MAX_BODY otherwise).
        caller = await run_in_threadpool(_caller, web, request, reads)
        if isinstance(caller, Response):
            return caller
        if nul_in_url(request):
            return error(400, "a NUL character in the URL")
        raw = await request.body() if request.method in _CHANGES else b""
        return await run_in_threadpool(_answer, web, request, caller, raw, handler, status)

    return run


def _caller(web: Web, request: Request, reads: bool) -> Actor | Response:
    """The token's actor, or the 401 / 403 / 503 answer that refuses the call."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error(401, "an Authorization: Bearer TOKEN header is required "
                          "(`smimegate admin token NAME`)")
    try:
        actor = accounts.token_actor(web.store, token.strip(), client_address(request))
    except StoreUnavailable as exc:
        return error(503, store_failure(exc))
    except StoreError as exc:
        return error(409, store_failure(exc))
    if actor is None:
        response = error(401, "unknown or revoked token")
        response.headers["www-authenticate"] = 'Bearer realm="smimegate", error="invalid_token"'
        return response
    if request.method in _CHANGES and not reads and not actor.may_change():
        return error(403, f"{actor.name}'s token is an auditor's: it may read, not change")
    return actor


def _answer(web: Web, request: Request, actor: Actor, raw: bytes, handler: Handler,
            status: int) -> Response:
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError) as exc:
        return error(400, f"the body is not JSON: {exc}")
    except RecursionError:
        return error(400, f"the body is nested more than {MAX_DEPTH} levels deep", field="body")
    refused = unsound(body)
    if refused:
        return error(400, f"the body is refused: {refused}", field="body")
    try:
        result = handler(Call(web, request, actor, body))
    except Forbidden as exc:
        return error(403, str(exc))
    except InvalidInput as exc:
        return error(400, str(exc), field=exc.field)
    except (NotFound, Missing) as exc:
        return error(404, str(exc))
    except Throttled as exc:
        return error(429, str(exc))
    except Conflict as exc:
        return error(409, str(exc))
    except InvalidData as exc:
        return error(400, str(exc))
    except (StoreUnavailable, MasterKeyError) as exc:
        return error(503, str(exc))
    except (OperationFailed, StoreError, PkiError) as exc:
        return error(409, str(exc))
    if result is None:
        return Response(status_code=204)
    if isinstance(result, Response):  # a file, or a listing with its total in a header
        return result
    return JSONResponse(result, status_code=status)


def page(call: Call, rows: list[dict[str, Any]], search: Sequence[str],
         sortable: Sequence[str]) -> Response:
    """rows searched (``q``), sorted (``sort``, ``order`` asc|desc) and sliced (``limit``,
    ``offset``) as the query asks, always the JSON array of the CLI's ``--json``; the number
    of rows that matched, before the slice, is in ``X-Total-Count``. Raises InvalidInput."""
    sort, order = call.query("sort", 32), call.query("order", 4) or "asc"
    if sort and sort not in sortable:
        raise InvalidInput(f"bad sort key {sort!r}: one of {', '.join(sortable)}", "sort")
    if order not in ("asc", "desc"):
        raise InvalidInput(f"bad order {order!r}: asc or desc", "order")
    limit = call.query_number("limit", 0, 1, paging.MAX_LIMIT)  # 0: none asked, all rows
    offset = call.query_number("offset", 0, 0, 10**9)
    rows = paging.matching(rows, call.query("q"), search)
    if sort:
        rows = paging.ordered(rows, sort, descending=order == "desc")
    shown = rows[offset:offset + limit] if limit else rows[offset:]
    return JSONResponse(shown, headers={"x-total-count": str(len(rows))})


# -- handlers ---------------------------------------------------------------------------------

def get_settings(call: Call) -> Any:
    return settings.show(call.web.store).as_dict()


def put_setting(call: Call) -> Any:
    settings.set_property(call.web.store, call.actor, call.param("property"), call.value())
    return get_settings(call)


def delete_setting(call: Call) -> Any:
    settings.unset_property(call.web.store, call.actor, call.param("property"))
    return get_settings(call)


def list_domains(call: Call) -> Any:
    return domains.listing(call.web.store)


def add_domain(call: Call) -> Any:
    body = call.body if isinstance(call.body, dict) else {}
    props = body.get("properties") or {}
    if not isinstance(body.get("name"), str) or not isinstance(props, dict):
        raise InvalidInput('the body must be {"name": DOMAIN, "properties": {...}}', "name")
    added = domains.add(call.web.store, call.actor, body["name"], props)
    return {"name": added.name, "properties": dict(added.properties)}


def get_domain(call: Call) -> Any:
    return domains.show(call.web.store, call.param("domain")).as_dict()


def put_domain_property(call: Call) -> Any:
    domains.set_property(call.web.store, call.actor, call.param("domain"),
                         call.param("property"), call.value())
    return get_domain(call)


def delete_domain_property(call: Call) -> Any:
    domains.unset_property(call.web.store, call.actor, call.param("domain"),
                           call.param("property"))
    return get_domain(call)


def delete_domain(call: Call) -> Any:
    domains.remove(call.web.store, call.actor, call.param("domain"))
    return None


def list_users(call: Call) -> Any:
    return users.listing(call.web.store, call.request.query_params.get("domain") or None)


def add_user(call: Call) -> Any:
    body = call.body if isinstance(call.body, dict) else {}
    props = body.get("properties") or {}
    enabled = body.get("enabled", True)
    if (not isinstance(body.get("email"), str) or not isinstance(props, dict)
            or not isinstance(enabled, bool)):
        raise InvalidInput('the body must be {"email": ADDRESS, "properties": {...}, '
                           '"enabled": true|false}', "email")
    added = users.add(call.web.store, call.actor, body["email"], props, enabled=enabled)
    return {"email": added.email, "enabled": added.enabled, "properties": dict(added.properties)}


def get_user(call: Call) -> Any:
    return users.show(call.web.store, call.param("email")).as_dict()


def put_user_property(call: Call) -> Any:
    users.set_property(call.web.store, call.actor, call.param("email"),
                       call.param("property"), call.value())
    return get_user(call)


def delete_user_property(call: Call) -> Any:
    users.unset_property(call.web.store, call.actor, call.param("email"),
                         call.param("property"))
    return get_user(call)


def delete_user(call: Call) -> Any:
    users.remove(call.web.store, call.actor, call.param("email"))
    return None


def explain_message(call: Call) -> Any:
    """POST /api/v1/explain: ``{"sender", "recipients": [...], "subject", "authorised"}`` in,
    smimegate.service.explain's answer out. Changes nothing."""
    body = call.body if isinstance(call.body, dict) else {}
    sender, rcpts = body.get("sender"), body.get("recipients")
    subject, authorised = body.get("subject"), body.get("authorised", True)
    if not isinstance(sender, str):
        raise InvalidInput('the body must be {"sender": ADDRESS, "recipients": [ADDRESS, ...], '
                           '"subject": TEXT, "authorised": true|false}', "sender")
    if not isinstance(rcpts, list) or not all(isinstance(r, str) for r in rcpts):
        raise InvalidInput("recipients must be a list of addresses", "recipients")
    if subject is not None and not isinstance(subject, str):
        raise InvalidInput("subject must be a string or null", "subject")
    if not isinstance(authorised, bool):
        raise InvalidInput("authorised must be true or false", "authorised")
    asked = explain.question(sender, rcpts, subject, authorised)
    return explain.explain(call.web.store, call.web.config, asked)


async def openapi(request: Request) -> Response:
    return JSONResponse(document())
