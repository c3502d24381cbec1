"""The pymilter glue: one ``Session`` per MTA connection, collecting and then applying.

libmilter runs one thread per MTA connection and pymilter makes one ``Session`` per connection
(``Milter.factory``). The instance is reused for every message of that connection, so all
per-message state is reset at MAIL FROM (DESIGN.md "One message").

- connect/envfrom/header/body only collect; they are ``@noreply`` so that the MTA does
  not wait for them (Postfix then sends a whole header block in one write). HELO, end of
  headers and unknown commands are negotiated away (SMFIP_NOHELO, SMFIP_NOEOH,
  SMFIP_NOUNKNOWN: pymilter's ``@nocallback`` on Milter.Base, which we do not override), so
  the MTA does not send them: nothing reads the HELO name, nothing is decided there, and the
  queue id arrives with RCPT and end of message anyway (issue 11 item 2: a callback less per
  SMTP session). ``negotiate`` asks for only the macros each stage reads (macros.py). The body is spooled
  to a SpooledTemporaryFile that moves to disk past SPOOL_IN_MEMORY, so a 100 MB message is
  not held in memory while it arrives; the gateway decides what the size means.
- envrcpt asks Gateway.rcpt_check, so that a mandatory-encryption refusal known at RCPT time is
  answered there (CONTRACT.md: ``550 5.7.1`` naming the address).
- data is answered (CONTINUE) on inet:/inet6:, though it decides nothing: the inet: stall of
  issue 5 item 12.
  Postfix buffers milter packets and flushes them when it waits for a reply. Without a reply to
  DATA, smtpd's last packets (the DATA-stage macros, which it always sends) go out unanswered
  as smtpd hands the connection to cleanup; cleanup's first write (headers, body, end of
  message) then finds unacknowledged data, Nagle's algorithm (RFC 896) holds it, and Linux
  delays our ACK (RFC 1122 4.2.3.2) because we have nothing to send: ~40 ms per message on
  inet:, at any message size. The DATA reply carries the ACK (bench/inet_stall_bench.py: a
  no-op milter went from ~150 to ~350 msg/s with 10 KB messages, as fast as on unix:).
  On a unix: socket there is no Nagle and no delayed ACK, so there DATA is negotiated away
  (SMFIP_NODATA, ``Runtime.skip_data``): the MTA still sends the DATA-stage macros (Postfix
  milter8.c sends an event's macros even when it skips the event) but neither waits for a
  reply nor makes us call back: one round trip less per message (issue 11 item 2).
- eom builds the Envelope, calls Gateway.process and applies the Outcome: header edits in order
  (smfi_chgheader with no value deletes, smfi_addheader appends, smfi_insheader at 0 inserts at
  the top, smfi_chgheader changes), the new body in MILTER_CHUNK_SIZE pieces
  (smfi_replacebody), recipients moved to other copies removed (smfi_delrcpt), then every
  Reinjection submitted over SMTP to ``[milter] reinject`` BEFORE the reply: if one fails the
  whole message is tempfailed, so that the client retries and nobody loses the mail.
- Every callback is a boundary (DESIGN.md Style 5): an exception escaping one is a bug; it is
  logged with the queue id and answered with ``[milter] on_internal_error`` (in the collecting
  callbacks, which cannot answer, it is remembered and answered at end of message).
- Stopping (runner.py): Runtime counts the transactions in progress, from MAIL FROM to the end
  of message (or abort), so that a stop can wait for them. Once the runtime is stopping, a
  transaction that starts on a connection still open is not counted and is answered
  ``451 4.3.2`` at its first recipient (MAIL FROM is @noreply and cannot answer), so that a
  busy connection cannot hold the stop up; the client retries.
"""

from __future__ import annotations

import functools
import logging
import smtplib
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol, TypeVar

import Milter
import milter

from smimegate import log
from smimegate.config import Config
from smimegate.milter import macros as mac
from smimegate.milter import replies
from smimegate.milter.stats import MessageStats
from smimegate.milter.transaction import Envelope, Outcome, Reinjection

_LOG = logging.getLogger("smimegate.milter.session")

