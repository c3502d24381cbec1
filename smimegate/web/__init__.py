"""smimegate.web: ``smimegate web``, the admin interface and the REST API (issue 12).

Server-rendered pages (Starlette + Jinja2, no script of ours needed) and a JSON API under
/api/v1/, both over smimegate.service, the code the CLI uses; neither holds store logic.

app.py        the Starlette application: routes, limits, the store it works on
security.py   response headers (CSP ...), cookies, the client's address, same-origin checks
pages/        sign-in and the tabs, one module per tab (pages/__init__.py lists them)
api.py        /api/v1/: bearer tokens, JSON in and out, error mapping
openapi.py    /api/v1/openapi.json
"""
