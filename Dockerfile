# syntax=docker/dockerfile:1
# Build:  docker build -t entra-registration-exporter .       (or: make image, with podman)
# Run:    docker run --read-only --tmpfs /tmp -p 9836:9836 \
#             -v "$PWD/config.yaml:/etc/entra-registration-exporter/config.yaml:ro" \
#             entra-registration-exporter
# PYTHON_IMAGE: any image with Python 3.11+ and its venv module (python:3.11-slim, or Debian
# bookworm with python3-venv, as `make image` makes one where no registry is reachable).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the project and its dependencies as wheels --------------------------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
COPY entra_simulator ./entra_simulator
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels .

# ---- final: installed from the wheels, no compilers, no caches, not root --------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="entra-registration-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Microsoft Entra ID SSPR and MFA registration counts" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/entra-registration-exporter/entra-registration-exporter"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/exporter/bin:$PATH
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python3 -m venv /opt/exporter \
    && /opt/exporter/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
        --find-links=/wheels /wheels/entra_registration_exporter-*.whl
# A numeric, non-root user, so Kubernetes' runAsNonRoot can check it.
USER 65532:65532
EXPOSE 9836
# Nothing but the image's Python: the liveness probe's own answer.
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9836/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["entra-registration-exporter"]
CMD ["--config.file=/etc/entra-registration-exporter/config.yaml"]
