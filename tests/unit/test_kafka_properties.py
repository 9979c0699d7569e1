"""Java Kafka client properties of Druid specs, translated for librdkafka, or refused with a 400 naming
the property (supervisor/kafka/properties.py, stores.py, config.py)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from supervisor.errors import InvalidSpec, StreamError
from supervisor.kafka import properties
from supervisor.kafka.config import (
    KafkaAccess,
    client_config,
    consumer_config,
    make_config,
    validate_consumer_properties,
)
from supervisor.kafka.properties import PropertyProblem, parse_jaas
from supervisor.secrets import MASK, mask
from supervisor.spec import parse_supervisor_spec
from tests.unit.kafka_stores import Pki, make_pki

BOOT = {"bootstrap.servers": "k:9092"}
SCRAM_JAAS = (
    'org.apache.kafka.common.security.scram.ScramLoginModule required username="indexer" '
    'password="s3cr3t;with \\"quotes\\"";'
)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def spec_with(props: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "kafka",
        "spec": {
            "dataSchema": {
                "dataSource": "ds",
                "timestampSpec": {"column": "ts", "format": "millis"},
                "dimensionsSpec": {"dimensions": ["id"]},
                "granularitySpec": {"segmentGranularity": "hour"},
            },
            "ioConfig": {
                "topic": "t",
                "inputFormat": {"type": "json"},
                "consumerProperties": {**BOOT, **props},
            },
        },
    }


def posted(props: dict[str, Any], access: KafkaAccess | None = None) -> Any:
    """What the Overlord does with posted properties: the spec models' check, then its own."""
    spec = parse_supervisor_spec(spec_with(props))
    return validate_consumer_properties(
        spec.io_config.consumer_properties, access or KafkaAccess.overlord(None)
    )


def refused_field(props: dict[str, Any], access: KafkaAccess | None = None) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as info:
        posted(props, access)
    return info.value


def field(key: str) -> str:
    return "spec.ioConfig.consumerProperties" + (f".{key}" if key.isidentifier() else f'["{key}"]')


# ------------------------------------------------------------------ JAAS


def test_jaas_entry_is_parsed_with_quoted_values_escapes_and_semicolons() -> None:
    entry = parse_jaas(SCRAM_JAAS)
    assert entry.login_module == "org.apache.kafka.common.security.scram.ScramLoginModule"
    assert entry.flag == "required"
    assert entry.options == {"username": "indexer", "password": 's3cr3t;with "quotes"'}
    bare = parse_jaas(
        "org.apache.kafka.common.security.plain.PlainLoginModule required username=u password=p ;"
    )
    assert bare.options == {"username": "u", "password": "p"}


@pytest.mark.parametrize(
    "text",
    [
        "ScramLoginModule",  # no flag
        'org.x.ScramLoginModule required username="u" password="p"',  # no ';'
        'org.x.ScramLoginModule required username="u password=p;',  # unterminated quote
        "org.x.ScramLoginModule required username;",  # not name=value
        'org.x.ScramLoginModule required username="u"; other required;',  # two entries
        'org.x.ScramLoginModule required username="a" username="b";',
    ],
)
def test_malformed_jaas_is_a_400_that_does_not_quote_the_secret(text: str) -> None:
    error = refused_field({"sasl.jaas.config": text.replace('"p"', '"TOPSECRET"')})
    assert error.field == field("sasl.jaas.config")
    assert "TOPSECRET" not in str(error)


