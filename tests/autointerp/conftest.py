"""Autointerp fixtures: a real `serve_llm` subprocess (SmolLM2-135M-Instruct) and small planted sources."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llm_server():
    """Base URL of a real OpenAI-compatible server for the bundled SmolLM2 (started once per session)."""
    port = free_port()
    env = dict(os.environ, MEMICOS_ENV="test", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve_llm", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve_llm exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1).read()
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("serve_llm did not start within 120 s")
    yield url
    proc.terminate()
    proc.wait(20)


@pytest.fixture
def llm_env(llm_server, monkeypatch):
    """Point autointerp at the test server for one test."""
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    monkeypatch.setenv("AUTOINTERP_LLM_RETRIES", "0")
    return llm_server


@pytest.fixture
def dead_endpoint(monkeypatch):
    """An endpoint where nothing listens (a port we bound and released)."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("AUTOINTERP_LLM_RETRIES", "1")
    monkeypatch.setenv("AUTOINTERP_LLM_TIMEOUT", "3")
    return url
