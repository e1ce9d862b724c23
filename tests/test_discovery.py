"""Issue 27: an MSP's customers found from the partner relationship, through real MSAL, httpx
and TLS against the simulator's partner tenant (entra_simulator.partners)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from entra_simulator.simulator import Simulator
from exporter.config.loader import load_config
from exporter.config.model import Config
from exporter.config.problems import ConfigError
from tests.conftest import Runtime, exposition_samples

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def partner_sim(tmp_path: Path) -> Any:
    sim = Simulator(tenants=8, seed=27)
    url = sim.start()
    tenants = list(sim.tenants.values())
    partner = tenants[0]
    for tenant in tenants[1:7]:  # customers 1..6 of the partner; 7 joins later
        tenant.customer_of = partner.tenant_id
    for tenant in tenants[1:]:  # one multi-tenant app, consented everywhere...
        tenant.client_id, tenant.secret = partner.client_id, partner.secret
    tenants[1].display_name = tenants[4].display_name = "Contoso"  # two with one name
    tenants[6].display_name = 'Fab"ri\nkam ' + "x" * 10_000  # quotes, a newline, 10 KB
    sim.set_fault(tenants[5].name, "no_service_principal", count=0)  # ...but in these two
    sim.set_fault(tenants[6].name, "no_consent", count=0)
    sim.write_ca(tmp_path / "ca.pem")
    yield sim, url, tenants
    sim.stop()


def configure(
    tmp_path: Path, sim: Simulator, url: str, tenants: list[Any], **discovery: Any
) -> Config:
    partner = tenants[0]
    document = {
        "defaults": {"interval": "30s", "jitter": "0s", "timeout": "5s", "cloud": "custom",
                     "client_id": partner.client_id, "client_secret": partner.secret},
        "endpoints": {"authority_host": url, "graph_host": url},
        "tls_ca_file": str(tmp_path / "ca.pem"),
        "tenant_labels": ["tier"],
        "discovery": {"source": "delegatedAdminCustomers", "tenant_id": partner.tenant_id,
                      "exclude": [tenants[3].tenant_id], "labels": {"tier": "managed"},
                      **discovery},
        # A listed tenant wins over the discovered one with its tenant id.
        "tenants": [{"name": "listed-one", "tenant_id": tenants[2].tenant_id,
                     "labels": {"tier": "gold"}}],
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return load_config(path)


def info(runtime: Runtime) -> dict[str, dict[str, str]]:
    values: Samples = exposition_samples(runtime.store.render().decode())
    return {
        dict(labels)["tenant"]: dict(labels)
        for (name, labels), _ in values.items()
        if name == "entra_tenant_info"
    }


def gauge(runtime: Runtime, name: str) -> float | None:
    return exposition_samples(runtime.store.render().decode()).get((name, ()))


@pytest.mark.parametrize("source", ["delegatedAdminCustomers", "multiTenantOrganization"])
async def test_customers_are_found_named_labelled_and_polled_with_the_partners_app(
    partner_sim: Any, tmp_path: Path, make_runtime: Callable[[Config], Runtime], source: str
) -> None:
    sim, url, tenants = partner_sim
    runtime = make_runtime(configure(tmp_path, sim, url, tenants, source=source))
    assert not runtime.store.all_polled()  # ready only once the listing was read
    await runtime.discover()
    ids = {t.tenant_id: t for t in tenants}
    shown = info(runtime)
    by_id = {labels["tenant_id"]: (name, labels["tier"]) for name, labels in shown.items()}
    contoso = [tenants[1].tenant_id, tenants[4].tenant_id]
    assert by_id[contoso[0]] == (f"Contoso ({contoso[0]})", "managed")
    assert by_id[contoso[1]] == (f"Contoso ({contoso[1]})", "managed")
    assert by_id[tenants[2].tenant_id] == ("listed-one", "gold")  # listed wins
    assert tenants[3].tenant_id not in by_id  # excluded
    assert tenants[0].tenant_id not in by_id and tenants[7].tenant_id not in by_id
    fab = by_id[tenants[6].tenant_id][0]
    assert fab.startswith('Fab"ri kam x') and len(fab) == 100 and fab.isprintable()
    assert gauge(runtime, "entra_exporter_discovery_up") == 1
    assert gauge(runtime, "entra_exporter_discovery_tenants") == 5  # 6 customers, 1 excluded
    results = {r.failure.message if r.failure else "" for r in await runtime.poll_all()}
    for customer in (tenants[5], tenants[6]):
        name = by_id[customer.tenant_id][0]
        assert runtime.store.snapshot(name).last_result == "consent_required"  # type: ignore[union-attr]
        consent = f"{url}/{customer.tenant_id}/adminconsent?client_id={customer.client_id}"
        assert any(consent in message for message in results)
    assert runtime.store.snapshot(by_id[contoso[0]][0]).last_result == "success"  # type: ignore[union-attr]
    assert runtime.store.all_polled()
    del ids


async def test_customers_join_and_leave_and_a_failed_listing_keeps_the_last_set(
    partner_sim: Any, tmp_path: Path, make_runtime: Callable[[Config], Runtime]
) -> None:
    sim, url, tenants = partner_sim
    runtime = make_runtime(configure(tmp_path, sim, url, tenants))
    await runtime.discover()
    before = set(info(runtime))
    tenants[7].customer_of = tenants[0].tenant_id  # joins
    tenants[1].customer_of = None  # leaves
    await runtime.discover()
    after = info(runtime)
    assert tenants[7].name in after  # polled at once (scheduled within the jitter: 0s)
    gone = f"Contoso ({tenants[1].tenant_id})"
    assert gone in before and gone not in after and "Contoso" in after  # the other one
    # The listing fails: nothing changes, and discovery says so.
    sim.set_fault(tenants[0].name, "error500", count=0)
    await runtime.discover()
    assert set(info(runtime)) == set(after)
    assert gauge(runtime, "entra_exporter_discovery_up") == 0
    assert gauge(runtime, "entra_exporter_discovery_last_success_timestamp_seconds")


def test_discovery_needs_the_defaults_app_and_says_what_it_reads(
    partner_sim: Any, tmp_path: Path
) -> None:
    sim, url, tenants = partner_sim
    config = configure(tmp_path, sim, url, tenants)
    assert config.discovery.permission == "DelegatedAdminRelationship.Read.All"
    document = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del document["defaults"]["client_secret"]
    document["discovery"]["source"] = "partners"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path / "config.yaml")
    assert refused.value.problems[:2] == [
        "discovery.source: 'partners' is not one of delegatedAdminCustomers, multiTenantOrganization",
        "discovery: needs client_id and a credential under defaults: the one multi-tenant app "
        "that reads the listing in the partner's tenant and every customer",
    ]


def test_check_config_says_what_discovery_will_read_without_reading_it(
    partner_sim: Any, tmp_path: Path
) -> None:
    from tests.conftest import run_cli

    sim, url, tenants = partner_sim
    configure(tmp_path, sim, url, tenants)
    requests = sim.stats()["graph_requests"]
    result = run_cli(f"--config.file={tmp_path / 'config.yaml'}", "--check-config")
    assert result.returncode == 0, result.stderr
    assert (
        f"discovery: delegatedAdminCustomers in {tenants[0].tenant_id} (application permission "
        "DelegatedAdminRelationship.Read.All, with the defaults' app), every 1h, 1 excluded"
    ) in result.stdout
    assert sim.stats()["graph_requests"] == requests  # nothing read


async def test_replicas_split_the_customers_each_polled_once(
    partner_sim: Any, tmp_path: Path, make_runtime: Callable[[Config], Runtime]
) -> None:
    import dataclasses

    from exporter.polling.discovery import Discovery

    sim, url, tenants = partner_sim
    config = configure(tmp_path, sim, url, tenants)
    runtime = make_runtime(config)
    await runtime.discover()
    everyone = {t.tenant_id for t in runtime.discovery.customers(config.tenants)}  # type: ignore[union-attr]
    shares = []
    for index in range(3):
        sharded = dataclasses.replace(config.discovery, shard=(index, 3))
        replica = Discovery(sharded, runtime.services, runtime.discovery)
        shares.append({t.tenant_id for t in replica.customers(config.tenants)})
    assert set().union(*shares) == everyone and sum(map(len, shares)) == len(everyone)