def test_scram_and_plain_login_modules_become_sasl_username_and_password() -> None:
    conf = client_config({**BOOT, "sasl.jaas.config": SCRAM_JAAS, "sasl.mechanism": "SCRAM-SHA-512"}).conf
    assert conf["sasl.username"] == "indexer"
    assert conf["sasl.password"] == 's3cr3t;with "quotes"'
    assert conf["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert "sasl.jaas.config" not in conf and "sasl.mechanism" not in conf
    plain = client_config(
        {
            **BOOT,
            "sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required "
            'username="key" password="secret";',
        }
    ).conf
    assert (plain["sasl.username"], plain["sasl.password"], plain["sasl.mechanisms"]) == (
        "key",
        "secret",
        "PLAIN",
    )


def test_oauthbearer_client_credentials_become_librdkafka_oidc() -> None:
    conf = client_config(
        {
            **BOOT,
            "sasl.mechanism": "OAUTHBEARER",
            "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
            "sasl.login.callback.handler.class": "org.apache.kafka.common.security.oauthbearer."
            "OAuthBearerLoginCallbackHandler",
            "sasl.jaas.config": "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule "
            'required clientId="cid" clientSecret="csecret" scope="read" extension_logicalCluster="lkc-1";',
        }
    ).conf
    assert conf["sasl.oauthbearer.method"] == "oidc"
    assert conf["sasl.oauthbearer.client.id"] == "cid"
    assert conf["sasl.oauthbearer.client.secret"] == "csecret"
    assert conf["sasl.oauthbearer.scope"] == "read"
    assert conf["sasl.oauthbearer.extensions"] == "logicalCluster=lkc-1"
    assert "sasl.login.callback.handler.class" not in conf


@pytest.mark.parametrize(
    "jaas",
    [
        'com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true keyTab="/k.keytab";',
        "org.example.MyLoginModule required;",
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="u";',
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
        'unsecuredLoginStringClaim_sub="admin";',
    ],
)
def test_login_modules_without_a_librdkafka_equivalent_are_refused(jaas: str) -> None:
    assert refused_field({"sasl.jaas.config": jaas}).field == field("sasl.jaas.config")


# ------------------------------------------------------------------ refused properties

EVERY_REFUSED = sorted({*properties.REFUSED, *properties.CALLBACKS, "config.providers.file.class"})


@pytest.mark.parametrize("key", EVERY_REFUSED)
def test_every_property_that_runs_code_reads_files_or_cannot_be_honoured_is_a_400(key: str) -> None:
    error = refused_field({key: "/tmp/x"})
    assert error.field == field(key), str(error)


@pytest.mark.parametrize(
    "key,value",
    [
        ("sasl.login.callback.handler.class", "com.example.VaultLoginHandler"),
        ("sasl.mechanism", "GSSAPI"),
        ("ssl.endpoint.identification.algorithm", "ldaps"),
        ("ssl.truststore.type", "BKS"),
        ("bootstrap.servers", "k:9092"),  # (not refused: the control case)
    ],
)
def test_values_without_a_librdkafka_meaning_are_a_400(key: str, value: str) -> None:
    if key == "bootstrap.servers":
        posted({key: value})
        return
    assert refused_field({key: value}).field == field(key)


def test_refusal_happens_in_the_spec_models_too_so_a_task_never_gets_one() -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_supervisor_spec(spec_with({"plugin.library.paths": "/tmp/evil.so"}))
    assert info.value.field == field("plugin.library.paths")
    assert "run code" in str(info.value)


def test_ssl_ca_location_probe_means_the_system_store_and_is_allowed() -> None:
    assert client_config({**BOOT, "ssl.ca.location": "probe"}).conf["ssl.ca.location"] == "probe"


# ------------------------------------------------------------------ dropped, renamed, overridden


def test_java_only_and_overridden_properties_are_dropped_and_reported() -> None:
    props = {
        **BOOT,
        "key.deserializer": "org.apache.kafka.common.serialization.ByteArrayDeserializer",
        "value.deserializer": "org.apache.kafka.common.serialization.ByteArrayDeserializer",
        "max.poll.records": 500,
        "request.timeout.ms": 30000,
        "group.id": "druid-group",
        "auto.offset.reset": "none",
        "enable.auto.commit": True,
        "fetch.max.wait.ms": 250,
        "receive.buffer.bytes": -1,
        "fetch.min.bytes": 1,
    }
    translation = posted(props)
    assert set(translation.dropped) == {
        "key.deserializer",
        "value.deserializer",
        "max.poll.records",
        "request.timeout.ms",
        "group.id",
        "auto.offset.reset",
        "enable.auto.commit",
    }
    conf = consumer_config(props, client_id="c")
    assert "key.deserializer" not in conf and "max.poll.records" not in conf
    assert conf["group.id"].startswith("kafka-supervisor-")  # Druid's KafkaConsumerConfigs
    assert (conf["enable.auto.commit"], conf["auto.offset.reset"]) == (False, "error")
    assert conf["fetch.wait.max.ms"] == 250
    assert conf["socket.receive.buffer.bytes"] == 0
    assert conf["fetch.min.bytes"] == 1
    assert properties.dropped_properties(props) == sorted(translation.dropped)


@pytest.mark.parametrize("given,expected", [("", "none"), ("https", "https"), ("HTTPS", "https")])
def test_endpoint_identification_algorithm(given: str, expected: str) -> None:
    conf = client_config({**BOOT, "ssl.endpoint.identification.algorithm": given}).conf
    assert conf["ssl.endpoint.identification.algorithm"] == expected


# ------------------------------------------------------------------ librdkafka's own judgement


@pytest.mark.parametrize(
    "key,value,blamed",
    [
        ("fetch.min.bytes", "lots", "fetch.min.bytes"),
        ("session.timeout.ms", 0, "session.timeout.ms"),
        ("no.such.property", "x", "no.such.property"),
        ("sasl.mechanism", "FOO", "sasl.mechanism"),
        ("security.protocol", "SASL_TLS", "security.protocol"),
        ("ssl.ca.pem", "not a certificate", "ssl.ca.pem"),
    ],
)
def test_what_librdkafka_refuses_is_a_400_at_post_naming_the_property(
    key: str, value: Any, blamed: str
) -> None:
    props: dict[str, Any] = {key: value}
    if key in ("sasl.mechanism", "ssl.ca.pem"):
        props["security.protocol"] = "SASL_SSL" if key == "sasl.mechanism" else "SSL"
    error = refused_field(props)
    assert error.field == field(blamed), str(error)
    assert "librdkafka refuses it" in str(error)


def test_a_spec_written_for_a_java_client_passes_librdkafka(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "truststore.jks").write_bytes(pki.jks_truststore("tpw"))
    translation = posted(
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.jaas.config": SCRAM_JAAS,
            "ssl.truststore.location": str(tmp_path / "truststore.jks"),
            "ssl.truststore.password": "tpw",
            "ssl.endpoint.identification.algorithm": "",
        },
        KafkaAccess.overlord(tmp_path),
    )
    assert translation.dropped == ()


