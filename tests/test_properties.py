"""Property: whatever Graph answers — any JSON document, any bytes — a poll ends in a result
class, never an exception, and the exposition stays one that both prometheus_client's parser and
promtool accept. Driven through the real client stack: MSAL, httpx and TLS to the simulator."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from entra_simulator.simulator import Simulator
from exporter.config.loader import load_config
from exporter.graph.failures import RESULTS
from exporter.runtime import Runtime, build_runtime
from tests.conftest import allow_fast_polling

TENANT = "tenant-0000"
# Every character, lone surrogates and control characters included.
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=30)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    ANY_TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(ANY_TEXT, inner, max_size=4)
    ),
    max_leaves=20,
)
# Mostly plausible counts and statuses, so that many answers are reports and reach the renderer.
COUNTS = st.one_of(st.integers(min_value=0, max_value=10**6), SCALARS)
STATUS_ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "registrationStatus": st.one_of(ANY_TEXT, SCALARS),
        "registrationCount": COUNTS,
        "userRegistrationStatus": ANY_TEXT,
        "userRegistationCount": COUNTS,
    },
)
REPORTS = st.builds(
    lambda total, entries, wrap: (
        {"value": [{"totalUserCount": total, "userRegistrationCounts": entries}]}
        if wrap
        else {"totalUserCount": total, "userRegistrationCounts": entries}
    ),
    COUNTS,
    st.lists(STATUS_ENTRY, max_size=5),
    st.booleans(),
)
BODIES = st.one_of(
    REPORTS.map(lambda d: json.dumps(d).encode()),
    JSON.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=200),
)


class Harness:
    """One simulator, one runtime and one event loop for every example."""

    def __init__(self, workdir: Path) -> None:
        self.sim = Simulator(tenants=1, seed=3)
        self.sim.start()
        self.sim.write_ca(workdir / "ca.pem")
        config = workdir / "config.yaml"
        self.sim.write_config(config, str(workdir / "ca.pem"), interval=60.0, jitter=0.0)
        allow_fast_polling(config)
        self.loop = asyncio.new_event_loop()
        self.runtime: Runtime = self.loop.run_until_complete(self._build(config))

    async def _build(self, config: Path) -> Runtime:
        return build_runtime(load_config(config))

    def poll_with(self, status: int, body: bytes) -> Any:
        self.sim.set_body(TENANT, status, body, "application/json")
        return self.loop.run_until_complete(self.runtime.poll(TENANT))

    def close(self) -> None:
        self.loop.run_until_complete(self.runtime.aclose())
        self.loop.close()
        self.sim.stop()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = Harness(tmp_path_factory.mktemp("properties"))
    yield harness
    harness.close()


def promtool_accepts(text: str) -> None:
    if shutil.which("promtool") is None:
        return
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    # Lint notes (the deliberate camelCase label) exit 3; a parse error exits 1.
    assert check.returncode in (0, 3), check.stdout + check.stderr
    assert "error" not in (check.stdout + check.stderr).lower()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@pytest.mark.slow
@given(status=st.sampled_from([200, 200, 200, 400, 404, 500]), body=BODIES)
def test_any_answer_is_a_result_and_the_exposition_stays_valid(
    harness: Harness, status: int, body: bytes
) -> None:
    result = harness.poll_with(status, body)
    assert result.result in RESULTS
    text = harness.runtime.store.render().decode("utf-8")
    families = list(text_string_to_metric_families(text))
    assert any(f.name == "entra_exporter_tenant_up" for f in families)
    if result.result == "success":  # only then does the report part change
        SUCCESSES.append(text)
        promtool_accepts(text)


SUCCESSES: list[str] = []


@pytest.mark.slow  # follows the property above, which is slow
def test_the_property_reached_the_renderer() -> None:
    # Runs after the property (file order): some answers must have been usable reports.
    assert len(SUCCESSES) >= 5
