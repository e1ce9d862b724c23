"""Flags → :class:`Settings`; nothing else.

The exporter's flags, named as Prometheus exporters name theirs (``--config.file``,
``--web.listen-address``), each with its default; a usage error exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

from exporter import __version__
from exporter.config.sharding import SHARD_INDEX_ENV, Shard, shard_from
from exporter.logs import FORMATS, LEVELS
from exporter.web.router import PROBE_PATHS
from exporter.web.server import parse_listen_address

EXIT_USAGE = 2
DEFAULT_LISTEN = ":9836"
DEMO_LISTEN = "127.0.0.1:9836"
HEALTH_CHECK_FLAG = "--health.check"


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
        default=None,
        metavar="HOST:PORT",
        help="where the HTTP server listens; ':PORT' is every address, IPv4 and IPv6 "
        "(default: :9836; with --demo 127.0.0.1:9836)",
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
        HEALTH_CHECK_FLAG,
        dest="health_check",
        action="store_true",
        help="ask the running exporter's /healthz (its port and TLS from these flags, or from "
        "process 1's in a container) and exit 0 if it answers 200, else 1",
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
    # The demo is for one person at one machine: loopback, unless told otherwise.
    listen_address = args.listen_address or (DEMO_LISTEN if args.demo else DEFAULT_LISTEN)
    try:
        parse_listen_address(listen_address)
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
        listen_address=listen_address,
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
