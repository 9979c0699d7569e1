"""``python -m broker [serve|healthcheck] [--config FILE] [--SETTING VALUE ...]``.

Every setting of :class:`broker.config.BrokerSettings` is a flag (``--overlord-url``), an
environment variable (``BROKER_OVERLORD_URL``) and a line of the optional ``--config`` file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from broker.config import BrokerSettings
from supervisor import cli
from supervisor.logs import configure
from transport.client import probe_health

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="broker", description="Druid query Broker", epilog=cli.CONFIG_HELP)
    p.add_argument("command", nargs="?", default="serve", choices=("serve", "healthcheck"))
    cli.add_arguments(p, BrokerSettings)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        settings = cli.load(BrokerSettings, cli.flag_values(args, BrokerSettings), args.config)
    except (cli.ConfigError, ValueError) as e:
        print(f"broker: invalid configuration:\n{e}", file=sys.stderr)
        return 2
    if args.command == "healthcheck":
        return probe_health(settings.host, settings.port)
    configure(settings.log_level, settings.log_format, "broker")
    for name in cli.unknown_environment(BrokerSettings):
        logger.warning("environment variable %s is not a setting of the Broker; ignored", name)
    from broker.api import build_app

    app = build_app(settings)
    logger.info(
        "broker listening on %s:%d, segments from %s", settings.host, settings.port, settings.overlord_url
    )
    web.run_app(app, host=settings.host, port=settings.port, print=None, shutdown_timeout=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
