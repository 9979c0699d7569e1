"""Deep storage named by URI, so that no process hands another a path on its own disk.

The Overlord's ``--deep-storage`` setting, the task spec's ``deepStorage`` and each published
segment's location are URIs of one of two kinds:

``file:///abs/dir``
    A directory every machine of the cluster sees at the same place (Druid's ``local`` deep
    storage, typically a shared mount); a plain path in a setting is read as such a URI. Tasks
    write their segments there in place. loadSpec: ``{"type": "local", "path": "/abs/file"}``.

``s3://bucket/prefix``
    An S3-compatible object store (AWS S3, SeaweedFS, MinIO, Ceph, ...). Tasks stage segments in
    their own task directory, upload them, and check each object before they ask to publish it.
    loadSpec: ``{"type": "s3", "bucket": ..., "key": ...}``: the field names of Druid's
    ``s3_zip`` loadSpec (druid-s3-extensions, ``S3LoadSpec``), but its own type, because the object
    is one Parquet file and not Druid's ``index.zip``; a Druid Historical must not try to unzip it.
    ``s3_zip`` load specs are read as the same object. Non-secret settings are query parameters of
    the URI, so that they travel with the task spec to every worker; each falls back to the
    standard AWS environment variable of the process that uploads:

    ============ ===================================================== ============================
    parameter    meaning                                               environment fallback
    ============ ===================================================== ============================
    endpoint     ``http(s)://host:port`` of a store other than AWS     ``AWS_ENDPOINT_URL_S3``,
                                                                       ``AWS_ENDPOINT_URL``
    region       signing region                                        ``AWS_REGION``,
                                                                       ``AWS_DEFAULT_REGION``
                                                                       (else ``us-east-1``)
    pathStyle    ``true``: ``endpoint/bucket/key`` addressing;         ``AWS_S3_PATH_STYLE``
                 ``false``: ``bucket.endpoint/key`` (default: path
                 style when an endpoint is given)
    checksum     ``when_required`` (default) or ``when_supported``:    ``AWS_REQUEST_CHECKSUM_``
                 when the client adds its aws-chunked trailing         ``CALCULATION``
                 checksums to uploads. Stores that do not understand
                 them store the chunk framing verbatim (a corrupt
                 file): ``when_required`` sends plain bodies
    ============ ===================================================== ============================

    Credentials never appear in a URI: they come from the uploading process's environment
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``) or the AWS SDK's
    other default sources.

Nothing is ever deleted from deep storage here: a publish that is refused, or whose answer was
lost, may have committed the very objects it named; unreferenced objects only waste space.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from supervisor.errors import InvalidInput, TaskFailed

if TYPE_CHECKING:  # pyarrow is imported when an S3 store is first used
    from pyarrow.fs import S3FileSystem

logger = logging.getLogger(__name__)

SCHEMES = ("file", "s3")
S3_PARAMETERS = ("endpoint", "region", "pathStyle", "checksum")
CHECKSUM_MODES = ("when_required", "when_supported")
S3_LOAD_SPEC_TYPES = ("s3", "s3_zip")
DEFAULT_REGION = "us-east-1"
UPLOAD_ATTEMPTS = 5
COPY_CHUNK_BYTES = 8 * 1024 * 1024


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
    s3_options(text, env={})  # checks the bucket, the prefix and every parameter
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
    """``uri`` with path segments appended (each must be a plain name: no ``/``, ``.`` or ``..``);
    a query (an s3:// URI's settings) stays at the end."""
    for part in parts:
        if not part or part in (".", "..") or "/" in part:
            raise InvalidInput(f"deep storage: '{part}' is not a plain path segment")
    split = urlsplit(uri)
    path = split.path.rstrip("/") + "/" + "/".join(parts)
    return urlunsplit((split.scheme, split.netloc, path, split.query, ""))


# ---------------------------------------------------------------------------------- s3:// URIs


@dataclass(frozen=True)
class S3Options:
    """Where and how to reach an S3-compatible store (no credentials: see the module docs)."""

    endpoint: str | None
    region: str
    path_style: bool
    checksum: Literal["when_required", "when_supported"]


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidInput(f"deep storage: s3 parameter '{name}' must be true or false, got '{value}'")


def s3_bucket_key(uri: str) -> tuple[str, str]:
    """The bucket and the key (or key prefix, without a trailing ``/``) of an ``s3://`` URI."""
    split = urlsplit(uri)
    if split.scheme != "s3":
        raise InvalidInput(f"deep storage: '{uri}' is not an s3:// URI")
    if "@" in split.netloc:
        raise InvalidInput(
            f"deep storage: '{split.scheme}://{split.netloc.rsplit('@', 1)[-1]}...' carries credentials; "
            "give them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
        )
    bucket = split.netloc
    if not bucket:
        raise InvalidInput(f"deep storage: s3 URI '{uri}' names no bucket (s3://bucket/prefix)")
    key = unquote(split.path).strip("/")
    if any(part in (".", "..") for part in key.split("/")) or "//" in key:
        raise InvalidInput(f"deep storage: s3 URI '{uri}' has an empty, '.' or '..' path segment")
    return bucket, key


def s3_options(uri: str, env: Mapping[str, str] | None = None) -> S3Options:
    """The settings of an ``s3://`` URI: its query parameters, else ``env`` (default: the process's)."""
    environ = os.environ if env is None else env
    s3_bucket_key(uri)
    query = dict(parse_qsl(urlsplit(uri).query, keep_blank_values=True))
    unknown = sorted(set(query) - set(S3_PARAMETERS))
    if unknown:
        raise InvalidInput(
            f"deep storage: unknown s3 parameter(s) {unknown} in '{uri}' (known: {list(S3_PARAMETERS)})"
        )

    def pick(name: str, *variables: str) -> str | None:
        if name in query:
            return query[name]
        for variable in variables:
            if environ.get(variable):
                return environ[variable]
        return None

    endpoint = pick("endpoint", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    if endpoint is not None:
        split = urlsplit(endpoint)
        if split.scheme not in ("http", "https") or not split.netloc or split.path not in ("", "/"):
            raise InvalidInput(
                f"deep storage: s3 parameter 'endpoint' must be http(s)://host[:port], got '{endpoint}'"
            )
        endpoint = f"{split.scheme}://{split.netloc}"
    region = pick("region", "AWS_REGION", "AWS_DEFAULT_REGION") or DEFAULT_REGION
    path_style_text = pick("pathStyle", "AWS_S3_PATH_STYLE")
    path_style = endpoint is not None if path_style_text is None else _bool("pathStyle", path_style_text)
    checksum = (pick("checksum", "AWS_REQUEST_CHECKSUM_CALCULATION") or "when_required").lower()
    if checksum == "when_required":
        return S3Options(endpoint, region, path_style, "when_required")
    if checksum == "when_supported":
        return S3Options(endpoint, region, path_style, "when_supported")
    raise InvalidInput(
        f"deep storage: s3 parameter 'checksum' must be one of {list(CHECKSUM_MODES)}, got '{checksum}'"
    )


def with_s3_options(uri: str, **params: str) -> str:
    """``uri`` with the given s3 parameters set (for building settings)."""
    split = urlsplit(uri)
    query = dict(parse_qsl(split.query, keep_blank_values=True))
    query.update(params)
    return urlunsplit((split.scheme, split.netloc, split.path, urlencode(query), ""))


def plain(uri: str) -> str:
    """``uri`` without its query: the name of an object, as segments record it."""
    split = urlsplit(uri)
    return urlunsplit((split.scheme, split.netloc, split.path, "", ""))


_S3_ENV_LOCK = threading.Lock()


def s3_filesystem(
    options: S3Options, env: Mapping[str, str] | None = None, *, create_buckets: bool = False
) -> S3FileSystem:
    """pyarrow's S3 client for ``options``. Credentials: ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` (/ ``AWS_SESSION_TOKEN``) of ``env`` when it has them, else the AWS
    SDK's default chain (the process's environment, its profile files, instance roles)."""
    from pyarrow.fs import AwsStandardS3RetryStrategy, S3FileSystem

    environ = os.environ if env is None else env

    with _S3_ENV_LOCK:
        # The AWS SDK reads the checksum mode from the environment when it builds a client; pyarrow
        # has no parameter for it. Responses are validated only when the store sent a checksum.
        os.environ["AWS_REQUEST_CHECKSUM_CALCULATION"] = options.checksum
        os.environ["AWS_RESPONSE_CHECKSUM_VALIDATION"] = options.checksum
        kwargs: dict[str, Any] = {
            "region": options.region,
            "force_virtual_addressing": not options.path_style,
            "retry_strategy": AwsStandardS3RetryStrategy(max_attempts=3),
            "connect_timeout": 10.0,
            "request_timeout": 60.0,
            "allow_bucket_creation": create_buckets,
        }
        if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
            kwargs["access_key"] = environ["AWS_ACCESS_KEY_ID"]
            kwargs["secret_key"] = environ["AWS_SECRET_ACCESS_KEY"]
            if environ.get("AWS_SESSION_TOKEN"):
                kwargs["session_token"] = environ["AWS_SESSION_TOKEN"]
        if options.endpoint is not None:
            split = urlsplit(options.endpoint)
            kwargs["endpoint_override"] = split.netloc
            kwargs["scheme"] = split.scheme
        return S3FileSystem(**kwargs)


# ---------------------------------------------------------------------------------- loadSpecs


def load_spec(location: str) -> dict[str, Any]:
    """Druid's ``loadSpec`` for a segment at ``location`` (a URI; a bare absolute path means a local file)."""
    scheme = urlsplit(location).scheme
    if scheme in ("", "file"):
        path = local_path(location) if location.startswith("file:") else Path(location)
        return {"type": "local", "path": str(path)}
    if scheme == "s3":
        bucket, key = s3_bucket_key(location)
        if not key:
            raise InvalidInput(f"deep storage: s3 location '{location}' names no object key")
        return {"type": "s3", "bucket": bucket, "key": key}
    raise InvalidInput(f"deep storage: no loadSpec for '{location}'")


def uri_of(spec: Mapping[str, Any]) -> str:
    """The URI a ``loadSpec`` names (the inverse of :func:`load_spec`)."""
    kind = spec.get("type")
    if kind == "local" and isinstance(spec.get("path"), str):
        return Path(spec["path"]).as_uri()
    bucket, key = spec.get("bucket"), spec.get("key")
    if kind in S3_LOAD_SPEC_TYPES and isinstance(bucket, str) and isinstance(key, str):
        return f"s3://{spec['bucket']}/{spec['key']}"
    raise InvalidInput(f"deep storage: loadSpec of type '{kind}' is not supported")


# ---------------------------------------------------------------------------------- the writer


class SegmentStore(Protocol):
    """Where a task's segment files go: it writes them into :meth:`staging_dir`, then hands each
    one to :meth:`store`, which returns the URI the segment is published under once the stored copy
    checks out (its size, and its Parquet footer read back with ``num_rows`` rows)."""

    def staging_dir(self, *parts: str) -> Path: ...

    def store(self, local: Path, num_rows: int) -> str: ...


def check_parquet(source: Any, size: int, expected_size: int, num_rows: int | None, name: str) -> None:
    """That a stored segment file is the one written: ``expected_size`` bytes, a Parquet footer
    that reads, ``num_rows`` rows (unless None)."""
    import pyarrow.parquet as pq

    if size != expected_size:
        raise TaskFailed(f"deep storage: {name} holds {size} bytes, {expected_size} were written")
    try:
        rows = pq.ParquetFile(source).metadata.num_rows
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError subclasses for a corrupt footer
        raise TaskFailed(f"deep storage: {name} is not a readable Parquet file: {e}") from e
    if num_rows is not None and rows != num_rows:
        raise TaskFailed(f"deep storage: {name} holds {rows} rows, {num_rows} were written")


class LocalSegmentStore:
    """``file://`` deep storage: files are written in place (no copy), then checked."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def staging_dir(self, *parts: str) -> Path:
        out = self.root.joinpath(*parts)
        out.mkdir(parents=True, exist_ok=True)
        return out

    def store(self, local: Path, num_rows: int) -> str:
        path = local.absolute()
        if self.root.absolute() not in path.parents:
            raise TaskFailed(f"deep storage: {path} was not written under {self.root}")
        size = path.stat().st_size
        with open(path, "rb") as f:
            check_parquet(f, size, size, num_rows, str(path))
        return path.as_uri()


class S3SegmentStore:
    """``s3://bucket/prefix`` deep storage: files staged in ``staging_root`` (the task's own
    directory) are uploaded under ``prefix/<the same relative path>``, then read back and checked."""

    def __init__(self, uri: str, staging_root: Path, env: Mapping[str, str] | None = None) -> None:
        self.bucket, self.prefix = s3_bucket_key(uri)
        self.options = s3_options(uri, env)
        self.env = env
        self.staging_root = staging_root
        self._fs: S3FileSystem | None = None

    @property
    def fs(self) -> S3FileSystem:
        if self._fs is None:
            self._fs = s3_filesystem(self.options, self.env)
        return self._fs

    def staging_dir(self, *parts: str) -> Path:
        out = self.staging_root.joinpath(*parts)
        out.mkdir(parents=True, exist_ok=True)
        return out

    def key_of(self, local: Path) -> str:
        relative = local.absolute().relative_to(self.staging_root.absolute()).as_posix()
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def store(self, local: Path, num_rows: int) -> str:
        key = self.key_of(local)
        path = f"{self.bucket}/{key}"
        expected = local.stat().st_size
        delay = 0.5
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            try:
                self._upload(local, path)
                info = self.fs.get_file_info(path)
                with self.fs.open_input_file(path) as f:
                    check_parquet(f, info.size or 0, expected, num_rows, f"s3://{path}")
                return f"s3://{path}"
            except (OSError, TaskFailed) as e:
                # the same key again: nothing can have committed it, the publish comes after
                if attempt == UPLOAD_ATTEMPTS:
                    raise TaskFailed(f"deep storage: s3://{path} failed after {attempt} attempts: {e}") from e
                logger.warning("deep storage: s3://%s attempt %d: %s; retrying", path, attempt, e)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def _upload(self, local: Path, path: str) -> None:
        with open(local, "rb") as src, self.fs.open_output_stream(path) as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK_BYTES)


def segment_store(uri: str, staging_root: Path) -> SegmentStore:
    """The store for a task whose spec names the deep storage ``uri`` and whose own directory
    (for staging uploads) is ``staging_root``."""
    scheme = urlsplit(uri).scheme
    if scheme == "s3":
        return S3SegmentStore(uri, staging_root)
    return LocalSegmentStore(local_path(to_uri(uri)))


def open_segment(spec: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Any:
    """A readable file of the segment a ``loadSpec`` names (local, or through ``env``'s S3 settings)."""
    uri = uri_of(spec)
    if uri.startswith("file:"):
        return open(local_path(uri), "rb")
    bucket, key = s3_bucket_key(uri)
    return s3_filesystem(s3_options(f"s3://{bucket}", env), env).open_input_file(f"{bucket}/{key}")


def ensure_bucket(uri: str, timeout_s: float = 120.0, env: Mapping[str, str] | None = None) -> None:
    """Creates the bucket an ``s3://`` URI names unless it exists, retrying while the store does not
    answer yet (a deployment's one-shot step: the tasks themselves never create buckets)."""
    bucket, _ = s3_bucket_key(uri)
    options = s3_options(uri, env)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            s3_filesystem(options, env, create_buckets=True).create_dir(bucket)
            logger.info("deep storage: bucket %s is there", bucket)
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise TaskFailed(
                    f"deep storage: could not create bucket {bucket} in {timeout_s:.0f}s: {e}"
                ) from e
            logger.info("deep storage: bucket %s not created yet: %s", bucket, e)
            time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    """``python -m supervisor.deep_storage ensure-bucket s3://bucket/prefix?...``"""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m supervisor.deep_storage")
    sub = parser.add_subparsers(dest="command", required=True)
    ensure = sub.add_parser("ensure-bucket", help="create the bucket of an s3:// deep storage URI")
    ensure.add_argument("uri")
    ensure.add_argument("--timeout-s", type=float, default=120.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ensure_bucket(to_uri(args.uri), args.timeout_s)
    except (InvalidInput, TaskFailed) as e:
        print(f"deep storage: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
