"""Published tenant snapshots → Prometheus exposition, pre-rendered per tenant.

Each poll builds a new immutable :class:`~exporter.metrics.snapshots.TenantSnapshot`, which its
tenant publishes here; the store renders the tenant's sample lines once, per metric family
(:mod:`exporter.metrics.rendering`), and the pair replaces the tenant's old entry in one
assignment, so a scrape
sees a tenant either before or after a poll, never half of one. A family's lines of 1 KB or
more (the enforcement classes) are held as a gzip member. A scrape joins the pre-rendered lines
under each family's HELP/TYPE header, in pieces: a gzip answer carries the held members as they
are (a gzip stream may hold many), a text answer unpacks them. The answer of the format and
encoding asked for is kept until a tenant changes or a report turns stale, and dropped at the
change: one copy, of what Prometheus asks for. Example output::

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
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from types import MappingProxyType

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client import exposition as text_exposition
from prometheus_client.openmetrics import exposition as om_exposition

from exporter import __version__
from exporter.metrics.families import (
    BUILD_INFO,
    DISCOVERY_LAST_SUCCESS,
    DISCOVERY_TENANTS,
    DISCOVERY_UP,
    ENFORCEMENT_FAMILIES,
    PHONE_ONLY,
    POLICY_FAMILIES,
    RELOAD_OK,
    RELOAD_TIME,
    REPORT_FAMILIES,
    RETIREMENT_TIMESTAMP,
    SCHEDULER_EVENT_KINDS,
    SCHEDULER_EVENTS,
    TENANT_FAMILIES,
    WEB_RELOAD_OK,
    Family,
    escape_label_value,
    format_value,
)
from exporter.metrics.rendering import Lines, render_retirement_dates, render_tenant_block
from exporter.metrics.snapshots import ENFORCEMENT_COLLECTOR, POLICY_COLLECTOR, TenantSnapshot

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds for which process metrics (RSS, CPU, file descriptors) are served from one reading.
PROCESS_METRICS_TTL = 1.0
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# The families a collector's last good value makes, gone with it once stale.
COLLECTOR_FAMILIES = MappingProxyType(
    {POLICY_COLLECTOR: POLICY_FAMILIES, ENFORCEMENT_COLLECTOR: ENFORCEMENT_FAMILIES}
)


# Where each family's lines sit in a tenant's text (its position in TENANT_FAMILIES).
_FAMILY_PLACES = MappingProxyType({family: place for place, family in enumerate(TENANT_FAMILIES)})

# A tenant's lines of one family from this many characters on are held as a gzip member, not
# as text: the enforcement classes (some 17 KB a tenant) keep under 1 KB. Below it a member's
# own 20 bytes and a small text's poor compression would cost more than they save.
PACK_FROM = 1024
# The level a family's member is packed at (once a poll; 17 KB take some 130 µs at 6).
PACK_LEVEL = 6
# A scrape's answer is built in pieces of about this many characters: never the whole text at
# once (at 10,000 tenants with enforcement it is 200 MB), and few pieces, each one write to the
# socket (in 256 K pieces the 20-scraper p99 rose from 1.65 to 1.87 x the floor: each write
# takes the GIL back among 20 threads).
PIECE_CHARS = 1 << 22


@dataclass(frozen=True, slots=True)
class _Entry:
    """A tenant's snapshot and its sample lines: one string, every family's lines in the
    order of TENANT_FAMILIES, and where each family's end (a mapping of some 25 strings was
    some 2 KB a tenant more); a family's lines of :data:`PACK_FROM` characters or more are a
    gzip member in ``packed`` instead (empty in ``text``)."""

    snapshot: TenantSnapshot
    text: str
    ends: array[int]
    packed: Mapping[int, bytes] | None = None

    @classmethod
    def of(cls, snapshot: TenantSnapshot, lines: Lines) -> _Entry:
        parts = [lines.get(family, "") for family in TENANT_FAMILIES]
        packed = {
            place: gzip.compress(part.encode(), PACK_LEVEL, mtime=0)  # pragma: no mutate
            for place, part in enumerate(parts)
            if len(part) >= PACK_FROM
        }
        kept = ["" if place in packed else part for place, part in enumerate(parts)]
        ends = array("I", accumulate(map(len, kept)))
        return cls(snapshot, "".join(kept), ends, packed or None)

    def lines(self, family: Family) -> str:
        """The tenant's lines of ``family`` (empty if it has none), unpacked."""
        place = _FAMILY_PLACES[family]
        if self.packed is not None and place in self.packed:
            return gzip.decompress(self.packed[place]).decode()
        return self.text_part(place)

    def text_part(self, place: int) -> str:
        """The lines of the family at ``place`` in TENANT_FAMILIES held as text (empty when
        the family is packed, or absent)."""
        return self.text[self.ends[place - 1] if place else 0 : self.ends[place]]


