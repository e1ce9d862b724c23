"""The serving exporter: the runtime, the HTTP server, reloads and signals; and ``--once``."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from exporter import __version__
from exporter.config.files import write_atomically
from exporter.config.loader import load_config
from exporter.config.model import Config
from exporter.config.problems import ConfigError
from exporter.graph.failures import SUCCESS, describe_error
from exporter.logs import SecretRedactor
from exporter.runtime import Runtime, build_runtime
from exporter.settings import Settings
from exporter.web.config import WebConfig
from exporter.web.router import ServerHooks
from exporter.web.server import make_server, serve_in_thread

log = logging.getLogger("exporter")

EXIT_OK = 0
EXIT_FAILURE = 1
HEARTBEAT_MAX_AGE_SECONDS = 30.0
RELOAD_WAIT_SECONDS = 30.0
RELOAD_DEADLINE_SECONDS = 20.0


def _settle(
    future: asyncio.Future[Config], config: Config | None, error: BaseException | None
) -> None:
    if future.done():
        return  # the reload gave up waiting
    if error is not None:
        future.set_exception(error)
    else:
        assert config is not None
        future.set_result(config)


class Service:
    """The serving exporter: the runtime, the HTTP server, reloads and signals."""

    def __init__(self, settings: Settings, runtime: Runtime, web: WebConfig) -> None:
        self.settings = settings
        self.runtime = runtime
        self.web = web
        self._reload_lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._background: set[asyncio.Task[tuple[bool, str]]] = set()

    def is_alive(self) -> bool:
        """True while the scheduler's heartbeat job keeps running."""
        return time.monotonic() - self.runtime.scheduler.heartbeat < HEARTBEAT_MAX_AGE_SECONDS

    async def reload(self) -> tuple[bool, str]:
        """Re-read the config file and its secret files; keep the running config if invalid.

        Any failure, of any kind, is a refused reload: the running config stays, the metric
        says 0, one log line per problem, and the caller gets an answer.
        """
        async with self._reload_lock:
            store = self.runtime.store
            try:
                config = await self._load_off_loop()
            except ConfigError as err:
                problems = err.problems
            except Exception as err:  # noqa: BLE001 - a reload never takes the exporter down
                problems = [f"{self.settings.config_file}: {describe_error(err)}"]
            else:
                self._apply(config)
                store.record_reload(True)
                log.info("config reloaded", extra={"tenants": len(config.tenants)})
                return True, f"config reloaded: {len(config.tenants)} tenant(s)"
            for line in problems:
                log.error(f"config reload refused: {line}")
            store.record_reload(False)
            return False, "config reload refused:\n" + "\n".join(problems)

    async def _load_off_loop(self) -> Config:
        """Load the config in a daemon thread, within :data:`RELOAD_DEADLINE_SECONDS`.

        Not on the event loop (polls and signals go on whatever the files do), and not in the
        loop's default executor, whose threads would hold up the process at exit.
        """
        future: asyncio.Future[Config] = self._loop.create_future()

        def load() -> None:
            try:
                config = self.settings.shard.select(load_config(self.settings.config_file))
            except BaseException as err:  # noqa: BLE001 - handed over to the waiting coroutine
                self._loop.call_soon_threadsafe(_settle, future, None, err)
            else:
                self._loop.call_soon_threadsafe(_settle, future, config, None)

        threading.Thread(target=load, name="reload", daemon=True).start()
        try:
            async with asyncio.timeout(RELOAD_DEADLINE_SECONDS):
                return await future
        except TimeoutError:
            raise ConfigError(
                [f"{self.settings.config_file}: not read within {RELOAD_DEADLINE_SECONDS:.0f}s"]
            ) from None

    def _apply(self, config: Config) -> None:
        for warning in config.warnings:
            log.warning(warning)
        running = self.runtime.config
        kept = [
            name
            for name in ("tls_ca_file", "concurrency")
            if getattr(config, name) != getattr(running, name)
        ]
        if kept:
            log.warning(f"{', '.join(kept)} changed: takes effect after a restart")
        self.runtime.apply(config)

    def reload_from_thread(self) -> tuple[bool, str]:
        """Run :meth:`reload` on the event loop and wait for it (HTTP server threads)."""
        future = asyncio.run_coroutine_threadsafe(self.reload(), self._loop)
        try:
            return future.result(RELOAD_WAIT_SECONDS)
        except Exception as err:  # noqa: BLE001 - the POST is answered whatever happened
            future.cancel()
            return False, f"config reload failed: {describe_error(err)}"

    async def run(self) -> int:
        """Serve until SIGTERM / SIGINT."""
        hooks = ServerHooks(
            store=self.runtime.store,
            is_alive=self.is_alive,
            reload=self.reload_from_thread,
            telemetry_path=self.settings.telemetry_path,
            web=self.web,
            next_poll=self.runtime.scheduler.next_poll,
        )
        try:
            server = make_server(self.settings.listen_address, hooks)
        except OSError as err:
            log.error(f"cannot listen on {self.settings.listen_address}: {err.strerror or err}")
            await self.runtime.aclose()
            return EXIT_FAILURE
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, stop.set)
        self._loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)
        self.runtime.scheduler.start()
        serve_in_thread(server)
        log.info(
            "exporter started",
            extra={
                "version": __version__,
                "address": server.display_address,
                "tenants": len(self.runtime.config.tenants),
            },
        )
        await stop.wait()
        log.info("shutting down")
        self.runtime.scheduler.shutdown()
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        await self.runtime.aclose()
        log.info("stopped")
        return EXIT_OK

    def _reload_in_background(self) -> None:
        task = self._loop.create_task(self.reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def run_once(
    config: Config, output: str | None = None, redactor: SecretRedactor | None = None
) -> int:
    """Poll every tenant once and print (or write) the exposition; 0 if every poll succeeded."""
    runtime = build_runtime(config, redactor)
    try:
        results = await runtime.poll_all()
    finally:
        await runtime.aclose()
    exposition = runtime.store.render()
    if output is None:
        sys.stdout.buffer.write(exposition)
        sys.stdout.flush()
    else:
        try:
            write_atomically(Path(output), exposition)
        except OSError as err:
            log.error(f"cannot write {output}: {err.strerror or err}")
            return EXIT_FAILURE
    return EXIT_OK if all(r.result == SUCCESS for r in results) else EXIT_FAILURE


async def serve_forever(
    settings: Settings, config: Config, web: WebConfig, redactor: SecretRedactor
) -> int:
    """Run the exporter until SIGTERM / SIGINT."""
    return await Service(settings, build_runtime(config, redactor), web).run()
