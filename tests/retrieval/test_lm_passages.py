"""Composite retrieval over the corpus passages of a language-model SAE (per-passage max activation)."""

import pytest

from retrieval.models import Passage, PassageCode
from tests.inference.conftest import write_sae

TINY_LOADER = {"kind": "tiny", "params": {"n_layers": 2, "d_model": 64, "n_ctx": 256, "seed": 0}}


@pytest.fixture
def lm_source(db, tmp_path):
    from tests.factories import ModelFactory, SourceFactory, SourceSetFactory

    model = ModelFactory(id="tiny-passages", loader=TINY_LOADER, inference_enabled=True, layers=2, dimension=64)
    sae_dir = write_sae(
        tmp_path / "sae", architecture="standard", hook="blocks.0.hook_resid_post", d_in=64, d_sae=48, seed=3
    )
    return SourceFactory(
        model=model, source_set=SourceSetFactory(model=model, name="res-t"), name="0-res-t", sae_path=str(sae_dir)
    )


def test_lm_passage_codes_are_per_passage_max_and_retrievable(lm_source, api_client):
    import torch
    from sae_lens import SAE

    from features.services.jobs import job_run
    from inference.runtime import worker
    from inference.runtime.dashboards import hook_acts
    from retrieval.services import lm_codes_job_create

    lm = worker.model_for("tiny-passages", TINY_LOADER)
    job = lm_codes_job_create(model_id="tiny-passages", source_id="0-res-t", max_passages=10, max_tokens=24, send=False)
    job = job_run(job_id=job.pk, lm=lm)
    assert job.status == "SUCCEEDED", job.error
    passages = list(Passage.objects.filter(source=lm_source).order_by("data_index"))
    assert len(passages) == 10 and all(p.genre for p in passages)

    # direct computation for two passages: run alone (no padding), max over non-BOS positions
    sae = SAE.load_from_disk(lm_source.sae_path)
    for p in passages[:2]:
        ids = [lm.tokenizer.bos_token_id] + lm.tokenizer(p.text, add_special_tokens=False)["input_ids"][:23]
        with torch.no_grad():
            acts = sae.encode(hook_acts(lm, torch.tensor([ids]), "blocks.0.hook_resid_post"))[0, 1:]
        expect = acts.amax(0)
        stored = dict(PassageCode.objects.filter(passage=p).values_list("feature_index", "value"))
        assert stored.keys() == {int(i) for i in (expect > 0).nonzero().flatten()}
        for f, v in stored.items():
            assert v == pytest.approx(float(expect[f]), rel=1e-4, abs=1e-5)

    # composite retrieval works the same way over this source
    f = PassageCode.objects.filter(source=lm_source).order_by("-value").first()
    res = api_client.post(
        "/api/retrieve",
        {"modelId": "tiny-passages", "source": "0-res-t", "positive": [{"index": f.feature_index}], "k": 3},
        format="json",
    )
    assert res.status_code == 200, res.content
    top = res.json()["results"][0]
    assert top["passageId"] == f.passage_id and top["score"] == pytest.approx(1.0)
