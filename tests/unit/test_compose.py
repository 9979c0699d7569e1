"""compose.yaml and the Dockerfile, checked without a Docker engine.

compose.yaml is validated against the Compose specification's JSON schema (the copy in
``../shared/data/compose``, else check-jsonschema's vendored one when installed), and every
environment variable it gives the Overlord, the MiddleManagers, the Broker and the migration must be a
setting those processes accept, with a value they accept (compose's ``${VAR:-default}`` taken
at its default).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from broker import __main__ as broker_main
from broker.config import BrokerSettings
from middlemanager import __main__ as mm_main
from middlemanager.config import MiddleManagerSettings
from overlord import __main__ as overlord_main
from overlord.config import OverlordSettings
from supervisor import cli
from supervisor.deep_storage import s3_options, to_uri

yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extra: pip install -e '.[test]'")
jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extra")

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
SHARED_SCHEMA = REPO.parent / "shared" / "data" / "compose" / "compose-spec.json"

INDEXER_SERVICES: dict[str, type[BaseSettings]] = {
    "migrate": OverlordSettings,
    "overlord": OverlordSettings,
    "middlemanager": MiddleManagerSettings,
    "broker": BrokerSettings,
}


def _schema() -> dict[str, Any]:
    if SHARED_SCHEMA.is_file():
        loaded: dict[str, Any] = json.loads(SHARED_SCHEMA.read_text())
        return loaded
    try:  # check-jsonschema ships the schema as its builtin "vendor.compose-spec"
        from importlib.resources import files

        vendored = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
        loaded = json.loads(vendored.read_text())
        return loaded
    except (ImportError, FileNotFoundError, ModuleNotFoundError):
        pytest.skip(f"no Compose schema: neither {SHARED_SCHEMA} nor check-jsonschema is available")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


_VAR = re.compile(
    r"\$\$"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(value: Any, env: dict[str, str] | None = None) -> str:
    """Compose's variable interpolation, with an empty shell environment by default."""
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        have = env.get(name)
        if op in (":-", "-"):
            return have if have or (op == "-" and have is not None) else arg
        if op in (":?", "?"):
            if not have:
                raise AssertionError(f"${{{name}}} is required by compose.yaml: {arg}")
            return have
        if op in (":+", "+"):
            return arg if have else ""
        return have or ""

    return _VAR.sub(sub, str(value))


#: what compose.yaml requires from the user (scripts/compose-env writes them into .env)
REQUIRED = {"CLUSTER_TOKEN": "t0ken", "S3_ACCESS_KEY": "indexer", "S3_SECRET_KEY": "s3cret"}
#: the AWS SDK's own variables, read by the tasks' S3 client (not settings of the processes)
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def _environment(service: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(k): interpolate(v, REQUIRED if env is None else env) for k, v in raw.items()}


