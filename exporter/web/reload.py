"""The web config in force, re-read when its file or a certificate, key or CA it names changes.

cert-manager rotates certificates in place; exporter-toolkit reads them again for new
connections, and so does this: the accept loop asks :meth:`LiveWebConfig.current` for the
settings of each new connection, which looks at the files' change times at most once a second.
A changed file that no longer loads keeps the last good settings, says so in the log, and sets
``entra_exporter_web_config_last_reload_successful`` to 0.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable

from exporter.config.problems import ConfigError
from exporter.graph.failures import describe_error
from exporter.web.config import WebConfig, load_web_config
from exporter.web.rate_limit import RequestBucket

log = logging.getLogger("exporter.web")
CHECK_EVERY_SECONDS = 1.0


def _stamp(files: tuple[str, ...]) -> tuple[tuple[str, int, int], ...]:
    stamps = []
    for file in files:
        try:
            info = os.stat(file)
        except OSError:
            stamps.append((file, -1, -1))
        else:
            stamps.append((file, info.st_mtime_ns, info.st_size))
    return tuple(stamps)


class LiveWebConfig:
    """The web config, its TLS context and its request bucket, as of the last good load."""

    def __init__(
        self, web: WebConfig, on_reload: Callable[[bool], None] = lambda _ok: None
    ) -> None:
        self.web = web
        self.context = web.tls.ssl_context() if web.tls is not None else None
        self.requests = RequestBucket(web.rate_limit)
        self._on_reload = on_reload
        self._stamp = _stamp(web.watched)
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def current(self) -> ssl.SSLContext | None:
        """The TLS context for a new connection, after re-reading changed files."""
        if self.web.source is not None and time.monotonic() - self._checked >= CHECK_EVERY_SECONDS:
            with self._lock:
                self._checked = time.monotonic()
                stamp = _stamp(self.web.watched)
                if stamp != self._stamp:
                    self._stamp = stamp  # a bad file is reported once, not every second
                    self._reload()
        return self.context

    def _reload(self) -> None:
        assert self.web.source is not None
        try:
            web = load_web_config(self.web.source)
            context = web.tls.ssl_context() if web.tls is not None else None
        except ConfigError as err:
            problems = err.problems
        except (OSError, ssl.SSLError, ValueError) as err:
            problems = [f"{self.web.source}: {describe_error(err)}"]
        else:
            self.web, self.context, self.requests = web, context, RequestBucket(web.rate_limit)
            self._stamp = _stamp(web.watched)
            log.info("web config reloaded", extra={"file": web.source})
            self._on_reload(True)
            return
        for line in problems:
            log.error(f"web config reload refused, keeping the last good one: {line}")
        self._on_reload(False)
