"""The consumer settings every reader of this project uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Druid-specific or Java-only keys that librdkafka would reject.
_JAVA_ONLY = frozenset(
    {
        "key.deserializer",
        "value.deserializer",
        "druid.dynamic.config.provider",
        "poll.timeout.ms",
        "max.poll.records",
        "request.timeout.ms.config",
        "default.api.timeout.ms",
        "max.partition.fetch.bytes",
        "fetch.max.bytes.config",
    }
)


def consumer_config(props: Mapping[str, Any], client_id: str) -> dict[str, Any]:
    """A librdkafka consumer config from a spec's ``consumerProperties``.

    Never commits group offsets (the metadata store owns offsets) and always
    reads committed transactional data only.
    """
    conf: dict[str, Any] = {}
    for key, value in props.items():
        if key in _JAVA_ONLY:
            continue
        conf[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    conf.setdefault("client.id", client_id)
    conf["group.id"] = conf.get("group.id", "kafka-pull-indexer")
    conf["enable.auto.commit"] = False
    conf["enable.auto.offset.store"] = False
    conf["isolation.level"] = "read_committed"
    conf["enable.partition.eof"] = True
    conf.setdefault("auto.offset.reset", "error")
    conf.setdefault("log_level", 3)
    return conf
