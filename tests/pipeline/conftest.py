import subprocess

import pytest

from tests.conftest import ROOT

TINY = {"kind": "tiny", "params": {"n_layers": 2, "d_model": 64, "n_ctx": 128, "seed": 0}}


@pytest.fixture(scope="session")
def brown():
    """The Brown corpus in var/corpus/brown (scripts/fetch_brown.sh is idempotent; `make test` runs it too)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "fetch_brown.sh")], check=True)


@pytest.fixture
def pipeline_var(tmp_path, settings):
    """SAEs and dashboard checkpoints under a temporary var dir (the corpus cache stays shared)."""
    settings.VAR_DIR = tmp_path
    return tmp_path


@pytest.fixture
def tiny_model(db):
    from features.models import Model

    return Model.objects.create(id="tiny-pipeline", display_name="Tiny (test)", loader=TINY)
