"""The librdkafka settings every Kafka client of this project uses, made from a spec's
``consumerProperties`` (Java client properties, see :mod:`supervisor.kafka.properties`)."""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException

from supervisor.errors import InvalidSpec, StreamError
from supervisor.kafka.properties import PropertyProblem, Translation, resolve, translate
from supervisor.kafka.stores import KeyMaterial, TrustMaterial, load_keystore, load_truststore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaAccess:
    """What a process brings to the properties: its environment, the directory it reads stores
    from, and where it writes the PEM files librdkafka reads (None: PEM handed over in memory)."""

    stores_dir: Path | None = None
    files_dir: Path | None = None
    environ: Mapping[str, str] | None = None  # None: this process's os.environ
    process: str = "worker"
    stores_setting: str = "MIDDLEMANAGER_KAFKA_STORES_DIR"

    @classmethod
    def overlord(cls, stores_dir: Path | None) -> KafkaAccess:
        return cls(stores_dir=stores_dir, process="Overlord", stores_setting="OVERLORD_KAFKA_STORES_DIR")


@dataclass(frozen=True)
class ClientConfig:
    conf: dict[str, Any]
    translation: Translation


def client_config(props: Mapping[str, Any], access: KafkaAccess | None = None) -> ClientConfig:
    """The librdkafka connection settings of ``props``, stores converted (and written when
    ``access.files_dir`` is set). Raises PropertyProblem naming the property."""
    access = access or KafkaAccess()
    environ = os.environ if access.environ is None else access.environ
    translation = translate(resolve(props, environ, access.process))
    conf = dict(translation.conf)
    trust = keys = None
    if translation.truststore is not None:
        trust = load_truststore(translation.truststore, access.stores_dir, access.stores_setting)
        translation.origin["ssl.ca.pem"] = translation.origin["ssl.ca.location"] = (
            translation.truststore.property
        )
    if translation.keystore is not None:
        keys = load_keystore(translation.keystore, access.stores_dir, access.stores_setting)
        for k in ("ssl.certificate.pem", "ssl.key.pem", "ssl.certificate.location", "ssl.key.location"):
            translation.origin[k] = translation.keystore.property
    conf.update(_material(trust, keys, access.files_dir))
    return ClientConfig(conf, translation)


def property_error(problem: PropertyProblem) -> StreamError:
    """A problem found when a client is made (a secret missing from this process's environment, a
    store file absent): not retriable, and it names the property."""
    where = "".join(f'["{k}"]' for k in problem.path)
    return StreamError(
        f"consumerProperties{where}: {problem.problem}", code="INVALID_CONFIG", retriable=False
    )


def make_config(props: Mapping[str, Any], client_id: str, access: KafkaAccess | None) -> dict[str, Any]:
    """:func:`consumer_config`, its problems raised as StreamError (see :func:`property_error`)."""
    try:
        return consumer_config(props, client_id, access)
    except PropertyProblem as e:
        raise property_error(e) from None


def _material(
    trust: TrustMaterial | None, keys: KeyMaterial | None, files_dir: Path | None
) -> dict[str, str]:
    out: dict[str, str] = {}
    files: dict[str, tuple[str, str]] = {}
    if trust is not None:
        files["ca.pem"] = ("ssl.ca", trust.ca_pem)
    if keys is not None:
        files["client-certificate.pem"] = ("ssl.certificate", keys.certificate_pem)
        files["client-key.pem"] = ("ssl.key", keys.key_pem)
    if files_dir is None:
        return {f"{prefix}.pem": text for prefix, text in files.values()}
    if files:
        files_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, (prefix, text) in files.items():
        path = files_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        out[f"{prefix}.location"] = str(path.absolute())
    return out


def consumer_config(
    props: Mapping[str, Any], client_id: str, access: KafkaAccess | None = None
) -> dict[str, Any]:
    """A librdkafka consumer config from a spec's ``consumerProperties``.

    Never commits group offsets (the metadata store owns offsets) and always reads committed
    transactional data only; the group id is Druid's (a random ``kafka-supervisor-`` id,
    KafkaConsumerConfigs): no reader here ever joins the group.
    """
    conf = client_config(props, access).conf
    conf.setdefault("client.id", client_id)
    conf["group.id"] = f"kafka-supervisor-{uuid.uuid4().hex[:8]}"
    conf["enable.auto.commit"] = False
    conf["enable.auto.offset.store"] = False
    conf["isolation.level"] = "read_committed"
    conf["enable.partition.eof"] = True
    conf["auto.offset.reset"] = "error"
    conf.setdefault("log_level", 3)
    return conf


_QUOTED = re.compile(r'"([a-z0-9_.\-]+)"')


def _blame(message: str, translation: Translation) -> str | None:
    """The spec property behind librdkafka's complaint, when it can be told."""
    for rd in _QUOTED.findall(message):
        if rd in translation.origin:
            return translation.origin[rd]
    lowered = message.lower()
    for needle, rd in (
        ("sasl mechanism", "sasl.mechanisms"),
        ("ssl.ca", "ssl.ca.pem"),
        ("ca certificate", "ssl.ca.pem"),
        ("private key", "ssl.key.pem"),
        ("ssl.key", "ssl.key.pem"),
        ("certificate", "ssl.certificate.pem"),
        ("security.protocol", "security.protocol"),
        ("oauthbearer", "sasl.oauthbearer.method"),
    ):
        if needle in lowered and rd in translation.origin:
            return translation.origin[rd]
    return None


def check_consumer(props: Mapping[str, Any], access: KafkaAccess) -> Translation:
    """Everything librdkafka would refuse about ``props``, found now: a consumer is built from the
    translated settings (without its brokers, so nothing connects) and closed again.

    Raises PropertyProblem naming the property (``()`` path: the properties as a whole).
    """
    made = client_config(props, access)
    conf = {k: v for k, v in made.conf.items() if k not in ("bootstrap.servers", "metadata.broker.list")}
    conf.update({"group.id": "kafka-supervisor-check", "enable.auto.commit": False, "log_level": 0})
    try:
        consumer = Consumer(conf)
    except KafkaException as e:
        message = e.args[0].str() if e.args and hasattr(e.args[0], "str") else str(e)
        message = message.removeprefix("Failed to create consumer: ")
        key = _blame(message, made.translation)
        raise PropertyProblem((key,) if key else (), f"librdkafka refuses it: {message}") from None
    except (TypeError, ValueError) as e:
        raise PropertyProblem((), f"librdkafka refuses it: {e}") from None
    consumer.close()
    return made.translation


CONSUMER_PROPERTIES_PATH = "spec.ioConfig.consumerProperties"
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def property_path(path: tuple[str, ...]) -> str:
    """``spec.ioConfig.consumerProperties["sasl.jaas.config"]`` for a property's path."""
    return CONSUMER_PROPERTIES_PATH + "".join(
        f".{k}" if _PLAIN_KEY.fullmatch(k) else f'["{k}"]' for k in path
    )


def validate_consumer_properties(props: Mapping[str, Any], access: KafkaAccess) -> Translation:
    """The Overlord's check of a posted spec's properties (its secrets restored): as the supervisor
    will use them, with the Overlord's environment and stores. Raises InvalidSpec (400) naming the
    property; returns the translation (its ``dropped`` are reported)."""
    try:
        return check_consumer(props, access)
    except PropertyProblem as e:
        raise InvalidSpec(property_path(e.path), e.problem) from None
