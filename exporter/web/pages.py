"""The landing page and one page per tenant: plain server-rendered HTML, no JavaScript.

An operator reads, per tenant: the report source, the last result and its reason (result class,
HTTP status, Graph's error code, request id), the age of the last success, the next poll, the
registration summary and the segments; the tenant page adds the recent polls and the log lines
of the last failed poll. Every value is escaped (tenant and group names are user input); no
secret and no user's name is ever on a page.
"""

from __future__ import annotations

import html
import time
import urllib.parse
from collections.abc import Callable, Iterable
from types import MappingProxyType

from exporter import __version__
from exporter.config.permissions import AUDIT_LOG, NO_AUDIT_LOG_ACCESS
from exporter.metrics.snapshots import POLICY_COLLECTOR, PollRecord, TenantSnapshot
from exporter.reports.details import SEGMENT_STATUSES
from exporter.reports.enforcement import CLASSES
from exporter.reports.policy import MethodsPolicy
from exporter.reports.registration import CoverageCounts, RegistrationReport
from exporter.reports.strengths import STRENGTHS

NextPoll = Callable[[str], float | None]
_MFA = SEGMENT_STATUSES.index("mfaRegistered")
_STRONGEST = STRENGTHS.index("phishing_resistant")
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#1b1b1b}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}td:first-child{white-space:nowrap}.success{color:#0a6b2d}.failure{color:#a40e26;font-weight:600}"
    "code,pre{font-family:ui-monospace,monospace;font-size:.9em}pre{white-space:pre-wrap}"
    # Cells wrap at spaces only (a word is never broken mid-word); a table wider than the
    # window scrolls in its own box. Long tokens (ids in <code>) are whole words too.
    ".wide{overflow-x:auto}table.tenants{width:100%}td{overflow-wrap:normal;word-break:normal}"
    ".stale{color:#8a5a00}.hint{color:#444;font-size:.9em}"
)
# What to do about a failed tenant, by result class (and by Graph's error code, where known).
HINTS = MappingProxyType(
    {
        "auth_error": "check the credential and its expiry; grant the application permission "
        "named in the reason (admin consent); the tenant needs Entra ID P1 or P2",
        "throttled": "Graph asks to slow down: lengthen interval or lower rate_limits",
        "http_error": "see Graph's error code; 400/404 on the seed's report: use source auto",
        "timeout": "check the network path and proxies; raise timeout",
        "network_error": "check egress, proxies and tls_ca_file",
        "parse_error": "an answer that is not Graph's: often a proxy in the way; see the log",
        "internal_error": "a bug in the exporter: please report it with the log line",
        "consent_required": "the app has no service principal or no admin consent in this "
        "tenant: an administrator of the tenant opens the admin-consent URL in the reason",
    }
)
CODE_HINTS = MappingProxyType(
    {
        NO_AUDIT_LOG_ACCESS: f"grant {AUDIT_LOG} (application) with admin consent: Graph asks "
        "for it on the registration reports, getCredentialUserRegistrationCount included",
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant": "the tenant needs Entra ID "
        "P1 or P2 (B2C tenants have no such reports)",
        "Authorization_RequestDenied": "grant the application permission the reason names, with "
        "admin consent",
        "invalid_client": "the credential is wrong or expired: renew it in the app registration",
    }
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def age(when: float | None, now: float) -> str:
    """``3m 20s ago`` (or ``never``)."""
    if when is None:
        return "never"
    return f"{_duration(max(0.0, now - when))} ago"


def _duration(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _next(when: float | None, now: float) -> str:
    if when is None:
        return "not scheduled"
    return "now" if when <= now else f"in {_duration(when - now)}"


def _result(result: str | None) -> str:
    if result is None:
        return "<span>not polled yet</span>"
    css = "success" if result == "success" else "failure"
    return f"<span class='{css}'>{_e(result)}</span>"


def reason(record: PollRecord) -> str:
    """A failure's reason as one line: message, HTTP status, error code, request id."""
    if record.result == "success":
        return ""
    parts = [_e(record.reason)]
    if record.http_status is not None and f"HTTP {record.http_status}" not in record.reason:
        parts.append(f"HTTP {record.http_status}")
    if record.error_code:
        parts.append(f"code <code>{_e(record.error_code)}</code>")
    if record.request_id:
        parts.append(f"request-id <code>{_e(record.request_id)}</code>")
    return " · ".join(parts)


def summary(report: RegistrationReport | None) -> str:
    """MFA-registered share and users, from the last good report."""
    if report is None:
        return "no report yet"
    counts = dict(report.users_by_status)
    users = report.total_users
    mfa = counts.get("mfaRegistered")
    share = f"{100 * mfa / users:.1f} % MFA-registered" if mfa is not None and users else "—"
    return f"{share} of {users:,} users"


def segments_summary(report: RegistrationReport | None) -> str:
    """Admins and privileged admins without MFA, and the members' phishing-resistant share."""
    if report is None or report.segments is None or not report.segments.segments:
        return ""
    parts = []
    for role in ("privileged_admin", "admin"):
        rows = [c for _, r, c in report.segments.segments if r == role]
        if rows:
            total = sum(c.users for c in rows)
            without = total - sum(c.statuses[_MFA] for c in rows)
            parts.append(f"{role.replace('_', ' ')}s: {total} ({without} without MFA)")
    members = [c for t, _, c in report.segments.segments if t == "member"]
    if members and sum(c.users for c in members):
        strong = sum(c.strengths[_STRONGEST] for c in members)
        parts.append(
            f"members phishing-resistant: {100 * strong / sum(c.users for c in members):.1f} %"
        )
    return "; ".join(parts)


def enforcement_summary(report: RegistrationReport | None) -> str:
    """``MFA required: 61.0 % (partial 4.0 %, excluded 3)``: the share whose sign-ins must use
    MFA everywhere (Conditional Access of scope all, or security defaults), from the last good
    report; empty when the tenant's enforcement is not counted."""
    rows = report.segments.enforcement if report and report.segments else None
    if not rows:
        return ""
    by_class = [sum(c[2 * i] + c[2 * i + 1] for _, _, c in rows) for i in range(len(CLASSES))]
    users = sum(by_class)
    if not users:
        return ""
    required = (by_class[0] + by_class[1]) / users
    return (
        f"MFA required: {100 * required:.1f} % (partial {100 * by_class[2] / users:.1f} %, "
        f"excluded {by_class[3]:,}, report-only {by_class[4]:,}, none {by_class[5]:,})"
    )


def _enforcement_rows(report: RegistrationReport | None) -> list[str]:
    """The class table: per segment, users per class (and how many of them registered MFA)."""
    rows = report.segments.enforcement if report and report.segments else None
    if not rows:
        return []
    header = "".join(f"<th>{_e(name)}</th>" for name in CLASSES)
    table = [
        "<h2>Who must use MFA</h2><p>Users per class (of them, registered for MFA): see "
        "docs/enforcement.md for how each class is decided and what it cannot see.</p>"
        f"<div class='wide'><table><tr><th>user type</th><th>role</th>{header}</tr>"
    ]
    for user_type, role, counts in rows:
        cells = "".join(
            f"<td>{counts[2 * i] + counts[2 * i + 1]:,} ({counts[2 * i + 1]:,})</td>"
            for i in range(len(CLASSES))
        )
        table.append(f"<tr><td>{_e(user_type)}</td><td>{_e(role)}</td>{cells}</tr>")
    table.append("</table></div>")
    return table


def _policy_of(snap: TenantSnapshot, now: float) -> MethodsPolicy | None:
    """The tenant's last good policy while it is not stale (as on ``/metrics``)."""
    policy = snap.collector(POLICY_COLLECTOR)
    value = policy.fresh_value(now) if policy is not None else None
    return value if isinstance(value, MethodsPolicy) else None


def report_summary(snap: TenantSnapshot, now: float) -> str:
    """The report's summary; a report past ``stale_after`` is gone here as on ``/metrics``."""
    report = snap.fresh_report(now)
    if report is None and snap.report is not None:
        return "no report: the last good one is older than stale_after (gone from /metrics too)"
    return summary(report)


def retirement_summary(snap: TenantSnapshot, now: float) -> str:
    """Phone-only users by retirement date, and the policy's key states (when known, and not
    stale)."""
    parts = []
    report = snap.fresh_report(now)
    segments = report.segments if report is not None else None
    if segments is not None and segments.phone_only is not None:
        dates = ", ".join(f"{count:,} by {date}" for date, count in segments.phone_only)
        parts.append(f"phone-only: {dates}")
    policy = _policy_of(snap, now)
    if policy is not None:
        states = {True: "on", False: "off", None: "absent"}
        methods = ", ".join(f"{m} {states[policy.enabled(m)]}" for m in ("Sms", "Voice", "Fido2"))
        campaign = policy.campaign_state or "absent"
        if policy.campaign_targets:
            campaign += f" ({', '.join(policy.campaign_targets)})"
        opted = {True: "opted out", False: "not opted out", None: "not sent"}
        parts.append(
            f"policy: {methods}; campaign {campaign}; passkey migration "
            f"{opted[policy.passkey_migration_opted_out]}"
        )
    return "; ".join(parts)


def _page(title: str, body: Iterable[str]) -> bytes:
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        + "".join(body)
        + "</body></html>"
    )
    return page.encode("utf-8", "replace")


def hint(record: PollRecord | None) -> str:
    """What to do about a failed poll: by Graph's error code where known, else by class."""
    if record is None or record.result == "success":
        return ""
    if record.result == "consent_required":  # its code (invalid_client) would blame the secret
        return HINTS[record.result]
    return CODE_HINTS.get(record.error_code or "", HINTS.get(record.result, ""))


def _stale(snap: TenantSnapshot, now: float) -> str:
    """A failing tenant's numbers are its last good ones: say how old they are."""
    if snap.fresh_report(now) is None or snap.last_result in (None, "success"):
        return ""
    return f" <span class='stale'>(stale: as of {age(snap.last_success, now)})</span>"


def _order(snap: TenantSnapshot) -> tuple[int, str]:
    """Failing tenants first, then those not polled yet, then the rest; by name within."""
    rank = 2 if snap.last_result == "success" else 1 if snap.last_result is None else 0
    return rank, snap.name


def results_summary(snapshots: list[TenantSnapshot]) -> str:
    """``1,000 tenants: 997 up, 3 failing (auth_error 2, throttled 1), 0 not polled yet``."""
    up = sum(1 for s in snapshots if s.last_result == "success")
    waiting = sum(1 for s in snapshots if s.last_result is None)
    failing: dict[str, int] = {}
    for snap in snapshots:
        if snap.last_result not in (None, "success"):
            failing[str(snap.last_result)] = failing.get(str(snap.last_result), 0) + 1
    classes = ", ".join(f"{name} {count:,}" for name, count in sorted(failing.items()))
    failed = f"{sum(failing.values()):,} failing" + (f" ({classes})" if classes else "")
    return f"{len(snapshots):,} tenants: {up:,} up, {failed}, {waiting:,} not polled yet"


def tenant_link(name: str) -> str:
    return f"/tenants/{urllib.parse.quote(name, safe='')}"


def render_landing_page(
    snapshots: list[TenantSnapshot], telemetry_path: str, next_poll: NextPoll, query: str = ""
) -> bytes:
    """Version, links, a summary by result, and one row per tenant: failing first, each with
    its reason and what to do; ``query`` keeps the tenants whose name holds it."""
    now = time.time()
    shown = sorted((s for s in snapshots if query.lower() in s.name.lower()), key=_order)
    rows = []
    for snap in shown:
        last = snap.recent[-1] if snap.recent else None
        report = snap.fresh_report(now)
        rows.append(
            "<tr>"
            f"<td><a href='{_e(tenant_link(snap.name))}'>{_e(snap.name)}</a></td>"
            f"<td>{_e(snap.source)}</td><td>{_result(snap.last_result)}</td>"
            f"<td>{reason(last) if last else ''}"
            f"<div class='hint'>{_e(hint(last))}</div></td>"
            f"<td>{age(snap.last_success, now)}</td><td>{_next(next_poll(snap.name), now)}</td>"
            f"<td>{_e(report_summary(snap, now))}{_stale(snap, now)}"
            f"<div>{_e(enforcement_summary(report))}</div></td>"
            f"<td>{_e(segments_summary(report))}</td>"
            f"<td>{_e(retirement_summary(snap, now))}</td></tr>"
        )
    path = _e(telemetry_path)
    return _page(
        "Entra registration exporter",
        [
            "<h1>Entra registration exporter</h1>",
            f"<p>Version {_e(__version__)} · <a href='{path}'>Metrics</a> · "
            "<a href='/healthz'>healthz</a> · <a href='/readyz'>readyz</a></p>",
            f"<p><strong>{_e(results_summary(snapshots))}</strong></p>",
            "<form method='get' action='/'><label>Tenant name contains "
            f"<input name='tenant' value='{_e(query)}'></label> <button>Filter</button>"
            f"{f' · showing {len(shown):,}' if query else ''}</form>",
            "<div class='wide'><table class='tenants'>"
            "<tr><th>tenant</th><th>source</th><th>last result</th><th>reason and hint</th>"
            "<th>last success</th><th>next poll</th><th>registration</th><th>segments</th>"
            "<th>SMS and voice retirement</th></tr>",
            *rows,
            "</table></div>",
        ],
    )


def _coverage_cells(counts: CoverageCounts) -> str:
    """Each count with its share of the segment's users beside it."""

    def cell(value: int) -> str:
        share = f" ({100 * value / counts.users:.0f} %)" if counts.users else ""
        return f"<td>{value:,}{share}</td>"

    return "".join(cell(v) for v in (*counts.statuses, *counts.strengths))


def _segment_rows(report: RegistrationReport | None) -> list[str]:
    if report is None or report.segments is None:
        return []
    header = (
        "<th>users</th>"
        + "".join(f"<th>{_e(s)}</th>" for s in SEGMENT_STATUSES)
        + "".join(f"<th>{_e(s)}</th>" for s in STRENGTHS)
        + "</tr>"
    )
    rows = [
        "<h2>Segments</h2><div class='wide'><table><tr><th>user type</th><th>role</th>" + header
    ]
    for user_type, role, counts in report.segments.segments:
        rows.append(
            f"<tr><td>{_e(user_type)}</td><td>{_e(role)}</td><td>{counts.users:,}</td>"
            f"{_coverage_cells(counts)}</tr>"
        )
    rows.append("</table></div>")
    if report.segments.groups:
        rows.append("<h2>Groups</h2><div class='wide'><table><tr><th>group</th>" + header)
        for name, counts in report.segments.groups:
            rows.append(
                f"<tr><td>{_e(name)}</td><td>{counts.users:,}</td>{_coverage_cells(counts)}</tr>"
            )
        rows.append("</table></div>")
    return rows


def _what_to_do(snap: TenantSnapshot) -> str:
    """The last failed poll's reason and hint, as the landing page gives them."""
    last = snap.recent[-1] if snap.recent else None
    if last is None or last.result == "success":
        return ""
    return f"<p>Last poll: {reason(last)}<div class='hint'>{_e(hint(last))}</div></p>"


def _collectors(snap: TenantSnapshot) -> str:
    """Each collector's last result (one line)."""
    if not snap.collectors:
        return ""
    return (
        "<p>Collectors: "
        + " · ".join(f"{_e(c.name)} {_result(c.last_result)}" for c in snap.collectors)
        + "</p>"
    )


def render_tenant_page(snap: TenantSnapshot, next_poll: NextPoll) -> bytes:
    """One tenant: its summary, recent polls, segments and the last failure's log lines."""
    now = time.time()
    polls = [
        f"<tr><td>{age(r.finished_at, now)}</td><td>{_result(r.result)}</td>"
        f"<td>{r.duration:.2f}s</td><td>{r.graph_requests}</td><td>{_e(r.source)}</td>"
        f"<td>{reason(r)}</td></tr>"
        for r in reversed(snap.recent)
    ]
    log = "".join(f"{_e(line)}\n" for line in snap.last_failure_log)
    retirement = retirement_summary(snap, now)
    report = snap.fresh_report(now)
    return _page(
        f"{snap.name} · Entra registration exporter",
        [
            f"<p><a href='/'>All tenants</a></p><h1>{_e(snap.name)}</h1>",
            f"<p>Tenant ID <code>{_e(snap.tenant_id)}</code> · cloud {_e(snap.cloud)} · "
            f"source {_e(snap.source)} · last success {age(snap.last_success, now)} · "
            f"next poll {_next(next_poll(snap.name), now)}</p>",
            f"<p>{_e(report_summary(snap, now))}{_stale(snap, now)}</p>",
            f"<p>{_e(enforcement_summary(report))}</p>",
            _what_to_do(snap),
            f"<p>{_e(retirement)}</p>" if retirement else "",
            _collectors(snap),
            f"<h2>Recent polls (last {len(snap.recent)})</h2>",
            "<div class='wide'><table><tr><th>finished</th><th>result</th><th>duration</th>"
            "<th>Graph requests</th><th>source</th><th>reason</th></tr>",
            *polls,
            "</table></div>",
            *_segment_rows(report),
            *_enforcement_rows(report),
            "<h2>Log of the last failed poll</h2>",
            f"<pre>{log}</pre>" if log else "<p>No failed poll so far.</p>",
        ],
    )
