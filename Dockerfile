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
# The exporter's own check: it reads the port and TLS from the running exporter's flags
# (process 1's command line), so a changed --web.listen-address or a web config with TLS holds.
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
    CMD ["entra-registration-exporter", "--health.check"]
# Every address inside the container (a published port reaches it), --demo included; a
# --web.listen-address given to `docker run` comes later and wins.
ENTRYPOINT ["entra-registration-exporter", "--web.listen-address=:9836"]
CMD ["--config.file=/etc/entra-registration-exporter/config.yaml"]
