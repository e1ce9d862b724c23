"""What a poll produced and what the exposition shows of a tenant: immutable values only.

A :class:`~exporter.polling.tenant.Tenant` folds each :class:`PollResult` into its
:class:`TenantSnapshot` (:meth:`TenantSnapshot.after_poll`, pure) and publishes the new snapshot
to the store in one assignment; nothing here holds state between polls.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from exporter.config.model import DEFAULT_SOURCE, TenantConfig
from exporter.graph.answers import RequestTally
from exporter.graph.failures import RESULTS, SUCCESS, PollFailure
from exporter.reports.registration import RegistrationReport

# Polls per tenant that the tenant page lists.
RECENT_POLLS = 20
# The report collector: the registration report with its segments and directory look-ups.
REPORT_COLLECTOR = "report"
# The authentication methods policy collector (``policy: true``).
POLICY_COLLECTOR = "policy"
# Security defaults and Conditional Access: who must use MFA (``enforcement: true``).
ENFORCEMENT_COLLECTOR = "enforcement"


@dataclass(frozen=True, slots=True)
class CollectorResult:
    """One collector's part of a poll: its value on success, its failure otherwise."""

    name: str
    result: str
    value: object = None
    failure: PollFailure | None = None


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll produced: a report on success, a failure otherwise.

    ``result`` and ``failure`` are the tenant's: the worst collector's; ``collectors`` holds each
    collector's own result (the report collector's value is ``report``).
    """

    result: str
    report: RegistrationReport | None
    failure: PollFailure | None
    duration: float
    finished_at: float
    tally: RequestTally = field(default_factory=RequestTally)
    # The report the poll read (or tried to): credentialUserRegistrationCount or
    # userRegistrationDetails; with source auto, the one it settled on.
    source: str = DEFAULT_SOURCE
    # Requests this poll sent to the identity provider (MSAL's cache hits send none).
    token_requests: int = 0
    collectors: tuple[CollectorResult, ...] = ()

    @property
    def started_at(self) -> float:
        """Unix time the poll started."""
        return self.finished_at - self.duration

    def collector_results(self) -> tuple[CollectorResult, ...]:
        """Each collector's result; a poll built without them is the report collector's alone."""
        if self.collectors:
            return self.collectors
        return (CollectorResult(REPORT_COLLECTOR, self.result, self.report, self.failure),)


@dataclass(frozen=True, slots=True)
class PollRecord:
    """One poll as the tenant page lists it: no report, no secret, no user."""

    finished_at: float
    result: str
    duration: float
    source: str
    graph_requests: int
    reason: str = ""
    http_status: int | None = None
    error_code: str | None = None
    request_id: str | None = None

    @classmethod
    def of(cls, result: PollResult) -> PollRecord:
        failure = result.failure
        return cls(
            finished_at=result.finished_at,
            result=result.result,
            duration=result.duration,
            source=result.source,
            graph_requests=result.tally.graph_requests,
            reason=failure.message if failure else "",
            http_status=failure.http_status if failure else None,
            error_code=failure.error_code if failure else None,
            request_id=failure.request_id if failure else None,
        )


def _count(polls: tuple[int, ...], result: str) -> tuple[int, ...]:
    pairs = zip(RESULTS, polls, strict=True)  # pragma: no mutate (equal lengths)
    return tuple(count + (1 if name == result else 0) for name, count in pairs)


@dataclass(frozen=True, slots=True)
class CollectorSnapshot:
    """One collector's health: its last result, polls by result, its last good value."""

    name: str
    up: bool = False
    last_result: str | None = None
    polls: tuple[int, ...] = (0,) * len(RESULTS)
    value: object = None
    expires_at: float = 0.0
    last_success: float | None = None

    def after(
        self, run: CollectorResult, finished_at: float, stale_after: float
    ) -> CollectorSnapshot:
        """The collector after ``run``: a success replaces its value, a failure keeps it."""
        succeeded = run.result == SUCCESS
        return replace(
            self,
            up=succeeded,
            last_result=run.result,
            polls=_count(self.polls, run.result),
            value=run.value if succeeded else self.value,
            expires_at=finished_at + stale_after if succeeded else self.expires_at,
            last_success=finished_at if succeeded else self.last_success,
        )

    def fresh_value(self, now: float) -> object:
        """The last good value while it is not stale, else None."""
        return self.value if self.value is not None and self.expires_at > now else None


