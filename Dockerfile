# chutes-operator image: slim Python, runtime dependencies only, non-root, `chutes run` as entrypoint.
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11.7-slim-bookworm
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin chutes
COPY --from=build /install /usr/local
USER 10001:10001
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080
ENTRYPOINT ["chutes", "run", "--liveness=http://0.0.0.0:8080/healthz"]
