"""``entra-registration-simulator``: run the simulator until SIGTERM, writing its CA bundle and
a ready exporter config for its tenants."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from entra_simulator.directory import MAX_PAGE, REPORT_SHAPES
from entra_simulator.limits import PER_APP, PER_APP_PER_TENANT, GraphLimits, Limit, ServiceLimits
from entra_simulator.simulator import Simulator
from exporter.config.network import parse_duration


def build_parser() -> argparse.ArgumentParser:
    """The simulator's flags."""
    parser = argparse.ArgumentParser(
        prog="entra-registration-simulator",
        description="Graph + Entra token endpoint look-alike over HTTPS, for demos and tests.",
    )
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (default 127.0.0.1:0)")
    parser.add_argument("--tenants", type=int, default=3, help="number of tenants (default 3)")
    parser.add_argument("--latency", default="0s", help="delay of each report call, e.g. 50ms")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of report calls that fail"
    )
    parser.add_argument(
        "--token-lifetime", type=int, default=3599, help="expires_in of tokens, seconds"
    )
    parser.add_argument("--hang", default="60s", help="how long a 'hang' fault holds the answer")
    parser.add_argument("--seed", type=int, default=None, help="random seed for tenants and faults")
    parser.add_argument("--interval", default="30s", help="interval written into --config-out")
    parser.add_argument("--jitter", default="1s", help="jitter written into --config-out")
    parser.add_argument("--timeout", default="10s", help="timeout written into --config-out")
    _add_directory_flags(parser)
    _add_identity_flags(parser)
    _add_limit_flags(parser)
    return parser


def _add_directory_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--users",
        type=int,
        default=None,
        help="users per tenant in userRegistrationDetails (default: the tenant's user count)",
    )
    parser.add_argument(
        "--page-size",
        type=int,
        default=MAX_PAGE,
        help=f"userRegistrationDetails rows per page at most, 1 to {MAX_PAGE} (default {MAX_PAGE})",
    )
    parser.add_argument(
        "--page-overlap",
        type=int,
        default=0,
        help="each page of userRegistrationDetails repeats this many users of the one before",
    )
    parser.add_argument(
        "--gone-tenants",
        type=int,
        default=0,
        help="the first N tenants answer the seed's report as gone (for source auto)",
    )
    parser.add_argument(
        "--report-shapes",
        choices=("metadata", "mixed"),
        default="metadata",
        help="metadata: every report in Graph's metadata shape; mixed: tenants cycle through "
        "the spellings Microsoft's documents show, and every other one adds a status Graph's "
        "enum does not have",
    )
    parser.add_argument(
        "--segments",
        action="store_true",
        help="--config-out: every tenant reads userRegistrationDetails with segments "
        "(privileged roles and two groups)",
    )
    parser.add_argument(
        "--privileged-admins", type=int, default=6, help="privileged admins per tenant"
    )
    parser.add_argument(
        "--group-size",
        type=int,
        default=None,
        help="two groups, rollout-wave-1 and -2, of this many users each",
    )
    parser.add_argument("--config-out", help="write a ready exporter config here")
    parser.add_argument("--ca-out", help="write the CA bundle here (default: next to --config-out)")


