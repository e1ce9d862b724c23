"""``${VAR}`` in the config file: read from the environment; a missing one is a problem."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from exporter.config.problems import Problems, join

_VAR_RE = re.compile(r"\$\$|\$\{([^}]*)\}")
_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def expand_env(node: Any, path: str, environ: Mapping[str, str], problems: Problems) -> Any:
    """Replace ``${VAR}`` in every string of the tree; ``$$`` is a literal ``$``."""
    if isinstance(node, dict):
        return {k: expand_env(v, join(path, str(k)), environ, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_env(v, f"{path}[{i}]", environ, problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if not _VAR_NAME_RE.match(name):
            problems.add(path, f"${{{name}}} is not a valid environment variable reference")
            return match.group(0)  # left as written: one problem is reported, not two
        if name not in environ:
            problems.add(path, f"environment variable {name} is not set")
            return match.group(0)
        return environ[name]

    return _VAR_RE.sub(substitute, node)
