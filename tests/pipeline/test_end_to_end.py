"""The whole path a researcher takes with their own SAE, end to end with a tiny model:
train → `SAE.load_from_disk` → dashboards → rows → feature page in a browser → v1 export → import into an
empty database gives the same rows."""

import pytest
from django.core.management import call_command

from features.models import Activation, Feature, Model, Source

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HOOK = "blocks.1.hook_resid_post"
TINY = {"kind": "tiny", "params": {"n_layers": 2, "d_model": 64, "n_ctx": 128, "seed": 0}}


def _snapshot(model_id: str, source_id: str):
    """Every feature and activation row of a source, keyed by natural keys (database ids left out)."""
    feats = {}
    for f in Feature.objects.filter(model_id=model_id, source__name=source_id).values():
        for k in ("id", "source_id", "created_at", "updated_at"):
            f.pop(k, None)
        feats[f["index"]] = f
    index_of = dict(Feature.objects.filter(model_id=model_id).values_list("id", "index"))
    acts = {}
    for a in Activation.objects.filter(feature__model_id=model_id, feature__source__name=source_id).values():
        a["feature_id"] = index_of[a["feature_id"]]
        a.pop("created_at", None)
        acts[a["id"]] = a
    return feats, acts


def test_train_browse_export_and_reimport(brown, pipeline_var, live_server, page, tmp_path):
    from sae_lens import SAE

    Model.objects.create(id="tiny-e2e", display_name="Tiny (e2e)", loader=TINY)
    call_command(
        "train_sae", "tiny-e2e", "--hook", HOOK, "--arch", "topk", "--k", "4", "--width", "64",
        "--tokens", "8192", "--context-size", "64", "--batch-size-tokens", "512", "--dashboard-tokens", "4096",
    )  # fmt: skip
    source = Source.objects.get(model_id="tiny-e2e", name="1-res-brown")
    sae = SAE.load_from_disk(source.sae_path)
    assert sae.cfg.d_sae == 64 and sae.cfg.metadata.hook_name == HOOK
    assert Feature.objects.filter(source=source).count() == 64

    # the strongest feature's page shows its top context with the max token marked
    best = Feature.objects.filter(source=source).order_by("-max_act_approx").first()
    top = Activation.objects.filter(feature=best, bin_min=-1).order_by("-max_value").first()
    page.goto(f"{live_server.url}/tiny-e2e/1-res-brown/{best.index}/")
    row = page.locator("#top-activations .act-row").first
    shown = row.locator(".tok").evaluate_all("els => els.map(e => e.dataset.tok)")
    assert shown == top.tokens
    assert row.locator(".tok.max").first.get_attribute("data-tok") == top.tokens[top.max_value_token_index]
    assert page.locator("#density-hist svg rect.bar").count() > 0

    before = _snapshot("tiny-e2e", "1-res-brown")
    out = tmp_path / "v1"
    call_command("export_source", "tiny-e2e", "1-res-brown", "--to", str(out))
    assert (out / "tiny-e2e/1-res-brown/features/batch-0.jsonl.gz").exists()
    assert (out / "tiny-e2e/1-res-brown/activations/batch-0.jsonl.gz").exists()

    Model.objects.filter(id="tiny-e2e").delete()  # the model and everything under it: an empty database
    assert not Feature.objects.exists() and not Activation.objects.exists()
    call_command("import_source", "tiny-e2e", "1-res-brown", "--dir", str(out))
    after = _snapshot("tiny-e2e", "1-res-brown")
    assert len(after[0]) == 64 and len(after[1]) == len(before[1]) > 0
    assert after == before
