"""Shared by both config files: the problem collector, the strict YAML reader, one error type.

Every problem is a ``path: message`` line (``tenants[2].client_id: ...``); a loader collects
them all and raises one :class:`ConfigError`, so a user fixes a broken file in one pass.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import yaml

from exporter.config.files import read_text


class ConfigError(Exception):
    """A config file is invalid; ``problems`` holds one ``path: message`` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} configuration problem(s)")
        self.problems = problems


def join(path: str, key: str) -> str:
    """``tenants[0]`` + ``name`` → ``tenants[0].name``; a key alone at the top."""
    return f"{path}.{key}" if path else key


class Problems:
    """Collects ``path: message`` lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        # What loads but deserves a word at start-up (and in --check-config).
        self.warnings: list[str] = []

    def add(self, path: str, message: str) -> None:
        """Note one problem at ``path`` (empty: about the whole file)."""
        self.lines.append(f"{path}: {message}" if path else message)

    def check_keys(
        self, node: dict[Any, Any], allowed: set[str] | frozenset[str], path: str
    ) -> None:
        """One problem per key of ``node`` that is not in ``allowed`` (typos must not pass)."""
        for key in node:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                self.add(join(path, str(key)), f"unknown key (expected one of: {hint})")

    def string(self, value: Any, path: str, *, required: bool = True) -> str | None:
        """``value`` stripped if it is a non-empty string; else a problem (or None if optional)."""
        if value is None:
            if required:
                self.add(path, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(path, "must be a non-empty string")
            return None
        return value.strip()

    def read_text_file(self, file_name: str, path: str) -> str | None:
        """The UTF-8 text of a file a key names, or None with a problem at ``path``."""
        try:
            return read_text(file_name)
        except OSError as err:
            self.add(path, f"cannot read {file_name}: {err.strerror or err}")
        except UnicodeDecodeError:
            self.add(path, f"{file_name} is not UTF-8 text")
        return None

    def raise_if_any(self) -> None:
        """Raise :class:`ConfigError` with every problem noted so far."""
        if self.lines:
            raise ConfigError(list(self.lines))


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error.

    (``yaml.safe_load`` silently keeps the last of two duplicate keys.)
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, StrictLoader.construct_mapping
)


def _yaml_error_line(path: str, err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or "invalid YAML"
    hint = ""
    if "mapping values are not allowed" in problem or "expected <block end>" in problem:
        hint = " (check the indentation of this line and the one before: spaces, not tabs)"
    elif "found character '\\t'" in problem:
        hint = " (a tab: indent with spaces)"
    if mark is not None:
        return f"{path}:{mark.line + 1}:{mark.column + 1}: YAML syntax error: {problem}{hint}"
    return f"{path}: YAML syntax error: {problem}{hint}"


# Bounds on what a config document may be once its aliases are expanded: a YAML "billion
# laughs" (aliases of aliases) or a 50,000-deep nesting is refused before anything walks it.
# Aliases may repeat a block (a shared `segments:` mapping, say), not multiply the document.
ALIAS_EXPANSION_ALLOWANCE = 10_000
MAX_YAML_NODES = 5_000_000
MAX_YAML_DEPTH = 64


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_size(root: yaml.Node) -> str | None:
    """Why the document is too large or deep once aliases are expanded, or None.

    Aliases share their node, so each node's expanded size is computed once (post-order,
    without recursion): the cost is the document's, not the expansion's.
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_nodes.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            depths[key] = 1 + max((depths[id(child)] for child in children), default=0)
            if sizes[key] > min(MAX_YAML_NODES, 2 * len(sizes) + ALIAS_EXPANSION_ALLOWANCE):
                return "expands through its aliases far beyond its size (aliases of aliases?)"
            if depths[key] > MAX_YAML_DEPTH:
                return f"is nested more than {MAX_YAML_DEPTH} levels deep"
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            return "holds an alias to itself"
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return None


def _parse_yaml(text: str, where: str) -> Any:
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        too_big = _check_size(node)
        if too_big is not None:
            mark = node.start_mark
            raise ConfigError(
                [f"{where}:{mark.line + 1}:{mark.column + 1}: the document {too_big}"]
            )
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError(
            [f"{where}: the document is nested too deeply (at most {MAX_YAML_DEPTH} levels)"]
        ) from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path, what: str = "config file") -> Any:
    """The YAML document in ``path``, read strictly; errors name ``file:line:col``."""
    file = Path(path)
    try:
        text = read_text(file)
    except OSError as err:
        hint = ""
        if err.errno == errno.ENOENT and what == "config file":
            hint = " (name it with --config.file, start from config.example.yaml, or try --demo)"
        raise ConfigError([f"{file}: cannot read {what}: {err.strerror or err}{hint}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{file}: {what} is not UTF-8 text"]) from None
    try:
        return _parse_yaml(text, str(file))
    except yaml.YAMLError as err:
        raise ConfigError([_yaml_error_line(str(file), err)]) from None
