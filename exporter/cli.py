"""Command line: flags → settings; starts the scheduler and the HTTP server; signals.

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from exporter import __version__
from exporter.config.files import write_atomically
from exporter.config.loader import load_config
from exporter.config.model import Config, TenantConfig, format_duration
from exporter.config.problems import ConfigError
from exporter.config.sharding import SHARD_INDEX_ENV, Shard, shard_from
from exporter.demo import run_demo
from exporter.graph.failures import SUCCESS, describe_error
from exporter.logs import FORMATS, LEVELS, REDACTOR, configure_logging
from exporter.runtime import Pipeline, build_pipeline
from exporter.web.config import WebConfig, describe_web_config, load_web_config
from exporter.web.server import (
    PROBE_PATHS,
    ServerHooks,
    make_server,
    parse_listen_address,
    serve_in_thread,
)

log = logging.getLogger("exporter")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
HEARTBEAT_MAX_AGE_SECONDS = 30.0
RELOAD_WAIT_SECONDS = 30.0
RELOAD_DEADLINE_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class Settings:
    """The command line, parsed."""

    config_file: str
    listen_address: str
    telemetry_path: str
    web_config_file: str | None
    log_level: str
    log_format: str
    check_config: bool
    once: bool
    demo: bool
    # --once: write the exposition here (atomically) instead of to stdout.
    output: str | None = None
    # This replica's shard (the index defaults to $EXPORTER_SHARD_INDEX, else 0).
    shard: Shard = field(default_factory=Shard)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The exporter's flags, named as Prometheus exporters name theirs, each with its default."""
    parser = _Parser(
        prog="entra-registration-exporter",
        description="Prometheus exporter for Microsoft Entra ID SSPR and MFA registration counts.",
    )
    _add_serving_flags(parser)
    _add_mode_flags(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _add_serving_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default="config.yaml",
        metavar="PATH",
        help="tenants and polling settings (YAML) (default: %(default)s)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=":9836",
        metavar="HOST:PORT",
        help="where the HTTP server listens; ':PORT' is every address, IPv4 and IPv6 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        default="/metrics",
        metavar="PATH",
        help="path under which metrics are served (default: %(default)s)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        metavar="PATH",
        help="exporter-toolkit web config for TLS and basic auth (default: none, plain HTTP)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=LEVELS,
        help="only log messages at this level or above (default: %(default)s)",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        default="logfmt",
        choices=FORMATS,
        help="log line format; every line about a tenant carries tenant= (default: %(default)s)",
    )


def _add_mode_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check-config", action="store_true", help="validate the config, print a summary, exit"
    )
    parser.add_argument(
        "--once", action="store_true", help="poll every tenant once, print the exposition, exit"
    )
    parser.add_argument(
        "--output",
        default=None,
        metavar="FILE",
        help="with --once: write the exposition to FILE atomically (for node_exporter's "
        "textfile collector) instead of stdout (default: stdout)",
    )
    parser.add_argument(
        "--demo", action="store_true", help="run against an embedded simulator (no config needed)"
    )
    parser.add_argument(
        "--shard.count",
        dest="shard_count",
        type=int,
        default=1,
        metavar="N",
        help="split the tenants over N replicas (default: 1, no sharding)",
    )
    parser.add_argument(
        "--shard.index",
        dest="shard_index",
        default=None,
        metavar="I",
        help=f"this replica's shard, 0..N-1, or a StatefulSet pod name ending in -I "
        f"(default: ${SHARD_INDEX_ENV}, else 0)",
    )
    parser.add_argument(
        "--shard.split-app-limit",
        dest="split_app_limit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pace each replica to 1/N of rate_limits.per_app, since replicas share the app; "
        "--no-shard.split-app-limit gives each the whole limit (default: split)",
    )


def parse_settings(argv: list[str] | None) -> Settings:
    """Parse and check the command line (exit 2 on a usage error)."""
    args = build_parser().parse_args(argv)
    try:
        parse_listen_address(args.listen_address)
    except ValueError as err:
        build_parser().error(f"--web.listen-address: {err}")
    try:
        shard = shard_from(args.shard_count, args.shard_index, os.environ, args.split_app_limit)
    except ValueError as err:
        build_parser().error(f"--shard: {err}")
    if args.output is not None and not args.once:
        build_parser().error("--output needs --once")
    reserved = ("/", *PROBE_PATHS)
    if not args.telemetry_path.startswith("/") or args.telemetry_path in reserved:
        build_parser().error(
            f"--web.telemetry-path must start with / and not be {', '.join(reserved)}"
        )
    return Settings(
        config_file=args.config_file,
        listen_address=args.listen_address,
        telemetry_path=args.telemetry_path,
        web_config_file=args.web_config_file,
        log_level=args.log_level,
        log_format=args.log_format,
        check_config=args.check_config,
        once=args.once,
        output=args.output,
        demo=args.demo,
        shard=shard,
    )


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


def print_config_errors(problems: list[str]) -> None:
    """One line per problem on stderr."""
    for line in problems:
        print(line, file=sys.stderr)


