"""S3 deep storage against a real S3-compatible server (SeaweedFS, scripts/local-seaweedfs):
upload, the check of each stored object, and the loadSpec round trip."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from supervisor import deep_storage as ds
from supervisor.errors import TaskFailed
from tests.harness.s3 import s3_env, s3_root

pytestmark = pytest.mark.integration


def _segment(path: Path, rows: int) -> pa.Table:
    table = pa.table({"__time": list(range(rows)), "id": [f"e{i}" for i in range(rows)]})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table


def test_upload_verify_and_read_back_by_load_spec(s3_endpoint: str, tmp_path: Path) -> None:
    root = s3_root(s3_endpoint)
    bucket, prefix = ds.s3_bucket_key(root)
    env = s3_env(s3_endpoint)
    # settings in the URI (as the Overlord hands them to tasks); credentials from the environment
    uri = f"{root}/deep/storage?endpoint={s3_endpoint}&checksum=when_required"
    store = ds.S3SegmentStore(
        uri, tmp_path / "segments", {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    )
    out = store.staging_dir("ds1", "seq", "task-a")
    # larger than one multipart part (pyarrow uploads parts of 5-10 MB)
    table = _segment(out / "0.parquet", 600_000)
    location = store.store(out / "0.parquet", table.num_rows)
    assert location == f"{root}/deep/storage/ds1/seq/task-a/0.parquet"

    spec = ds.load_spec(location)
    assert spec == {"type": "s3", "bucket": bucket, "key": f"{prefix}/deep/storage/ds1/seq/task-a/0.parquet"}
    assert ds.uri_of(spec) == location
    with ds.open_segment(spec, env) as f:
        back = pq.read_table(f)
    assert back.equals(table), "the object is byte-for-byte a Parquet file of the same rows"
    info = store.fs.get_file_info(f"{bucket}/{prefix}/deep/storage/ds1/seq/task-a/0.parquet")
    assert info.size == (out / "0.parquet").stat().st_size


def test_settings_from_the_environment_alone(s3_endpoint: str, tmp_path: Path) -> None:
    root = s3_root(s3_endpoint)
    store = ds.S3SegmentStore(root, tmp_path / "segments", s3_env(s3_endpoint))
    out = store.staging_dir("ds", "s", "t")
    _segment(out / "x.parquet", 10)
    assert store.store(out / "x.parquet", 10) == f"{root}/ds/s/t/x.parquet"


def test_a_corrupt_upload_is_caught_before_publishing(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an S3 store that keeps aws-chunked framing in the object does: the size and the footer
    no longer match, and the task fails instead of publishing a segment nobody can read."""
    store = ds.S3SegmentStore(f"{s3_root(s3_endpoint)}/p", tmp_path / "segments", s3_env(s3_endpoint))
    out = store.staging_dir("ds", "s", "t")
    _segment(out / "0.parquet", 1000)
    uploads: list[str] = []

    def framed_upload(local: Path, path: str) -> None:
        uploads.append(path)
        data = local.read_bytes()
        with store.fs.open_output_stream(path) as dst:
            dst.write(f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n")

    monkeypatch.setattr(store, "_upload", framed_upload)
    monkeypatch.setattr(ds, "UPLOAD_ATTEMPTS", 2)
    with pytest.raises(TaskFailed, match=r"holds .* bytes"):
        store.store(out / "0.parquet", 1000)
    assert len(uploads) == 2, "retried, then failed"
    # a correct upload of the same key replaces the bad one (nothing published could name it)
    monkeypatch.undo()
    assert store.store(out / "0.parquet", 1000).endswith("/p/ds/s/t/0.parquet")


def test_a_wrong_row_count_is_caught(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ds.S3SegmentStore(s3_root(s3_endpoint), tmp_path / "segments", s3_env(s3_endpoint))
    out = store.staging_dir("ds", "s", "t")
    _segment(out / "0.parquet", 7)
    monkeypatch.setattr(ds, "UPLOAD_ATTEMPTS", 1)
    with pytest.raises(TaskFailed, match="holds 7 rows, 8 were written"):
        store.store(out / "0.parquet", 8)


def test_a_missing_bucket_fails_with_its_name(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ds.S3SegmentStore("s3://no-such-bucket-here/p", tmp_path / "segments", s3_env(s3_endpoint))
    out = store.staging_dir("ds", "s", "t")
    _segment(out / "0.parquet", 3)
    monkeypatch.setattr(ds, "UPLOAD_ATTEMPTS", 1)
    with pytest.raises(TaskFailed, match="no-such-bucket-here"):
        store.store(out / "0.parquet", 3)
