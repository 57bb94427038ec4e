"""Sparse memory retrieval (seed 002): passage SAE build, composite retrieval, API, pages."""

import json
from pathlib import Path

import pytest

from features.models import Activation, Feature, Visibility
from retrieval.models import Passage, PassageCode
from tests.retrieval.conftest import N_PASSAGES, WIDTH, K


def _codes(source) -> dict[int, dict[int, float]]:
    out: dict[int, dict[int, float]] = {}
    for pid, f, v in PassageCode.objects.filter(source=source).values_list("passage_id", "feature_index", "value"):
        out.setdefault(pid, {})[f] = v
    return out


def _busiest_features(source, n):
    from django.db.models import Count

    rows = (
        PassageCode.objects.filter(source=source)
        .values("feature_index")
        .annotate(c=Count("id"))
        .order_by("-c", "feature_index")
    )
    return [r["feature_index"] for r in rows[:n]]


def test_build_stores_passages_codes_and_dashboards(memory_source):
    """Rows match a direct computation: the saved SAE (SAE.load_from_disk) encoding fresh embeddings."""
    import torch
    from sae_lens import SAE

    from inference.runtime.passage_sae import corpus_passages, passages_embed

    source, job = memory_source
    sae = SAE.load_from_disk(source.sae_path)
    assert sae.cfg.d_sae == WIDTH and sae.cfg.metadata.hook_name == "sentence_embedding"
    assert json.loads((Path(source.sae_path) / "metrics.json").read_text())["l0"] <= K
    assert Passage.objects.filter(source=source).count() == N_PASSAGES
    assert Feature.objects.filter(source=source).count() == WIDTH
    passages = corpus_passages("brown", max_passages=N_PASSAGES, seed=42)
    rows = list(Passage.objects.filter(source=source).order_by("data_index"))
    assert [(r.data_source, r.genre, r.text) for r in rows] == [(p.data_source, p.genre, p.text) for p in passages]
    assert {r.genre for r in rows} >= {"press: reportage", "learned"}  # the sample spans genres

    # codes of three passages, recomputed from scratch
    codes = _codes(source)
    for row in rows[:3]:
        with torch.no_grad():
            dense = sae.encode(passages_embed([row.text]))[0]
        expect = {int(i): float(dense[i]) for i in (dense > 0).nonzero().flatten()}
        assert codes[row.pk].keys() == expect.keys()
        for f, v in expect.items():
            assert codes[row.pk][f] == pytest.approx(v, rel=1e-4, abs=1e-5)

    # dashboards: each activation is one passage, value on every word, pointing back at its passage
    f = _busiest_features(source, 1)[0]
    feature = Feature.objects.get(source=source, index=f)
    firing = PassageCode.objects.filter(source=source, feature_index=f)
    assert feature.max_act_approx == pytest.approx(max(c.value for c in firing), rel=1e-4)
    assert feature.frac_nonzero == pytest.approx(firing.count() / N_PASSAGES)
    acts = list(Activation.objects.filter(feature=feature).order_by("-max_value"))
    assert acts[0].max_value == pytest.approx(feature.max_act_approx, abs=1e-4)
    by_index = {r.data_index: r for r in rows}
    for act in acts:
        passage = by_index[act.data_index]
        assert act.data_source == passage.data_source
        assert act.tokens == passage.text.split()[: len(act.tokens)]
        assert set(act.values) == {act.max_value}
        assert act.max_value == pytest.approx(codes[passage.pk][f], abs=1e-4)
    tops = [a for a in acts if a.bin_min == -1]
    assert [round(a.max_value, 4) for a in tops] == sorted((round(c.value, 4) for c in firing), reverse=True)[
        : len(tops)
    ]


def _direct_scores(source, positive, negative):
    codes = _codes(source)
    maxima = {}
    for fv in codes.values():
        for f, v in fv.items():
            maxima[f] = max(maxima.get(f, 0.0), v)
    scores = {}
    for pid, fv in codes.items():
        if not any(fv.get(i, 0) > 0 for i, _ in positive):
            continue
        scores[pid] = sum(w * fv.get(i, 0) / maxima[i] for i, w in positive if i in maxima) - sum(
            w * fv.get(i, 0) / maxima[i] for i, w in negative if i in maxima
        )
    return scores


