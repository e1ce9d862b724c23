"""`make mutation`: mutmut over the pure modules, each mutant run against that module's own tests.

mutmut 3 copies the sources into ``mutants/`` and imports them from there, so it runs in a scratch
copy of the tracked files with its own virtualenv in which this project is *not* installed (the
editable install of ``make test`` would map ``exporter`` back to the work tree). One scratch copy
per module keeps each module's tests to its own list, as the issue asks.

Prints killed / made per module and every surviving mutant's diff, writes the table to
``build/mutation.md``; exits 1 when a module is under the target.

    python scripts/mutation.py [--only report,sharding] [--target 90]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv-mutation" / "bin"

# module group -> (sources mutated, the fast tests that are that module's own)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "report": (
        ["exporter/reports/registration.py"],
        ["tests/test_report.py", "tests/test_boundaries.py"],
    ),
    "ratelimit": (
        ["exporter/graph/pacing.py", "exporter/graph/admission.py"],
        ["tests/test_ratelimit.py", "tests/test_boundaries.py", "tests/test_graph.py"],
    ),
    "failures": (
        ["exporter/graph/failures.py"],
        ["tests/test_graph.py", "tests/test_boundaries.py"],
    ),
    "graph": (
        ["exporter/graph/answers.py"],
        ["tests/test_graph.py", "tests/test_boundaries.py"],
    ),
    "sharding": (
        ["exporter/config/sharding.py"],
        ["tests/test_sharding.py", "tests/test_boundaries.py"],
    ),
    "metrics": (
        [
            "exporter/metrics/snapshots.py",
            "exporter/metrics/rendering.py",
            "exporter/metrics/store.py",
        ],
        ["tests/test_metrics.py", "tests/test_boundaries.py"],
    ),
    "config": (
        ["exporter/config/model.py", "exporter/config/loader.py", "exporter/config/segments.py"],
        ["tests/test_config.py", "tests/test_boundaries.py"],
    ),
}

# What the tests read besides the packages (examples, manifests), copied into mutmut's folder.
ALSO_COPY = ["exporter", "entra_simulator", "tests", "config.example.yaml", "deploy", "README.md"]

# mutmut's exit codes per mutant: 1 killed, 0 survived; 33/34 are "no tests" / "skipped",
# -24/24/36 timeouts and 152 a suspicious (slow) run, both counted as killed by mutmut too.
SURVIVED = 0
NOT_RUN = {33, 34, None}


@dataclass
class Score:
    group: str
    made: int = 0
    killed: int = 0
    survivors: list[str] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.made if self.made else 0.0  # nothing ran: a failure


def snapshot_tree() -> Path:
    """The project's files as they are now (tracked, and new ones git does not ignore), so
    every module is tested against the same tree even if the work tree changes meanwhile."""
    folder = Path(tempfile.mkdtemp(prefix="mutation-tree-"))
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
    return folder


def scratch_copy(tree: Path, sources: list[str], tests: list[str]) -> Path:
    """A copy of ``tree`` with mutmut's section appended to its pyproject."""
    folder = Path(tempfile.mkdtemp(prefix="mutation-"))
    shutil.copytree(tree, folder, dirs_exist_ok=True)
    existing = [t for t in tests if (folder / t).exists()]
    section = (
        "\n[tool.mutmut]\n"
        f"source_paths = {json.dumps(sources)}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(existing)}\n"
        f"also_copy = {json.dumps(ALSO_COPY)}\n"
    )
    with (folder / "pyproject.toml").open("a", encoding="utf-8") as handle:
        handle.write(section)
    return folder


def run_group(tree: Path, group: str, sources: list[str], tests: list[str]) -> Score:
    folder = scratch_copy(tree, sources, tests)
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    mutmut = str(VENV_BIN / "mutmut")
    log = ROOT / "build" / f"mutation-{group}.log"
    with log.open("w", encoding="utf-8") as out:
        subprocess.run([mutmut, "run"], cwd=folder, env=env, stdout=out, stderr=out, check=False)
    score = Score(group)
    for source in sources:
        meta_path = folder / "mutants" / f"{source}.meta"
        if not meta_path.exists():
            print(f"{group}: mutmut wrote no results for {source}; see {log}")
            continue
        codes = json.loads(meta_path.read_text(encoding="utf-8"))["exit_code_by_key"]
        for name, code in sorted(codes.items()):
            if code in NOT_RUN:
                continue
            score.made += 1
            if code == SURVIVED:
                score.survivors.append(name)
            else:
                score.killed += 1
    with log.open("a", encoding="utf-8") as out:
        for name in score.survivors:
            shown = subprocess.run(
                [mutmut, "show", name],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            out.write(f"\n### {name}\n{shown.stdout}")
    shutil.rmtree(folder, ignore_errors=True)
    return score


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated groups (default: all)")
    parser.add_argument("--target", type=float, default=90.0, help="percent killed, per group")
    args = parser.parse_args()
    if not (VENV_BIN / "mutmut").exists():
        print("no .venv-mutation: run `make mutation`", file=sys.stderr)
        return 2
    chosen = [g for g in args.only.split(",") if g] or list(GROUPS)
    (ROOT / "build").mkdir(exist_ok=True)
    rows = ["| module | killed / made | score | target |", "|---|---|---|---|"]
    below = []
    tree = snapshot_tree()
    for group in chosen:
        sources, tests = GROUPS[group]
        score = run_group(tree, group, sources, tests)
        mark = "met" if score.percent >= args.target else "NOT met"
        if score.percent < args.target:
            below.append(group)
        rows.append(
            f"| {group} | {score.killed} / {score.made} | {score.percent:.0f} % "
            f"| {args.target:.0f} % ({mark}) |"
        )
        print(rows[-1], flush=True)
        for name in score.survivors:
            print(f"    survived: {name}  (diff in build/mutation-{group}.log)")
    shutil.rmtree(tree, ignore_errors=True)
    (ROOT / "build" / "mutation.md").write_text("\n".join(rows) + "\n", encoding="utf-8")
    print("\n".join(rows))
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
