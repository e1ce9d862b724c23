# syntax=docker/dockerfile:1
# Build:  docker build -t entra-registration-exporter .
# Run:    docker run -p 9836:9836 -v "$PWD/config.yaml:/etc/entra-registration-exporter/config.yaml:ro" \
#             entra-registration-exporter
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the project and its dependencies as wheels --------------------------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
COPY entra_simulator ./entra_simulator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- final: installed from the wheels, no compilers, no caches, not root --------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="entra-registration-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Microsoft Entra ID SSPR and MFA registration counts" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/entra-registration-exporter/entra-registration-exporter"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/entra_registration_exporter-*.whl
# A numeric, non-root user, so Kubernetes' runAsNonRoot can check it.
USER 65532:65532
EXPOSE 9836
ENTRYPOINT ["entra-registration-exporter"]
CMD ["--config.file=/etc/entra-registration-exporter/config.yaml"]
