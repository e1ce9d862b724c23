"""The serving exporter: the runtime, the HTTP server, reloads and signals; and ``--once``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from exporter import __version__
from exporter.config.files import file_stamp, write_atomically
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
CONFIG_CHECK_SECONDS = 2.0


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
        # Reloads asked for, and the last one done with its answer: requests that arrive
        # while one runs are all answered by the next run (one running, one pending).
        self._asked = 0
        self._done = 0
        self._answer: tuple[bool, str] = (True, "")
        # The config file's loader still running (a read that outlived its reload's deadline):
        # the next reload waits for it again rather than starting a second one.
        self._loading: asyncio.Future[Config] | None = None

    def is_alive(self) -> bool:
        """True while the scheduler's heartbeat job keeps running."""
        return time.monotonic() - self.runtime.scheduler.clock.heartbeat < HEARTBEAT_MAX_AGE_SECONDS

    async def reload(self) -> tuple[bool, str]:
        """Re-read the config file and its secret files; keep the running config if invalid.

        Any failure, of any kind, is a refused reload: the running config stays, the metric
        says 0, one log line per problem, and the caller gets an answer. Reloads are coalesced:
        every request made while one runs is answered by the next one, whatever their number.
        """
        self._asked += 1
        ticket = self._asked
        async with self._reload_lock:
            if self._done >= ticket:
                return self._answer  # a reload that started after this request has answered
            covered = self._asked
            self._answer = await self._reload_once()
            self._done = covered
            return self._answer

    async def _reload_once(self) -> tuple[bool, str]:
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
        return False, refusal_answer(problems)

    async def _load_off_loop(self) -> Config:
        """Load the config in a daemon thread, within :data:`RELOAD_DEADLINE_SECONDS`.

        Not on the event loop (polls and signals go on whatever the files do), and not in the
        loop's default executor, whose threads would hold up the process at exit.
        """
        if self._loading is not None and not self._loading.done():
            return await self._await_load(self._loading)
        future: asyncio.Future[Config] = self._loop.create_future()
        self._loading = future

        def load() -> None:
            try:
                config = self.settings.shard.select(load_config(self.settings.config_file))
            except BaseException as err:  # noqa: BLE001 - handed over to the waiting coroutine
                self._loop.call_soon_threadsafe(_settle, future, None, err)
            else:
                self._loop.call_soon_threadsafe(_settle, future, config, None)

        threading.Thread(target=load, name="reload", daemon=True).start()
        return await self._await_load(future)

    async def _await_load(self, future: asyncio.Future[Config]) -> Config:
        try:
            async with asyncio.timeout(RELOAD_DEADLINE_SECONDS):
                return await asyncio.shield(future)
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
        # A SIGHUP sent during start-up was held back (exporter.launch): it arrives now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        self.runtime.scheduler.start()
        watch = self._loop.create_task(self._watch_config_file())
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
        watch.cancel()
        log.info("shutting down")
        self.runtime.scheduler.shutdown()
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        await self.runtime.aclose()
        log.info("stopped")
        return EXIT_OK

    async def _watch_config_file(self) -> None:
        """Reload when the config file changes on disk, as the web config already is.

        A mounted ConfigMap changes by a symlink swap: the file's identity (device, inode),
        time and size are read through the link, every :data:`CONFIG_CHECK_SECONDS`.
        """
        stamp = file_stamp(self.settings.config_file)
        while True:
            await asyncio.sleep(CONFIG_CHECK_SECONDS)
            now = await asyncio.to_thread(file_stamp, self.settings.config_file)
            if now != stamp:
                stamp = now
                log.info("config file changed on disk: reloading")
                await self.reload()

    def _reload_in_background(self) -> None:
        task = self._loop.create_task(self.reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def refusal_answer(problems: list[str]) -> str:
    """What an HTTP client is told of a refused reload: where the problems are, never what the
    file holds there (a secret put where a GUID belongs would come back whole); the log says
    the rest, redacted."""
    paths = [line.split(": ", 1)[0] for line in problems]
    shown = ", ".join(paths[:20]) + (f" and {len(paths) - 20} more" if len(paths) > 20 else "")
    return f"config reload refused: {len(paths)} problem(s) at {shown}; the log says what each is"


async def run_once(
    config: Config, output: str | None = None, redactor: SecretRedactor | None = None
) -> int:
    """Poll every tenant once and print (or write) the exposition; 0 if every poll succeeded."""
    runtime = build_runtime(config, redactor)
    try:
        await runtime.discover()  # the customer listing first, with discovery
        results = await runtime.poll_all()
    finally:
        await runtime.aclose()
    exposition = runtime.store.render()
    if output is None:
        try:
            sys.stdout.buffer.write(exposition)
            sys.stdout.flush()
        except (OSError, ValueError, AttributeError) as err:
            # A closed pipe, a full device, a closed stdout: said in one line, exit 1.
            log.error(f"cannot write the exposition to stdout: {describe_error(err)}")
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes it at exit
            return EXIT_FAILURE
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