# ------------------------------------------------------------------ environment (Druid's providers)


def test_dynamic_config_provider_takes_values_from_the_process_environment_over_the_spec() -> None:
    props = {
        **BOOT,
        "sasl.jaas.config": "ignored: the provider's value wins, as in Druid",
        "druid.dynamic.config.provider": {
            "type": "environment",
            "variables": {"sasl.jaas.config": "KAFKA_JAAS", "sasl.mechanism": "KAFKA_MECH"},
        },
    }
    parse_supervisor_spec(spec_with(props))  # the models do not know any environment: no check of the value
    conf = client_config(
        props, KafkaAccess(environ={"KAFKA_JAAS": SCRAM_JAAS, "KAFKA_MECH": "SCRAM-SHA-256"})
    ).conf
    assert (conf["sasl.username"], conf["sasl.mechanisms"]) == ("indexer", "SCRAM-SHA-256")
    with pytest.raises(PropertyProblem) as info:
        client_config(props, KafkaAccess(environ={"KAFKA_MECH": "PLAIN"}))
    assert info.value.path == ("druid.dynamic.config.provider", "variables", "sasl.jaas.config")
    assert "KAFKA_JAAS is not set in the worker's environment" in info.value.problem


def test_a_variable_missing_from_the_overlords_environment_is_a_400_at_post() -> None:
    var = "KPROPS_TEST_UNSET_VARIABLE"
    assert var not in os.environ
    error = refused_field(
        {"druid.dynamic.config.provider": {"type": "environment", "variables": {"sasl.jaas.config": var}}}
    )
    assert (
        error.field
        == 'spec.ioConfig.consumerProperties["druid.dynamic.config.provider"].variables["sasl.jaas.config"]'
    )
    assert "Overlord's environment" in str(error)


