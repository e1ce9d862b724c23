"""``tenant_labels`` and each tenant's ``labels``: extra labels of ``entra_tenant_info``, for
joins (``... * on(tenant) group_left(tier) entra_tenant_info``).

``tenant_labels`` declares the names once (valid Prometheus label names, none that
``entra_tenant_info`` already has); a tenant's ``labels`` gives values, a missing one is ``""``,
a key not declared is a config error.
"""

from __future__ import annotations

import re
from typing import Any

from exporter.config.problems import Problems, join

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
OWN_LABELS = frozenset({"tenant", "tenant_id", "cloud", "source"})
MAX_LABELS = 16
MAX_VALUE = 256

Labels = tuple[tuple[str, str], ...]


def parse_tenant_labels(value: Any, problems: Problems) -> tuple[str, ...]:
    """The declared label names, in order."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add("tenant_labels", "must be a list of label names")
        return ()
    names: list[str] = []
    for index, name in enumerate(value):
        path = f"tenant_labels[{index}]"
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            problems.add(path, f"{name!r} is not a valid label name")
        elif name in OWN_LABELS:
            problems.add(path, f"{name!r} is a label entra_tenant_info already has")
        elif name in names:
            problems.add(path, f"{name!r} is declared twice")
        else:
            names.append(name)
    if len(names) > MAX_LABELS:
        problems.add("tenant_labels", f"at most {MAX_LABELS} labels")
    return tuple(names)


def parse_labels(value: Any, declared: tuple[str, ...], path: str, problems: Problems) -> Labels:
    """A tenant's (or discovery's) ``labels``: a value for every declared name, ``""`` where
    none is given."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        problems.add(path, "must be a mapping of label name to value")
        return ()
    for key, text in value.items():
        where = join(path, str(key))
        if key not in declared:
            hint = ", ".join(declared) or "none: declare them in tenant_labels"
            problems.add(where, f"not declared in tenant_labels ({hint})")
        elif not isinstance(text, str) or len(text) > MAX_VALUE:
            problems.add(where, f"must be a string of at most {MAX_VALUE} characters")
    return tuple((name, str(value.get(name, ""))) for name in declared)
