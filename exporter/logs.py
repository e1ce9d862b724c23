"""The one logging setup: logfmt or JSON lines on stderr, secrets redacted.

Structured fields travel in ``extra={...}``; every line about a tenant carries ``tenant=``. An
exception logged with ``exc_info`` becomes the fields ``error`` (its type) and ``stack`` (the
whole trace, redacted like everything else). Nothing here is a module-level instance: the
command line builds the :class:`SecretRedactor`, each tenant its :class:`TenantLogger`.
Third-party loggers (MSAL, httpx, APScheduler) stay at WARNING whatever ``--log.level`` says:
their debug output may quote request bodies.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import threading
import time
import traceback
import urllib.parse
import weakref
from collections.abc import Callable, Iterable
from types import MappingProxyType
from typing import Any, TextIO

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("logfmt", "json")
_QUIET_LOGGERS = ("msal", "httpx", "httpcore", "apscheduler", "urllib3", "asyncio")
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
REDACTED = "[REDACTED]"
# Libraries whose lines carry no stack trace, and a message cut to MAX_LIBRARY_MESSAGE: MSAL
# quotes the identity provider's whole answer (an HTML page) in its own.
_NO_STACK_LOGGERS = ("msal",)
MAX_LIBRARY_MESSAGE = 300
# A JSON Web Token: a base64url JSON header ("{"... is "eyJ"), payload and signature.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


class SecretRedactor(logging.Filter):
    """Replaces every known secret value in a record's rendered message and fields."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        # Values the exporter came to hold after the config was read (a secret re-read from a
        # rotated file; access tokens, whatever their shape), by the id of their holder: its
        # secrets (a key of ``_shared``) and its tokens' variants. An entry leaves with its
        # holder.
        self._held: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        # Secrets held → (their variants, how many holders): the many tenants of one app
        # share one copy of its secret's variants, not one each.
        self._shared: dict[tuple[str, ...], tuple[tuple[str, ...], int]] = {}
        self._lock = threading.Lock()

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Replace the set of values to redact (called at start-up and at every reload).

        Each secret is redacted as written and in every encoding an identity provider or a
        proxy might echo it in: URL-encoded, base64 (at any offset in a longer text), and
        JSON-escaped.
        """
        variants = redacted_variants(secrets)
        with self._lock:
            self._secrets = variants

    def hold(self, owner: object, secrets: tuple[str, ...], tokens: tuple[str, ...] = ()) -> None:
        """Redact ``secrets`` (each in every encoding, as configured secrets are) and
        ``tokens`` (as written, URL-encoded and JSON-escaped: an access token is sent and echoed
        as itself, and its base64 forms would be some 12 KB a tenant) until ``owner`` holds
        others or is gone."""
        key = id(owner)
        token_variants = token_encodings(tokens)
        with self._lock:
            old = self._held.get(key)
            if old is None:
                weakref.finalize(owner, self._release, key)
            elif old[0] != secrets:
                self._unshare(old[0])
            if old is None or old[0] != secrets:
                variants, holders = self._shared.get(secrets, ((), 0))
                if not holders:
                    variants = redacted_variants(secrets)
                self._shared[secrets] = (variants, holders + 1)
            self._held[key] = (secrets, token_variants)

    def _release(self, key: int) -> None:
        with self._lock:
            old = self._held.pop(key, None)
            if old is not None:
                self._unshare(old[0])

    def _unshare(self, secrets: tuple[str, ...]) -> None:
        variants, holders = self._shared[secrets]
        if holders <= 1:
            del self._shared[secrets]
        else:
            self._shared[secrets] = (variants, holders - 1)

    def redact(self, text: str) -> str:
        """``text`` with every known secret, and anything shaped like a token, replaced.

        The access tokens the exporter holds are redacted as their exact values (Microsoft may
        change their shape); besides, every JSON Web Token (``eyJ…``, three base64url parts) is
        redacted wherever it appears (federated tokens, assertions, tokens of others).
        """
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        held = [variants for variants, _ in list(self._shared.values())]
        held += [tokens for _, tokens in list(self._held.values())]
        for values in held:
            for value in values:
                if value in text:
                    text = text.replace(value, REDACTED)
        if "eyJ" in text:
            text = JWT.sub(REDACTED, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        with_stack(record)
        message = record.getMessage()
        if record.name.startswith(_NO_STACK_LOGGERS) and len(message) > MAX_LIBRARY_MESSAGE:
            message = message[: MAX_LIBRARY_MESSAGE - 1] + "…"
        record.msg = self.redact(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


def redacted_variants(values: Iterable[str]) -> tuple[str, ...]:
    """Every encoding of each value of 4 characters or more, longest first (so a value is
    replaced whole before any shorter value inside it)."""
    variants = {v for s in values if len(s) >= 4 for v in encodings_of(s)}
    return tuple(sorted(variants, key=len, reverse=True))


def with_stack(record: logging.LogRecord) -> None:
    """Turn ``exc_info`` into the fields ``error`` and ``stack`` (once), so they are redacted
    with the other fields and rendered on one line.

    MSAL's own lines get no stack: what it logs with one (a token answer that is not JSON) is an
    answer the exporter classifies and logs itself; the stack would only repeat MSAL's inside.
    """
    error = record.exc_info[1] if record.exc_info else None
    if error is not None and not hasattr(record, "stack"):
        record.error = type(error).__name__
        if not record.name.startswith(_NO_STACK_LOGGERS):
            record.stack = "".join(traceback.format_exception(error)).rstrip()
    record.exc_info = None
    record.exc_text = None


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


_LOGFMT_ESCAPES = MappingProxyType(
    {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
)


def _logfmt_value(value: Any) -> str:
    """A logfmt value: bare when it can be, else quoted, with every control character escaped
    (a raw carriage return would let a value forge the start of a log line)."""
    text = str(value)
    if text and text.isprintable() and not any(c in text for c in ' ="\\'):
        return text
    escaped = "".join(
        _LOGFMT_ESCAPES.get(c, c if c.isprintable() else f"\\u{ord(c):04x}") for c in text
    )
    return f'"{escaped}"'


class StructuredFormatter(logging.Formatter):
    """A record as its fields (ts, level, logger, msg, then ``extra``), rendered by ``render``."""

    def __init__(self, render: Callable[[dict[str, Any]], str]) -> None:
        super().__init__()
        self._render = render

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        with_stack(record)
        fields.update(_extra_fields(record))
        return self._render(fields)


def render_logfmt(fields: dict[str, Any]) -> str:
    """``ts=... level=info msg="..." tenant=contoso result=throttled``."""
    return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


def render_json(fields: dict[str, Any]) -> str:
    """One JSON object per line."""
    return json.dumps(fields, default=str)


def _base64_cores(secret: bytes) -> set[str]:
    """The base64 characters that depend on ``secret`` alone, wherever it starts in a text.

    Base64 packs 3 bytes into 4 characters, so a secret inside a longer value (``id:secret``
    in a Basic header) is encoded differently for each of 3 offsets; the characters that mix
    in neighbouring bytes are left out.
    """
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret + b"\0\0").decode()
        first = -(-8 * offset // 6)  # the first character made of secret bits only
        last = (8 * (offset + len(secret))) // 6  # one past the last such character
        core = encoded[first:last]
        if len(core) >= 4:
            cores |= {core, core.replace("+", "-").replace("/", "_")}
    return cores


def token_encodings(tokens: Iterable[str]) -> tuple[str, ...]:
    """Each token of 4 characters or more as written, URL-encoded and JSON-escaped, longest
    first."""
    variants = {
        text
        for token in tokens
        if len(token) >= 4
        for text in (token, urllib.parse.quote(token, safe=""), json.dumps(token)[1:-1])
    }
    return tuple(sorted(variants, key=len, reverse=True))


def encodings_of(secret: str) -> set[str]:
    """``secret`` as written, URL-encoded (both ways), JSON-escaped, and each of those
    base64-encoded (a proxy may echo the whole form body in base64)."""
    texts = {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
        urllib.parse.quote(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    return texts | {core for text in texts for core in _base64_cores(text.encode())}


class TenantLogger(logging.LoggerAdapter[logging.Logger]):
    """The logger a tenant is given (and hands to what works for it: its token source, its
    collectors, the Graph requests of its polls).

    Every line names the tenant (``tenant=``) and goes where every line goes; the same line,
    as logfmt with secrets redacted, is also handed to ``keep`` (the tenant's own tail, which
    its page shows for a failed poll). Nothing on the root logger routes lines to tenants.
    """

    def __init__(
        self,
        logger: logging.Logger,
        tenant: str,
        keep: Callable[[float, str], None],
        redactor: logging.Filter,
    ) -> None:
        super().__init__(logger, {"tenant": tenant})
        self._keep = keep
        self._redactor = redactor

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**kwargs.get("extra", {}), **(self.extra or {})}
        return msg, kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        msg, kwargs = self.process(msg, kwargs)
        self.logger.log(level, msg, *args, **kwargs)
        exc_info = kwargs.get("exc_info")
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        elif exc_info and not isinstance(exc_info, tuple):
            exc_info = sys.exc_info()
        record = self.logger.makeRecord(
            self.logger.name, level, "", 0, msg, args, exc_info or None, extra=kwargs["extra"]
        )
        self._redactor.filter(record)
        self._keep(record.created, StructuredFormatter(render_logfmt).format(record))


def configure_logging(
    level: str = "info",
    fmt: str = "logfmt",
    stream: TextIO | None = None,
    redactor: SecretRedactor | None = None,
) -> SecretRedactor:
    """Send every log line to ``stream`` (stderr) in ``fmt``, at ``level``, secrets redacted;
    returns the redactor (``redactor``, or a new one) to tell the secrets to."""
    redactor = redactor or SecretRedactor()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(StructuredFormatter(render_json if fmt == "json" else render_logfmt))
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return redactor