@pytest.mark.parametrize(
    "provider,path",
    [
        ({"type": "aws", "variables": {}}, ("type",)),
        ({"type": "environment"}, ("variables",)),
        ({"type": "environment", "variables": {"a": 5}}, ("variables", "a")),
        ("not an object", ()),
    ],
)
def test_malformed_dynamic_config_providers_are_a_400(provider: Any, path: tuple[str, ...]) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_supervisor_spec(spec_with({"druid.dynamic.config.provider": provider}))
    suffix = "".join(f".{p}" if p.isidentifier() else f'["{p}"]' for p in path)
    assert info.value.field == field("druid.dynamic.config.provider") + suffix


def test_password_providers_of_the_store_passwords(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "t.jks").write_bytes(pki.jks_truststore("tpw"))
    access = KafkaAccess(stores_dir=tmp_path, environ={"TRUST_PW": "tpw"})
    for password in (
        {"type": "environment", "variable": "TRUST_PW"},
        {"type": "default", "password": "tpw"},
        "tpw",
    ):
        conf = client_config(
            {**BOOT, "ssl.truststore.location": "t.jks", "ssl.truststore.password": password}, access
        )
        assert conf.conf["ssl.ca.pem"] == pki.ca_pem()
    with pytest.raises(PropertyProblem) as info:
        client_config(
            {**BOOT, "ssl.truststore.location": "t.jks", "ssl.truststore.password": "wrong"}, access
        )
    assert info.value.path == ("ssl.truststore.location",)


# ------------------------------------------------------------------ stores


def test_jks_stores_inside_the_stores_directory_become_pem_files_in_the_task_directory(
    pki: Pki, tmp_path: Path
) -> None:
    stores, task = tmp_path / "stores", tmp_path / "task" / "kafka-tls"
    stores.mkdir()
    (stores / "truststore.jks").write_bytes(pki.jks_truststore("tpw"))
    (stores / "keystore.jks").write_bytes(pki.jks_keystore("kpw", key_password="keypw"))
    conf = client_config(
        {
            **BOOT,
            "security.protocol": "SSL",
            "ssl.truststore.location": str(stores / "truststore.jks"),
            "ssl.truststore.password": "tpw",
            "ssl.keystore.location": "keystore.jks",  # relative: inside the stores directory
            "ssl.keystore.password": "kpw",
            "ssl.key.password": "keypw",
        },
        KafkaAccess(stores_dir=stores, files_dir=task),
    ).conf
    assert Path(conf["ssl.ca.location"]).read_text() == pki.ca_pem()
    assert Path(conf["ssl.certificate.location"]).read_text() == pki.cert_pem() + pki.ca_pem()
    assert Path(conf["ssl.key.location"]).read_text() == pki.key_pem()
    assert Path(conf["ssl.key.location"]).parent == task
    assert oct(os.stat(conf["ssl.key.location"]).st_mode & 0o777) == "0o600"
    for java in (
        "ssl.truststore.location",
        "ssl.keystore.location",
        "ssl.key.password",
        "ssl.keystore.password",
    ):
        assert java not in conf


def test_pkcs12_and_pem_stores_inline_and_in_files(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "client.p12").write_bytes(pki.pkcs12_keystore("kpw"))
    (tmp_path / "trust.p12").write_bytes(pki.pkcs12_truststore("tpw"))
    (tmp_path / "ca.pem").write_text(pki.ca_pem())
    access = KafkaAccess(stores_dir=tmp_path)
    cases: list[dict[str, Any]] = [
        {
            "ssl.truststore.location": "trust.p12",
            "ssl.truststore.type": "PKCS12",
            "ssl.truststore.password": "tpw",
            "ssl.keystore.location": "client.p12",
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.password": "kpw",
        },
        {
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": "ca.pem",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.key": pki.key_pem("keypw"),
            "ssl.key.password": "keypw",
            "ssl.keystore.certificate.chain": pki.cert_pem() + pki.ca_pem(),
        },
        {
            "ssl.truststore.type": "PEM",
            "ssl.truststore.certificates": pki.ca_pem(),
            "ssl.keystore.base64": base64.b64encode(pki.jks_keystore("kpw")).decode(),
            "ssl.keystore.password": "kpw",
        },
        {
            "ssl.truststore.base64": base64.b64encode(pki.pkcs12_truststore("tpw")).decode(),
            "ssl.truststore.password": "tpw",
            "ssl.keystore.base64": base64.b64encode(pki.pkcs12_keystore("kpw")).decode(),
            "ssl.keystore.password": "kpw",
        },
    ]
    for case in cases:
        conf = client_config({**BOOT, "security.protocol": "SSL", **case}, access).conf
        assert conf["ssl.ca.pem"] == pki.ca_pem(), case
        assert conf["ssl.certificate.pem"] == pki.cert_pem() + pki.ca_pem(), case
        assert conf["ssl.key.pem"] == pki.key_pem(), case
        posted({"security.protocol": "SSL", **case}, access)  # librdkafka takes the PEM


