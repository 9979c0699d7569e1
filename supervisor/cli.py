"""Command-line plumbing shared by the processes: settings and health probes.

Every setting of a process has one name in three spellings. For the Overlord's
``metadata_url`` (environment prefix ``OVERLORD_``):

    --metadata-url VALUE               on the command line
    OVERLORD_METADATA_URL=VALUE        in the environment
    OVERLORD_METADATA_URL=VALUE        in the file named by ``--config FILE``

The file uses dotenv syntax (``NAME=value`` lines, ``#`` comments, optional
``export`` and quotes), so the same file can serve as a Docker ``env_file``.
A flag beats the environment, the environment beats the file, the file beats
the default. Lines for the other processes (``MIDDLEMANAGER_*`` in a file
read by the Overlord) are skipped, so one file may configure a whole cluster;
any other unknown name is an error.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)

PROCESS_PREFIXES = ("OVERLORD_", "MIDDLEMANAGER_", "BROKER_")
_SECRET_WORDS = ("password", "token", "secret", "users")

CONFIG_HELP = (
    "Every setting is a flag, an environment variable and a line of the --config file, with the "
    "same name: --metadata-url, OVERLORD_METADATA_URL. Precedence: flag > environment > file > default."
)


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to change."""


def env_prefix(cls: type[BaseSettings]) -> str:
    return str(cls.model_config.get("env_prefix", "")).upper()


def env_name(cls: type[BaseSettings], field: str) -> str:
    return f"{env_prefix(cls)}{field}".upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Environment variable name -> field name, for every setting of ``cls``."""
    return {env_name(cls, f): f for f in cls.model_fields}


def add_arguments(parser: argparse.ArgumentParser, cls: type[BaseSettings]) -> None:
    """One flag per setting (``--metadata-url``), plus ``--config FILE``."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="optional dotenv file of NAME=value lines with the environment variable names",
    )
    for field, info in cls.model_fields.items():
        default: Any = "computed" if info.default_factory is not None else info.default
        if isinstance(default, SecretStr) or _is_secret(field):
            default = "empty"
        text = info.description or field.replace("_", " ")
        parser.add_argument(
            flag_name(field),
            dest=field,
            metavar="VALUE",
            help=f"{text} (env {env_name(cls, field)}; default {default})".replace("%", "%%"),
        )


def flag_values(args: argparse.Namespace, cls: type[BaseSettings]) -> dict[str, Any]:
    """The settings given as flags."""
    return {f: v for f in cls.model_fields if (v := getattr(args, f, None)) is not None}


def load(
    cls: type[S],
    flags: Mapping[str, Any] | None = None,
    config_file: Path | None = None,
) -> S:
    """Settings from flags, environment and file; raises :class:`ConfigError` with a clear message."""
    names = env_names(cls)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if config_file is not None:
        for field, value in read_config_file(cls, config_file).items():
            values[field] = value
            origin[field] = f"file {config_file}"
    present = {k.upper() for k in os.environ}
    for name, field in names.items():
        if name in present:
            values.pop(field, None)  # the environment beats the file; the class reads it itself
            origin[field] = "the environment"
    for field, value in (flags or {}).items():
        if field not in cls.model_fields:
            raise ConfigError(f"unknown setting {field!r}")
        values[field] = value
        origin[field] = f"flag {flag_name(field)}"
    try:
        return cls(**values)
    except ValidationError as e:
        raise ConfigError(describe(cls, e, origin)) from None


def read_config_file(cls: type[BaseSettings], path: Path) -> dict[str, str]:
    """Field -> value from a dotenv file; unknown names of this process are errors."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist or is not a file")
    try:
        raw = dotenv_values(path, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read: {e}") from None
    names = env_names(cls)
    own = env_prefix(cls)
    others = tuple(p for p in PROCESS_PREFIXES if p != own)
    out: dict[str, str] = {}
    for key, value in raw.items():
        upper = key.upper()
        field = names.get(upper)
        if field is None:
            if upper.startswith(others):
                continue
            raise ConfigError(
                f"config file {path}: unknown setting {key}; the settings are {', '.join(sorted(names))}"
            )
        if value is None:
            raise ConfigError(f"config file {path}: {key} has no value (write {key}=VALUE)")
        out[field] = value
    return out


def unknown_environment(cls: type[BaseSettings], environ: Mapping[str, str] | None = None) -> list[str]:
    """Environment variables with this process's prefix that name no setting (typos)."""
    environ = os.environ if environ is None else environ
    names = env_names(cls)
    prefix = env_prefix(cls)
    return sorted(k for k in environ if k.upper().startswith(prefix) and k.upper() not in names)


def _is_secret(field: str) -> bool:
    return any(w in field for w in _SECRET_WORDS)


def describe(cls: type[BaseSettings], error: ValidationError, origin: Mapping[str, str]) -> str:
    """One line per problem, naming the setting the way the user wrote it."""
    lines = []
    for item in error.errors(include_url=False):
        loc = item.get("loc") or ()
        field = str(loc[0]) if loc else ""
        msg = str(item.get("msg", "invalid"))
        if field not in cls.model_fields:
            lines.append(f"  {msg}")
            continue
        where = origin.get(field, "the default")
        shown = "***" if _is_secret(field) else repr(item.get("input"))
        lines.append(f"  {env_name(cls, field)} / {flag_name(field)} = {shown} (from {where}): {msg}")
    return "\n".join(lines)