class Service:
    """The serving exporter: the pipeline, the HTTP server, reloads and signals."""

    def __init__(self, settings: Settings, pipeline: Pipeline, web: WebConfig) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.web = web
        self._reload_lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._background: set[asyncio.Task[tuple[bool, str]]] = set()

    def is_alive(self) -> bool:
        """True while the scheduler's heartbeat job keeps running."""
        return time.monotonic() - self.pipeline.scheduler.heartbeat < HEARTBEAT_MAX_AGE_SECONDS

    async def reload(self) -> tuple[bool, str]:
        """Re-read the config file and its secret files; keep the running config if invalid.

        Any failure, of any kind, is a refused reload: the running config stays, the metric
        says 0, one log line per problem, and the caller gets an answer.
        """
        async with self._reload_lock:
            store = self.pipeline.store
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
        running = self.pipeline.config
        kept = [
            name
            for name in ("tls_ca_file", "concurrency")
            if getattr(config, name) != getattr(running, name)
        ]
        if kept:
            log.warning(f"{', '.join(kept)} changed: takes effect after a restart")
        REDACTOR.set_secrets(config.secrets())
        self.pipeline.apply(config)

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
            store=self.pipeline.store,
            is_alive=self.is_alive,
            reload=self.reload_from_thread,
            telemetry_path=self.settings.telemetry_path,
            web=self.web,
            next_poll=self.pipeline.scheduler.next_poll,
        )
        try:
            server = make_server(self.settings.listen_address, hooks)
        except OSError as err:
            log.error(f"cannot listen on {self.settings.listen_address}: {err.strerror or err}")
            await self.pipeline.aclose()
            return EXIT_FAILURE
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, stop.set)
        self._loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)
        self.pipeline.scheduler.start()
        serve_in_thread(server)
        log.info(
            "exporter started",
            extra={
                "version": __version__,
                "address": server.display_address,
                "tenants": len(self.pipeline.config.tenants),
            },
        )
        await stop.wait()
        log.info("shutting down")
        self.pipeline.scheduler.shutdown()
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        await self.pipeline.aclose()
        log.info("stopped")
        return EXIT_OK

    def _reload_in_background(self) -> None:
        task = self._loop.create_task(self.reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def run_once(config: Config, output: str | None = None) -> int:
    """Poll every tenant once and print (or write) the exposition; 0 if every poll succeeded."""
    pipeline = build_pipeline(config)
    try:
        results = await pipeline.poll_all()
    finally:
        await pipeline.aclose()
    exposition = pipeline.store.render()
    if output is None:
        sys.stdout.buffer.write(exposition)
        sys.stdout.flush()
    else:
        try:
            write_atomically(Path(output), exposition)
        except OSError as err:
            log.error(f"cannot write {output}: {err.strerror or err}")
            return EXIT_FAILURE
    return EXIT_OK if all(r is not None and r.result == SUCCESS for r in results) else EXIT_FAILURE


async def serve_forever(settings: Settings, config: Config, web: WebConfig) -> int:
    """Run the exporter until SIGTERM / SIGINT."""
    return await Service(settings, build_pipeline(config), web).run()


def describe_config(config: Config) -> list[str]:
    """A short, secret-free summary for ``--check-config``."""
    lines = [
        f"config ok: {len(config.tenants)} tenant(s), concurrency {config.concurrency}, "
        f"rate limits {config.per_app_per_tenant} per app per tenant, {config.per_app} per app"
    ]
    for tenant in config.tenants:
        lines.append(
            f"  {tenant.name}: tenant_id={tenant.tenant_id} client_id={tenant.client_id} "
            f"credential={tenant.credential.kind} cloud={tenant.cloud} source={tenant.source} "
            f"interval={format_duration(tenant.interval)}{_describe_segments(tenant)}"
            + (" (shared app from defaults)" if tenant.shared_app else "")
        )
    shared = [tenant.name for tenant in config.tenants if tenant.shared_app]
    if shared:
        lines.append(f"shared app (defaults) used by {len(shared)} tenant(s): {', '.join(shared)}")
    return lines


def _describe_segments(tenant: TenantConfig) -> str:
    segments = tenant.segments
    parts = []
    if segments.privileged_roles:
        eligible = "+eligible" if segments.include_eligible else ""
        parts.append(f"privileged_roles={len(segments.privileged_roles)}{eligible}")
    if segments.groups:
        parts.append(f"groups={','.join(name for name, _ in segments.groups)}")
    return f" segments: {' '.join(parts)}" if parts else ""


def check_config(settings: Settings, full_config: Config, config: Config, web: WebConfig) -> int:
    """``--check-config``: warnings on stderr, the summary on stdout, exit 0."""
    for warning in config.warnings + web.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print("\n".join(describe_config(config)))
    shard = settings.shard
    if shard.count > 1:
        print(
            f"shard {shard.index} of {shard.count}: {len(config.tenants)} of "
            f"{len(full_config.tenants)} tenants, pacing to {config.per_app} of the app's "
            f"{full_config.per_app}"
        )
    if settings.web_config_file:
        print(f"web config ok: {describe_web_config(web)}")
    return EXIT_OK


def run_with_config(settings: Settings) -> int:
    """Load the config (and web config), then check it, poll once, or serve."""
    try:
        full_config = load_config(settings.config_file)
        web = load_web_config(settings.web_config_file) if settings.web_config_file else WebConfig()
    except ConfigError as err:
        print_config_errors(err.problems)
        return EXIT_USAGE
    config = settings.shard.select(full_config)
    if settings.check_config:
        return check_config(settings, full_config, config, web)
    REDACTOR.set_secrets(config.secrets())
    for warning in config.warnings + web.warnings:
        log.warning(warning)
    if settings.once:
        return asyncio.run(run_once(config, settings.output))
    return asyncio.run(serve_forever(settings, config, web))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``entra-registration-exporter``."""
    settings = parse_settings(argv)
    configure_logging(settings.log_level, settings.log_format)
    if settings.demo:
        return run_demo(settings, run_with_config)
    return run_with_config(settings)
