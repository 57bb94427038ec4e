"""Fixtures for the seed systems: a small passage-SAE source built on real Brown paragraphs."""

import pytest

N_PASSAGES = 120
WIDTH = 32
K = 4


@pytest.fixture(scope="session")
def retrieval_var(tmp_path_factory):
    """One var dir per session: the embeddings and SAE built by the first test are reused by the others."""
    return tmp_path_factory.mktemp("retrieval-var")


@pytest.fixture
def memory_source(db, settings, retrieval_var):
    """Build (or, after the first time in this session, rebuild from the cached embeddings and SAE) the source."""
    from features.models import Source
    from features.services.jobs import job_run
    from retrieval.services import memory_source_job_create

    settings.VAR_DIR = retrieval_var
    job = memory_source_job_create(
        source_id="0-passage-sae",
        max_passages=N_PASSAGES,
        width=WIDTH,
        k=K,
        steps=150,
        batch_size=64,
        lr=3e-3,
        send=False,
    )
    job = job_run(job_id=job.pk)
    assert job.status == "SUCCEEDED", job.error
    return Source.objects.get(model_id="all-minilm-l6-v2", name="0-passage-sae"), job
