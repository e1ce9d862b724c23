"""Tenant snapshots → Prometheus exposition, pre-rendered per tenant.

Each poll builds a new immutable :class:`TenantSnapshot` and renders the tenant's sample lines
once, per metric family; the pair replaces the tenant's old entry in one assignment, so a scrape
sees a tenant either before or after a poll, never half of one. A scrape joins the pre-rendered
lines under each family's HELP/TYPE header, and the joined text (plain and gzip) is cached
until a tenant changes or a report turns stale. Example output::

    # HELP entra_credential_registration_users Users per credential registration status, ...
    # TYPE entra_credential_registration_users gauge
    entra_credential_registration_users{tenant="contoso",registrationStatus="registered"} 23423
    entra_credential_registration_users{tenant="contoso",registrationStatus="mfaRegistered"} 33
    # HELP entra_tenant_users Users in the tenant (Graph totalUserCount), as of the last ...
    # TYPE entra_tenant_users gauge
    entra_tenant_users{tenant="contoso"} 23123
    ...
    # TYPE entra_exporter_polls_total counter
    entra_exporter_polls_total{tenant="contoso",result="success"} 12
"""

from __future__ import annotations

import gzip
import platform
import threading
import time
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client import exposition as text_exposition
from prometheus_client.openmetrics import exposition as om_exposition

from exporter import __version__
from exporter.config.model import TenantConfig
from exporter.graph.failures import RESULTS, SUCCESS
from exporter.logs import TENANT_LOG
from exporter.metrics.families import (
    BUILD_INFO,
    DATA_TIMESTAMP,
    GRAPH_REQUESTS,
    GROUP_REGISTRATION,
    GROUP_STRENGTH,
    GROUP_USERS,
    LAST_DURATION,
    LAST_SUCCESS,
    METHOD_USERS,
    POLLS,
    REGISTRATION_USERS,
    RELOAD_OK,
    RELOAD_TIME,
    REPORT_FAMILIES,
    SCHEDULER_EVENT_KINDS,
    SCHEDULER_EVENTS,
    SEGMENT_REGISTRATION,
    SEGMENT_STRENGTH,
    SEGMENT_USERS,
    SYSTEM_PREFERRED,
    TENANT_FAMILIES,
    TENANT_INFO,
    TENANT_UP,
    TENANT_USERS,
    THROTTLED_RESPONSES,
    TOKEN_REQUESTS,
    WEB_RELOAD_OK,
    escape_label_value,
    format_value,
)
from exporter.polling.tenant import PollResult
from exporter.reports.details import SEGMENT_STATUSES, STRENGTHS
from exporter.reports.registration import CoverageCounts, RegistrationReport, SegmentReport

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds for which process metrics (RSS, CPU, file descriptors) are served from one reading.
PROCESS_METRICS_TTL = 1.0
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


# Polls per tenant that the tenant page lists.
RECENT_POLLS = 20


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


@dataclass(frozen=True, slots=True)
class TenantSnapshot:
    """Everything the exposition shows about one tenant, as of one moment."""

    name: str
    tenant_id: str
    cloud: str
    source: str
    report: RegistrationReport | None = None
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

    @classmethod
    def for_tenant(cls, tenant: TenantConfig) -> TenantSnapshot:
        """The snapshot of a tenant that has not been polled yet."""
        return cls(tenant.name, tenant.tenant_id, tenant.cloud, tenant.source)

    def with_config(self, tenant: TenantConfig) -> TenantSnapshot:
        """The same history under a (possibly changed) configuration."""
        return replace(self, tenant_id=tenant.tenant_id, cloud=tenant.cloud, source=tenant.source)

    def after_poll(
        self, result: PollResult, stale_after: float, log_lines: tuple[str, ...] = ()
    ) -> TenantSnapshot:
        """The snapshot after ``result``: a success replaces the report, a failure keeps it.

        ``log_lines``: what was logged about the tenant during the poll (kept if it failed).
        """
        pairs = zip(RESULTS, self.polls, strict=True)  # pragma: no mutate (equal lengths)
        polls = tuple(count + (1 if name == result.result else 0) for name, count in pairs)
        succeeded = result.result == SUCCESS and result.report is not None
        return replace(
            self,
            report=result.report if succeeded else self.report,
            report_expires_at=(
                result.finished_at + stale_after if succeeded else self.report_expires_at
            ),
            up=succeeded,
            polled=True,
            source=result.source,
            last_result=result.result,
            last_success=result.finished_at if succeeded else self.last_success,
            last_poll_duration=result.duration,
            polls=polls,
            token_requests=self.token_requests + result.token_requests,
            graph_requests=self.graph_requests + result.tally.graph_requests,
            throttled_responses=self.throttled_responses + result.tally.throttled_responses,
            recent=(*self.recent, PollRecord.of(result))[-RECENT_POLLS:],
            last_failure_log=self.last_failure_log if succeeded else log_lines,
        )


