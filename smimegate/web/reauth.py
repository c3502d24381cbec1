"""Re-authentication before the most sensitive actions (OWASP ASVS 4.0 3.7.1): exporting a
private key and creating a CA ask for the password (and the TOTP code of an account that has
one) again, unless the session gave them within ``[web] reauth_window`` seconds.

Use it at the top of the POST handler of such an action::

    def export_key(current: Page) -> Response:
        asked = require_reauth(current, "export the private key of this certificate")
        if asked is not None:
            return asked          # the password form; nothing was done
        ...                       # the export itself

The form it returns posts back to the same URL with every field of the original form carried
along (hidden), plus ``reauth_password`` (and ``reauth_code``); when they are right the
session is stamped (with a new id, which page() puts in the answer's cookie)
and the same handler runs again, this time past the check, with the
original fields in ``current.form`` (the ``reauth_*`` fields removed). So the action's route
must take POST, as every change does. A wrong password shows the form again (status 401) and
counts as a failed sign-in (throttled, 429 after too many); every re-authentication is in the
audit log (``session.reauth``).

API tokens are not sessions and cannot re-authenticate: an API endpoint for such an action
should refuse, or take the password in its body and call
smimegate.service.sessions.reauthenticate itself.
"""

from __future__ import annotations

from starlette.responses import Response

from smimegate.service import sessions, totp
from smimegate.service.errors import InvalidInput
from smimegate.service.sessions import Throttled
from smimegate.web.pages.base import Page
from smimegate.web.security import client_address

FIELDS = ("reauth_password", "reauth_code")


def require_reauth(current: Page, what: str) -> Response | None:
    """None when the action may go on (see the module doc); otherwise the response to send
    instead: the password form (401), or the throttled notice (429). ``what``: the action in
    words after "To" ("export the private key of this certificate")."""
    session = current.session
    assert session is not None, "require_reauth runs inside page()"
    window = current.web.config.web.reauth_window
    if sessions.reauth_fresh(session, window):
        return None
    error = ""
    if current.request.method == "POST" and "reauth_password" in current.form:
        try:
            session_id, current.session = sessions.reauthenticate(
                current.store, session, current.form.get("reauth_password", ""),
                current.form.get("reauth_code", ""), client_address(current.request),
                current.web.limits)
        except Throttled as exc:
            return current.message("Refused", f"{exc}: nothing was done.", 429)
        except InvalidInput as exc:
            error = str(exc)
        else:
            current.new_session_id = session_id  # page() sets the cookie on the answer
            current.form = {k: v for k, v in current.form.items() if k not in FIELDS}
            return None
    carried = [(k, v) for k, v in current.form.items() if k not in (*FIELDS, "csrf")]
    return current.render(
        "reauth.html", 401, title="Confirm it is you", what=what, error=error,
        action=current.request.url.path, carried=carried,
        needs_code=totp.enrolled(current.store, session.admin),
        minutes=max(1, window // 60))
