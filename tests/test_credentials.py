"""More credentials: managed identity, and certificates with or without the chain (x5c)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from entra_simulator.directory import SimTenant
from exporter.config.loader import load_config, parse_config
from exporter.config.model import CertificateCredential, Config, ManagedIdentityCredential
from exporter.config.problems import ConfigError
from exporter.graph.auth import msal_client_credential
from tests.conftest import Runtime, SimEnv, write_app_certificate

TENANT_ID = "3c0f1b2e-0000-4000-8000-0000000000a1"
CLIENT_ID = "00000000-0000-0000-0000-0000000000a1"


def only_tenant(sim_env: SimEnv, **credential: object) -> None:
    document = sim_env.config()
    document["tenants"] = [{"name": "special", "tenant_id": TENANT_ID, **credential}]
    sim_env.write_config(document)


@pytest.mark.parametrize(
    "identity", ["system", {"client_id": "00000000-0000-0000-0000-0000000000b2"}]
)
async def test_managed_identity_gets_a_graph_token_from_the_identity_endpoint(
    sim_env: SimEnv,
    make_runtime: Callable[[Config], Runtime],
    monkeypatch: pytest.MonkeyPatch,
    identity: object,
) -> None:
    # MSAL asks Azure's instance metadata service; the simulator plays it.
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", sim_env.url)
    marker = identity if isinstance(identity, str) else identity["client_id"]  # type: ignore[index]
    tenant = SimTenant(
        name="special", tenant_id=TENANT_ID, client_id=CLIENT_ID, managed_identity=str(marker)
    )
    sim_env.sim.add_tenant(tenant)
    only_tenant(sim_env, managed_identity=identity)
    config = load_config(sim_env.config_file)
    assert config.tenants[0].credential.kind == "managed_identity"
    runtime = make_runtime(config)
    for _ in range(3):
        result = await runtime.poll("special")
        assert result.result == "success", result.failure
    assert tenant.token_requests == 1
    snapshot = runtime.store.snapshot("special")
    assert snapshot is not None and snapshot.token_requests == 1


def test_managed_identity_config() -> None:
    config = parse_config(
        {"tenants": [{"tenant_id": TENANT_ID, "managed_identity": "system"}]}, environ={}
    )
    assert config.tenants[0].credential == ManagedIdentityCredential(None)
    with pytest.raises(ConfigError) as caught:
        parse_config({"tenants": [{"tenant_id": TENANT_ID, "managed_identity": "yes"}]}, environ={})
    assert caught.value.problems == [
        "tenants[0].managed_identity: must be 'system' or a mapping with the client_id of a user-assigned identity"
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"tenants": [{"tenant_id": TENANT_ID, "managed_identity": {"client_id": "x"}}]},
            environ={},
        )
    assert caught.value.problems == ["tenants[0].managed_identity.client_id: 'x' is not a GUID"]


async def test_subject_name_and_issuer_auth_with_send_x5c(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime], tmp_path: Path
) -> None:
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    key_file, cert_file, _ = write_app_certificate(tmp_path, ca)
    # The app registration trusts the issuer, not one certificate: the assertion must carry x5c.
    sim_env.sim.add_tenant(
        SimTenant(
            name="special",
            tenant_id=TENANT_ID,
            client_id=CLIENT_ID,
            trusted_issuer_pem=ca.cert_pem.bytes().decode(),
        )
    )
    certificate = {
        "private_key_file": str(key_file),
        "certificate_file": str(cert_file),
        "send_x5c": True,
    }
    only_tenant(sim_env, client_id=CLIENT_ID, certificate=certificate)
    assert (
        await make_runtime(load_config(sim_env.config_file)).poll("special")
    ).result == "success"
    # Without the chain, subject name + issuer auth cannot work.
    only_tenant(sim_env, client_id=CLIENT_ID, certificate={**certificate, "send_x5c": False})
    refused = await make_runtime(load_config(sim_env.config_file)).poll("special")
    assert refused.result == "auth_error"
    assert refused.failure is not None and "x5c" in refused.failure.message


async def test_a_registered_certificate_works_without_x5c(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime], tmp_path: Path
) -> None:
    key_file, cert_file, cert_pem = write_app_certificate(tmp_path)
    sim_env.sim.add_tenant(
        SimTenant(
            name="special", tenant_id=TENANT_ID, client_id=CLIENT_ID, certificate_pem=cert_pem
        )
    )
    only_tenant(
        sim_env,
        client_id=CLIENT_ID,
        certificate={
            "private_key_file": str(key_file),
            "certificate_file": str(cert_file),
            "send_x5c": False,
        },
    )
    config = load_config(sim_env.config_file)
    credential = config.tenants[0].credential
    assert isinstance(credential, CertificateCredential) and not credential.send_x5c
    assert set(msal_client_credential(config.tenants[0])) == {"private_key", "thumbprint"}  # type: ignore[arg-type]
    assert (await make_runtime(config).poll("special")).result == "success"
