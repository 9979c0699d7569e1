"""Deep storage named by URI, so that no process hands another a path on its own disk.

The Overlord's ``--deep-storage`` setting, the task spec's ``deepStorage`` and each published
segment's location are URIs. ``file:///abs/dir`` is a directory that every machine of the cluster
sees at the same place (Druid's ``local`` deep storage, typically a shared mount); a plain path in a
setting is read as such a URI. Segments are stored in the metadata store with Druid's ``loadSpec``
shape for their kind (``{"type": "local", "path": ...}`` for ``file://``).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from supervisor.errors import InvalidInput

SCHEMES = ("file",)


def to_uri(location: str | Path) -> str:
    """The URI of a deep-storage location given as a URI or as a local path (made absolute)."""
    text = str(location)
    scheme = urlsplit(text).scheme
    if not scheme:
        return Path(text).absolute().as_uri()
    if scheme not in SCHEMES:
        raise InvalidInput(f"deep storage: scheme '{scheme}' is not supported (use one of {list(SCHEMES)})")
    if scheme == "file":
        return Path(local_path(text)).as_uri()
    return text


def local_path(uri: str) -> Path:
    """The local directory or file of a ``file://`` URI (an error for any other kind)."""
    parts = urlsplit(uri)
    if parts.scheme != "file":
        raise InvalidInput(f"deep storage: '{uri}' is not a file:// URI")
    if parts.netloc not in ("", "localhost"):
        raise InvalidInput(f"deep storage: file URI '{uri}' names a host; use file:///absolute/path")
    path = unquote(parts.path)
    if not PurePosixPath(path).is_absolute():
        raise InvalidInput(f"deep storage: file URI '{uri}' needs an absolute path")
    return Path(path)


def join(uri: str, *parts: str) -> str:
    """``uri`` with path segments appended (each must be a plain name: no ``/``, ``.`` or ``..``)."""
    for part in parts:
        if not part or part in (".", "..") or "/" in part:
            raise InvalidInput(f"deep storage: '{part}' is not a plain path segment")
    return uri.rstrip("/") + "/" + "/".join(parts)


def load_spec(location: str) -> dict[str, Any]:
    """Druid's ``loadSpec`` for a segment at ``location`` (a URI; a bare absolute path means a local file)."""
    if urlsplit(location).scheme in ("", "file"):
        path = local_path(location) if location.startswith("file:") else Path(location)
        return {"type": "local", "path": str(path)}
    raise InvalidInput(f"deep storage: no loadSpec for '{location}'")


def uri_of(spec: dict[str, Any]) -> str:
    """The URI a ``loadSpec`` names (the inverse of :func:`load_spec`)."""
    if spec.get("type") == "local" and isinstance(spec.get("path"), str):
        return Path(spec["path"]).as_uri()
    raise InvalidInput(f"deep storage: loadSpec of type '{spec.get('type')}' is not supported")