# ---------------------------------------------------------------------------------- the schema


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(_schema())
    errors = sorted(validator.iter_errors(compose), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def test_the_schema_check_catches_mistakes(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(_schema())
    broken = json.loads(json.dumps(compose))
    broken["services"]["overlord"]["depends_on"]["migrate"]["condition"] = "service_done"
    broken["services"]["middlemanager"]["healthcheck"]["tset"] = ["CMD", "true"]
    assert len(list(validator.iter_errors(broken))) >= 2


# ---------------------------------------------------------------------------------- environment


@pytest.mark.parametrize("service", sorted(INDEXER_SERVICES))
def test_every_variable_is_a_setting_of_the_process(compose: dict[str, Any], service: str) -> None:
    cls = INDEXER_SERVICES[service]
    env = _environment(compose["services"][service])
    assert env, f"{service} sets no environment"
    known = cli.env_names(cls)
    unknown = sorted(set(env) - set(known) - set(AWS_VARIABLES))
    assert not unknown, f"{service}: not settings of {cls.__name__}: {unknown}; known: {sorted(known)}"


@pytest.mark.parametrize("service", sorted(INDEXER_SERVICES))
def test_every_value_is_accepted_by_the_process(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.upper().startswith(cli.PROCESS_PREFIXES):
            monkeypatch.delenv(name)
    for name, value in _environment(compose["services"][service]).items():
        monkeypatch.setenv(name, value)
    cls = INDEXER_SERVICES[service]
    settings = cli.load(cls)  # raises ConfigError with the offending variable named
    if isinstance(settings, OverlordSettings):
        assert settings.metadata_url.startswith("postgresql+psycopg2://")
        assert "@postgres:5432/" in settings.metadata_url
    if isinstance(settings, BrokerSettings):
        assert settings.segment_cache_bytes == 10 * 2**30
        assert str(settings.segment_cache_dir) == "/var/lib/druid/segment-cache"


def test_settings_left_to_the_user_keep_their_names(compose: dict[str, Any]) -> None:
    """``${OVERLORD_LOG_LEVEL:-INFO}``: a value set in the shell or .env under the setting's own
    name reaches the process."""
    for service in ("overlord", "middlemanager"):
        raw = compose["services"][service]["environment"]
        for name, value in raw.items():
            m = re.fullmatch(r"\$\{(\w+):-[^}]*\}", str(value))
            if m and m.group(1).startswith(cli.PROCESS_PREFIXES):
                assert m.group(1) == name, f"{service}: {name} is read from ${{{m.group(1)}}}"
    env = {"OVERLORD_LOG_LEVEL": "DEBUG"}
    assert interpolate(compose["services"]["overlord"]["environment"]["OVERLORD_LOG_LEVEL"], env) == "DEBUG"


def test_image_environment_is_accepted_too() -> None:
    env_lines = re.findall(
        r"^\s*(?:ENV\s+)?((?:OVERLORD|MIDDLEMANAGER|BROKER)_\w+)=(\S+)", DOCKERFILE.read_text(), re.M
    )
    assert env_lines, "the image sets container defaults"
    classes: dict[str, type[BaseSettings]] = {
        "OVERLORD": OverlordSettings,
        "MIDDLEMANAGER": MiddleManagerSettings,
        "BROKER": BrokerSettings,
    }
    for name, _ in env_lines:
        assert name in cli.env_names(classes[name.split("_")[0]]), name


# ---------------------------------------------------------------------------------- topology


def test_services_come_up_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"kafka", "postgres", "migrate", "overlord", "middlemanager"}

    def condition(service: str, dependency: str) -> str:
        return str(services[service]["depends_on"][dependency]["condition"])

    assert condition("migrate", "postgres") == "service_healthy"
    assert condition("overlord", "migrate") == "service_completed_successfully"
    assert condition("overlord", "kafka") == "service_healthy"
    assert condition("middlemanager", "overlord") == "service_healthy"
    assert condition("broker", "overlord") == "service_healthy"
    for name, service in services.items():
        for dep, how in (service.get("depends_on") or {}).items():
            if how["condition"] == "service_healthy":
                check = services[dep].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), f"{name} waits for {dep}'s health"
    assert services["migrate"].get("restart") == "no", "migrate runs once"


def test_kafka_is_the_official_image_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert interpolate(kafka["image"]).startswith("apache/kafka:")
    env = _environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert not any("ZOOKEEPER" in k for k in env)
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_processes_reach_each_other_by_service_name(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mm = _environment(services["middlemanager"])
    ov = _environment(services["overlord"])
    assert mm["MIDDLEMANAGER_OVERLORD"] == f"http://overlord:{ov['OVERLORD_PORT']}"
    assert ov["OVERLORD_HOST"] == "0.0.0.0" and mm["MIDDLEMANAGER_HOST"] == "0.0.0.0"
    assert "MIDDLEMANAGER_ADVERTISED_HOST" not in mm, "each replica advertises its own address"
    broker = _environment(services["broker"])
    assert (
        broker["BROKER_OVERLORD_URL"] == mm["MIDDLEMANAGER_OVERLORD"] and broker["BROKER_HOST"] == "0.0.0.0"
    )
    assert broker["BROKER_CLUSTER_TOKEN"] == ov["OVERLORD_CLUSTER_TOKEN"] == "t0ken"
    assert ov["OVERLORD_EMBEDDED_BROKER"] == "false", (
        "queries go to the broker service, which has the S3 keys"
    )


def test_middlemanagers_scale(compose: dict[str, Any]) -> None:
    mm = compose["services"]["middlemanager"]
    assert "container_name" not in mm and "ports" not in mm and "hostname" not in mm, (
        "docker compose up --scale middlemanager=N needs replicas without fixed names or host ports"
    )


def test_no_disk_is_shared_deep_storage_is_s3(compose: dict[str, Any]) -> None:
    services = compose["services"]
    uri = _environment(services["overlord"])["OVERLORD_DEEP_STORAGE"]
    assert to_uri(uri) == uri and uri.startswith("s3://")
    assert s3_options(uri, env={}).endpoint == "http://seaweedfs:8333"
    bucket = services["deep-storage-bucket"]["command"]
    assert uri in [interpolate(a) for a in bucket], "the one-shot step creates the bucket the tasks use"
    assert services["overlord"]["depends_on"]["deep-storage-bucket"]["condition"] == (
        "service_completed_successfully"
    )
    users: dict[str, list[str]] = {}
    for name, service in services.items():
        for v in service.get("volumes", []):
            source = v.split(":")[0] if isinstance(v, str) else v["source"]
            users.setdefault(source, []).append(name)
    shared = {v: names for v, names in users.items() if len(names) > 1}
    assert not shared, f"volumes shared between containers: {shared}"
    mm = _environment(services["middlemanager"])
    assert mm["AWS_ACCESS_KEY_ID"] == "indexer" and mm["AWS_SECRET_ACCESS_KEY"] == "s3cret"
    broker = _environment(services["broker"])
    assert broker["BROKER_DEEP_STORAGE"] == uri, "the Broker reads the store the tasks write to"
    assert broker["AWS_ACCESS_KEY_ID"] == "indexer" and broker["AWS_SECRET_ACCESS_KEY"] == "s3cret"
    cache = [v for v in services["broker"]["volumes"] if v.endswith(":/var/lib/druid/segment-cache")]
    assert cache and cache[0].split(":")[0] in compose["volumes"], "the segment cache outlives the container"


def test_safe_by_default(compose: dict[str, Any]) -> None:
    """Published ports on 127.0.0.1 unless the user says otherwise; the cluster token is required;
    the processes talk on an internal network."""
    services = compose["services"]
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert set(published) == {"overlord", "kafka", "broker"}
    for name, ports in published.items():
        for port in ports:
            assert interpolate(port, REQUIRED).startswith("127.0.0.1:"), (name, port)
    assert interpolate(
        services["overlord"]["ports"][0], {**REQUIRED, "OVERLORD_PUBLISHED_ADDRESS": "0.0.0.0"}
    )
    assert interpolate(services["broker"]["ports"][0], {"BROKER_PUBLISHED_ADDRESS": "0.0.0.0"}).startswith(
        "0.0.0.0:8082:"
    )
    with pytest.raises(AssertionError, match="CLUSTER_TOKEN"):
        _environment(services["overlord"], {})
    assert _environment(services["middlemanager"])["MIDDLEMANAGER_CLUSTER_TOKEN"] == "t0ken"
    assert compose["networks"]["cluster"]["internal"] is True
    for name in ("postgres", "seaweedfs", "migrate", "middlemanager", "deep-storage-bucket"):
        assert services[name]["networks"] == ["cluster"], name


def test_images_default_to_the_public_ones(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert interpolate(services["postgres"]["image"]).startswith("postgres:16")
    seaweedfs = interpolate(services["seaweedfs"]["image"])
    release = re.search(r'^RELEASE="([0-9.]+)"', (REPO / "scripts" / "local-seaweedfs").read_text(), re.M)
    assert release, "scripts/local-seaweedfs names the release its weed reports"
    assert seaweedfs == f"chrislusf/seaweedfs:{release.group(1)}", "pinned to the release built here"
    assert interpolate(services["overlord"]["build"]["args"]["BASE_IMAGE"]) == "python:3.11-slim-bookworm"
    local = {"KAFKA_IMAGE": "k:1", "POSTGRES_IMAGE": "p:1", "SEAWEEDFS_IMAGE": "s:1", "INDEXER_IMAGE": "i:1"}
    assert [
        interpolate(services[n]["image"], local) for n in ("kafka", "postgres", "seaweedfs", "overlord")
    ] == [
        "k:1",
        "p:1",
        "s:1",
        "i:1",
    ]


def test_commands_and_healthchecks_are_real_commands(compose: dict[str, Any]) -> None:
    parsers = {
        "overlord": overlord_main._parser,
        "middlemanager": mm_main._parser,
        "broker": broker_main._parser,
    }
    seen = set()
    for name in INDEXER_SERVICES:
        service = compose["services"][name]
        lines = [service["command"]]
        check = service.get("healthcheck") or {}
        if not check.get("disable"):
            test = check["test"]
            assert test[0] == "CMD"
            lines.append(test[1:])
        for argv in lines:
            argv = shlex.split(argv) if isinstance(argv, str) else list(argv)
            program, args = argv[0], argv[1:]
            assert program in parsers, argv
            parsers[program]().parse_args(args)  # exits (SystemExit) on a wrong command
            seen.add(" ".join(argv))
    assert {"overlord migrate", "overlord serve", "middlemanager serve"} <= seen
    assert {"overlord healthcheck", "middlemanager healthcheck", "broker healthcheck"} <= seen
    assert "broker serve" in seen


def test_stop_grace_leaves_the_middlemanager_time_to_hand_back(compose: dict[str, Any]) -> None:
    mm = compose["services"]["middlemanager"]
    shutdown = float(_environment(mm)["MIDDLEMANAGER_SHUTDOWN_TIMEOUT_S"])
    grace = mm["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > shutdown


# ---------------------------------------------------------------------------------- Dockerfile


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [rest for word, rest in _instructions() if word == "USER"]
    assert users, "the image sets USER"
    final = users[-1].split(":")[0]
    assert final not in ("root", "0", ""), final
    stages = [rest for word, rest in _instructions() if word == "FROM"]
    last_from = max(i for i, (w, _) in enumerate(_instructions()) if w == "FROM")
    assert any(w == "USER" for w, _ in _instructions()[last_from:]), "USER is set in the final stage"
    assert len(stages) >= 2, "multi-stage"
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert base and "slim" in base.group(1), "by default both stages start from a slim image"
    assert all(s.split()[0] == "${BASE_IMAGE}" for s in stages), stages


def test_dockerfile_has_a_healthcheck_for_each_process() -> None:
    checks = [rest for word, rest in _instructions() if word == "HEALTHCHECK"]
    assert len(checks) == 1
    assert all(f"{p} healthcheck" in checks[0] for p in ("overlord", "middlemanager", "broker"))
    assert not checks[0].startswith("NONE")
    commands = [rest for word, rest in _instructions() if word == "CMD"]
    assert json.loads(commands[-1]) == ["overlord", "serve"]


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, "everything is excluded unless named"
    assert not any(line.startswith("!tests") or line.startswith("!.venv") for line in ignore)
