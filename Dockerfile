# syntax=docker/dockerfile:1
# One image for every process; the command chooses which:
#   docker run IMAGE overlord serve        (the default command)
#   docker run IMAGE overlord migrate
#   docker run IMAGE middlemanager serve
# Settings come from OVERLORD_* / MIDDLEMANAGER_* environment variables (see docs/compose.md).

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------- build: a virtualenv with the project
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# every dependency ships binary wheels (confluent-kafka, psycopg2-binary, pyarrow, orjson):
# no compiler is needed here, and none reaches the final image anyway
COPY pyproject.toml README.m[d] ./
COPY supervisor ./supervisor
COPY overlord ./overlord
COPY middlemanager ./middlemanager
COPY migrations ./migrations
RUN /opt/venv/bin/pip install .

# ---------------------------------------------------------------- runtime: slim, non-root
FROM python:${PYTHON_VERSION}-slim-bookworm
LABEL org.opencontainers.image.title="kafka-pull-indexer" \
      org.opencontainers.image.description="Supervisor-based Kafka pull indexing (Overlord and MiddleManager)"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OVERLORD_HOST=0.0.0.0 \
    OVERLORD_METADATA_URL=sqlite:////var/lib/druid/metadata.db \
    OVERLORD_DEEP_STORAGE=/var/lib/druid/deep-storage \
    MIDDLEMANAGER_HOST=0.0.0.0 \
    MIDDLEMANAGER_TASK_DIR=/var/lib/druid/tasks
RUN groupadd --system --gid 10001 druid \
    && useradd --system --uid 10001 --gid druid --home-dir /var/lib/druid --no-create-home \
       --shell /usr/sbin/nologin druid \
    && mkdir -p /var/lib/druid/deep-storage /var/lib/druid/tasks \
    && chown -R druid:druid /var/lib/druid
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/druid
USER 10001:10001
# Overlord API, MiddleManager; tasks listen on ephemeral ports of the MiddleManager's address
EXPOSE 8090 8091
# Each process answers GET /status/health; PID 1's command line tells which one runs here.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD case "$(tr '\0' ' ' < /proc/1/cmdline)" in \
          *middlemanager*) exec middlemanager healthcheck ;; \
          *migrate*) exit 0 ;; \
          *) exec overlord healthcheck ;; \
        esac
# SIGTERM: the Overlord leaves its tasks running for the next Overlord; a MiddleManager hands
# its tasks back within MIDDLEMANAGER_SHUTDOWN_TIMEOUT_S (give docker stop -t more than that)
STOPSIGNAL SIGTERM
CMD ["overlord", "serve"]
