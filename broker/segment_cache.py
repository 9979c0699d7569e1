"""The Broker's local copies of segments that live in S3 deep storage: a bounded, LRU segment cache.

DuckDB reads only local files here (its ``httpfs`` extension is not installed, and each query's
database may open nothing but the segment files it reads, ``allowed_paths``): a segment whose
loadSpec names an object (``s3``/``s3_zip``) is downloaded once into this cache and read from there.
As Druid's Historicals do (design/historical.md, "Loading and serving segments": each one pulls the
segment files from deep storage into its *segment cache*, ``druid.segmentCache.locations`` with a
``maxSize``), except that a segment is pulled when a query first needs it, and the least recently
used unpinned files make room when the cache is full.

- **Bounded**: the files in the cache never add up to more than ``max_bytes``; a query whose own
  segments do not fit is refused (Druid's ``Resource limit exceeded``), never half-answered.
- **Each segment once**: concurrent queries that need the same missing segment wait for one
  download; a file a running query reads is pinned and never evicted under it.
- **Verified, atomic**: a download goes to ``<dir>/.incoming/``; its size must be the object's (and
  the segment's published ``size``), its Parquet footer must read with the published ``numRows``;
  only then is it renamed into place. A restart keeps the complete files and deletes the rest.

``file://`` segments are not copied: they are read where they are.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from broker.errors import QueryUnavailable, ResourceLimitExceeded
from supervisor.deep_storage import S3Options, check_parquet, s3_bucket_key, s3_filesystem, s3_options, uri_of
from supervisor.errors import IndexerError

if TYPE_CHECKING:
    from pyarrow.fs import S3FileSystem

    from broker.catalog import Segment

logger = logging.getLogger(__name__)

SUFFIX = ".parquet"
INCOMING = ".incoming"
CHUNK_BYTES = 8 * 1024 * 1024
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
SIZE_PATTERN = r"^[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"


def parse_size(text: str) -> int:
    """Bytes of a size such as ``10GiB``, ``512MB`` or ``100B`` (see :data:`SIZE_PATTERN`)."""
    stripped = text.strip()
    number = stripped.rstrip("BKMGTikbmgt ")
    unit = stripped[len(number) :].strip().upper()
    if unit not in _UNITS or not number:
        raise ValueError(f"'{text}' is not a size (e.g. 512MB, 10GiB)")
    return int(float(number) * _UNITS[unit])


def is_remote(segment: Segment) -> bool:
    """Whether the segment's loadSpec names an object in S3 (else a local file)."""
    return str(segment.payload.get("loadSpec", {}).get("type")) in ("s3", "s3_zip")


