"""Process settings: flags, environment and an optional dotenv file with the same names;
clear errors at start; the health probe the container HEALTHCHECK uses."""

from __future__ import annotations

import http.server
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from middlemanager import __main__ as mm_main
from middlemanager.config import MiddleManagerSettings
from overlord import __main__ as overlord_main
from overlord.config import OverlordSettings
from supervisor import cli
from tests.harness.http import serve_handler
from transport.client import probe_health


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OVERLORD_* / MIDDLEMANAGER_* variable of the developer's shell leaks in."""
    for name in list(os.environ):
        if name.upper().startswith(cli.PROCESS_PREFIXES):
            monkeypatch.delenv(name)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------- names


@pytest.mark.parametrize("cls", [OverlordSettings, MiddleManagerSettings])
def test_every_setting_has_a_flag_and_an_environment_name(cls: type[OverlordSettings]) -> None:
    parser = overlord_main._parser() if cls is OverlordSettings else mm_main._parser()
    help_text = parser.format_help()
    for field in cls.model_fields:
        assert cli.flag_name(field) in help_text
        assert cli.env_name(cls, field) in help_text.replace("\n", " ").replace("  ", "")
    assert "--config" in help_text


def test_names_follow_the_field_names() -> None:
    assert cli.flag_name("metadata_url") == "--metadata-url"
    assert cli.env_name(OverlordSettings, "metadata_url") == "OVERLORD_METADATA_URL"
    assert cli.env_name(MiddleManagerSettings, "shutdown_timeout_s") == "MIDDLEMANAGER_SHUTDOWN_TIMEOUT_S"


# ---------------------------------------------------------------------------------- sources


def test_defaults_without_any_source() -> None:
    s = cli.load(OverlordSettings)
    assert (s.host, s.port, s.log_format) == ("127.0.0.1", 8090, "text")


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERLORD_PORT", "9001")
    monkeypatch.setenv("overlord_log_format", "json")  # names are case-insensitive
    s = cli.load(OverlordSettings)
    assert s.port == 9001 and s.log_format == "json"


def test_file_then_environment_then_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    conf = _write(
        tmp_path / "cluster.env",
        "# one file for the whole cluster\n"
        "OVERLORD_PORT=9002\n"
        "export OVERLORD_HOST=0.0.0.0\n"
        "OVERLORD_METADATA_URL='postgresql+psycopg2://u:p@db:5432/druid'\n"
        "MIDDLEMANAGER_CAPACITY=7\n",
    )
    s = cli.load(OverlordSettings, {}, conf)
    assert (s.port, s.host) == (9002, "0.0.0.0")
    assert s.metadata_url == "postgresql+psycopg2://u:p@db:5432/druid"

    monkeypatch.setenv("OVERLORD_PORT", "9001")
    s = cli.load(OverlordSettings, {}, conf)
    assert (s.port, s.host) == (9001, "0.0.0.0"), "the environment beats the file"

    s = cli.load(OverlordSettings, {"port": "9003"}, conf)
    assert s.port == 9003, "a flag beats the environment"

    mm = cli.load(MiddleManagerSettings, {}, conf)
    assert mm.capacity == 7, "the same file configures the MiddleManager"


def test_command_line_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    conf = _write(tmp_path / "mm.env", "MIDDLEMANAGER_CAPACITY=3\nMIDDLEMANAGER_HEARTBEAT_S=0.5\n")
    monkeypatch.setenv("MIDDLEMANAGER_OVERLORD", "http://overlord:8090/")
    command, s = mm_main.load_settings(["--config", str(conf), "--capacity", "5", "--port", "18091"])
    assert command == "serve"
    assert (s.capacity, s.heartbeat_s, s.port, s.overlord) == (5, 0.5, 18091, "http://overlord:8090")

    command, o = overlord_main.load_settings(["migrate", "--metadata-url", "sqlite:////tmp/x.db"])
    assert command == "migrate" and o.metadata_url == "sqlite:////tmp/x.db"


# ---------------------------------------------------------------------------------- errors


def test_invalid_value_names_the_setting_and_where_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERLORD_PORT", "70000")
    with pytest.raises(cli.ConfigError) as e:
        cli.load(OverlordSettings)
    msg = str(e.value)
    assert "OVERLORD_PORT / --port = '70000' (from the environment)" in msg
    assert "less than or equal to 65535" in msg

    with pytest.raises(cli.ConfigError) as e:
        cli.load(MiddleManagerSettings, {"overlord": "overlord:8090", "log_format": "xml"})
    msg = str(e.value)
    assert "MIDDLEMANAGER_OVERLORD / --overlord = 'overlord:8090' (from flag --overlord)" in msg
    assert "http(s) URL" in msg
    assert "MIDDLEMANAGER_LOG_FORMAT / --log-format" in msg and "'text' or 'json'" in msg