def test_planted_passage_ranks_first(memory_source, api_client):
    from retrieval.services import passage_plant

    source, _ = memory_source
    a, b, c, d = _busiest_features(source, 4)
    mx = {
        f: max(PassageCode.objects.filter(source=source, feature_index=f).values_list("value", flat=True))
        for f in (a, b, c, d)
    }
    planted = passage_plant(
        source=source,
        text="A planted memory, strong on A and B, weak on C.",
        genre="planted",
        codes={a: 0.9 * mx[a], b: 0.9 * mx[b], c: 0.3 * mx[c]},
    )
    # a decoy stronger on A and B than the planted passage, but also strong on D (which the query excludes)
    decoy = passage_plant(
        source=source, text="A decoy, strong on A, B and D.", genre="planted", codes={a: mx[a], b: mx[b], d: mx[d]}
    )
    positive, negative = [(a, 2.0), (b, 2.0), (c, 0.5)], [(d, 2.0)]
    body = {
        "modelId": "all-minilm-l6-v2",
        "source": "0-passage-sae",
        "positive": [{"index": i, "weight": w} for i, w in positive],
        "negative": [{"index": i, "weight": w} for i, w in negative],
        "k": 100,
    }
    res = api_client.post("/api/retrieve", body, format="json")
    assert res.status_code == 200, res.content
    results = res.json()["results"]
    assert results[0]["passageId"] == planted.pk and results[0]["planted"]
    ranks = {r["passageId"]: r["rank"] for r in results}
    assert ranks.get(decoy.pk, 10**6) > 1
    top = results[0]
    contrib = {x["index"]: x for x in top["contributions"]}
    assert contrib[a]["contribution"] == pytest.approx(2.0 * 0.9, rel=1e-6)
    assert contrib[c]["contribution"] == pytest.approx(0.5 * 0.3, rel=1e-6)
    assert contrib[d]["value"] == 0 and contrib[d]["sign"] == "negative"
    # every score and the whole ranking agree with a direct computation over all stored codes
    direct = _direct_scores(source, positive, negative)
    assert len(results) == min(100, len(direct))
    for r in results:
        assert r["score"] == pytest.approx(direct[r["passageId"]], rel=1e-6, abs=1e-9)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert sorted(direct.values(), reverse=True)[: len(results)] == pytest.approx([r["score"] for r in results])
    # trailing slash works too, and k limits the answer
    res = api_client.post("/api/retrieve/", {**body, "k": 1}, format="json")
    assert [r["passageId"] for r in res.json()["results"]] == [planted.pk]


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"positive": []}, "positive"),
        ({"positive": None}, "positive"),
        ({"k": 0}, "k"),
        ({"positive": [{"index": -1}]}, "positive"),
        ({"positive": [{"index": 1, "weight": -2}]}, "weight"),
        ({"negative": [{"index": 3}]}, "negative"),  # 3 is already a positive term
        ({"modelId": None}, "modelId"),
    ],
)
def test_retrieve_validation_names_the_field(db, api_client, patch, field):
    body = {"modelId": "m", "source": "s", "positive": [{"index": 3}], "negative": [], **patch}
    res = api_client.post("/api/retrieve", body, format="json")
    assert res.status_code == 400
    assert field in res.json()["message"]


def test_private_source_is_404_for_others(memory_source, api_client, user, other_user):
    source, _ = memory_source
    source.visibility, source.creator = Visibility.PRIVATE, user
    source.save()
    body = {"modelId": source.model_id, "source": source.name, "positive": [{"index": 0}]}
    assert api_client.post("/api/retrieve", body, format="json").status_code == 404
    api_client.force_authenticate(other_user)
    res = api_client.post("/api/retrieve", body, format="json")
    assert res.status_code == 404 and "message" in res.json()
    assert api_client.get(f"/api/genre-spread/{source.model_id}/{source.name}/0").status_code == 404
    api_client.force_authenticate(user)
    assert api_client.post("/api/retrieve", body, format="json").status_code == 200
    assert api_client.post("/api/retrieve", {**body, "source": "nope"}, format="json").status_code == 404


def test_genre_spread_counts_and_pages(memory_source, client):
    from django.template import Context, Template

    from retrieval.selectors import genre_spread

    source, _ = memory_source
    f = _busiest_features(source, 1)[0]
    feature = Feature.objects.get(source=source, index=f)
    spread = genre_spread(feature=feature)
    firing = list(PassageCode.objects.filter(source=source, feature_index=f).values_list("passage__genre", flat=True))
    assert spread["n_firing"] == len(firing) and spread["n_passages"] == N_PASSAGES
    for row in spread["rows"]:
        assert row["firing"] == firing.count(row["genre"])
        assert row["passages"] == Passage.objects.filter(source=source, genre=row["genre"]).count()
    assert sum(r["top"] for r in spread["rows"]) == min(20, len(firing))
    # the include the feature dashboard uses, and the page of its own
    html = Template('{% include "retrieval/genre_spread.html" %}').render(Context({"feature": feature}))
    assert 'id="genre-spread"' in html and spread["rows"][0]["genre"] in html
    page = client.get(f"/retrieve/genres/{source.model_id}/{source.name}/{f}")
    assert page.status_code == 200 and spread["rows"][0]["genre"] in page.content.decode()
    api = client.get(f"/api/genre-spread/{source.model_id}/{source.name}/{f}").json()
    assert api["n_firing"] == len(firing)


def test_retrieve_page(memory_source, client):
    from retrieval.services import passage_plant

    source, _ = memory_source
    a, b = _busiest_features(source, 2)
    passage_plant(source=source, text="Planted for the page test.", codes={a: 1e3, b: 1e3})
    res = client.get("/retrieve", {"source": f"{source.model_id}/{source.name}", "positive": f"{a}:2, {b}", "k": 5})
    html = res.content.decode()
    assert res.status_code == 200 and html.count('class="passage"') == 5
    rows = html.split('class="passage"')[1:]
    assert "Planted for the page test." in rows[0]  # ranked first
    bad = client.get("/retrieve", {"source": f"{source.model_id}/{source.name}", "positive": "x:y"}).content.decode()
    assert 'id="retrieve-error"' in bad and "positive" in bad