# Bodies up to this size stay in memory while they arrive; larger ones go to a temp file.
SPOOL_IN_MEMORY = 1 << 20
# libmilter's MILTER_CHUNK_SIZE: the largest body packet without the MDS_256K/1M extensions.
REPLBODY_CHUNK = 65535
# Tell the MTA we are alive (smfi_progress) when a step took longer than this (seconds);
# Postfix's milter_content_timeout and Sendmail's T=E: count from the last packet.
PROGRESS_AFTER = 1.0

F = TypeVar("F", bound=Callable[..., Any])

# pymilter is untyped: its return codes and decorator, typed once here.
CONTINUE: int = Milter.CONTINUE
ACCEPT: int = Milter.ACCEPT
DISCARD: int = Milter.DISCARD
REJECT: int = Milter.REJECT
TEMPFAIL: int = Milter.TEMPFAIL
noreply: Callable[[F], F] = Milter.noreply


class GatewayLike(Protocol):
    """What the session needs from smimegate.milter.gateway.Gateway."""

    def rcpt_check(self, envelope_so_far: Envelope, recipient: str) -> replies.Reply: ...

    def process(
        self, envelope: Envelope, headers: Sequence[tuple[str, str]], body: bytes
    ) -> Outcome: ...

    def reload(self, config: Config | None = None) -> None: ...

    def close(self) -> None: ...


class ReinjectionError(Exception):
    """A split copy could not be handed to the reinjection listener."""


def parse_reinject(spec: str) -> tuple[str, int]:
    """``smtp:HOST:PORT`` (IPv6 as ``[ADDR]``) -> (host, port). Raises ValueError."""
    if not spec.startswith("smtp:"):
        raise ValueError(f'expected smtp:HOST:PORT, got "{spec}"')
    host, _, port = spec[len("smtp:") :].rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f'expected smtp:HOST:PORT, got "{spec}"')
    return host.strip("[]"), int(port)


def submit(spec: str, sender: str, copy: Reinjection, timeout: float) -> None:
    """Hand one copy to the reinjection listener over SMTP.

    ``sender`` "" gives the null reverse-path (RFC 5321 4.5.5, bounces stay bounces).
    Raises ReinjectionError when the listener cannot be reached or refuses any recipient.
    """
    host, port = parse_reinject(spec)
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            refused = smtp.sendmail(sender, list(copy.recipients), copy.message)
    except (OSError, smtplib.SMTPException) as exc:
        raise ReinjectionError(f"{spec}: {type(exc).__name__}: {exc}") from exc
    if refused:
        raise ReinjectionError(f"{spec}: recipients refused: {sorted(refused)}")