def test_invalid_value_in_the_file(tmp_path: Path) -> None:
    conf = _write(tmp_path / "o.env", "OVERLORD_WORKER_TIMEOUT_S=soon\n")
    with pytest.raises(cli.ConfigError) as e:
        cli.load(OverlordSettings, {}, conf)
    assert f"OVERLORD_WORKER_TIMEOUT_S / --worker-timeout-s = 'soon' (from file {conf})" in str(e.value)


def test_unknown_name_in_the_file_is_an_error(tmp_path: Path) -> None:
    conf = _write(tmp_path / "o.env", "OVERLORD_PROT=9000\n")
    with pytest.raises(cli.ConfigError) as e:
        cli.load(OverlordSettings, {}, conf)
    assert "unknown setting OVERLORD_PROT" in str(e.value)
    assert "OVERLORD_PORT" in str(e.value), "the message lists the real names"


def test_a_name_without_value_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(cli.ConfigError, match="OVERLORD_PORT has no value"):
        cli.load(OverlordSettings, {}, _write(tmp_path / "o.env", "OVERLORD_PORT\n"))
    with pytest.raises(cli.ConfigError, match="does not exist"):
        cli.load(OverlordSettings, {}, tmp_path / "missing.env")


def test_secrets_are_not_echoed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    conf = _write(tmp_path / "o.env", "OVERLORD_CLUSTER_TOKEN=s3cret\nOVERLORD_PORT=-1\n")
    with pytest.raises(cli.ConfigError) as e:
        cli.load(OverlordSettings, {}, conf)
    assert "s3cret" not in str(e.value)
    s = cli.load(OverlordSettings, {"port": "1"}, conf)
    assert "s3cret" not in repr(s) and s.cluster_token.get_secret_value() == "s3cret"


def test_main_exits_2_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert overlord_main.main(["healthcheck", "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("overlord: invalid configuration:")
    assert "OVERLORD_PORT / --port = '70000' (from flag --port)" in err
    assert "Traceback" not in err

    assert mm_main.main(["--capacity", "0"]) == 2
    err = capsys.readouterr().err
    assert "MIDDLEMANAGER_CAPACITY / --capacity = '0' (from flag --capacity)" in err


def test_metadata_url_and_log_level_are_checked() -> None:
    with pytest.raises(cli.ConfigError, match="OVERLORD_METADATA_URL"):
        cli.load(OverlordSettings, {"metadata_url": "not a url"})
    with pytest.raises(cli.ConfigError, match="OVERLORD_LOG_LEVEL"):
        cli.load(OverlordSettings, {"log_level": "LOUD"})
    assert cli.load(OverlordSettings, {"log_level": "debug"}).log_level == "DEBUG"


def test_unknown_environment_variables_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERLORD_WORKER_TIMEOUT", "5")
    monkeypatch.setenv("OVERLORD_PORT", "8090")
    assert cli.unknown_environment(OverlordSettings) == ["OVERLORD_WORKER_TIMEOUT"]


# ---------------------------------------------------------------------------------- MiddleManager address


def test_advertised_host() -> None:
    assert MiddleManagerSettings(host="10.1.2.3").advertised() == "10.1.2.3"
    assert MiddleManagerSettings(host="0.0.0.0", advertised_host="mm-1").advertised() == "mm-1"
    wildcard = MiddleManagerSettings(host="0.0.0.0").advertised()
    assert wildcard not in ("0.0.0.0", "")
    assert wildcard in (socket.gethostname(), socket.gethostbyname(socket.gethostname()))


# ---------------------------------------------------------------------------------- health probe


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path == "/status/health"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"true" if ok else b"")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    with serve_handler(_Health) as url:
        yield int(url.rsplit(":", 1)[1])


def test_healthcheck_command(health_server: int) -> None:
    assert probe_health("0.0.0.0", health_server) == 0
    assert overlord_main.main(["healthcheck", "--port", str(health_server)]) == 0
    assert mm_main.main(["healthcheck", "--port", str(health_server), "--host", "0.0.0.0"]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    assert probe_health("127.0.0.1", closed, timeout_s=1) == 1
    assert overlord_main.main(["healthcheck", "--port", str(closed)]) == 1