class _Body:
    """A scrape's answer built piece by piece: text gathered until :data:`PIECE_CHARS`, then
    encoded (or gzip-compressed: a gzip stream may hold many members, and every reader joins
    them); a packed family's member goes into a gzip answer as it is."""

    def __init__(self, gzipped: bool) -> None:
        self.gzipped = gzipped
        self.pieces: list[bytes] = []
        self._texts: list[str] = []
        self._chars = 0

    def add(self, text: str) -> None:
        if text:
            self._texts.append(text)
            self._chars += len(text)
            if self._chars >= PIECE_CHARS:
                self.flush()

    def add_family(self, place: int, entries: list[_Entry]) -> None:
        """The lines of the family at ``place`` of each of ``entries``, in order (one loop:
        it runs once per tenant per family)."""
        for entry in entries:
            packed = entry.packed
            if packed is None or place not in packed:
                self.add(entry.text_part(place))
            elif self.gzipped:
                self.flush()
                self.pieces.append(packed[place])
            else:
                self.add(gzip.decompress(packed[place]).decode())

    def flush(self) -> None:
        if not self._texts:
            return
        data = "".join(self._texts).encode()
        self._texts.clear()
        self._chars = 0
        if self.gzipped:
            data = gzip.compress(data, 1, mtime=0)  # pragma: no mutate (any level reads back)
        self.pieces.append(data)

    def done(self) -> tuple[bytes, ...]:
        """The pieces; a gzip answer's as one (it is small), a text answer's as they are (one
        copy of the text, never a second joined)."""
        self.flush()
        return (b"".join(self.pieces),) if self.gzipped else tuple(self.pieces)


@dataclass(frozen=True, slots=True)
class _Rendered:
    generation: int
    valid_until: float
    body: tuple[bytes, ...]


