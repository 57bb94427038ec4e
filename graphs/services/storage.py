"""Where graph JSON lives: an S3(-compatible) bucket when GRAPHS_S3_BUCKET is set (endpoint and region as the
imports use: IMPORTS_S3_ENDPOINT_URL / IMPORTS_S3_REGION, or GRAPHS_S3_ENDPOINT_URL), else VAR_DIR/graphs/.
Objects are stored gzip-encoded, as Neuronpedia's client uploads them; readers get them through our own route,
which checks the graph's visibility (a bucket URL would bypass PRIVATE)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from django.conf import settings

from imports.services.origin import _s3_client
from memicos_site.env import env_str


def _bucket() -> str:
    return env_str("GRAPHS_S3_BUCKET", "") or ""


def _client():
    endpoint = env_str("GRAPHS_S3_ENDPOINT_URL", "") or env_str("IMPORTS_S3_ENDPOINT_URL", "") or None
    return _s3_client(endpoint, env_str("IMPORTS_S3_REGION", "us-east-1"))


def _local(key: str) -> Path:
    root = (Path(settings.VAR_DIR) / "graphs").resolve()
    path = (root / key).resolve()
    if root not in path.parents:
        raise ValueError(f"Bad storage key {key!r}")
    return path


def graph_object_put(*, key: str, body: bytes) -> None:
    """Store gzip bytes under `key`."""
    if _bucket():
        _client().put_object(
            Bucket=_bucket(), Key=key, Body=body, ContentEncoding="gzip", ContentType="application/json"
        )
        return
    path = _local(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(body)
    os.replace(tmp, path)


def graph_object_get(*, key: str) -> bytes | None:
    """The gzip bytes under `key`, or None."""
    if _bucket():
        from botocore.exceptions import ClientError

        try:
            return _client().get_object(Bucket=_bucket(), Key=key)["Body"].read()
        except ClientError:
            return None
    path = _local(key)
    return path.read_bytes() if path.exists() else None


def graph_object_delete(*, key: str) -> None:
    if not key:
        return
    if _bucket():
        _client().delete_object(Bucket=_bucket(), Key=key)
        return
    _local(key).unlink(missing_ok=True)


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6)