def render_tenant_block(snapshot: TenantSnapshot) -> tuple[str, ...]:
    """The tenant's sample lines, one string per family of :data:`TENANT_FAMILIES`."""
    tenant = f'tenant="{escape_label_value(snapshot.name)}"'
    registration = ""
    users = ""
    methods = ""
    if snapshot.report is not None:
        registration = "".join(
            f'{REGISTRATION_USERS.name}{{{tenant},registrationStatus="{escape_label_value(status)}"}}'
            f" {count}\n"
            for status, count in snapshot.report.users_by_status
        )
        users = f"{TENANT_USERS.name}{{{tenant}}} {snapshot.report.total_users}\n"
        methods = "".join(
            f'{METHOD_USERS.name}{{{tenant},method="{escape_label_value(method)}"}} {count}\n'
            for method, count in snapshot.report.users_by_method
        )
    info = (
        f'{TENANT_INFO.name}{{{tenant},tenant_id="{escape_label_value(snapshot.tenant_id)}",'
        f'cloud="{escape_label_value(snapshot.cloud)}",'
        f'source="{escape_label_value(snapshot.source)}"}} 1\n'
    )
    up = f"{TENANT_UP.name}{{{tenant}}} {1 if snapshot.up else 0}\n"
    last_success = (
        f"{LAST_SUCCESS.name}{{{tenant}}} {format_value(snapshot.last_success)}\n"
        if snapshot.last_success is not None
        else ""
    )
    duration = (
        f"{LAST_DURATION.name}{{{tenant}}} {format_value(snapshot.last_poll_duration)}\n"
        if snapshot.last_poll_duration is not None
        else ""
    )
    pairs = zip(RESULTS, snapshot.polls, strict=True)  # pragma: no mutate (equal lengths)
    polls = "".join(f'{POLLS.name}{{{tenant},result="{name}"}} {count}\n' for name, count in pairs)
    tokens = f"{TOKEN_REQUESTS.name}{{{tenant}}} {snapshot.token_requests}\n"
    graph = f"{GRAPH_REQUESTS.name}{{{tenant}}} {snapshot.graph_requests}\n"
    throttled = f"{THROTTLED_RESPONSES.name}{{{tenant}}} {snapshot.throttled_responses}\n"
    segments = snapshot.report.segments if snapshot.report is not None else None
    return (
        registration,
        users,
        methods,
        info,
        up,
        last_success,
        duration,
        polls,
        tokens,
        graph,
        throttled,
        *render_segments(tenant, segments),
    )


def _coverage_lines(
    labels: str, counts: CoverageCounts, families: tuple[str, str, str]
) -> tuple[str, str, str]:
    """Users, per-status and per-strength lines of one segment or group (``labels`` escaped)."""
    users_family, status_family, strength_family = families
    users = f"{users_family}{{{labels}}} {counts.users}\n"
    if not counts.users:
        return users, "", ""
    by_status = zip(SEGMENT_STATUSES, counts.statuses, strict=True)  # pragma: no mutate
    by_strength = zip(STRENGTHS, counts.strengths, strict=True)  # pragma: no mutate
    statuses = "".join(
        f'{status_family}{{{labels},registrationStatus="{status}"}} {value}\n'
        for status, value in by_status
    )
    strengths = "".join(
        f'{strength_family}{{{labels},strength="{strength}"}} {value}\n'
        for strength, value in by_strength
    )
    return users, statuses, strengths


