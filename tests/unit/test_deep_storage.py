"""Deep-storage URIs, loadSpecs and the local segment store (no S3 server: see
tests/integration/test_s3_deep_storage.py for that)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from overlord.config import OverlordSettings
from supervisor import deep_storage as ds
from supervisor.errors import InvalidInput, TaskFailed


def test_s3_uri_is_accepted_with_its_settings() -> None:
    uri = "s3://deep/prefix/a?endpoint=http://seaweedfs:8333&region=eu-west-1&pathStyle=false&checksum=when_supported"
    assert ds.to_uri(uri) == uri
    assert ds.s3_bucket_key(uri) == ("deep", "prefix/a")
    opts = ds.s3_options(uri, env={})
    assert opts == ds.S3Options("http://seaweedfs:8333", "eu-west-1", False, "when_supported")


def test_s3_settings_fall_back_to_the_aws_environment() -> None:
    env = {
        "AWS_ENDPOINT_URL": "https://store.example:9000",
        "AWS_DEFAULT_REGION": "ap-south-1",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_SUPPORTED",
    }
    opts = ds.s3_options("s3://b", env)
    assert opts == ds.S3Options("https://store.example:9000", "ap-south-1", True, "when_supported")
    env["AWS_ENDPOINT_URL_S3"] = "http://s3only:1"
    env["AWS_S3_PATH_STYLE"] = "false"
    assert ds.s3_options("s3://b", env).endpoint == "http://s3only:1"
    assert ds.s3_options("s3://b", env).path_style is False
    # the URI wins over the environment; AWS itself: virtual hosts, plain uploads by default
    assert ds.s3_options("s3://b?region=us-west-2", env).region == "us-west-2"
    assert ds.s3_options("s3://b", {}) == ds.S3Options(None, "us-east-1", False, "when_required")


@pytest.mark.parametrize(
    ("uri", "names"),
    [
        ("s3:///prefix", "names no bucket"),
        ("s3://key:secret@bucket/p", "credentials"),
        ("s3://b/p?checksum=sometimes", "'checksum'"),
        ("s3://b/p?pathStyle=maybe", "'pathStyle'"),
        ("s3://b/p?endpoint=ftp://x", "'endpoint'"),
        ("s3://b/p?endpoint=http://x/path", "'endpoint'"),
        ("s3://b/p?endPoint=http://x", "unknown s3 parameter"),
        ("s3://b/../p", "'..'"),
        ("gs://b/p", "scheme 'gs'"),
    ],
)
def test_bad_uris_name_what_is_wrong(uri: str, names: str) -> None:
    with pytest.raises(InvalidInput, match=names):
        ds.to_uri(uri)


def test_the_overlord_setting_takes_s3_and_refuses_a_bad_one() -> None:
    assert OverlordSettings(deep_storage="s3://b/p").deep_storage == "s3://b/p"
    with pytest.raises(ValueError, match="deep_storage"):
        OverlordSettings(deep_storage="s3://b/p?checksum=never")


def test_join_keeps_the_settings_at_the_end() -> None:
    assert ds.join("s3://b/p?region=x", "ds", "seq") == "s3://b/p/ds/seq?region=x"
    assert ds.join("file:///a/b/", "c") == "file:///a/b/c"
    assert ds.plain("s3://b/p/k?region=x") == "s3://b/p/k"
    with pytest.raises(InvalidInput):
        ds.join("s3://b", "../x")


def test_load_specs_round_trip() -> None:
    assert ds.load_spec("s3://bucket/pre/fix/seg.parquet") == {
        "type": "s3",
        "bucket": "bucket",
        "key": "pre/fix/seg.parquet",
    }
    assert ds.uri_of(ds.load_spec("s3://bucket/k/x.parquet")) == "s3://bucket/k/x.parquet"
    # Druid's own s3_zip shape names the same object
    assert ds.uri_of({"type": "s3_zip", "bucket": "b", "key": "k/x"}) == "s3://b/k/x"
    assert ds.load_spec("file:///d/x.parquet") == {"type": "local", "path": "/d/x.parquet"}
    with pytest.raises(InvalidInput, match="names no object key"):
        ds.load_spec("s3://bucket")
    with pytest.raises(InvalidInput, match="hdfs"):
        ds.uri_of({"type": "hdfs", "path": "/x"})


def _parquet(path: Path, rows: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"__time": list(range(rows)), "id": [str(i) for i in range(rows)]}), path)
    return path


def test_local_store_writes_in_place_and_checks_the_file(tmp_path: Path) -> None:
    store = ds.segment_store((tmp_path / "deep").as_uri(), tmp_path / "task" / "segments")
    out = store.staging_dir("ds", "seq", "task1")
    assert out == tmp_path / "deep" / "ds" / "seq" / "task1", "local segments are written in place"
    seg = _parquet(out / "0.parquet", 5)
    assert store.store(seg, 5) == seg.as_uri()
    with pytest.raises(TaskFailed, match="holds 5 rows, 6 were written"):
        store.store(seg, 6)
    seg.write_bytes(seg.read_bytes()[:-10])
    with pytest.raises(TaskFailed, match="not a readable Parquet file"):
        store.store(seg, 5)
    with pytest.raises(TaskFailed, match="not written under"):
        store.store(_parquet(tmp_path / "elsewhere.parquet", 1), 1)


def test_s3_store_stages_in_the_task_directory(tmp_path: Path) -> None:
    store = ds.segment_store("s3://bucket/deep?endpoint=http://127.0.0.1:1", tmp_path / "segments")
    assert isinstance(store, ds.S3SegmentStore)
    out = store.staging_dir("ds", "seq", "task1")
    assert out == tmp_path / "segments" / "ds" / "seq" / "task1"
    assert store.key_of(out / "0.parquet") == "deep/ds/seq/task1/0.parquet"
