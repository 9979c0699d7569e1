"""Runs one supervisor per persisted spec and carries out the supervisor API's commands."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from overlord.metadata.store import MetadataStore
from supervisor.clock import SYSTEM_CLOCK, Clock
from supervisor.errors import InvalidInput, InvalidSpec, NotFound
from supervisor.kafka.admin import KafkaStreamAdmin
from supervisor.kafka.config import KafkaAccess, property_path, validate_consumer_properties
from supervisor.offsets import PartitionOffsets
from supervisor.ports import StoredOffsets, StreamPort, TaskClientPort, TaskQueuePort
from supervisor.secrets import MASK, restore_masked
from supervisor.spec import ParsedSpec, SupervisorSpec, parse_supervisor_spec, read_supervisor_spec
from supervisor.supervisor import Supervisor

logger = logging.getLogger(__name__)

TOMBSTONE_TYPE = "NoopSupervisorSpec"


class StoreOffsets:
    """The supervisor's ``OffsetStorePort`` over the metadata store."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    async def stored_offsets(self, datasource: str) -> StoredOffsets | None:
        return await asyncio.to_thread(self._store.get_offsets, datasource)

    async def reset_offsets(self, datasource: str) -> None:
        await asyncio.to_thread(self._store.reset_offsets, datasource)

    async def reset_partitions(self, datasource: str, stream: str, offsets: PartitionOffsets) -> None:
        await asyncio.to_thread(self._store.reset_partitions, datasource, stream, offsets)


def kafka_stream(spec: SupervisorSpec, access: KafkaAccess | None = None) -> StreamPort:
    """The supervisor's own consumer: secrets from the Overlord's environment, stores from its
    ``kafka_stores_dir`` (PEM kept in memory, never written to the Overlord's disk)."""
    io = spec.io_config
    return KafkaStreamAdmin(io.stream, io.consumer_properties, access=access, multi_topic=io.multi_topic)


