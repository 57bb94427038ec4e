"""A real S3 server (moto) on loopback for the import tests, and datasets in the v1 layout on it."""

import json
import socket
import subprocess
import sys
import time
import uuid

import boto3
import pytest
import requests
from botocore.config import Config

from tests.imports.dataset import DatasetSpec, SourceSpec, s3_put, write_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=0.5)
            break
        except requests.RequestException:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def s3_client(s3_endpoint):
    # moto accepts any credentials for writing; the importer itself reads unsigned (anonymous)
    return boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="test",
        aws_secret_access_key="test", config=Config(retries={"max_attempts": 2}),
    )  # fmt: skip


@pytest.fixture
def new_bucket(s3_client):
    """new_bucket() → a fresh public-read bucket name (each test gets its own dataset)."""

    def make() -> str:
        name = f"ds-{uuid.uuid4().hex[:12]}"
        s3_client.create_bucket(Bucket=name)
        # public read, like neuronpedia-datasets: the importer reads anonymously
        statement = {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
                     "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]}  # fmt: skip
        s3_client.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
        return name

    return make


@pytest.fixture
def no_aws_credentials(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


SMALL = DatasetSpec(
    model_id="tiny-gpt",
    sources=[
        SourceSpec("0-res-tt", n_features=40, acts_per_feature=3, batch_size=16),
        SourceSpec("1-res-tt", n_features=24, acts_per_feature=2, batch_size=1024),
        SourceSpec("0-att-tt", n_features=10, acts_per_feature=2, batch_size=4, explanations=False),
    ],
)


@pytest.fixture
def small_dataset(s3_client, new_bucket, no_aws_credentials):
    bucket = new_bucket()
    rows = write_dataset(s3_put(s3_client, bucket, "v1/"), SMALL)
    return {"bucket": bucket, "prefix": "v1/", "rows": rows, "spec": SMALL}