def test_store_locations_outside_the_stores_directory_are_refused(pki: Pki, tmp_path: Path) -> None:
    stores = tmp_path / "stores"
    stores.mkdir()
    outside = tmp_path / "elsewhere.jks"
    outside.write_bytes(pki.jks_truststore("tpw"))
    (stores / "link.jks").symlink_to(outside)
    for location in (str(outside), "../elsewhere.jks", "link.jks", "/etc/passwd"):
        error = refused_field({"ssl.truststore.location": location}, KafkaAccess.overlord(stores))
        assert error.field == field("ssl.truststore.location")
        assert "inside the Kafka stores directory" in str(error) and "OVERLORD_KAFKA_STORES_DIR" in str(error)
    missing = refused_field({"ssl.keystore.location": "nope.jks"}, KafkaAccess.overlord(stores))
    assert missing.field == field("ssl.keystore.location") and "no such file" in str(missing)
    unset = refused_field({"ssl.truststore.location": str(outside)}, KafkaAccess.overlord(None))
    assert "OVERLORD_KAFKA_STORES_DIR names, and it is not set" in str(unset)


@pytest.mark.parametrize(
    "props,blamed",
    [
        ({"ssl.truststore.base64": "%%% not base64"}, "ssl.truststore.base64"),
        ({"ssl.truststore.base64": base64.b64encode(b"garbage").decode()}, "ssl.truststore.base64"),
        ({"ssl.truststore.certificates": "x"}, "ssl.truststore.certificates"),  # needs type PEM
        ({"ssl.keystore.type": "PEM", "ssl.keystore.key": "x"}, "ssl.keystore.certificate.chain"),
        ({"ssl.truststore.location": "a.jks", "ssl.truststore.base64": "AAAA"}, "ssl.truststore.base64"),
    ],
)
def test_malformed_stores_are_a_400_naming_the_property(
    props: dict[str, Any], blamed: str, tmp_path: Path
) -> None:
    (tmp_path / "a.jks").write_bytes(b"\xfe\xed\xfe\xed")
    assert refused_field(props, KafkaAccess.overlord(tmp_path)).field == field(blamed)


def test_a_problem_found_when_a_task_makes_its_consumer_is_a_stream_error_naming_the_property() -> None:
    with pytest.raises(StreamError) as info:
        make_config({**BOOT, "ssl.truststore.location": "t.jks"}, "task-1", KafkaAccess())
    assert info.value.retriable is False
    assert 'consumerProperties["ssl.truststore.location"]' in str(info.value)
    assert "MIDDLEMANAGER_KAFKA_STORES_DIR" in str(info.value)


# ------------------------------------------------------------------ secrets


def test_private_keys_and_passwords_are_masked_in_api_output(pki: Pki) -> None:
    props = {
        **BOOT,
        "sasl.jaas.config": SCRAM_JAAS,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.key": pki.key_pem(),
        "ssl.key.pem": pki.key_pem(),
        "ssl.truststore.password": {"type": "default", "password": "tpw"},
        "ssl.keystore.certificate.chain": pki.cert_pem(),
    }
    shown = mask({"consumerProperties": props})["consumerProperties"]
    for key in (
        "sasl.jaas.config",
        "ssl.keystore.key",
        "ssl.key.pem",
        "ssl.truststore.password",
    ):
        assert shown[key] == MASK
    inline_store = mask({"consumerProperties": {"ssl.keystore.base64": "AAAA"}})
    assert inline_store == {"consumerProperties": {"ssl.keystore.base64": MASK}}
    assert shown["ssl.keystore.certificate.chain"] == pki.cert_pem()
    parse_supervisor_spec(spec_with(shown))  # a GET's output posts back: masked values pass the models
