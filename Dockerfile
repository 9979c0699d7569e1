# One image for every process; the command chooses which:
#   docker run IMAGE overlord serve        (the default command)
#   docker run IMAGE overlord migrate
#   docker run IMAGE middlemanager serve
#   docker run IMAGE broker serve
# Settings come from OVERLORD_* / MIDDLEMANAGER_* / BROKER_* environment variables (see docs/compose.md).

#
# Both stages start from BASE_IMAGE: Python's official slim image by default. Where no registry can
# be reached, scripts/compose-images builds a Debian stand-in (debootstrap with python3 and
# python3-venv) and passes it as BASE_IMAGE, with the project and its dependencies as wheels in
# wheels/ of the build context: they are then installed with --no-index (offline).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: a virtualenv with the project
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
WORKDIR /src
# every dependency ships binary wheels (confluent-kafka, psycopg2-binary, pyarrow, orjson):
# no compiler is needed here, and none reaches the final image anyway
COPY pyproject.toml README.m[d] ./
COPY supervisor ./supervisor
COPY overlord ./overlord
COPY middlemanager ./middlemanager
COPY migrations ./migrations
COPY transport ./transport
COPY broker ./broker
# pyproject.toml is named so that the COPY has a source when there is no wheels/ directory
COPY pyproject.toml wheel[s] /tmp/wheels/
RUN if ls /tmp/wheels/*.whl >/dev/null 2>&1; then \
        /opt/venv/bin/pip install --no-index --find-links /tmp/wheels kafka-pull-indexer; \
    else \
        /opt/venv/bin/pip install .; \
    fi

# ---------------------------------------------------------------- runtime: slim, non-root
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="kafka-pull-indexer" \
      org.opencontainers.image.description="Supervisor-based Kafka pull indexing (Overlord and MiddleManager)"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OVERLORD_HOST=0.0.0.0 \
    OVERLORD_METADATA_URL=sqlite:////var/lib/druid/metadata.db \
    OVERLORD_DEEP_STORAGE=/var/lib/druid/deep-storage \
    MIDDLEMANAGER_HOST=0.0.0.0 \
    MIDDLEMANAGER_TASK_DIR=/var/lib/druid/tasks \
    BROKER_HOST=0.0.0.0 \
    BROKER_SEGMENT_CACHE_DIR=/var/lib/druid/segment-cache
RUN groupadd --system --gid 10001 druid \
    && useradd --system --uid 10001 --gid druid --home-dir /var/lib/druid --no-create-home \
       --shell /usr/sbin/nologin druid \
    && mkdir -p /var/lib/druid/deep-storage /var/lib/druid/tasks /var/lib/druid/segment-cache \
    && chown -R druid:druid /var/lib/druid
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/druid
USER 10001:10001
# Overlord API, MiddleManager, Broker; tasks listen on ephemeral ports of the MiddleManager's address
EXPOSE 8090 8091 8082
# Each process answers GET /status/health; PID 1's command line tells which one runs here.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD case "$(tr '\0' ' ' < /proc/1/cmdline)" in \
          *middlemanager*) exec middlemanager healthcheck ;; \
          *broker*) exec broker healthcheck ;; \
          *migrate*) exit 0 ;; \
          *) exec overlord healthcheck ;; \
        esac
# SIGTERM: the Overlord leaves its tasks running for the next Overlord; a MiddleManager hands
# its tasks back within MIDDLEMANAGER_SHUTDOWN_TIMEOUT_S (give docker stop -t more than that)
STOPSIGNAL SIGTERM
CMD ["overlord", "serve"]
