"""Java Kafka client properties, as Druid specs carry them, translated for librdkafka.

A Druid spec's ``ioConfig.consumerProperties`` are settings of the Java ``KafkaConsumer``; our
readers use librdkafka (confluent-kafka). Every property is one of:

- **passed** as given: librdkafka has it under the same name and meaning (``bootstrap.servers``,
  ``security.protocol``, ``fetch.min.bytes``, ...), and anything we do not know, which librdkafka
  then judges (an unknown one is a 400 at POST, see :func:`supervisor.kafka.config.check_consumer`);
- **translated**: ``sasl.jaas.config`` (``PlainLoginModule``, ``ScramLoginModule``,
  ``OAuthBearerLoginModule``), ``sasl.mechanism``, the trust store and key store settings
  (``ssl.truststore.*``, ``ssl.keystore.*``, ``ssl.key.password``: converted to PEM by
  :mod:`supervisor.kafka.stores`), ``ssl.endpoint.identification.algorithm``, ``fetch.max.wait.ms``,
  ``receive.buffer.bytes``/``send.buffer.bytes``, ``auto.offset.reset``;
- **dropped** and reported: Java-only settings without meaning here (deserializers, poll sizes,
  metrics, group settings of a consumer that never joins a group) and those Druid itself overrides
  (``group.id``, ``enable.auto.commit``, ``auto.offset.reset``: KafkaConsumerConfigs);
- **refused** (a 400 naming the property): what would let a spec author run code or read or write
  files on a worker (``plugin.library.paths``, Java interceptors, Kerberos ``kinit`` settings,
  file locations other than the stores this module reads, OpenSSL engines and providers,
  callbacks), and Java settings whose meaning we cannot honour (login callback handler classes).

Secrets (passwords, ``sasl.jaas.config``, private keys) never appear in an error message.

Druid's ways of keeping secrets out of the spec work as in Druid
(``KafkaRecordSupplier.addConsumerPropertiesFromConfig``): the three store passwords may be
PasswordProvider objects (``{"type": "environment", "variable": "VAR"}`` or
``{"type": "default", "password": "..."}``), and ``druid.dynamic.config.provider``
(``{"type": "environment", "variables": {"sasl.jaas.config": "VAR", ...}}``, see Druid's
docs/operations/dynamic-config-provider.md) sets any property from an environment variable, over a
value given in the spec. The variables are read in the process that connects: a task reads its
MiddleManager's environment, the supervisor in the Overlord reads the Overlord's.

This module is pure (no Kafka client, no cryptography): the spec models call :func:`check_static`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.secrets import MASK

DYNAMIC_CONFIG_PROVIDER = "druid.dynamic.config.provider"
# Druid's KafkaSupervisorIOConfig: the properties read through a PasswordProvider.
PASSWORD_KEYS = ("ssl.truststore.password", "ssl.keystore.password", "ssl.key.password")
# Our extension: a JKS, PKCS12 or PEM store given inline, base64 of the store file's bytes.
TRUSTSTORE_BASE64 = "ssl.truststore.base64"
KEYSTORE_BASE64 = "ssl.keystore.base64"

# Java consumer settings that have no meaning for librdkafka (or for a reader that never joins a
# consumer group): dropped, and reported.
JAVA_ONLY = frozenset(
    {
        "key.deserializer",
        "value.deserializer",
        "max.poll.records",
        "default.api.timeout.ms",
        "request.timeout.ms",
        "exclude.internal.topics",
        "partition.assignment.strategy",
        "group.instance.id",
        "group.protocol",
        "group.remote.assignor",
        "auto.commit.interval.ms",
        "metric.reporters",
        "metrics.num.samples",
        "metrics.recording.level",
        "metrics.sample.window.ms",
        "auto.include.jmx.reporter",
        "socket.connection.setup.timeout.max.ms",
        "security.providers",
        "ssl.protocol",
        "ssl.enabled.protocols",
        "ssl.provider",
        "ssl.keymanager.algorithm",
        "ssl.trustmanager.algorithm",
        "ssl.secure.random.implementation",
        "sasl.kerberos.ticket.renew.window.factor",
        "sasl.kerberos.ticket.renew.jitter",
        "sasl.login.refresh.window.factor",
        "sasl.login.refresh.window.jitter",
        "sasl.login.refresh.min.period.seconds",
        "sasl.login.refresh.buffer.seconds",
        "sasl.login.connect.timeout.ms",
        "sasl.login.read.timeout.ms",
        "sasl.login.retry.backoff.ms",
        "sasl.login.retry.backoff.max.ms",
        "sasl.oauthbearer.scope.claim.name",
        "sasl.oauthbearer.sub.claim.name",
        "sasl.oauthbearer.jwks.endpoint.url",
        "sasl.oauthbearer.jwks.endpoint.refresh.ms",
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms",
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
        "sasl.oauthbearer.clock.skew.seconds",
        "sasl.oauthbearer.expected.audience",
        "sasl.oauthbearer.expected.issuer",
        "internal.leave.group.on.close",
        "internal.throw.on.fetch.stable.offset.unsupported",
        # Druid-specific spellings seen in specs, no Kafka client knows them
        "poll.timeout.ms",
        "request.timeout.ms.config",
        "fetch.max.bytes.config",
    }
)

# What every reader here sets itself, as Druid's KafkaConsumerConfigs overrides them: a spec's value
# is dropped and reported. (isolation.level stays read_committed: the exactly-once design rests on it.)
OVERRIDDEN = frozenset(
    {
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "isolation.level",
        "enable.partition.eof",
        "auto.offset.reset",
    }
)

# The Java login callback handlers whose job librdkafka does itself for the translated login modules.
_STANDARD_LOGIN_HANDLERS = frozenset(
    {
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
        "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerLoginCallbackHandler",
    }
)

_RUNS_CODE = "would let a spec run code on the workers"
_READS_FILES = "names a file on the workers"

# Refused outright, with the reason. librdkafka keys come from its CONFIGURATION.md (every property
# that names a file, a directory, a command, a library or a callback); Java ones from the Kafka
# client's ConsumerConfig/SaslConfigs/SslConfigs.
REFUSED: dict[str, str] = {
    # librdkafka: code
    "plugin.library.paths": f"loads libraries: {_RUNS_CODE}",
    "interceptors": f"interceptors {_RUNS_CODE}",
    "ssl.engine.location": f"loads an OpenSSL engine library: {_RUNS_CODE}",
    "ssl.engine.id": f"selects an OpenSSL engine: {_RUNS_CODE}",
    "ssl.providers": f"loads OpenSSL provider modules: {_RUNS_CODE}",
    "sasl.kerberos.kinit.cmd": f"is a shell command: {_RUNS_CODE}",
    "sasl.kerberos.principal": "is pasted into the Kerberos kinit shell command; Kerberos is not supported",
    "sasl.kerberos.keytab": f"{_READS_FILES}; Kerberos is not supported",
    "sasl.oauthbearer.config": "is passed to librdkafka's OAUTHBEARER handlers unchecked; use the "
    "sasl.jaas.config of an OAuthBearerLoginModule or the sasl.oauthbearer.client.* properties",
    "sasl.oauthbearer.metadata.authentication.type": "would authenticate with the workers' own cloud "
    "identity (instance metadata service)",
    "internal.termination.signal": "would replace a signal handler of the worker's processes",
    "enabled_events": "is an internal librdkafka setting",
    # librdkafka: files
    "ssl.ca.location": f"{_READS_FILES}; give ssl.truststore.location (a store in the stores directory), "
    "ssl.truststore.certificates or ssl.ca.pem",
    "ssl.certificate.location": f"{_READS_FILES}; give ssl.keystore.location (a store in the stores "
    "directory), ssl.keystore.certificate.chain or ssl.certificate.pem",
    "ssl.key.location": f"{_READS_FILES}; give ssl.keystore.location (a store in the stores directory), "
    "ssl.keystore.key or ssl.key.pem",
    "ssl.crl.location": _READS_FILES,
    "https.ca.location": f"{_READS_FILES}; give https.ca.pem",
    "sasl.oauthbearer.assertion.private.key.file": f"{_READS_FILES}; give "
    "sasl.oauthbearer.assertion.private.key.pem",
    "sasl.oauthbearer.assertion.file": _READS_FILES,
    "sasl.oauthbearer.assertion.jwt.template.file": _READS_FILES,
    "offset.store.path": "writes files on the workers (offsets live in the metadata store)",
    "offset.store.method": "offsets live in the metadata store, never in Kafka or files",
    "offset.store.sync.interval.ms": "offsets live in the metadata store, never in Kafka or files",
    # Java: classes we cannot run, whose effect we cannot reproduce
    "interceptor.classes": "Java interceptors cannot run here (librdkafka), and they may change the records",
    "sasl.client.callback.handler.class": "a Java SASL callback handler cannot run here (librdkafka)",
    "sasl.login.class": "a Java login class cannot run here (librdkafka)",
    "ssl.engine.factory.class": "a Java SSL engine factory cannot run here (librdkafka)",
    "config.providers": f"Kafka's config providers read files; use {DYNAMIC_CONFIG_PROVIDER}",
}
_REFUSED_PREFIXES = {"config.providers.": REFUSED["config.providers"]}

# librdkafka callbacks and objects of its C API, and confluent-kafka's Python callbacks: a JSON
# spec cannot give a function, and none of them is the spec's business.
CALLBACKS = frozenset(
    {
        "error_cb",
        "throttle_cb",
        "stats_cb",
        "log_cb",
        "background_event_cb",
        "socket_cb",
        "connect_cb",
        "closesocket_cb",
        "open_cb",
        "resolve_cb",
        "opaque",
        "default_topic_conf",
        "oauthbearer_token_refresh_cb",
        "ssl.certificate.verify_cb",
        "ssl_key",
        "ssl_certificate",
        "ssl_ca",
        "ssl_engine_callback_data",
        "consume_cb",
        "rebalance_cb",
        "offset_commit_cb",
        "dr_cb",
        "dr_msg_cb",
        "partitioner_cb",
        "msg_order_cmp",
        "logger",
        "on_commit",
        "on_delivery",
        "oauth_cb",
    }
)

# Java name -> librdkafka name, same meaning and unit.
RENAMED = {"fetch.max.wait.ms": "fetch.wait.max.ms", "sasl.mechanism": "sasl.mechanisms"}

_STORE_TYPES = ("JKS", "PKCS12", "PEM")


class PropertyProblem(ValueError):
    """A consumer property we refuse; ``path`` is the key (and any keys below it), empty when the
    problem is with the properties as a whole."""

    def __init__(self, path: tuple[str, ...], problem: str) -> None:
        super().__init__(f"{path[0]}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class StoreSpec:
    """Where a trust or key store comes from, as the spec says (read by :mod:`supervisor.kafka.stores`)."""

    property: str  # the property to blame: ssl.truststore.location, ssl.keystore.key, ...
    store_type: str  # JKS | PKCS12 | PEM
    location: str | None = None
    data: bytes | None = None  # inline: the store's bytes (PEM given inline is encoded as UTF-8)
    password: str | None = None
    key_password: str | None = None  # key stores: the private key's own password
    # key stores of type PEM given inline as two properties
    certificate_chain: str | None = None


@dataclass(frozen=True)
class Translation:
    """librdkafka settings for the Java properties, the stores still to read, and what was dropped."""

    conf: dict[str, Any]
    truststore: StoreSpec | None = None
    keystore: StoreSpec | None = None
    # librdkafka key -> the spec's property it comes from (to name it when librdkafka objects)
    origin: dict[str, str] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()


# ------------------------------------------------------------------ secrets providers (Druid)


def _provider_object(value: Any, path: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PropertyProblem(path, "must be a JSON object")
    kind = value.get("type")
    if kind != "environment":
        raise PropertyProblem(
            (*path, "type"), f"dynamic config provider type {kind!r} is not supported (only 'environment')"
        )
    unknown = sorted(set(value) - {"type", "variables"})
    if unknown:
        raise PropertyProblem((*path, unknown[0]), "unknown field")
    variables = value.get("variables")
    if not isinstance(variables, Mapping) or not variables:
        raise PropertyProblem((*path, "variables"), "must be a JSON object: property -> environment variable")
    for prop, var in variables.items():
        if not isinstance(var, str) or not var:
            raise PropertyProblem((*path, "variables", str(prop)), "must name an environment variable")
        if prop == DYNAMIC_CONFIG_PROVIDER:
            raise PropertyProblem((*path, "variables", str(prop)), "cannot itself come from the environment")
    return variables


def _from_env(environ: Mapping[str, str], var: str, path: tuple[str, ...], process: str) -> str:
    value = environ.get(var)
    if value is None:
        raise PropertyProblem(path, f"environment variable {var} is not set in the {process}'s environment")
    return value


def _password(
    value: Any, path: tuple[str, ...], environ: Mapping[str, str] | None, process: str
) -> str | None:
    """A PasswordProvider (Druid's PasswordProvider JSON) or a plain string; None when unknown yet."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        kind = value.get("type", "default")
        if kind == "default":
            password = value.get("password")
            if not isinstance(password, str):
                raise PropertyProblem((*path, "password"), "must be a string")
            return password
        if kind == "environment":
            var = value.get("variable")
            if not isinstance(var, str) or not var:
                raise PropertyProblem((*path, "variable"), "must name an environment variable")
            return None if environ is None else _from_env(environ, var, path, process)
        raise PropertyProblem((*path, "type"), f"password provider type {kind!r} is not supported")
    raise PropertyProblem(path, "must be a string or a password provider object")


def resolve(
    props: Mapping[str, Any], environ: Mapping[str, str] | None, process: str = "worker"
) -> dict[str, Any]:
    """The properties with the secrets providers applied, as Druid's KafkaRecordSupplier does.

    ``environ`` None (the spec models, which know no process): values that come from the
    environment are left out, and so are not checked.
    """
    out: dict[str, Any] = {}
    for key, value in props.items():
        if key == DYNAMIC_CONFIG_PROVIDER:
            continue
        if key in PASSWORD_KEYS:
            password = _password(value, (key,), environ, process)
            if password is not None:
                out[key] = password
        elif value is None:
            continue
        elif isinstance(value, (str, bool, int, float)):
            out[key] = value
        else:
            raise PropertyProblem((key,), "must be a string, a number or a boolean")
    provider = props.get(DYNAMIC_CONFIG_PROVIDER)
    if provider is not None:
        variables = _provider_object(provider, (DYNAMIC_CONFIG_PROVIDER,))
        for prop, var in variables.items():
            if environ is None:
                out.pop(str(prop), None)  # the environment's value wins over the spec's (Druid)
            else:
                where = (DYNAMIC_CONFIG_PROVIDER, "variables", str(prop))
                out[str(prop)] = _from_env(environ, var, where, process)
    return out


# ------------------------------------------------------------------ JAAS


_JAAS_OPTION = re.compile(r"\s*([A-Za-z_][\w.\-]*)\s*=\s*")


@dataclass(frozen=True)
class JaasEntry:
    login_module: str
    flag: str
    options: dict[str, str]


def parse_jaas(text: str) -> JaasEntry:
    """One login module entry of a JAAS configuration, as Kafka's ``sasl.jaas.config`` holds it:
    ``<LoginModule class> <flag> [name=value ...];`` where a value is a token or a double-quoted
    string (``\\`` escapes the next character). Raises ValueError without quoting any value."""
    s = text.strip()
    pos = 0
    m = re.match(r"([A-Za-z_$][\w$.]*)\s+(required|requisite|sufficient|optional)\b", s)
    if m is None:
        raise ValueError("must start with a login module class and a flag (required, ...)")
    module, flag = m.group(1), m.group(2)
    pos = m.end()
    options: dict[str, str] = {}
    while True:
        rest = s[pos:].lstrip()
        if rest.startswith(";"):
            if rest[1:].strip():
                raise ValueError("holds more than one login module entry")
            break
        if not rest:
            raise ValueError("must end with ';'")
        om = _JAAS_OPTION.match(s, pos)
        if om is None:
            raise ValueError("has an option that is not name=value")
        name = om.group(1)
        pos = om.end()
        if pos < len(s) and s[pos] == '"':
            chars: list[str] = []
            pos += 1
            while True:
                if pos >= len(s):
                    raise ValueError(f"has an unterminated quoted value for option {name}")
                c = s[pos]
                if c == "\\" and pos + 1 < len(s):
                    chars.append(s[pos + 1])
                    pos += 2
                    continue
                if c == '"':
                    pos += 1
                    break
                chars.append(c)
                pos += 1
            value = "".join(chars)
        else:
            vm = re.compile(r"[^\s;\"]+").match(s, pos)
            if vm is None:
                raise ValueError(f"has no value for option {name}")
            value = vm.group(0)
            pos = vm.end()
        if name in options:
            raise ValueError(f"repeats option {name}")
        options[name] = value
    return JaasEntry(module, flag, options)


_PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
_SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
_OAUTH = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
_KRB = "com.sun.security.auth.module.Krb5LoginModule"


def _jaas(text: str, conf: dict[str, Any], origin: dict[str, str]) -> None:
    key = "sasl.jaas.config"
    try:
        entry = parse_jaas(text)
    except ValueError as e:
        raise PropertyProblem((key,), f"is not a JAAS login module entry: it {e}") from None
    short = entry.login_module.rsplit(".", 1)[-1]
    opts = entry.options
    if entry.login_module in (_PLAIN, _SCRAM) or short in ("PlainLoginModule", "ScramLoginModule"):
        for name in ("username", "password"):
            if name not in opts:
                raise PropertyProblem((key,), f"{short} needs the option {name}")
        conf["sasl.username"] = opts["username"]
        conf["sasl.password"] = opts["password"]
        origin["sasl.username"] = origin["sasl.password"] = key
        if short == "PlainLoginModule":
            # Java's default mechanism is GSSAPI; a PlainLoginModule only works with PLAIN
            conf.setdefault("sasl.mechanisms", "PLAIN")
        return
    if entry.login_module == _OAUTH or short == "OAuthBearerLoginModule":
        # Kafka's OIDC client credentials options (KIP-768) -> librdkafka's oidc method
        if "clientId" in opts or "clientSecret" in opts:
            conf["sasl.oauthbearer.method"] = "oidc"
            for java, rd in (
                ("clientId", "sasl.oauthbearer.client.id"),
                ("clientSecret", "sasl.oauthbearer.client.secret"),
                ("scope", "sasl.oauthbearer.scope"),
            ):
                if java in opts:
                    conf[rd] = opts[java]
                    origin[rd] = key
            extensions = {n[len("extension_") :]: v for n, v in opts.items() if n.startswith("extension_")}
            if extensions:
                conf["sasl.oauthbearer.extensions"] = ",".join(f"{n}={v}" for n, v in extensions.items())
                origin["sasl.oauthbearer.extensions"] = key
            return
        if "unsecuredLoginStringClaim_sub" in opts:
            raise PropertyProblem(
                (key,),
                "unsecured OAUTHBEARER login (unsecuredLoginStringClaim_sub) is "
                "not supported; give clientId and clientSecret (OIDC)",
            )
        raise PropertyProblem((key,), "OAuthBearerLoginModule needs the options clientId and clientSecret")
    if entry.login_module == _KRB or short == "Krb5LoginModule":
        raise PropertyProblem((key,), "Kerberos (Krb5LoginModule) is not supported")
    raise PropertyProblem(
        (key,),
        f"login module {entry.login_module} cannot be translated for librdkafka (supported: "
        "PlainLoginModule, ScramLoginModule, OAuthBearerLoginModule)",
    )


# ------------------------------------------------------------------ stores


def _store_type(props: Mapping[str, Any], key: str, default: str) -> str:
    value = props.get(key, default)
    kind = str(value).strip().upper() or default
    if kind == "PKCS#12":
        kind = "PKCS12"
    if kind not in _STORE_TYPES:
        raise PropertyProblem((key,), f"store type {value!r} is not supported (JKS, PKCS12 or PEM)")
    return kind


def _inline(props: Mapping[str, Any], key: str) -> bytes | None:
    value = props.get(key)
    if value is None or value == MASK:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise PropertyProblem((key,), "must be the store file's bytes in base64") from None


def _location(props: Mapping[str, Any], key: str) -> str | None:
    value = props.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise PropertyProblem((key,), "must be a non-empty path")
    return value.strip()


def _truststore(props: Mapping[str, Any]) -> StoreSpec | None:
    kind = _store_type(props, "ssl.truststore.type", "JKS")
    location = _location(props, "ssl.truststore.location")
    inline = _inline(props, TRUSTSTORE_BASE64)
    certificates = props.get("ssl.truststore.certificates")
    given = [
        k
        for k, v in (
            ("ssl.truststore.location", location),
            (TRUSTSTORE_BASE64, inline),
            ("ssl.truststore.certificates", certificates),
        )
        if v is not None
    ]
    if len(given) > 1:
        raise PropertyProblem((given[1],), f"give either {given[0]} or {given[1]}, not both")
    password = props.get("ssl.truststore.password")
    pw = None if password is None or password == MASK else str(password)
    if certificates is not None:
        if kind != "PEM":
            raise PropertyProblem(("ssl.truststore.certificates",), "needs ssl.truststore.type PEM")
        if certificates == MASK:
            return None
        return StoreSpec("ssl.truststore.certificates", "PEM", data=str(certificates).encode())
    if location is not None:
        return StoreSpec("ssl.truststore.location", kind, location=location, password=pw)
    if inline is not None:
        return StoreSpec(TRUSTSTORE_BASE64, kind, data=inline, password=pw)
    return None  # Java ignores a password or a type without a store; so do we


def _keystore(props: Mapping[str, Any]) -> StoreSpec | None:
    kind = _store_type(props, "ssl.keystore.type", "JKS")
    location = _location(props, "ssl.keystore.location")
    inline = _inline(props, KEYSTORE_BASE64)
    key = props.get("ssl.keystore.key")
    chain = props.get("ssl.keystore.certificate.chain")
    given = [
        k
        for k, v in (
            ("ssl.keystore.location", location),
            (KEYSTORE_BASE64, inline),
            ("ssl.keystore.key", key),
        )
        if v is not None
    ]
    if len(given) > 1:
        raise PropertyProblem((given[1],), f"give either {given[0]} or {given[1]}, not both")
    store_pw = props.get("ssl.keystore.password")
    key_pw = props.get("ssl.key.password")
    spw = None if store_pw is None or store_pw == MASK else str(store_pw)
    kpw = None if key_pw is None or key_pw == MASK else str(key_pw)
    if key is not None or chain is not None:
        if kind != "PEM":
            raise PropertyProblem(
                ("ssl.keystore.key" if key is not None else "ssl.keystore.certificate.chain",),
                "needs ssl.keystore.type PEM",
            )
        if key is None or chain is None:
            missing = "ssl.keystore.certificate.chain" if chain is None else "ssl.keystore.key"
            raise PropertyProblem(
                (missing,), "is required with ssl.keystore.key / ssl.keystore.certificate.chain"
            )
        if key == MASK:
            return None
        return StoreSpec(
            "ssl.keystore.key", "PEM", data=str(key).encode(), key_password=kpw, certificate_chain=str(chain)
        )
    if location is not None:
        return StoreSpec("ssl.keystore.location", kind, location=location, password=spw, key_password=kpw)
    if inline is not None:
        return StoreSpec(KEYSTORE_BASE64, kind, data=inline, password=spw, key_password=kpw)
    return None


_STORE_KEYS = frozenset(
    {
        "ssl.truststore.location",
        "ssl.truststore.password",
        "ssl.truststore.type",
        "ssl.truststore.certificates",
        TRUSTSTORE_BASE64,
        "ssl.keystore.location",
        "ssl.keystore.password",
        "ssl.keystore.type",
        "ssl.keystore.key",
        "ssl.keystore.certificate.chain",
        KEYSTORE_BASE64,
        "ssl.key.password",
    }
)


# ------------------------------------------------------------------ the translation


def refusal(key: str) -> str | None:
    """Why the property ``key`` is refused, or None."""
    if key in REFUSED:
        return REFUSED[key]
    for prefix, reason in _REFUSED_PREFIXES.items():
        if key.startswith(prefix):
            return reason
    if key in CALLBACKS:
        return "is a callback of the Kafka client library; a spec cannot set it"
    return None


def translate(props: Mapping[str, Any]) -> Translation:
    """librdkafka settings for resolved Java properties (see :func:`resolve`)."""
    conf: dict[str, Any] = {}
    origin: dict[str, str] = {}
    dropped: list[str] = []
    for key, value in props.items():
        reason = refusal(key)
        if reason is not None:
            if key == "ssl.ca.location" and str(value).strip().lower() == "probe":
                conf[key] = "probe"  # the system's CA certificates, not a file the spec names
                origin[key] = key
                continue
            raise PropertyProblem((key,), reason)
        if key in _STORE_KEYS:
            continue
        if key in ("sasl.login.callback.handler.class",):
            if str(value) not in _STANDARD_LOGIN_HANDLERS:
                raise PropertyProblem((key,), "a Java login callback handler cannot run here (librdkafka)")
            dropped.append(key)  # librdkafka's own OIDC login does its job
            continue
        if key in JAVA_ONLY or key in OVERRIDDEN:
            dropped.append(key)
            continue
        if key == "sasl.jaas.config":
            if value != MASK:
                _jaas(str(value), conf, origin)
            continue
        if key == "ssl.endpoint.identification.algorithm":
            # Java: "https" (the default) or empty (no host name check); librdkafka: https or none
            algorithm = str(value).strip().lower()
            if algorithm not in ("", "https", "none"):
                raise PropertyProblem((key,), "must be 'https' or empty")
            conf[key] = algorithm or "none"
            origin[key] = key
            continue
        if key in ("receive.buffer.bytes", "send.buffer.bytes"):
            # Java: -1 is the system default; librdkafka: 0
            number = _int(value, key)
            rd = f"socket.{key}"
            conf[rd] = 0 if number == -1 else number
            origin[rd] = key
            continue
        rd = RENAMED.get(key, key)
        if key == "sasl.mechanism" and "sasl.mechanisms" in props:
            raise PropertyProblem((key,), "give either sasl.mechanism or sasl.mechanisms, not both")
        conf[rd] = value
        origin[rd] = key
    if str(conf.get("sasl.mechanisms", "")).upper() == "GSSAPI":
        raise PropertyProblem(
            (origin.get("sasl.mechanisms", "sasl.mechanism"),), "Kerberos (GSSAPI) is not supported"
        )
    return Translation(
        conf,
        truststore=_truststore(props),
        keystore=_keystore(props),
        origin=origin,
        dropped=tuple(sorted(dropped)),
    )


def _int(value: Any, key: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise PropertyProblem((key,), "must be an integer") from None


def check_static(props: Mapping[str, Any]) -> Translation:
    """What the spec models check: everything that needs neither a process's environment nor its
    files (refused properties, the JAAS entry, store types, provider objects). Masked values
    (a GET's output posted back) pass: the Overlord checks again with the stored secrets."""
    return translate(resolve(props, environ=None))


def dropped_properties(props: Mapping[str, Any]) -> list[str]:
    """The properties dropped as Java-only or overridden, as paths below consumerProperties."""
    try:
        return list(check_static(props).dropped)
    except PropertyProblem:
        return []