def render_segments(tenant: str, report: SegmentReport | None) -> tuple[str, ...]:
    """The segment families' lines (``tenant`` is the escaped tenant label); empty without."""
    if report is None:
        return ("",) * 8
    segment_parts: list[tuple[str, str, str]] = [
        _coverage_lines(
            f'{tenant},user_type="{escape_label_value(user_type)}",role="{role}"',
            counts,
            (SEGMENT_USERS.name, SEGMENT_REGISTRATION.name, SEGMENT_STRENGTH.name),
        )
        for user_type, role, counts in report.segments
    ]
    group_parts: list[tuple[str, str, str]] = [
        _coverage_lines(
            f'{tenant},group="{escape_label_value(name)}"',
            counts,
            (GROUP_USERS.name, GROUP_REGISTRATION.name, GROUP_STRENGTH.name),
        )
        for name, counts in report.groups
    ]
    preferred = "".join(
        f'{SYSTEM_PREFERRED.name}{{{tenant},method="{escape_label_value(method)}"}} {count}\n'
        for method, count in report.system_preferred
    )
    timestamp = (
        f"{DATA_TIMESTAMP.name}{{{tenant}}} {format_value(report.data_timestamp)}\n"
        if report.data_timestamp is not None
        else ""
    )
    return (
        *("".join(part[i] for part in segment_parts) for i in range(3)),
        *("".join(part[i] for part in group_parts) for i in range(3)),
        preferred,
        timestamp,
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    snapshot: TenantSnapshot
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Rendered:
    generation: int
    valid_until: float
    text: bytes
    gzipped: bytes


def _encodable(lines: tuple[str, ...]) -> tuple[str, ...]:
    """``lines``, made safe to encode as UTF-8.

    Every string is checked where it enters (Graph values, config names), so this is the last
    guard: one tenant's unencodable text must never break the scrape for every tenant.
    """
    try:
        for part in lines:
            part.encode()
    except UnicodeEncodeError:
        return tuple(part.encode("utf-8", "replace").decode() for part in lines)
    return lines


def _process_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class MetricsStore:
    """Holds every tenant's latest snapshot and renders the exposition."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self._cache: dict[bool, _Rendered] = {}
        self._reload_ok = 1
        self._web_reload_ok = 1
        self._reload_time = time.time()
        self._scheduler_events = dict.fromkeys(SCHEDULER_EVENT_KINDS, 0)
        self._process = _process_registry()
        self._process_cache: dict[bool, _Rendered] = {}
        self._process_lock = threading.Lock()
        self._build_info = (
            f'{BUILD_INFO.name}{{version="{escape_label_value(__version__)}",'
            f'python_version="{platform.python_version()}"}} 1\n'
        )

    # ------------------------------------------------------------------ writers

    def _store(self, snapshot: TenantSnapshot) -> None:
        entry = _Entry(snapshot, _encodable(render_tenant_block(snapshot)))
        with self._lock:
            self._entries[snapshot.name] = entry
            self._generation += 1

    def set_tenants(self, tenants: tuple[TenantConfig, ...]) -> None:
        """Track exactly these tenants: keep history of the kept ones, drop the removed ones."""
        wanted = {t.name: t for t in tenants}
        with self._lock:
            current = dict(self._entries)
        for name in current.keys() - wanted.keys():
            with self._lock:
                self._entries.pop(name, None)
                self._generation += 1
        for name, tenant in wanted.items():
            old = current.get(name)
            snapshot = (
                old.snapshot.with_config(tenant) if old else TenantSnapshot.for_tenant(tenant)
            )
            if old is None or snapshot != old.snapshot:
                self._store(snapshot)

    def record_poll(self, tenant: TenantConfig, result: PollResult) -> TenantSnapshot | None:
        """Apply a poll's result; ignored if the tenant was removed meanwhile."""
        entry = self._entries.get(tenant.name)
        if entry is None:
            return None
        lines = () if result.result == SUCCESS else TENANT_LOG.since(tenant.name, result.started_at)
        snapshot = entry.snapshot.after_poll(result, tenant.stale_after, lines)
        self._store(snapshot)
        return snapshot

    def record_reload(self, ok: bool) -> None:
        """Set the config-reload gauges."""
        with self._lock:
            self._reload_ok = 1 if ok else 0
            if ok:
                self._reload_time = time.time()
            self._generation += 1

    def record_web_reload(self, ok: bool) -> None:
        """Set the web-config reload gauge (certificates rotated, web config changed)."""
        with self._lock:
            self._web_reload_ok = 1 if ok else 0
            self._generation += 1

    def record_scheduler_event(self, kind: str) -> None:
        """Count a scheduler event (missed, max_instances, error)."""
        with self._lock:
            self._scheduler_events[kind] += 1
            self._generation += 1

    # ------------------------------------------------------------------ readers

    def snapshot(self, name: str) -> TenantSnapshot | None:
        """One tenant's current snapshot, or None if it is not tracked."""
        entry = self._entries.get(name)
        return entry.snapshot if entry else None

    def snapshots(self) -> list[TenantSnapshot]:
        """Every tenant's current snapshot, in config order."""
        return [entry.snapshot for entry in list(self._entries.values())]

    def all_polled(self) -> bool:
        """True once every tenant has been polled at least once."""
        return all(entry.snapshot.polled for entry in list(self._entries.values()))

    def _render_tenants(self, openmetrics: bool, now: float) -> _Rendered:
        with self._lock:
            generation = self._generation
            entries = list(self._entries.values())
            reload_ok, reload_time = self._reload_ok, self._reload_time
            web_reload_ok = self._web_reload_ok
            events = dict(self._scheduler_events)
        valid_until = float("inf")
        fresh: list[_Entry] = []
        for entry in entries:
            expires = entry.snapshot.report_expires_at
            if entry.snapshot.report is not None and expires > now:
                fresh.append(entry)
                valid_until = min(valid_until, expires)
        parts: list[str] = []
        for index, family in enumerate(TENANT_FAMILIES):
            source = fresh if family in REPORT_FAMILIES else entries
            parts.append(family.header(openmetrics))
            parts.extend(entry.lines[index] for entry in source)
        parts.append(RELOAD_OK.header(openmetrics))
        parts.append(f"{RELOAD_OK.name} {reload_ok}\n")
        parts.append(WEB_RELOAD_OK.header(openmetrics))
        parts.append(f"{WEB_RELOAD_OK.name} {web_reload_ok}\n")
        parts.append(RELOAD_TIME.header(openmetrics))
        parts.append(f"{RELOAD_TIME.name} {format_value(reload_time)}\n")
        parts.append(BUILD_INFO.header(openmetrics))
        parts.append(self._build_info)
        parts.append(SCHEDULER_EVENTS.header(openmetrics))
        parts.extend(
            f'{SCHEDULER_EVENTS.name}{{event="{kind}"}} {count}\n' for kind, count in events.items()
        )
        text = "".join(parts).encode()
        zipped = gzip.compress(text, compresslevel=1)  # pragma: no mutate (any level reads back)
        return _Rendered(generation, valid_until, text, zipped)

    def _tenant_part(self, openmetrics: bool) -> _Rendered:
        now = time.time()
        cached = self._cache.get(openmetrics)
        if (
            cached is not None
            and cached.generation == self._generation
            and now < cached.valid_until
        ):
            return cached
        rendered = self._render_tenants(openmetrics, now)
        self._cache[openmetrics] = rendered
        return rendered

    def render_parts(self, openmetrics: bool = False, gzipped: bool = False) -> tuple[bytes, bytes]:
        """The exposition as two parts to send one after the other (no copy of the big one).

        A gzip answer is two gzip members, the cached tenant part and the small process part;
        a gzip stream may hold several members, and every gzip reader joins them.
        """
        tenants = self._tenant_part(openmetrics)
        process = self._process_part(openmetrics)
        if not gzipped:
            return tenants.text, process.text
        return tenants.gzipped, process.gzipped

    def render(self, openmetrics: bool = False, gzipped: bool = False) -> bytes:
        """The whole exposition (OpenMetrics or text format), optionally gzip-compressed."""
        return b"".join(self.render_parts(openmetrics, gzipped))

    def _process_part(self, openmetrics: bool) -> _Rendered:
        """Process and Python metrics, read at most once per :data:`PROCESS_METRICS_TTL`.

        Reading /proc and formatting them costs more than serving the cached tenant part, so
        20 scrapers arriving together share one reading.
        """
        now = time.monotonic()
        cached = self._process_cache.get(openmetrics)
        if cached is not None and now < cached.valid_until:
            return cached
        with self._process_lock:
            cached = self._process_cache.get(openmetrics)
            if cached is not None and now < cached.valid_until:
                return cached
            if openmetrics:
                text: bytes = om_exposition.generate_latest(self._process)  # type: ignore[no-untyped-call]
            else:
                text = text_exposition.generate_latest(self._process)
            zipped = gzip.compress(text, 1)  # pragma: no mutate (any level reads back)
            rendered = _Rendered(0, now + PROCESS_METRICS_TTL, text, zipped)
            self._process_cache[openmetrics] = rendered
            return rendered