class Runtime:
    """What every session of the process shares: the configuration and the gateway (both
    replaced on SIGUSR1), the count of transactions in progress, and whether the process is
    stopping (then new transactions are refused and the stop waits for the count to reach 0)."""

    def __init__(
        self,
        config: Config,
        gateway: GatewayLike,
        submit_copy: Callable[[str, str, Reinjection, float], None] = submit,
    ) -> None:
        self._lock = threading.Condition()
        self._config = config
        self._gateway = gateway
        self.submit_copy = submit_copy
        self._active = 0
        self._replies_pending = 0
        self._stopping = False
        # Whether DATA is negotiated away (SMFIP_NODATA): set by runner.serve for a unix:
        # listener, where no Nagle delay needs DATA's reply (see the module docstring).
        self.skip_data = False
        # The message log lines for the store's counters (smimegate.milter.stats); recording
        # is a list append, the parsing and writing happen in the worker's flush thread.
        self.stats = MessageStats()

    @property
    def config(self) -> Config:
        with self._lock:
            return self._config

    @property
    def gateway(self) -> GatewayLike:
        with self._lock:
            return self._gateway

    def replace(self, config: Config) -> None:
        """Take a new configuration (SIGUSR1). Raises what Gateway.reload raises."""
        with self._lock:
            self._gateway.reload(config)
            self._config = config

    # -- transactions in progress ------------------------------------------------------------
    def begin(self) -> bool:
        """Count a transaction that starts now; False (not counted) when stopping."""
        with self._lock:
            if self._stopping:
                return False
            self._active += 1
            return True

    def end(self, reply_pending: bool = False) -> None:
        """A counted transaction ended (end of message, abort, or connection closed).

        reply_pending: it ended at end of message, whose reply libmilter writes only after our
        callback returned; reply_written() says when that is known to have happened."""
        with self._lock:
            self._active -= 1
            if reply_pending:
                self._replies_pending += 1
            self._lock.notify_all()

    def reply_written(self) -> None:
        """The MTA sent its next command on a connection whose end-of-message reply was
        pending: libmilter handles one connection in order, so that reply has been written."""
        with self._lock:
            self._replies_pending -= 1
            self._lock.notify_all()

    def wait_replies(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every pending end-of-message reply is known to
        be written; True when none is left. The MTA's next command is the only sign of it, so
        a connection the MTA keeps idle is covered by the deadline alone."""
        with self._lock:
            return self._lock.wait_for(lambda: self._replies_pending <= 0, timeout)

    @property
    def active(self) -> int:
        with self._lock:
            return self._active

    # -- stopping ------------------------------------------------------------------------------
    def stop(self) -> int:
        """Refuse new transactions from now on; returns how many are in progress."""
        with self._lock:
            self._stopping = True
            return self._active

    @property
    def stopping(self) -> bool:
        with self._lock:
            return self._stopping

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the transactions in progress to end; True when
        none is left."""
        with self._lock:
            return self._lock.wait_for(lambda: self._active <= 0, timeout)


def internal_error_reply(config: Config) -> replies.Reply:
    """The reply ``[milter] on_internal_error`` asks for."""
    choice = config.milter.on_internal_error
    if choice == "accept":
        return replies.ACCEPT
    if choice == "reject":
        return replies.REJECT_INTERNAL
    return replies.TEMPFAIL_INTERNAL


def _bare(address: str) -> str:
    """``<a@x>`` -> ``a@x``; ``<>`` -> "" (the null sender)."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        return address[1:-1]
    return address


def _boundary(stage: str, *, replies_allowed: bool) -> Callable[[F], F]:
    """Catch everything a callback lets escape (DESIGN.md Style 5): log it with the queue id,
    and answer on_internal_error where the stage can answer; else remember it for eom."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(self: Session, *args: Any) -> Any:
            self._reply_seen()
            try:
                return func(self, *args)
            except Exception:  # noqa: BLE001 - the callback boundary: nothing may escape
                self._failed = True
                _LOG.error(
                    log.warning_line(self._queue_id(), f"internal error in {stage}"),
                    exc_info=True,
                )
                if not replies_allowed:
                    return CONTINUE
                try:
                    return self._answer(internal_error_reply(self.runtime.config))
                except Exception:  # noqa: BLE001 - setreply itself failed: plain tempfail
                    _LOG.error(log.warning_line(self._queue_id(), "cannot set reply"),
                               exc_info=True)
                    return TEMPFAIL

        return wrapper  # type: ignore[return-value]

    return decorate


class Session(Milter.Base):  # type: ignore[misc]
    """One MTA connection. Built by the factory that runner.py installs."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self._client_addr: str | None = None
        self._client_name: str | None = None
        self._macros = mac.Macros()
        self._in_transaction = False  # counted in runtime.active
        self._refused_stopping = False  # begun while stopping: refused at RCPT
        self._reply_pending = False  # our end-of-message reply may not be written yet
        self._reset_message()

    # -- per-message state -------------------------------------------------------------------
    def _reset_message(self) -> None:
        self._sender = ""
        self._recipients: list[str] = []  # as the MTA sent them (for smfi_delrcpt)
        self._headers: list[tuple[str, str]] = []
        self._body: IO[bytes] | None = None
        self._failed = False

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def _begin(self) -> None:
        if not self._in_transaction:
            self._in_transaction = self.runtime.begin()
            self._refused_stopping = not self._in_transaction

    def _end(self, reply_pending: bool = False) -> None:
        self._close_body()
        self._refused_stopping = False
        if self._in_transaction:
            self._in_transaction = False
            self._reply_pending = reply_pending
            self.runtime.end(reply_pending)

    def _reply_seen(self) -> None:
        """Any callback after end of message: libmilter wrote that message's reply first."""
        if self._reply_pending:
            self._reply_pending = False
            self.runtime.reply_written()

    def _queue_id(self) -> str:
        return self._macros.queue_id or log.NOQUEUE

    def _read_macros(self, names: Sequence[str]) -> None:
        self._macros = self._macros.read(self.getsymval, names)

    def envelope(self) -> Envelope:
        """The envelope as known now."""
        return Envelope(
            queue_id=self._queue_id(),
            sender=self._sender,
            recipients=tuple(_bare(r) for r in self._recipients),
            client_addr=self._client_addr,
            client_name=self._client_name,
            auth_authen=self._macros.auth_authen,
            daemon_name=self._macros.daemon_name,
        )

    # -- negotiation --------------------------------------------------------------------------
    def negotiate(self, opts: list[int]) -> int:
        """Ask the MTA for just the macros each stage reads (macros.SYMLISTS), when it offers
        SMFIF_SETSYMLIST (Postfix 2.6+, Sendmail 8.14+: smfi_setsymlist, only allowed here);
        then pymilter's negotiation of the protocol steps (SMFIP_NO*, SMFIP_NR*)."""
        if opts and opts[0] & Milter.SETSYMLIST:
            try:
                for stage, names in mac.SYMLISTS:
                    # The C call itself: pymilter 1.0.5's Base.setsymlist hands it bytes, which
                    # it refuses on Python 3 (TypeError, and the connection is dropped).
                    self._ctx.setsymlist(stage, " ".join(names))
            except milter.error:
                # The MTA then sends its own lists; every stage still reads what it needs.
                _LOG.debug("macro lists not set", exc_info=True)
        offered = opts[1] if len(opts) > 1 else 0
        result: int = super().negotiate(opts)
        if result == CONTINUE and self.runtime.skip_data and offered & Milter.P_NODATA:
            opts[1] = self._protocol = opts[1] | Milter.P_NODATA
        return result

    # -- collecting callbacks ----------------------------------------------------------------
    @noreply
    @_boundary("connect", replies_allowed=False)
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        self._client_name = hostname or None
        # hostaddr: (ip, port[, flow, scope]) for inet/inet6, the path for unix, None when the
        # MTA did not say (Postfix sends family "U" for non-SMTP mail).
        if family in (socket.AF_INET, socket.AF_INET6) and hostaddr:
            self._client_addr = str(hostaddr[0])
        self._read_macros(mac.CONNECT_MACROS)
        return CONTINUE

    @noreply
    @_boundary("envfrom", replies_allowed=False)
    def envfrom(self, mailfrom: str, *params: str) -> int:
        # A new message on this connection: forget the previous one (an eom or abort normally
        # did, but an MTA may start over without either).
        self._end()
        self._reset_message()
        self._macros = self._macros.for_new_message()
        self._begin()
        self._sender = _bare(mailfrom)
        self._read_macros(mac.ENVFROM_MACROS)
        return CONTINUE

    @_boundary("envrcpt", replies_allowed=True)
    def envrcpt(self, to: str, *params: str) -> int:
        self._read_macros(mac.ENVRCPT_MACROS)
        if self._refused_stopping:
            self._log_line(log.message_line(self._queue_id(), {
                "action": "rcpt-refused", "from": f"<{self._sender}>", "to": to,
                "reply": replies.TEMPFAIL_STOPPING.line(),
            }))
            return self._answer(replies.TEMPFAIL_STOPPING)
        if self._failed:
            return CONTINUE  # answered at eom
        reply = self.runtime.gateway.rcpt_check(self.envelope(), _bare(to))
        if reply.refuses:
            self._log_line(log.message_line(self._queue_id(), {
                "action": "rcpt-refused", "from": f"<{self._sender}>", "to": to,
                "reply": reply.line(),
            }))
            return self._answer(reply)
        self._recipients.append(to)
        return CONTINUE

    @_boundary("data", replies_allowed=True)
    def data(self) -> int:
        # Answered on purpose on inet:, though there is nothing to decide: see the module
        # docstring (the inet: stall); on unix: the MTA does not send it (skip_data). The
        # reply costs one loopback round trip; its absence cost a ~40 ms delayed-ACK timer
        # per message.
        return CONTINUE

    @noreply
    @_boundary("header", replies_allowed=False)
    def header(self, name: str, value: str) -> int:
        self._headers.append((name, value))
        return CONTINUE

    @noreply
    @_boundary("body", replies_allowed=False)
    def body(self, chunk: bytes) -> int:
        if self._body is None:
            self._body = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, prefix="smg-")
        self._body.write(chunk)
        return CONTINUE

    # -- end of message ----------------------------------------------------------------------
    def eom(self) -> int:
        try:
            return self._eom()
        finally:
            self._end(reply_pending=True)

    @_boundary("eom", replies_allowed=True)
    def _eom(self) -> int:
        self._read_macros(mac.EOM_MACROS)
        config = self.runtime.config
        if self._refused_stopping:  # an MTA that goes on to DATA all the same
            return self._answer(replies.TEMPFAIL_STOPPING)
        if self._failed:
            return self._answer(internal_error_reply(config))
        body = b""
        if self._body is not None:
            self._body.seek(0)
            body = self._body.read()
            self._close_body()
        envelope = self.envelope()
        started = time.monotonic()
        outcome = self.runtime.gateway.process(envelope, tuple(self._headers), body)
        del body
        took = time.monotonic() - started
        if took > PROGRESS_AFTER:
            self.progress()
        if outcome.log_line:
            self._log_line(outcome.log_line, took)
        if outcome.reply.refuses or outcome.reply.kind == "discard":
            # Nothing of the message is kept: no edits, no copies.
            return self._answer(outcome.reply)
        self._apply(outcome)
        try:
            self._reinject(envelope, outcome.reinjections, config)
        except ReinjectionError as exc:
            _LOG.warning(log.warning_line(envelope.queue_id, "reinjection failed, tempfail",
                                          {"error": str(exc)}))
            return self._answer(replies.TEMPFAIL_INTERNAL)
        return self._answer(outcome.reply)

    def _apply(self, outcome: Outcome) -> None:
        """Send the Outcome's modifications to the MTA, in order."""
        for edit in outcome.header_edits:
            if edit.op == "delete":
                self.chgheader(edit.name, edit.index, None)
            elif edit.op == "change":
                self.chgheader(edit.name, edit.index, edit.value)
            elif edit.op == "insert":
                self.addheader(edit.name, edit.value, 0)
            else:
                self.addheader(edit.name, edit.value)
        if outcome.new_body is not None:
            view = memoryview(outcome.new_body)
            for start in range(0, len(view), REPLBODY_CHUNK):
                self.replacebody(bytes(view[start : start + REPLBODY_CHUNK]))
        if outcome.remove_recipients:
            by_bare = {_bare(r).lower(): r for r in self._recipients}
            for address in outcome.remove_recipients:
                self.delrcpt(by_bare.get(_bare(address).lower(), f"<{_bare(address)}>"))

    def _reinject(self, envelope: Envelope, copies: Sequence[Reinjection], config: Config) -> None:
        """Submit every copy; raises ReinjectionError at the first that fails."""
        for copy in copies:
            started = time.monotonic()
            self.runtime.submit_copy(config.milter.reinject, envelope.sender, copy,
                                     config.smtp.timeout)
            self._log_line(log.message_line(envelope.queue_id, {
                "action": "reinject", "to": ",".join(f"<{r}>" for r in copy.recipients),
                "size": len(copy.message), "relay": config.milter.reinject,
            }))
            if time.monotonic() - started > PROGRESS_AFTER:
                self.progress()

    def _log_line(self, line: str, took: float | None = None) -> None:
        """Log a message line and record it for the counters (smimegate.milter.stats)."""
        _LOG.info(line)
        self.runtime.stats.record(line, took)

    def _answer(self, reply: replies.Reply) -> int:
        """Map a Reply to the pymilter return code, setting the SMTP reply for refusals."""
        if reply.kind in ("tempfail", "reject"):
            # libmilter treats the text as a format string: a lone % voids the reply.
            self.setreply(reply.code, reply.xcode, (reply.text or "").replace("%", "%%"))
            return TEMPFAIL if reply.kind == "tempfail" else REJECT
        if reply.kind == "accept":
            return ACCEPT
        if reply.kind == "discard":
            return DISCARD
        return CONTINUE

    # -- end of transaction / connection ----------------------------------------------------
    def abort(self) -> int:
        self._reply_seen()
        self._end()
        self._reset_message()
        return CONTINUE

    def close(self) -> int:
        self._reply_seen()
        self._end()
        return CONTINUE


def factory(runtime: Runtime) -> Callable[[], Session]:
    """The connection factory for ``Milter.factory``."""
    return functools.partial(Session, runtime)
