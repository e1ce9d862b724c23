"""``--demo``: the embedded simulator with a few sample tenants, and the exporter against it."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.web.server import parse_listen_address

if TYPE_CHECKING:
    from exporter.settings import Settings

log = logging.getLogger("exporter")

DEMO_TENANTS = 5
CONDITIONAL_ACCESS_ADMINISTRATOR = "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9"


def run_demo(settings: Settings, run: Callable[[Settings], int]) -> int:
    """Start the embedded simulator with a few tenants and run the exporter against it."""
    # Imported here: the simulator is never part of a serving exporter's import graph.
    from entra_simulator.simulator import Simulator  # noqa: PLC0415

    simulator = Simulator(tenants=DEMO_TENANTS, seed=20261124)
    flaky, forbidden, retired, report_only = _shape_tenants(simulator)
    partner = _add_partner(simulator)
    url = simulator.start("127.0.0.1:0")
    with tempfile.TemporaryDirectory(prefix="entra-demo-") as workdir:
        ca_file = str(Path(workdir) / "simulator-ca.pem")
        config_file = str(Path(workdir) / "config.yaml")
        simulator.write_ca(ca_file)
        simulator.write_config(
            config_file,
            ca_file,
            interval=15.0,
            jitter=0.5,
            timeout=5.0,
            sources={retired.name: "auto", report_only.name: "userRegistrationDetails"},
            # Who is covered: a privileged role held through a role-assignable group, and a
            # rollout group, counted per user. The seed report's refusal and one report page
            # are 2 of Graph's 5 report requests per 10 s; role and group look-ups and the
            # policy spend the directory's own budget: the first poll finishes at once.
            segments={
                retired.name: {
                    "privileged_roles": [CONDITIONAL_ACCESS_ADMINISTRATOR],
                    "groups": ["rollout-wave-1"],
                }
            },
            policies=frozenset({retired.name}),
            enforcement=frozenset({retired.name, report_only.name}),
        )
        _with_discovery(config_file, partner)
        host, port = parse_listen_address(settings.listen_address)
        log.info(
            f"demo: simulator at {url} with {DEMO_TENANTS} tenants ({flaky.name} fails now and "
            f"then, {forbidden.name} always: a permission missing; {retired.name} reads "
            f"userRegistrationDetails, with segments, phone-only users by SMS/voice retirement "
            f"date, its methods policy and MFA exclusions; {report_only.name} requires MFA "
            f"of admins, of everyone else report-only; a customer found from the partner "
            f"listing, {CUSTOMER}, has not consented to the app yet); "
            f"metrics at http://{host or 'localhost'}:{port}{settings.telemetry_path}",
        )
        demo_settings = dataclasses.replace(settings, config_file=config_file)
        try:
            return run(demo_settings)
        finally:
            simulator.stop()


def _shape_tenants(simulator: Any) -> tuple[Any, Any, Any, Any]:
    """What the demo's tenants show: (flaky, forbidden, retired, report-only)."""
    from entra_simulator.conditional_access import (  # noqa: PLC0415
        ADMINS_REPORT_ONLY,
        EXCLUSIONS,
    )

    tenants = list(simulator.tenants.values())
    # One demo tenant fails now and then (answers no retry can mend), one always: its app
    # lacks a permission, and the landing page says which to grant.
    flaky, forbidden = tenants[3], tenants[4]
    flaky.fault_rate = 0.3
    flaky.random_faults = ("malformed", "html")
    simulator.set_fault(forbidden.name, "forbidden", count=0)
    # One has lost the seed's report: with source auto it moves to userRegistrationDetails.
    retired = tenants[2]
    retired.seed_gone = True
    retired.users = 800
    # It also shows SMS and voice retirement readiness (phone-only users by date: its
    # privileged_roles let the exporter tell Global Administrators apart) and its methods
    # policy (Sms and Voice on, the passkey opt-out sent).
    retired.policy_variant = 1
    # Who must use MFA: the retired tenant leaves a break-glass group out of its all-users
    # policy (and has a disabled policy, a stale group, a block of legacy authentication); a
    # second one requires MFA of admins by role and of everyone else only in report-only mode.
    retired.ca_variant = EXCLUSIONS
    report_only = tenants[1]
    report_only.ca_variant, report_only.users = ADMINS_REPORT_ONLY, 500
    return flaky, forbidden, retired, report_only


CUSTOMER = "Northwind Traders"


def _add_partner(simulator: Any) -> Any:
    """An MSP's partner tenant, whose listing names one customer that has not consented to the
    app yet (its tokens answer AADSTS65001): the landing page gives its admin-consent URL."""
    from entra_simulator.directory import SimTenant  # noqa: PLC0415

    app = "00000000-0000-4000-8000-00000000beef"
    partner = SimTenant("partner", "3c0f1b2e-0000-4000-8000-00000000beef", app,
                        "demo-partner-secret", listed=False)  # fmt: skip
    customer = SimTenant("northwind", "3c0f1b2e-0000-4000-8000-00000000cafe", partner.client_id,
                         partner.secret, listed=False, customer_of=partner.tenant_id,
                         display_name=CUSTOMER)  # fmt: skip
    simulator.add_tenant(partner)
    simulator.add_tenant(customer)
    simulator.set_fault(customer.name, "no_consent", count=0)
    return partner


def _with_discovery(config_file: str, partner: Any) -> None:
    """The demo's config with the partner's app under defaults and its discovery."""
    import yaml  # noqa: PLC0415

    path = Path(config_file)
    document = yaml.safe_load(path.read_text())
    document["defaults"].update(client_id=partner.client_id, client_secret=partner.secret)
    document["discovery"] = {"source": "delegatedAdminCustomers", "tenant_id": partner.tenant_id}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
