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

from exporter import __version__
from exporter.metrics.snapshots import POLICY_COLLECTOR, PollRecord, TenantSnapshot
from exporter.reports.details import SEGMENT_STATUSES, STRENGTHS
from exporter.reports.policy import MethodsPolicy
from exporter.reports.registration import RegistrationReport

NextPoll = Callable[[str], float | None]
_MFA = SEGMENT_STATUSES.index("mfaRegistered")
_STRONGEST = STRENGTHS.index("phishing_resistant")
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#1b1b1b}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}td:first-child{white-space:nowrap}.success{color:#0a6b2d}.failure{color:#a40e26;font-weight:600}"
    "code,pre{font-family:ui-monospace,monospace;font-size:.9em}pre{white-space:pre-wrap}"
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
    if record.http_status is not None:
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


def _policy_of(snap: TenantSnapshot) -> MethodsPolicy | None:
    policy = snap.collector(POLICY_COLLECTOR)
    return policy.value if policy is not None and isinstance(policy.value, MethodsPolicy) else None


def retirement_summary(snap: TenantSnapshot) -> str:
    """Phone-only users by retirement date, and the policy's key states (when known)."""
    parts = []
    segments = snap.report.segments if snap.report is not None else None
    if segments is not None and segments.phone_only is not None:
        dates = ", ".join(f"{count:,} by {date}" for date, count in segments.phone_only)
        parts.append(f"phone-only: {dates}")
    policy = _policy_of(snap)
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


def tenant_link(name: str) -> str:
    return f"/tenants/{urllib.parse.quote(name, safe='')}"


def render_landing_page(
    snapshots: list[TenantSnapshot], telemetry_path: str, next_poll: NextPoll
) -> bytes:
    """Version, links, and one row per tenant."""
    now = time.time()
    rows = []
    for snap in snapshots:
        last = snap.recent[-1] if snap.recent else None
        rows.append(
            "<tr>"
            f"<td><a href='{_e(tenant_link(snap.name))}'>{_e(snap.name)}</a></td>"
            f"<td>{_e(snap.source)}</td><td>{_result(snap.last_result)}</td>"
            f"<td>{reason(last) if last else ''}</td>"
            f"<td>{age(snap.last_success, now)}</td><td>{_next(next_poll(snap.name), now)}</td>"
            f"<td>{_e(summary(snap.report))}</td><td>{_e(segments_summary(snap.report))}</td>"
            f"<td>{_e(retirement_summary(snap))}</td></tr>"
        )
    path = _e(telemetry_path)
    return _page(
        "Entra registration exporter",
        [
            "<h1>Entra registration exporter</h1>",
            f"<p>Version {_e(__version__)} · <a href='{path}'>Metrics</a> · "
            "<a href='/healthz'>healthz</a> · <a href='/readyz'>readyz</a></p>",
            "<table><tr><th>tenant</th><th>source</th><th>last result</th><th>reason</th>"
            "<th>last success</th><th>next poll</th><th>registration</th><th>segments</th>"
            "<th>SMS and voice retirement</th></tr>",
            *rows,
            "</table>",
        ],
    )


def _segment_rows(report: RegistrationReport | None) -> list[str]:
    if report is None or report.segments is None:
        return []
    rows = [
        "<h2>Segments</h2><table><tr><th>user type</th><th>role</th><th>users</th>"
        + "".join(f"<th>{_e(s)}</th>" for s in SEGMENT_STATUSES)
        + "".join(f"<th>{_e(s)}</th>" for s in STRENGTHS)
        + "</tr>"
    ]
    named = [(f"{_e(t)}</td><td>{_e(r)}", c) for t, r, c in report.segments.segments]
    named += [(f"group</td><td>{_e(g)}", c) for g, c in report.segments.groups]
    for label, counts in named:
        cells = "".join(f"<td>{v}</td>" for v in (*counts.statuses, *counts.strengths))
        rows.append(f"<tr><td>{label}</td><td>{counts.users}</td>{cells}</tr>")
    rows.append("</table>")
    return rows


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
    return _page(
        f"{snap.name} · Entra registration exporter",
        [
            f"<p><a href='/'>All tenants</a></p><h1>{_e(snap.name)}</h1>",
            f"<p>Tenant ID <code>{_e(snap.tenant_id)}</code> · cloud {_e(snap.cloud)} · "
            f"source {_e(snap.source)} · last success {age(snap.last_success, now)} · "
            f"next poll {_next(next_poll(snap.name), now)}</p>",
            f"<p>{_e(summary(snap.report))}</p>",
            f"<p>{_e(retirement_summary(snap))}</p>" if retirement_summary(snap) else "",
            _collectors(snap),
            f"<h2>Recent polls (last {len(snap.recent)})</h2>",
            "<table><tr><th>finished</th><th>result</th><th>duration</th>"
            "<th>Graph requests</th><th>source</th><th>reason</th></tr>",
            *polls,
            "</table>",
            *_segment_rows(snap.report),
            "<h2>Log of the last failed poll</h2>",
            f"<pre>{log}</pre>" if log else "<p>No failed poll so far.</p>",
        ],
    )