def _after_collectors(
    old: tuple[CollectorSnapshot, ...],
    result: PollResult,
    stale_after: float,
    configured: tuple[str, ...] | None,
) -> tuple[CollectorSnapshot, ...]:
    """The collectors after ``result``, history kept: those it ran, and the ``configured`` ones
    it did not run (a retry of the failed ones alone) as they were, in the configured order;
    without ``configured``, the poll's collectors alone."""
    by_name = {collector.name: collector for collector in old}
    ran = {
        run.name: by_name.get(run.name, CollectorSnapshot(run.name)).after(
            run, result.finished_at, stale_after
        )
        for run in result.collector_results()
    }
    names = configured if configured is not None else tuple(ran)
    return tuple(ran.get(name) or by_name.get(name) or CollectorSnapshot(name) for name in names)


@dataclass(frozen=True, slots=True)
class TenantSnapshot:
    """Everything the exposition shows about one tenant, as of one moment."""

    name: str
    tenant_id: str
    cloud: str
    source: str
    report: RegistrationReport | None = None
    # The config's tenant_labels and this tenant's values (entra_tenant_info).
    labels: tuple[tuple[str, str], ...] = ()
    report_expires_at: float = 0.0
    up: bool = False
    polled: bool = False
    last_result: str | None = None
    last_success: float | None = None
    last_poll_duration: float | None = None
    polls: tuple[int, ...] = (0,) * len(RESULTS)
    token_requests: int = 0
    graph_requests: int = 0
    throttled_responses: int = 0
    # The last polls, newest last (for the landing page), and the log lines of the last failure.
    recent: tuple[PollRecord, ...] = ()
    last_failure_log: tuple[str, ...] = ()
    collectors: tuple[CollectorSnapshot, ...] = ()

    @classmethod
    def for_tenant(cls, tenant: TenantConfig) -> TenantSnapshot:
        """The snapshot of a tenant that has not been polled yet."""
        return cls(tenant.name, tenant.tenant_id, tenant.cloud, tenant.source, labels=tenant.labels)

    def with_config(self, tenant: TenantConfig) -> TenantSnapshot:
        """The same history under a (possibly changed) configuration."""
        return replace(
            self,
            tenant_id=tenant.tenant_id,
            cloud=tenant.cloud,
            source=tenant.source,
            labels=tenant.labels,
        )

    def fresh_report(self, now: float) -> RegistrationReport | None:
        """The last good report while it is not stale (as ``/metrics`` shows it), else None."""
        return self.report if self.report is not None and self.report_expires_at > now else None

    def collector(self, name: str) -> CollectorSnapshot | None:
        """The health of collector ``name``, None before its first run."""
        return next((c for c in self.collectors if c.name == name), None)

    def after_poll(
        self,
        result: PollResult,
        stale_after: float,
        log_lines: tuple[str, ...] = (),
        configured: tuple[str, ...] | None = None,
    ) -> TenantSnapshot:
        """The snapshot after ``result``: a success replaces the report, a failure keeps it.

        ``log_lines``: what was logged about the tenant during the poll (kept if it failed).
        ``configured``: the tenant's collectors, when the poll may have run some of them only.
        The tenant is up when every collector's last run succeeded; its last success is the
        report collector's (a failed policy read leaves it moving).
        """
        succeeded = result.result == SUCCESS
        collectors = _after_collectors(self.collectors, result, stale_after, configured)
        ran_report = any(run.name == REPORT_COLLECTOR for run in result.collector_results())
        report = next((c for c in collectors if c.name == REPORT_COLLECTOR), None)
        got_report = ran_report and report is not None and report.up and result.report is not None
        return replace(
            self,
            report=result.report if got_report else self.report,
            report_expires_at=(
                result.finished_at + stale_after if got_report else self.report_expires_at
            ),
            up=succeeded and all(collector.up for collector in collectors),
            polled=True,
            source=result.source if ran_report else self.source,
            last_result=result.result,
            last_success=result.finished_at if got_report else self.last_success,
            last_poll_duration=result.duration,
            polls=_count(self.polls, result.result),
            token_requests=self.token_requests + result.token_requests,
            graph_requests=self.graph_requests + result.tally.graph_requests,
            throttled_responses=self.throttled_responses + result.tally.throttled_responses,
            recent=(*self.recent, PollRecord.of(result))[-RECENT_POLLS:],
            last_failure_log=self.last_failure_log if succeeded else log_lines,
            collectors=collectors,
        )
