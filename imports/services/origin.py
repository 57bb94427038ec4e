"""Where a v1 dataset lives: an S3(-compatible) bucket + prefix, or a local directory with the same layout.

Listing uses ListObjectsV2 with continuation tokens (the paginator), so folders with more than 1000
objects are complete (Neuronpedia's importer stops at 1000). Access is anonymous (unsigned) unless
credentials are given, as the public `neuronpedia-datasets` bucket needs.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from memicos_site.env import env_str

DEFAULT_BUCKET = "neuronpedia-datasets"
DEFAULT_PREFIX = "v1/"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class RemoteObject:
    key: str  # relative to the origin's prefix
    size: int
    etag: str


@dataclass(frozen=True)
class OriginParams:
    """Everything needed to reach a dataset; stored on ImportRun (secrets stay in the environment)."""

    bucket: str = ""
    prefix: str = ""
    endpoint_url: str = ""
    region: str = ""
    directory: str = ""

    @classmethod
    def from_options(cls, *, bucket=None, prefix=None, endpoint_url=None, region=None, directory=None) -> OriginParams:
        if directory:
            return cls(directory=str(Path(directory).resolve()))
        return cls(
            bucket=bucket or env_str("IMPORTS_S3_BUCKET", DEFAULT_BUCKET),
            prefix=_slash(prefix if prefix is not None else env_str("IMPORTS_S3_PREFIX", DEFAULT_PREFIX)),
            endpoint_url=endpoint_url or env_str("IMPORTS_S3_ENDPOINT_URL", "") or "",
            region=region or env_str("IMPORTS_S3_REGION", DEFAULT_REGION),
        )

    def as_dict(self) -> dict:
        return asdict(self)


def _slash(prefix: str) -> str:
    prefix = (prefix or "").lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


class Origin:
    label: str
    params: OriginParams

    def list(self, sub: str) -> list[RemoteObject]:
        raise NotImplementedError

    def folders(self, sub: str) -> list[str]:
        raise NotImplementedError

    def open(self, key: str) -> BinaryIO:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def put_file(self, key: str, path: Path):
        raise NotImplementedError

    def read_bytes(self, key: str) -> bytes | None:
        if not self.exists(key):
            return None
        with self.open(key) as stream:
            return stream.read()


_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def _s3_client(endpoint_url: str | None, region: str | None):
    """One client per endpoint/region/credentials per process: making one parses botocore's JSON service
    models (~0.1 s of CPU), which per file was a tenth of an import's Python time. Clients are thread-safe;
    sessions (which make them) are not, hence the lock."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    signed = bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))
    key = (endpoint_url, region, signed, os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_PROFILE"))
    with _clients_lock:
        if key not in _clients:
            config = Config(
                retries={"max_attempts": 5, "mode": "standard"},
                **({} if signed else {"signature_version": UNSIGNED}),
            )
            _clients[key] = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, region_name=region, config=config
            )
        return _clients[key]


class S3Origin(Origin):
    def __init__(self, params: OriginParams):
        self.params = params
        self.bucket, self.prefix = params.bucket, params.prefix
        self.client = _s3_client(params.endpoint_url or None, params.region or None)
        where = f"@{params.endpoint_url}" if params.endpoint_url else ""
        self.label = f"s3://{self.bucket}/{self.prefix}{where}"

    def _pages(self, prefix: str, **kwargs):
        paginator = self.client.get_paginator("list_objects_v2")
        yield from paginator.paginate(Bucket=self.bucket, Prefix=prefix, **kwargs)

    def list(self, sub: str) -> list[RemoteObject]:
        full = self.prefix + sub
        out = []
        for page in self._pages(full):
            for obj in page.get("Contents", []):
                out.append(RemoteObject(obj["Key"][len(self.prefix) :], obj["Size"], obj["ETag"].strip('"')))
        return out

    def folders(self, sub: str) -> list[str]:
        full = self.prefix + _slash(sub) if sub else self.prefix
        names = []
        for page in self._pages(full, Delimiter="/"):
            for cp in page.get("CommonPrefixes", []):
                names.append(cp["Prefix"][len(full) :].rstrip("/"))
        return names

    def open(self, key: str) -> BinaryIO:
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]

    def read_bytes(self, key: str) -> bytes | None:
        """A small optional file (metadata, config), or None when absent. GET rather than HEAD: public
        buckets grant s3:GetObject, and a HEAD answered 403 would not tell absence from refusal."""
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def put_file(self, key: str, path: Path):
        self.client.upload_file(str(path), self.bucket, self.prefix + key)


class DirOrigin(Origin):
    def __init__(self, params: OriginParams):
        self.params = params
        self.root = Path(params.directory)
        self.label = f"dir:{self.root}"

    def list(self, sub: str) -> list[RemoteObject]:
        base = self.root / sub
        if not base.exists():
            return []
        out = []
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            st = path.stat()
            # mtime+size stand in for an ETag: a rewritten file gets a new one without hashing it
            out.append(RemoteObject(str(path.relative_to(self.root)), st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}"))
        return out

    def folders(self, sub: str) -> list[str]:
        base = self.root / sub if sub else self.root
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []

    def open(self, key: str) -> BinaryIO:
        return open(self.root / key, "rb")

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def put_file(self, key: str, path: Path):
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(target))


def origin_from_params(params: OriginParams | dict) -> Origin:
    if isinstance(params, dict):
        params = OriginParams(**params)
    return DirOrigin(params) if params.directory else S3Origin(params)


def origin_from_url(url: str, *, endpoint_url: str | None = None) -> Origin:
    """`s3://bucket/prefix` or a directory path (export targets)."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        return S3Origin(OriginParams.from_options(bucket=bucket, prefix=prefix, endpoint_url=endpoint_url))
    return DirOrigin(OriginParams.from_options(directory=url))
