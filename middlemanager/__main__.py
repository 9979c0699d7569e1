"""``python -m middlemanager [serve|healthcheck] [--config FILE] [--SETTING VALUE ...]``.

Every setting of :class:`middlemanager.config.MiddleManagerSettings` is a flag (``--capacity``),
an environment variable (``MIDDLEMANAGER_CAPACITY``) and a line of the optional ``--config``
file (dotenv syntax, the environment variable names); see :mod:`supervisor.cli`.

``serve`` runs the worker: it heart-beats with the Overlord (a long poll that brings a new task
at once) and keeps ``warm_peons`` task processes started ahead of their tasks, so a task starts
without waiting for imports. It runs until SIGTERM or SIGINT: it then takes no new task, asks its
running tasks to stop and hand their work back to their supervisors (which start replacements
from the same offsets on other workers), waits for them up to ``shutdown_timeout_s``, kills what
is left and exits 0. A second signal cuts the wait short. ``healthcheck`` asks a local worker's
``/status/health`` (exit 0 when healthy), for a container HEALTHCHECK.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from middlemanager.config import MiddleManagerSettings
from supervisor import cli
from supervisor.logs import configure
from transport.client import probe_health

logger = logging.getLogger(__name__)

COMMANDS = ("serve", "healthcheck")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="middlemanager", description="Kafka indexing worker", epilog=cli.CONFIG_HELP
    )
    p.add_argument("command", nargs="?", default="serve", choices=COMMANDS)
    cli.add_arguments(p, MiddleManagerSettings)
    return p


def load_settings(argv: Sequence[str] | None = None) -> tuple[str, MiddleManagerSettings]:
    """The command and the settings; raises :class:`supervisor.cli.ConfigError`."""
    args = _parser().parse_args(argv)
    settings = cli.load(MiddleManagerSettings, cli.flag_values(args, MiddleManagerSettings), args.config)
    return str(args.command), settings


def main(argv: Sequence[str] | None = None) -> int:
    try:
        command, settings = load_settings(argv)
    except cli.ConfigError as e:
        print(f"middlemanager: invalid configuration:\n{e}", file=sys.stderr)
        return 2
    if command == "healthcheck":
        return probe_health(settings.host, settings.port)
    configure(settings.log_level, settings.log_format, "middlemanager")
    for name in cli.unknown_environment(MiddleManagerSettings):
        logger.warning("environment variable %s is not a setting of the MiddleManager; ignored", name)
    from middlemanager.worker import serve

    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
