"""What a tenant's poll runs: its collectors, each with its own result and health series.

A collector is anything with a ``name`` and an async ``collect(run)`` that returns its value
(wrapped in :class:`Collected`) or raises :class:`~exporter.graph.answers.GraphError`. Adding
one is a module with its class and one line in :mod:`exporter.polling.registry`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from exporter.config.model import TenantConfig
from exporter.graph.admission import Ticket
from exporter.graph.answers import RequestTally
from exporter.graph.auth import AccessToken
from exporter.graph.client import GraphClient, GraphRequest
from exporter.reports.enforcement import EnforcementPolicies


class PollExchange:
    """What one collector of a poll hands another: the enforcement collector's policies to the
    report collector, whose one pass over the users classifies them. The report never waits
    for a collector that is not part of this poll."""

    def __init__(self, enforcement_runs: bool) -> None:
        self._policies: asyncio.Future[EnforcementPolicies | None] | None = (
            asyncio.get_running_loop().create_future() if enforcement_runs else None
        )

    def offer_policies(self, policies: EnforcementPolicies | None) -> None:
        """The enforcement collector's policies (None: it could not read them)."""
        if self._policies is not None and not self._policies.done():
            self._policies.set_result(policies)

    async def policies(self) -> EnforcementPolicies | None:
        """The policies of this poll, once read; None without them."""
        if self._policies is None:
            return None
        return await asyncio.shield(self._policies)


@dataclass(frozen=True, slots=True)
class CollectorRun:
    """What one collector run may use: Graph, the tenant, its token, the poll's deadline."""

    graph: GraphClient
    tenant: TenantConfig
    token: AccessToken
    deadline: float
    tally: RequestTally
    # The report source to read: the configured one, or where ``auto`` settled.
    source: str
    # The tenant's logger: what the run logs is the tenant's (its page keeps the lines).
    log: logging.LoggerAdapter[logging.Logger]
    exchange: PollExchange | None = None
    # The poll's admission ticket (exporter.graph.admission), held until the poll ends.
    ticket: Ticket | None = None

    @property
    def request(self) -> GraphRequest:
        """What each of the run's Graph requests carries: its token, deadline, tally, log,
        and the poll's admission ticket."""
        return GraphRequest(self.token, self.deadline, self.tally, self.log, self.ticket)


@dataclass(frozen=True, slots=True)
class Collected:
    """A collector's value; ``source`` is the report source it read (the report's only)."""

    value: object
    source: str | None = None


class Collector(Protocol):
    """One kind of data read from Graph per poll."""

    name: str

    async def collect(self, run: CollectorRun) -> Collected:
        """Read and return the value; raise GraphError when Graph's answer fails the run."""
        ...
