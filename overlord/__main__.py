"""``python -m overlord [serve|migrate|healthcheck] [--config FILE] [--SETTING VALUE ...]``.

Every setting of :class:`overlord.config.OverlordSettings` is a flag (``--metadata-url``), an
environment variable (``OVERLORD_METADATA_URL``) and a line of the optional ``--config`` file
(dotenv syntax, the environment variable names); see :mod:`supervisor.cli`.

``serve`` runs the Overlord until SIGTERM or SIGINT: it stops taking requests, stops its
supervisors without touching their tasks (a restarted Overlord adopts them) and exits 0.
``migrate`` brings the metadata store's schema up to date and exits. ``healthcheck`` asks a
local Overlord's ``/status/health`` (exit 0 when healthy), for a container HEALTHCHECK.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from overlord.config import OverlordSettings
from supervisor import cli
from supervisor.logs import configure
from transport.client import probe_health

logger = logging.getLogger(__name__)

COMMANDS = ("serve", "migrate", "healthcheck")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="overlord", description="Kafka indexing Overlord", epilog=cli.CONFIG_HELP
    )
    p.add_argument("command", nargs="?", default="serve", choices=COMMANDS)
    cli.add_arguments(p, OverlordSettings)
    return p


def load_settings(argv: Sequence[str] | None = None) -> tuple[str, OverlordSettings]:
    """The command and the settings; raises :class:`supervisor.cli.ConfigError`."""
    args = _parser().parse_args(argv)
    settings = cli.load(OverlordSettings, cli.flag_values(args, OverlordSettings), args.config)
    return str(args.command), settings


def main(argv: Sequence[str] | None = None) -> int:
    try:
        command, settings = load_settings(argv)
        app = _build_app(settings) if command == "serve" else None
    except (cli.ConfigError, ValueError) as e:
        print(f"overlord: invalid configuration:\n{e}", file=sys.stderr)
        return 2
    if command == "healthcheck":
        return probe_health(settings.host, settings.port)
    configure(settings.log_level, settings.log_format, "overlord")
    for name in cli.unknown_environment(OverlordSettings):
        logger.warning("environment variable %s is not a setting of the Overlord; ignored", name)
    if command == "migrate":
        return _migrate(settings)
    assert app is not None
    logger.info("overlord listening on %s:%d", settings.host, settings.port)
    web.run_app(app, host=settings.host, port=settings.port, print=None, shutdown_timeout=5.0)
    logger.info("overlord stopped")
    return 0


def _build_app(settings: OverlordSettings) -> web.Application:
    from overlord.app import build_app

    return build_app(settings)  # checks the access-control settings too


def _migrate(settings: OverlordSettings) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from overlord.metadata.engine import migrate

    where = make_url(settings.metadata_url).render_as_string(hide_password=True)
    try:
        migrate(settings.metadata_url)
    except SQLAlchemyError as e:
        logger.error("migrating the metadata store at %s failed: %s", where, e)
        return 1
    logger.info("metadata store at %s migrated", where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
