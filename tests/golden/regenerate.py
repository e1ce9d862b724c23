"""Rewrite the golden expositions from the code: ``python -m tests.golden.regenerate``.

Only on purpose, after a change to what the exporter shows; then review the diff line by line.
"""

from pathlib import Path

from tests.test_metrics import golden_store, golden_text

if __name__ == "__main__":
    folder = Path(__file__).parent
    for openmetrics, name in ((False, "exposition.txt"), (True, "exposition.openmetrics.txt")):
        (folder / name).write_text(golden_text(golden_store(), openmetrics))
        print(f"wrote {folder / name}")