def _encodable(lines: Lines) -> Lines:
    """``lines``, made safe to encode as UTF-8.

    Every string is checked where it enters (Graph values, config names), so this is the last
    guard: one tenant's unencodable text must never break the scrape for every tenant.
    """
    try:
        for part in lines.values():
            part.encode()
    except UnicodeEncodeError:
        return {family: part.encode("utf-8", "replace").decode() for family, part in lines.items()}
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
        # The tenants' part by (OpenMetrics, gzip), each for the generation it was built at.
        self._cache: dict[tuple[bool, bool], _Rendered] = {}
        self._reload_ok = 1
        self._web_reload_ok = 1
        self._reload_time = time.time()
        self._scheduler_events = dict.fromkeys(SCHEDULER_EVENT_KINDS, 0)
        # Discovery's health: None without discovery; (up, tenants, last success) once tried.
        self._discovery: tuple[int, int, float | None] | None = None
        self._discovery_expected = False
        self._process = _process_registry()
        self._process_cache: dict[bool, _Rendered] = {}
        self._process_lock = threading.Lock()
        self._build_info = (
            f'{BUILD_INFO.name}{{version="{escape_label_value(__version__)}",'
            f'python_version="{platform.python_version()}"}} 1\n'
        )

    # ------------------------------------------------------------------ writers

    def _changed(self) -> None:
        """A change (under the lock): the next scrape renders again, and what was rendered
        for the last one goes now rather than at the next scrape."""
        self._generation += 1
        self._cache.clear()

    def publish(self, snapshot: TenantSnapshot) -> None:
        """Show ``snapshot`` for its tenant from the next scrape on (replacing the last one)."""
        entry = _Entry.of(snapshot, _encodable(render_tenant_block(snapshot)))
        with self._lock:
            self._entries[snapshot.name] = entry
            self._changed()

    def remove(self, name: str) -> None:
        """Stop showing tenant ``name`` (removed from the config): all its series go."""
        with self._lock:
            if self._entries.pop(name, None) is not None:
                self._changed()

    def record_reload(self, ok: bool) -> None:
        """Set the config-reload gauges."""
        with self._lock:
            self._reload_ok = 1 if ok else 0
            if ok:
                self._reload_time = time.time()
            self._changed()

    def record_web_reload(self, ok: bool) -> None:
        """Set the web-config reload gauge (certificates rotated, web config changed)."""
        with self._lock:
            self._web_reload_ok = 1 if ok else 0
            self._changed()

    def expect_discovery(self, expected: bool) -> None:
        """Discovery is configured: ready only once its listing was read (or tried) once."""
        with self._lock:
            self._discovery_expected = expected
            if not expected:
                self._discovery = None
            self._changed()

    def record_discovery(self, ok: bool, tenants: int) -> None:
        """The customer listing was read (``ok``) or failed; ``tenants`` found in the last good
        one."""
        with self._lock:
            last = self._discovery[2] if self._discovery else None
            self._discovery = (1 if ok else 0, tenants, time.time() if ok else last)
            self._changed()

    def record_scheduler_event(self, kind: str) -> None:
        """Count a scheduler event (missed, max_instances, error)."""
        with self._lock:
            self._scheduler_events[kind] += 1
            self._changed()

    # ------------------------------------------------------------------ readers

    def snapshot(self, name: str) -> TenantSnapshot | None:
        """One tenant's current snapshot, or None if it is not tracked."""
        entry = self._entries.get(name)
        return entry.snapshot if entry else None

    def snapshots(self) -> list[TenantSnapshot]:
        """Every tenant's current snapshot, in config order."""
        return [entry.snapshot for entry in list(self._entries.values())]

    def all_polled(self) -> bool:
        """True once every tenant has been polled at least once (and, with discovery, its
        listing read or tried once)."""
        if self._discovery_expected and self._discovery is None:
            return False
        return all(entry.snapshot.polled for entry in list(self._entries.values()))

    def _render_tenants(self, openmetrics: bool, gzipped: bool, now: float) -> _Rendered:
        with self._lock:
            generation = self._generation
            entries = list(self._entries.values())
            reload_ok, reload_time = self._reload_ok, self._reload_time
            web_reload_ok = self._web_reload_ok
            events = dict(self._scheduler_events)
            discovery = self._discovery
        valid_until = float("inf")
        fresh: list[_Entry] = []
        # The tenants whose collector's last good value is not stale, per collector.
        fresh_of: dict[str, list[_Entry]] = {name: [] for name in COLLECTOR_FAMILIES}
        for entry in entries:
            if entry.snapshot.fresh_report(now) is not None:
                fresh.append(entry)
                valid_until = min(valid_until, entry.snapshot.report_expires_at)
            for name, kept in fresh_of.items():
                collector = entry.snapshot.collector(name)
                if collector is not None and collector.fresh_value(now) is not None:
                    kept.append(entry)
                    valid_until = min(valid_until, collector.expires_at)
        source_of = {f: fresh_of[n] for n, families in COLLECTOR_FAMILIES.items() for f in families}
        body = _Body(gzipped)
        for place, family in enumerate(TENANT_FAMILIES):
            source = fresh if family in REPORT_FAMILIES else source_of.get(family, entries)
            body.add(family.header(openmetrics))
            body.add_family(place, source)
        if any(entry.lines(PHONE_ONLY) for entry in fresh):
            body.add(RETIREMENT_TIMESTAMP.header(openmetrics))
            body.add(render_retirement_dates())
        body.add(RELOAD_OK.header(openmetrics))
        body.add(f"{RELOAD_OK.name} {reload_ok}\n")
        body.add(WEB_RELOAD_OK.header(openmetrics))
        body.add(f"{WEB_RELOAD_OK.name} {web_reload_ok}\n")
        body.add(RELOAD_TIME.header(openmetrics))
        body.add(f"{RELOAD_TIME.name} {format_value(reload_time)}\n")
        body.add(BUILD_INFO.header(openmetrics))
        body.add(self._build_info)
        body.add(SCHEDULER_EVENTS.header(openmetrics))
        for kind, count in events.items():
            body.add(f'{SCHEDULER_EVENTS.name}{{event="{kind}"}} {count}\n')
        if discovery is not None:
            for line in _discovery_lines(discovery, openmetrics):
                body.add(line)
        return _Rendered(generation, valid_until, body.done())

    def _tenant_part(self, openmetrics: bool, gzipped: bool) -> _Rendered:
        """The tenants' part in one format and encoding, built when first asked for after a
        change and kept until the next (Prometheus asks one of the four: one copy is held)."""
        now = time.time()
        key = (openmetrics, gzipped)
        cached = self._cache.get(key)
        if (
            cached is not None
            and cached.generation == self._generation
            and now < cached.valid_until
        ):
            return cached
        rendered = self._render_tenants(openmetrics, gzipped, now)
        with self._lock:
            if rendered.generation == self._generation:
                self._cache[key] = rendered
        return rendered

    def render_parts(self, openmetrics: bool = False, gzipped: bool = False) -> tuple[bytes, ...]:
        """The exposition as parts to send one after the other (no copy of the big one): the
        tenants' part in pieces, then the process part (always last).

        A gzip answer is gzip members, the cached tenant part's and the small process part's;
        a gzip stream may hold several members, and every gzip reader joins them.
        """
        tenants = self._tenant_part(openmetrics, gzipped)
        process = self._process_part(openmetrics)
        return (*tenants.body, process.body[1 if gzipped else 0])

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
            rendered = _Rendered(0, now + PROCESS_METRICS_TTL, (text, zipped))
            self._process_cache[openmetrics] = rendered
            return rendered


def _discovery_lines(discovery: tuple[int, int, float | None], openmetrics: bool) -> list[str]:
    up, tenants, last = discovery
    lines = [
        DISCOVERY_UP.header(openmetrics),
        f"{DISCOVERY_UP.name} {up}\n",
        DISCOVERY_TENANTS.header(openmetrics),
        f"{DISCOVERY_TENANTS.name} {tenants}\n",
    ]
    if last is not None:
        lines += [DISCOVERY_LAST_SUCCESS.header(openmetrics)]
        lines += [f"{DISCOVERY_LAST_SUCCESS.name} {format_value(last)}\n"]
    return lines
