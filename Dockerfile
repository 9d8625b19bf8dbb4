# chutes-operator image: slim Python, runtime dependencies only (pinned in requirements-runtime.txt),
# non-root, read-only-root-filesystem friendly, `chutes run` as the entrypoint with kopf's liveness
# endpoint on :8080/healthz. Metrics and /readyz need CHUTES_METRICS_PORT (the Helm chart sets 9090).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/chutes
COPY operator/requirements-runtime.txt ./
RUN /opt/chutes/bin/pip install --no-deps -r requirements-runtime.txt
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/chutes/bin/pip install --no-deps . && /opt/chutes/bin/pip check

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 chutes \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin chutes
COPY --from=build /opt/chutes /opt/chutes
ENV PATH=/opt/chutes/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHUTES_LIVENESS_ENDPOINT=http://0.0.0.0:8080/healthz \
    CHUTES_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["chutes", "run"]