class SegmentCache:
    """Local copies of S3 segments under ``root``, at most ``max_bytes`` of them.

    ``deep_storage``: an ``s3://`` URI whose parameters (endpoint, region, pathStyle, checksum; see
    :mod:`supervisor.deep_storage`) say how to reach the store; empty: the ``AWS_*`` variables of
    ``env`` (default: the process's environment). Credentials always come from ``env``.
    """

    def __init__(
        self,
        root: Path,
        max_bytes: int,
        deep_storage: str = "",
        env: Mapping[str, str] | None = None,
        wait_s: float = 600.0,
    ) -> None:
        self.root = root.absolute()
        self.max_bytes = max_bytes
        self.env = env
        self.wait_s = wait_s
        self._settings_uri = deep_storage if deep_storage.startswith("s3:") else ""
        self._lock = threading.Lock()
        self._files: OrderedDict[str, int] = OrderedDict()  # file name -> bytes, least recent first
        self._reserved: dict[str, int] = {}  # downloads under way: file name -> bytes
        self._loading: dict[str, threading.Event] = {}
        self._pins: dict[str, int] = {}
        self._filesystems: dict[S3Options, S3FileSystem] = {}
        self.downloads = 0
        self._scanned = False

    def _scan(self) -> None:
        """What a previous run left: complete files are kept (oldest first), partial ones deleted
        (once, when the first S3 segment is needed: a Broker on file:// deep storage makes no cache)."""
        if self._scanned:
            return
        self._scanned = True
        incoming = self.root / INCOMING
        incoming.mkdir(parents=True, exist_ok=True)
        for partial in incoming.iterdir():
            partial.unlink(missing_ok=True)
        found = sorted(
            (p.stat().st_mtime, p.name, p.stat().st_size)
            for p in self.root.iterdir()
            if p.name.endswith(SUFFIX)
        )
        for _mtime, name, size in found:
            self._files[name] = size
        self._evict(0)
        if found:
            logger.info("segment cache %s: %d files, %d bytes", self.root, len(self._files), self.used_bytes)

    @property
    def used_bytes(self) -> int:
        return sum(self._files.values()) + sum(self._reserved.values())

    def path_for(self, segment_id: str) -> Path:
        """Where the local copy of segment ``segment_id`` is (or will be)."""
        return self.root / (quote(segment_id, safe="") + SUFFIX)

    def cached(self) -> list[str]:
        """The file names in the cache, least recently used first."""
        with self._lock:
            self._scan()
            return list(self._files)

    @contextmanager
    def hold(self, segments: Iterable[Segment]) -> Iterator[None]:
        """Makes every S3 segment of ``segments`` local (downloading the missing ones) and keeps
        them from eviction until the block ends."""
        remote = {self.path_for(s.id).name: s for s in segments if is_remote(s)}
        if not remote:
            yield
            return
        with self._lock:
            self._scan()
            for name in remote:
                self._pins[name] = self._pins.get(name, 0) + 1
        try:
            for name, segment in remote.items():
                self._ensure(name, segment)
            yield
        finally:
            with self._lock:
                for name in remote:
                    left = self._pins.pop(name, 1) - 1
                    if left > 0:
                        self._pins[name] = left

    def _ensure(self, name: str, segment: Segment) -> None:
        deadline = time.monotonic() + self.wait_s
        while True:
            with self._lock:
                if name in self._files:
                    self._files.move_to_end(name)
                    return
                waiting = self._loading.get(name)
                if waiting is None:
                    self._loading[name] = threading.Event()
                    break
            if not waiting.wait(max(0.0, deadline - time.monotonic())):
                raise QueryUnavailable(
                    f"segment {segment.id}: its download did not finish in {self.wait_s:.0f}s"
                )
        try:
            self._download(name, segment)
        finally:
            with self._lock:
                self._reserved.pop(name, None)
                self._loading.pop(name).set()

    def _filesystem(self, options: S3Options) -> S3FileSystem:
        with self._lock:
            fs = self._filesystems.get(options)
        if fs is None:
            fs = s3_filesystem(options, self.env)
            with self._lock:
                self._filesystems.setdefault(options, fs)
        return fs

    def _download(self, name: str, segment: Segment) -> None:
        uri = uri_of(segment.payload["loadSpec"])
        bucket, key = s3_bucket_key(uri)
        fs = self._filesystem(s3_options(self._settings_uri or f"s3://{bucket}", self.env))
        started = time.monotonic()
        try:
            size = fs.get_file_info(f"{bucket}/{key}").size
            if size is None:
                raise QueryUnavailable(f"segment {segment.id}: {uri} is not in deep storage")
            if segment.size and size != segment.size:
                raise QueryUnavailable(
                    f"segment {segment.id}: {uri} holds {size} bytes, it was published with {segment.size}"
                )
            self._reserve(name, size, segment)
            target = self.path_for(segment.id)
            part = self.root / INCOMING / f"{name}.{uuid.uuid4().hex[:8]}"
            try:
                with fs.open_input_stream(f"{bucket}/{key}") as src, open(part, "wb") as dst:
                    while chunk := src.read(CHUNK_BYTES):
                        dst.write(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
                with open(part, "rb") as f:
                    check_parquet(f, part.stat().st_size, size, segment.num_rows or None, uri)
                os.replace(part, target)
            finally:
                part.unlink(missing_ok=True)
        except OSError as e:
            raise QueryUnavailable(f"segment {segment.id}: cannot read {uri} from deep storage: {e}") from e
        except IndexerError as e:  # a size or footer that does not check out, a bad URI
            raise QueryUnavailable(f"segment {segment.id}: {e}") from e
        with self._lock:
            self._files[name] = size
            self.downloads += 1
        logger.info(
            "segment %s: %d bytes from %s in %.2fs", segment.id, size, uri, time.monotonic() - started
        )

    def _reserve(self, name: str, size: int, segment: Segment) -> None:
        with self._lock:
            if not self._evict(size):
                raise ResourceLimitExceeded(
                    f"segment {segment.id} ({size} bytes) does not fit in the Broker's segment cache "
                    f"({self.max_bytes} bytes, {self.used_bytes} of them held by running queries); "
                    "raise segment_cache_size or query fewer intervals"
                )
            self._reserved[name] = size

    def _evict(self, room: int) -> bool:
        """Deletes least recently used unpinned files until ``room`` more bytes fit (lock held)."""
        for name in list(self._files):
            if self.used_bytes + room <= self.max_bytes:
                break
            if self._pins.get(name):
                continue
            (self.root / name).unlink(missing_ok=True)
            logger.info("segment cache: evicted %s (%d bytes)", name, self._files.pop(name))
        return self.used_bytes + room <= self.max_bytes
