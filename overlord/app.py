"""Assembles the Overlord: store, task queue, supervisors, HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from overlord import api, auth, fault_injection, metrics
from overlord.auth import AuthConfig
from overlord.chat import HttpTaskClient
from overlord.config import OverlordSettings
from overlord.metadata.engine import make_engine
from overlord.metadata.store import MetadataStore
from overlord.supervisors import SupervisorManager
from overlord.task_queue import TaskQueue
from supervisor.clock import SYSTEM_CLOCK, Clock
from supervisor.deep_storage import local_path
from supervisor.errors import MetadataStoreUnavailable
from supervisor.kafka.config import KafkaAccess
from transport.server import MAX_BYTES, error_middleware

logger = logging.getLogger(__name__)


def build_app(settings: OverlordSettings, clock: Clock = SYSTEM_CLOCK) -> web.Application:
    """The Overlord's application; ``clock`` is the time every deadline of it reads."""
    auth_config = AuthConfig.parse(
        settings.auth_users.get_secret_value(),
        settings.auth_tokens.get_secret_value(),
        settings.cluster_token.get_secret_value(),
    )
    app = web.Application(
        middlewares=[error_middleware, auth.middleware(auth_config)],
        client_max_size=settings.max_request_bytes,
    )
    app[MAX_BYTES] = settings.max_request_bytes
    api.add_routes(app)
    from overlord.openapi import add_openapi_route

    add_openapi_route(app)
    fault_injection.install(app, settings.fault_drop_publish_response_every)  # test-only; off by default
    if settings.embedded_broker:
        _mount_broker(app, settings)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store = MetadataStore(make_engine(settings.metadata_url))
        if settings.deep_storage.startswith("file:"):
            local_path(settings.deep_storage).mkdir(parents=True, exist_ok=True)
        chat = HttpTaskClient(settings.task_chat_timeout_s, settings.cluster_token.get_secret_value())
        manager_ref: list[SupervisorManager] = []
        queue = TaskQueue(
            store,
            settings.worker_timeout_s,
            settings.deep_storage,
            on_change=lambda ds: manager_ref[0].notify(ds) if manager_ref else None,
            clock=clock,
        )
        await queue.load()
        manager = SupervisorManager(
            store, queue, chat, kafka_access=KafkaAccess.overlord(settings.kafka_stores_dir), clock=clock
        )
        manager_ref.append(manager)
        app[api.STORE] = store
        app[api.QUEUE] = queue
        app[api.MANAGER] = manager
        app[api.CHAT] = chat
        collector = metrics.SupervisorCollector(manager.all, queue.task_counts)
        metrics.REGISTRY.register(collector)
        await manager.start()
        watchdog = asyncio.create_task(_watch_workers(queue, clock), name="worker-watchdog")
        try:
            yield
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            await manager.stop()
            metrics.REGISTRY.unregister(collector)
            await chat.close()
            store.close()

    app.cleanup_ctx.append(lifecycle)
    return app


def _mount_broker(app: web.Application, settings: OverlordSettings) -> None:
    """The embedded Broker: it reads the segment list over this Overlord's own HTTP API, as a
    Broker of its own would, so the metadata store stays the Overlord's alone."""
    from broker.api import mount
    from broker.config import BrokerSettings

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    mount(
        app,
        BrokerSettings(
            overlord_url=f"http://{host}:{settings.port}",
            cluster_token=settings.cluster_token,
            deep_storage=settings.deep_storage,  # how S3 segments are read (into var/broker/segment-cache)
            auth_users=settings.auth_users,
            auth_tokens=settings.auth_tokens,
        ),
    )


async def _watch_workers(queue: TaskQueue, clock: Clock) -> None:
    while True:
        await clock.sleep(1.0)
        try:
            await queue.check_workers()
        except MetadataStoreUnavailable as e:  # an outage: one line per pass, no traceback
            logger.warning("worker check skipped: %s", e)
        except Exception:  # keep watching whatever one pass hit
            logger.exception("worker check failed")