class SupervisorManager:
    """The running supervisors and their persisted specs.

    Every command writes the metadata store before it changes a running supervisor: when the store
    is down (``MetadataStoreUnavailable``, HTTP 503) nothing changes and the caller may retry.
    """

    def __init__(
        self,
        store: MetadataStore,
        tasks: TaskQueuePort,
        chat: TaskClientPort,
        stream_factory: Callable[[SupervisorSpec], StreamPort] | None = None,
        kafka_access: KafkaAccess | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self._store = store
        self._tasks = tasks
        self._chat = chat
        self._kafka_access = kafka_access or KafkaAccess.overlord(None)
        self._stream_factory = stream_factory or (lambda spec: kafka_stream(spec, self._kafka_access))
        self._offsets = StoreOffsets(store)
        self._running: dict[str, Supervisor] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        specs = await asyncio.to_thread(self._store.latest_supervisors)
        for spec_id, payload in specs.items():
            if payload.get("type") == TOMBSTONE_TYPE:
                continue
            try:
                spec = parse_supervisor_spec(payload)
            except InvalidSpec as e:
                logger.error("stored supervisor [%s] no longer parses: %s", spec_id, e)
                continue
            self._launch(spec)
        logger.info("started %d supervisors from the metadata store", len(self._running))

    async def stop(self) -> None:
        """The Overlord is going down: stop the loops, leave the tasks running."""
        await asyncio.gather(*(s.stop(graceful=False) for s in self._running.values()))
        self._running.clear()

    def _launch(self, spec: SupervisorSpec) -> Supervisor:
        sup = Supervisor(
            spec,
            stream=self._stream_factory(spec),
            tasks=self._tasks,
            chat=self._chat,
            offsets=self._offsets,
            clock=self._clock,
        )
        self._running[spec.id] = sup
        sup.start()
        return sup

    def notify(self, datasource: str) -> None:
        for sup in self._running.values():
            if sup.datasource == datasource:
                sup.notify()

    def find(self, spec_id: str) -> Supervisor | None:
        return self._running.get(spec_id)

    def get(self, spec_id: str) -> Supervisor:
        """The running supervisor, else a 404 worded as Druid's (SupervisorResource.specGet & co.)."""
        sup = self._running.get(spec_id)
        if sup is None:
            raise NotFound(f"[{spec_id}] does not exist")
        return sup

    def ids(self) -> list[str]:
        return sorted(self._running)

    def all(self) -> list[Supervisor]:
        return [self._running[i] for i in sorted(self._running)]

    async def create_or_update(self, payload: Any, restart_unmodified: bool = False) -> ParsedSpec:
        """Store and (re)start the supervisor of a posted spec; the notes go back to the author.

        A spec equal to the running one (our GET output posted back, a Druid export of it)
        changes nothing: no history entry, no restart, the tasks read on. Druid (33+,
        SupervisorResource.specPost) restarts an unmodified spec unless the POST says
        ``skipRestartIfUnmodified=true``; here skipping is the default (a restart without a change
        only hands off early), and ``restart_unmodified`` (``skipRestartIfUnmodified=false``)
        asks for Druid's restart: the tasks publish and new ones start, still without a history
        entry (Druid's SupervisorManager.createOrUpdateAndStartSupervisor stores only a changed spec).
        """
        parsed = read_supervisor_spec(payload)
        spec, notes = parsed.spec, parsed.notes
        if notes.ignored_fields or notes.unhonoured_fields or notes.translated:
            logger.warning(
                "supervisor [%s]: ignored fields %s, fields with no effect here %s, translated %s",
                spec.id,
                list(notes.ignored_fields),
                list(notes.unhonoured_fields),
                list(notes.translated),
            )
        async with self._lock:
            old = self._running.get(spec.id)
            spec = self._restore_secrets(spec, old)
            await self._check_consumer_properties(spec)
            if old is not None and old.spec == spec:
                if restart_unmodified:
                    logger.info("supervisor [%s]: the posted spec is the running one; restarting", spec.id)
                    await self._replace(old, spec)
                else:
                    logger.info("supervisor [%s]: the posted spec is the running one; nothing to do", spec.id)
                return ParsedSpec(spec, notes)
            old_io, new_io = (None, None) if old is None else (old.spec.io_config, spec.io_config)
            if (
                old_io is not None
                and new_io is not None
                and (old_io.topic, old_io.topic_pattern)
                != (
                    new_io.topic,
                    new_io.topic_pattern,
                )
            ):
                # Druid refuses this evolution too (KafkaSupervisorSpec.validateSpecUpdateTo)
                raise InvalidSpec(
                    "spec.ioConfig.topicPattern" if new_io.multi_topic else "spec.ioConfig.topic",
                    f"cannot change the topic/topicPattern of supervisor [{spec.id}] from "
                    f"[{old_io.stream}] to [{new_io.stream}]: stored offsets belong to the old one. "
                    "The safe way: "
                    f"suspend the supervisor (its tasks publish), reset it "
                    f"(POST /druid/indexer/v1/supervisor/{spec.id}/reset), terminate it, then submit "
                    "the spec with the new topic",
                )
            # The history entry keeps the notes beside the spec (read back, they are skipped).
            await asyncio.to_thread(self._store.insert_supervisor, spec.id, spec.to_json() | notes.members())
            await self._replace(old, spec)
        return ParsedSpec(spec, notes)

    async def _check_consumer_properties(self, spec: SupervisorSpec) -> None:
        """A 400 now for what librdkafka would refuse later (supervisor/kafka/config.py)."""
        props = spec.io_config.consumer_properties
        translation = await asyncio.to_thread(validate_consumer_properties, props, self._kafka_access)
        if translation.dropped:
            logger.warning(
                "supervisor[%s]: consumerProperties without meaning for librdkafka, dropped: %s",
                spec.id,
                ", ".join(property_path((k,)) for k in translation.dropped),
            )

    @staticmethod
    def _restore_secrets(spec: SupervisorSpec, old: Supervisor | None) -> SupervisorSpec:
        props = spec.io_config.consumer_properties
        masked = [k for k, v in props.items() if v == MASK]
        if not masked:
            return spec
        old_props = old.spec.io_config.consumer_properties if old is not None else {}
        missing = [k for k in masked if k not in old_props]
        if missing:
            raise InvalidSpec(
                f'spec.ioConfig.consumerProperties["{missing[0]}"]',
                f"is the mask {MASK!r} but no secret is stored for it: send the real value",
            )
        doc = spec.to_json()
        doc["spec"]["ioConfig"]["consumerProperties"] = restore_masked(props, old_props)
        return parse_supervisor_spec(doc)

    async def _replace(self, old: Supervisor | None, spec: SupervisorSpec) -> None:
        if old is not None:
            # its reading groups publish; the new supervisor adopts them as publishing groups
            await old.stop(graceful=True)
            self._running.pop(old.id, None)
        self._launch(spec)

    async def set_suspended(self, spec_id: str, suspended: bool) -> SupervisorSpec:
        """Suspend or resume; one already so is a 400 (Druid's SupervisorResource.specSuspendOrResume)."""
        async with self._lock:
            old = self.get(spec_id)
            if old.spec.suspended == suspended:
                raise InvalidInput(f"[{spec_id}] is already {'suspended' if suspended else 'running'}")
            spec = old.spec.with_suspended(suspended)
            await asyncio.to_thread(self._store.insert_supervisor, spec.id, spec.to_json())
            await self._replace(old, spec)
            return spec

    async def set_all_suspended(self, suspended: bool) -> None:
        """Every supervisor not already so (Druid's suspendAll/resumeAll skip those, and answer 200)."""
        for sup in self.all():
            try:
                await self.set_suspended(sup.id, suspended)
            except (InvalidInput, NotFound):
                continue  # already so, or terminated meanwhile

    async def terminate(self, spec_id: str) -> None:
        async with self._lock:
            sup = self.get(spec_id)
            # The tombstone first (as Druid): if the metadata store is down, the supervisor runs on
            # and the caller may retry, instead of one stopped here and alive after a restart.
            tombstone = {"type": TOMBSTONE_TYPE, "id": spec_id, "suspended": sup.spec.suspended}
            await asyncio.to_thread(self._store.insert_supervisor, spec_id, tombstone)
            await sup.stop(graceful=True)
            self._running.pop(spec_id, None)

    async def terminate_all(self) -> None:
        for spec_id in self.ids():
            await self.terminate(spec_id)

    def reset(self, spec_id: str) -> None:
        self.get(spec_id).request_reset()

    async def history(self, spec_id: str | None, count: int | None) -> Any:
        """One supervisor's spec history (newest first), or every supervisor's keyed by id, as Druid."""
        if spec_id is None:
            return await asyncio.to_thread(self._store.supervisor_histories, count)
        return await asyncio.to_thread(self._store.supervisor_history, spec_id, count)
