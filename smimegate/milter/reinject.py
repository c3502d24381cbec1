"""The marker on copies we re-submit after a split, so that nothing is processed twice.

When recipients need different copies (policy.Decision.groups), this transaction keeps one
group and every other group's copy is finished here and re-submitted by the session to
``[milter] reinject``. What keeps that safe:

- Nothing loops: a copy holds exactly one group's recipients, so processing it again can never
  split it again.
- Nothing is processed twice, and outsiders cannot forge "already processed":
  * ``reinject_marker = false`` (the default; contrib/postfix's reinjection listener runs no
    milters): copies carry no marker, since no milter sees them again and a marker would only
    reach the recipients. The reinjection listener MUST then run without milters.
  * ``reinject_marker = true`` (the listener runs this milter too): each copy carries the
    HMAC marker of smimegate.marker (header, key, what it covers and how it is checked are
    described there; the PKCS#12 mail of smimegate.delivery carries the same marker). The
    gateway checks the marker on every message and always removes it: valid -> accepted as it
    is; invalid or stale -> processed normally, with a warning.
"""

from smimegate.marker import (
    MARKER_HEADER,
    MAX_AGE,
    SECRET_BYTES,
    VERSION,
    MarkerCheck,
    MarkerKeyError,
    body_digest,
    check_marker,
    load_or_create_secret,
    make_marker,
    mark_message,
)

__all__ = [
    "MARKER_HEADER", "MAX_AGE", "SECRET_BYTES", "VERSION", "MarkerCheck", "MarkerKeyError",
    "body_digest", "check_marker", "load_or_create_secret", "make_marker", "mark_message",
]
