"""S3-compatible deep storage for tests: SeaweedFS's gateway (``scripts/local-seaweedfs``), a bucket
per test, and the environment that points a process at it."""

from __future__ import annotations

import uuid

from supervisor.deep_storage import S3Options, s3_filesystem

#: SeaweedFS runs without identities here: any key pair is accepted, but the client signs with one
TEST_ACCESS_KEY = "indexer-test"
TEST_SECRET_KEY = "indexer-test-secret"


def s3_env(endpoint: str) -> dict[str, str]:
    """What a process needs to reach the test store through the standard AWS variables."""
    return {
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_REGION": "us-east-1",
    }


#: one bucket for every test: SeaweedFS gives each bucket volumes of its own, and a test server has
#: few (-volume.max); each test writes under a prefix of its own instead
TEST_BUCKET = "indexer-tests"


def s3_root(endpoint: str, prefix: str = "test") -> str:
    """``s3://indexer-tests/<prefix>-<random>``: a place of its own in the test bucket (created once)."""
    options = S3Options(endpoint=endpoint, region="us-east-1", path_style=True, checksum="when_required")
    s3_filesystem(options, s3_env(endpoint), create_buckets=True).create_dir(TEST_BUCKET)
    return f"s3://{TEST_BUCKET}/{prefix}-{uuid.uuid4().hex[:12]}"
