"""Services of the test bed: shared leases on the Kafka broker and PostgreSQL server, and services of a
test's own (restartable), all run by ``scripts/local-kafka`` and ``scripts/local-postgres`` (and
SeaweedFS, the S3-compatible deep storage, by ``scripts/local-seaweedfs``).

The session fixtures in ``tests/conftest.py`` use :class:`ServiceLease` so that several pytest processes
(or xdist workers) on one machine can share one broker / one database server, and the service is stopped
by the last session that leaves, and only if a test session started it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO_ROOT / "scripts"
LOCAL_KAFKA = SCRIPTS_DIR / "local-kafka"
LOCAL_POSTGRES = SCRIPTS_DIR / "local-postgres"
LOCAL_SEAWEEDFS = SCRIPTS_DIR / "local-seaweedfs"

KAFKA_START_TIMEOUT_S = 900.0  # the first start downloads the broker jars from Maven Central
POSTGRES_START_TIMEOUT_S = 300.0
SEAWEEDFS_START_TIMEOUT_S = 2700.0  # the first start builds weed from its Go module (minutes)
STOP_TIMEOUT_S = 120.0


class ScriptError(RuntimeError):
    """A test-bed script failed; the message carries its exit code and output."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-pull-indexer"


def run_script(
    script: Path,
    command: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Runs ``script command`` with ``env`` added to the current environment."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(
            [str(script), command],
            env=full_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ScriptError(f"{script.name} {command} did not finish within {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        raise ScriptError(
            f"{script.name} {command} exited with {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ScriptError("the script printed nothing on stdout")
    return lines[-1]


def pid_alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self/stat").exists()  # gone meanwhile, or no procfs: trust kill(0)
    except OSError:
        return True
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A port whose successor is free too (Kafka's controller listens on PORT+1)."""
    for _ in range(100):
        port = free_port()
        if port < 65000:
            with contextlib.suppress(OSError), socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
                return port
    raise RuntimeError("no free port pair")


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class ServiceLease:
    """A shared, reference-counted hold on a service run by one of the test-bed scripts.

    ``acquire`` starts the service unless it is already running and records this process as a user;
    ``release`` removes that record and stops the service if a test session started it and no other
    live process still uses it. A service started by hand (``make kafka-start``) is never stopped.
    """

    script: Path
    key: str
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 120.0
    _acquired: bool = False

    @property
    def lease_dir(self) -> Path:
        return cache_root() / "leases" / self.key

    @property
    def _owned_marker(self) -> Path:
        return self.lease_dir / "started-by-test-session"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.lease_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lease_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _live_leases(self) -> list[int]:
        live: list[int] = []
        for entry in self.lease_dir.iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid != os.getpid() and pid_alive(pid):
                live.append(pid)
            elif pid != os.getpid():
                entry.unlink(missing_ok=True)
        return live

    def running(self) -> bool:
        return run_script(self.script, "status", env=self.env, check=False).returncode == 0

    def acquire(self) -> str:
        """Returns the last stdout line of ``script start`` (the address/URL of the service)."""
        with self._locked():
            was_running = self.running()
            (self.lease_dir / str(os.getpid())).touch()
            self._acquired = True
            if not was_running:
                self._owned_marker.touch()
            try:
                proc = run_script(self.script, "start", env=self.env, timeout=self.start_timeout)
            except ScriptError:
                if not was_running:
                    run_script(self.script, "stop", env=self.env, timeout=STOP_TIMEOUT_S, check=False)
                    self._owned_marker.unlink(missing_ok=True)
                (self.lease_dir / str(os.getpid())).unlink(missing_ok=True)
                self._acquired = False
                raise
            return last_line(proc.stdout)

    def release(self) -> None:
        if not self._acquired:
            return
        with self._locked():
            (self.lease_dir / str(os.getpid())).unlink(missing_ok=True)
            self._acquired = False
            if self._owned_marker.exists() and not self._live_leases():
                run_script(self.script, "stop", env=self.env, timeout=STOP_TIMEOUT_S)
                self._owned_marker.unlink(missing_ok=True)


def kafka_lease() -> ServiceLease:
    port = os.environ.get("KAFKA_PORT", "9092")
    return ServiceLease(LOCAL_KAFKA, f"kafka-{port}", start_timeout=KAFKA_START_TIMEOUT_S)


def postgres_lease() -> ServiceLease:
    port = os.environ.get("PG_PORT", "55432")
    return ServiceLease(LOCAL_POSTGRES, f"postgres-{port}", start_timeout=POSTGRES_START_TIMEOUT_S)


def seaweedfs_lease() -> ServiceLease:
    """SeaweedFS's S3 gateway (the S3-compatible deep storage of tests); acquire returns its endpoint."""
    port = os.environ.get("SEAWEEDFS_S3_PORT", "18333")
    return ServiceLease(LOCAL_SEAWEEDFS, f"seaweedfs-{port}", start_timeout=SEAWEEDFS_START_TIMEOUT_S)


@dataclass
class Service:
    """A Kafka broker or PostgreSQL server of a test's own (not shared: it may be stopped and started
    again at will), run by its scripts/ helper on its own port and state directory."""

    name: str
    script: Path
    env: dict[str, str]
    state_dir: Path
    address: str = ""

    def start(self) -> str:
        """Starts it (again: same port, same data); returns its address (bootstrap servers or URL)."""
        proc = run_script(self.script, "start", env=self.env, timeout=600)
        self.address = last_line(proc.stdout)
        return self.address

    def stop(self) -> None:
        run_script(self.script, "stop", env=self.env, timeout=180, check=False)

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def discard(self) -> None:
        """Stops it and deletes its state."""
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)


def own_kafka(root: Path) -> Service:
    port = free_port_pair()
    state = root / f"kafka-{port}"
    env = {"KAFKA_PORT": str(port), "KAFKA_STATE_DIR": str(state), "KAFKA_STOP_TIMEOUT": "30"}
    return Service("kafka", LOCAL_KAFKA, env, state)


def own_postgres() -> Service:
    """A PostgreSQL server of our own; ``discard`` it at the end (its state is under /tmp)."""
    port = free_port()
    # under /tmp: the server runs as another user and must reach its socket directory
    state = Path(tempfile.mkdtemp(prefix=f"faults-pg-{port}-", dir="/tmp"))
    state.chmod(0o755)
    env = {"PG_PORT": str(port), "PG_STATE_DIR": str(state)}
    return Service("postgres", LOCAL_POSTGRES, env, state)