def _add_identity_flags(parser: argparse.ArgumentParser) -> None:
    """Conditional Access and the MSP's partner listing."""
    parser.add_argument(
        "--conditional-access",
        type=int,
        default=None,
        metavar="VARIANT",
        help="every tenant's Conditional Access variant (entra_simulator.conditional_access); "
        "--config-out then turns enforcement on for every tenant",
    )
    parser.add_argument(
        "--partner",
        action="store_true",
        help="the first tenant is an MSP's partner and every other one its customer, all on "
        "its app; --config-out then lists no tenant and discovers them (delegatedAdminCustomers)",
    )
    parser.add_argument(
        "--partner-listed",
        action="store_true",
        help="with --partner: --config-out lists the customers instead of discovering them "
        "(the same tenants both ways, to compare)",
    )


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--enforce-limits",
        action="store_true",
        help="answer 429 past Graph's documented report limits (5/10s per app per tenant, "
        "122/10s per app) and the identity and access service's resource units (by tenant "
        "size, and 150,000/20s per app), counting refusals in /_sim/stats",
    )
    parser.add_argument(
        "--limits",
        default=None,
        metavar="PER_APP_PER_TENANT,PER_APP",
        help="with --enforce-limits: other limits, e.g. 2/1s,5/1s",
    )
    parser.add_argument(
        "--one-app",
        action="store_true",
        help="every tenant uses the same client_id (one multi-tenant app)",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGTERM / SIGINT."""
    args = build_parser().parse_args(argv)
    try:
        latency = parse_duration(args.latency)
        hang = parse_duration(args.hang)
        durations = {k: parse_duration(getattr(args, k)) for k in ("interval", "jitter", "timeout")}
    except ValueError as err:
        print(f"entra-registration-simulator: {err}", file=sys.stderr)
        return 2
    if args.tenants < 0 or not 0 <= args.fault_rate <= 1:
        print(
            "entra-registration-simulator: --tenants >= 0 and 0 <= --fault-rate <= 1",
            file=sys.stderr,
        )
        return 2
    sim = Simulator(
        limits=_limits(args),
        service_limits=ServiceLimits() if args.enforce_limits else None,
        tenants=args.tenants,
        latency=latency,
        fault_rate=args.fault_rate,
        token_lifetime=args.token_lifetime,
        hang_seconds=hang,
        seed=args.seed,
    )
    for index, tenant in enumerate(sim.tenants.values()):
        tenant.users = args.users
        tenant.page_size = max(1, min(MAX_PAGE, args.page_size))
        tenant.page_overlap = max(0, args.page_overlap)
        tenant.seed_gone = index < args.gone_tenants
        if args.one_app:
            tenant.client_id = first_client_id(sim)
        tenant.privileged_admins = args.privileged_admins
        tenant.group_size = args.group_size
        if args.conditional_access is not None:
            tenant.ca_variant = args.conditional_access
        if args.report_shapes == "mixed":
            tenant.shape = index % REPORT_SHAPES
            tenant.extra_status = index % 2 == 1
    url = sim.start(args.listen)
    ca_out = args.ca_out or (
        str(Path(args.config_out).with_name("simulator-ca.pem")) if args.config_out else None
    )
    if ca_out:
        sim.write_ca(ca_out)
    if args.partner:
        _make_partner(sim, listed=args.partner_listed)
    if args.config_out:
        sim.write_config(args.config_out, ca_out or "", **durations, **_segments(sim, args))
        if args.partner and not args.partner_listed:
            _discovery_config(sim, args.config_out)
    print(f"simulator listening on {url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def _segments(sim: Simulator, args: argparse.Namespace) -> dict[str, Any]:
    """``sources``, ``segments`` and ``enforcement`` for the written config, when
    ``--segments`` or ``--conditional-access`` ask."""
    names = [tenant.name for tenant in sim.tenants.values()]
    written: dict[str, Any] = {}
    if args.segments or args.conditional_access is not None:
        written["sources"] = dict.fromkeys(names, "userRegistrationDetails")
    if args.segments:
        second = "rollout-wave-2" if args.group_size else "finance"
        segments = {"privileged_roles": True, "groups": ["rollout-wave-1", second]}
        written["segments"] = dict.fromkeys(names, segments)
    if args.conditional_access is not None:
        written["enforcement"] = frozenset(names)
    return written


def _limits(args: argparse.Namespace) -> GraphLimits | None:
    if not args.enforce_limits:
        return None
    if args.limits:
        tenant, _, app = args.limits.partition(",")
        return GraphLimits(Limit.parse(tenant), Limit.parse(app))
    return GraphLimits(PER_APP_PER_TENANT, PER_APP)


def first_client_id(sim: Simulator) -> str:
    """The client_id of the first tenant: the one app every tenant uses with --one-app."""
    return next(iter(sim.tenants.values())).client_id


def _make_partner(sim: Simulator, listed: bool = False) -> None:
    """The first tenant a partner, the others its customers on its app (--partner); the
    customers ``listed`` in the written config, or left for discovery to find."""
    partner, *customers = sim.tenants.values()
    partner.listed = False
    for tenant in customers:
        tenant.customer_of, tenant.listed = partner.tenant_id, listed
        tenant.client_id, tenant.secret = partner.client_id, partner.secret


def _discovery_config(sim: Simulator, path: str) -> None:
    """The written config: the partner's app under defaults, and discovery of its customers."""
    partner = next(iter(sim.tenants.values()))
    document = yaml.safe_load(Path(path).read_text())
    document["defaults"].update(client_id=partner.client_id, client_secret=partner.secret)
    document["discovery"] = {"source": "delegatedAdminCustomers", "tenant_id": partner.tenant_id}
    document.pop("tenants", None)
    Path(path).write_text(yaml.safe_dump(document, sort_keys=False))
