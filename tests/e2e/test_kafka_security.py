"""A spec written for Druid's Java Kafka client ingests through a SASL_SSL (SCRAM) listener, and a
mutual-TLS one, of a real broker (scripts/local-kafka with its secured listeners; keytool's stores).

The consumerProperties are exactly what a Java client needs (JAAS entry, JKS trust store, JKS key
store); the Overlord and the MiddleManager read the stores from their Kafka stores directory, and the
task writes the PEM it made of them into its own task directory.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.http import request
from tests.harness.kafka import create_topic, produce
from tests.harness.processes import Cluster, running_cluster
from tests.harness.segments import published_ids
from tests.harness.services import Service, free_port, own_kafka
from tests.harness.specs import event, kafka_spec

pytestmark = pytest.mark.e2e

SCRAM_JAAS = (
    "org.apache.kafka.common.security.scram.ScramLoginModule required "
    'username="indexer" password="indexer-secret";'
)
TLS_PASSWORD = "tls-secret"  # scripts/local-kafka's default


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A broker of this module's own with a PLAINTEXT, a SASL_SSL and an SSL (client certificate) listener."""
    kafka = own_kafka(tmp_path_factory.mktemp("secured-kafka"))
    kafka.env["KAFKA_SASL_SSL_PORT"] = str(free_port())
    kafka.env["KAFKA_SSL_PORT"] = str(free_port())
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.discard()


@pytest.fixture(scope="module")
def stores(secured_kafka: Service, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Kafka stores directory of the Overlord and the MiddleManager: the keytool-made JKS stores."""
    root = tmp_path_factory.mktemp("kafka-stores")
    for name in ("truststore.jks", "client.keystore.jks"):
        shutil.copy(secured_kafka.state_dir / "tls" / name, root / name)
    return root


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, stores: Path) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("cluster")
    env = {"OVERLORD_KAFKA_STORES_DIR": str(stores), "MIDDLEMANAGER_KAFKA_STORES_DIR": str(stores)}
    with running_cluster(work, f"sqlite:///{work / 'metadata.db'}", {"mm1": 2}, env=env) as c:
        yield c


def _ingests(cluster: Cluster, kafka: Service, port_env: str, props: dict[str, object]) -> None:
    topic = f"secured-{uuid.uuid4().hex[:8]}"
    datasource = topic.replace("-", "_")
    create_topic(kafka.address, topic, partitions=2)
    ids = [f"e{i}" for i in range(40)]
    produce(kafka.address, topic, [event(i, 1_700_000_000_000 + n) for n, i in enumerate(ids)], partitions=2)
    spec = kafka_spec(datasource, topic, "unused", taskDuration="PT5S")
    spec["spec"]["ioConfig"]["consumerProperties"] = {
        "bootstrap.servers": f"127.0.0.1:{kafka.env[port_env]}",
        **props,
    }
    assert cluster.api.submit(spec) == datasource
    cluster.api.wait_published(datasource, len(ids), 120)
    assert sorted(published_ids(cluster.api, datasource)) == sorted(ids)
    # the secrets stay masked in what the API shows
    shown = cluster.api.status(datasource)
    assert "indexer-secret" not in json.dumps(shown)
    answer = request("GET", f"{cluster.url}/druid/indexer/v1/supervisor/{datasource}")
    assert TLS_PASSWORD not in json.dumps(answer.body) and "indexer-secret" not in json.dumps(answer.body)
    # the task made PEM of the JKS stores in its own directory
    written = list((cluster.workdir / "mm1" / "tasks").glob("*/kafka-tls/ca.pem"))
    assert written, "no task wrote ca.pem into its task directory"
    assert written[0].read_text().startswith("-----BEGIN CERTIFICATE-----")
    cluster.api.terminate(datasource)


def test_a_java_client_spec_ingests_through_sasl_ssl_with_scram(
    cluster: Cluster, secured_kafka: Service
) -> None:
    _ingests(
        cluster,
        secured_kafka,
        "KAFKA_SASL_SSL_PORT",
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.jaas.config": SCRAM_JAAS,
            "ssl.truststore.location": "truststore.jks",
            "ssl.truststore.password": TLS_PASSWORD,
            "ssl.truststore.type": "JKS",
            "key.deserializer": "org.apache.kafka.common.serialization.ByteArrayDeserializer",
        },
    )


def test_a_java_client_spec_ingests_through_mutual_tls_with_a_jks_key_store(
    cluster: Cluster, secured_kafka: Service, stores: Path
) -> None:
    _ingests(
        cluster,
        secured_kafka,
        "KAFKA_SSL_PORT",
        {
            "security.protocol": "SSL",
            "ssl.truststore.location": str(stores / "truststore.jks"),
            "ssl.truststore.password": TLS_PASSWORD,
            "ssl.keystore.location": str(stores / "client.keystore.jks"),
            "ssl.keystore.password": TLS_PASSWORD,
            "ssl.key.password": TLS_PASSWORD,
            "ssl.endpoint.identification.algorithm": "https",
        },
    )


def test_a_wrong_store_password_or_a_store_outside_the_stores_directory_is_a_400_at_post(
    cluster: Cluster, secured_kafka: Service
) -> None:
    base = kafka_spec("refused", "t", f"127.0.0.1:{secured_kafka.env['KAFKA_SASL_SSL_PORT']}")
    props = base["spec"]["ioConfig"]["consumerProperties"]
    props.update(
        {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.jaas.config": SCRAM_JAAS}
    )
    for extra, problem in (
        ({"ssl.truststore.location": "truststore.jks", "ssl.truststore.password": "wrong"}, "wrong password"),
        (
            {"ssl.truststore.location": str(secured_kafka.state_dir / "tls" / "truststore.jks")},
            "inside the Kafka",
        ),
    ):
        spec = json.loads(json.dumps(base))
        spec["spec"]["ioConfig"]["consumerProperties"] = {**props, **extra}
        answer = request("POST", f"{cluster.url}/druid/indexer/v1/supervisor", spec)
        assert answer.status == 400, answer
        assert 'consumerProperties["ssl.truststore.location"]' in answer.body["error"], answer.body
        assert problem in answer.body["error"]
