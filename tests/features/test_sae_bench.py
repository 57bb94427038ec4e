"""/sae-bench, the source page's evals pane and GET /api/evals: rows, filters, visibility, and the plot in Chromium.

The evals here are SAEBench output files built with the same service the job uses (values chosen per source so a
test can tell the rows apart); the job's own numbers are checked in tests/inference/test_evals.py."""

import pytest

from features.models import EvalType, Visibility
from features.selectors import eval_type_metrics
from features.services.evals import EVAL_TYPE_DEFAULTS, eval_output_build, eval_store
from tests.factories import ModelFactory, SourceFactory, SourceSetFactory
from tests.saebench import DEFAULT_DISPLAY, field_names, saebench_eval_types, saebench_output


def _source(model, name, *, arch, width, ev, l0, visibility=Visibility.PUBLIC, creator=None):
    source_set = SourceSetFactory(model=model, name=f"{name.split('-', 1)[1]}")
    source = SourceFactory(
        model=model, source_set=source_set, name=name, visibility=visibility, creator=creator,
        saelens_config={"architecture": arch, "d_sae": width, "d_in": 64},
    )  # fmt: skip
    metrics = {
        "reconstruction_quality": {"explained_variance": ev, "mse": 1.5},
        "sparsity": {"l0": l0, "l1": 3 * l0},
        "model_performance_preservation": {"ce_loss_score": ev - 0.0625},
    }
    eval_store(source=source, output=eval_output_build(eval_type="core", config={}, metrics=metrics, details=[],
                                                       source=source))  # fmt: skip
    return source


@pytest.fixture
def bench(db, user):
    a, b = ModelFactory(id="bench-a"), ModelFactory(id="bench-b")
    return {
        "topk": _source(a, "3-res-topk", arch="topk", width=4096, ev=0.8125, l0=32.0),
        "relu": _source(a, "4-res-relu", arch="standard", width=1024, ev=0.6375, l0=120.0),
        "other": _source(b, "0-res-other", arch="topk", width=1024, ev=0.9125, l0=16.0),
        "private": _source(b, "1-res-secret", arch="jumprelu", width=2048, ev=0.7125, l0=64.0,
                           visibility=Visibility.PRIVATE, creator=user),
    }  # fmt: skip


def _shown(client, query=""):
    page = client.get(f"/sae-bench/{query}")
    assert page.status_code == 200
    html = page.content.decode()
    return {s for s in ("3-res-topk", "4-res-relu", "0-res-other", "1-res-secret") if f'/{s}"' in html}, html


def test_the_table_lists_every_public_source_with_its_headline_metrics(client, bench):
    shown, html = _shown(client)
    assert shown == {"3-res-topk", "4-res-relu", "0-res-other"}
    assert "0.8125" in html and "0.6375" in html and "0.9125" in html and "0.7125" not in html
    assert "Explained variance" in html and "L0" in html


def test_filters_by_model_architecture_and_width_are_query_parameters(client, bench):
    assert _shown(client, "?modelId=bench-a")[0] == {"3-res-topk", "4-res-relu"}
    assert _shown(client, "?saeClass=topk")[0] == {"3-res-topk", "0-res-other"}
    assert _shown(client, "?dSae=1024")[0] == {"4-res-relu", "0-res-other"}
    assert _shown(client, "?modelId=bench-a,bench-b&saeClass=topk&dSae=4096")[0] == {"3-res-topk"}
    assert _shown(client, "?dSae=banana")[0] == {"3-res-topk", "4-res-relu", "0-res-other"}  # ignored, not a 500


def test_a_private_source_shows_only_to_its_owner_and_staff_on_the_page_and_the_api(
    client, bench, user, other_user, staff_user
):
    url = "/api/evals/bench-b/1-res-secret"
    assert client.get(url).status_code == 404 and "message" in client.get(url).json()
    client.force_login(other_user)
    assert "1-res-secret" not in _shown(client)[0] and client.get(url).status_code == 404
    assert client.get("/bench-b/1-res-secret/").status_code == 404
    for viewer in (user, staff_user):
        client.force_login(viewer)
        assert "1-res-secret" in _shown(client)[0]
        (row,) = client.get(url).json()
        assert row["typeName"] == "core" and row["output"]["eval_result_metrics"]["sparsity"]["l0"] == 64.0
        assert "detailedMetrics" not in row and client.get(url + "?details=true").json()[0]["detailedMetrics"] == []


def test_the_source_page_has_an_evals_pane_and_the_api_names_a_missing_type(client, bench):
    html = client.get("/bench-a/3-res-topk/").content.decode()
    assert 'id="evals"' in html and 'data-eval-type="core"' in html and "0.8125" in html
    one = client.get("/api/evals/bench-a/3-res-topk/core").json()
    assert one["sourceId"] == "3-res-topk" and one["output"]["eval_type_id"] == "core"
    missing = client.get("/api/evals/bench-a/3-res-topk/sparse_probing")
    assert missing.status_code == 404 and "sparse_probing" in missing.json()["message"]
    bare = SourceFactory(model=bench["topk"].model, source_set=bench["topk"].source_set, name="9-res-topk")
    assert "No evals for this source yet" in client.get(f"/bench-a/{bare.name}/").content.decode()


def test_the_plot_draws_a_point_per_source_and_links_it_in_chromium(live_server, page, transactional_db, user):
    a, b = ModelFactory(id="bench-a"), ModelFactory(id="bench-b")
    _source(a, "3-res-topk", arch="topk", width=4096, ev=0.8125, l0=32.0)
    _source(a, "4-res-relu", arch="standard", width=1024, ev=0.6375, l0=120.0)
    _source(b, "0-res-other", arch="topk", width=1024, ev=0.9125, l0=16.0)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live_server.url}/sae-bench/?modelId=bench-a")
    page.wait_for_selector("#sae-bench-plot[data-drawn='2']")
    assert page.locator("#sae-bench-plot circle.point").count() == 2
    assert page.locator("#sae-bench-legend .chip").count() == 2  # two architectures, two colours
    box = page.locator("#sae-bench-plot").bounding_box()
    assert box["width"] > 300 and box["height"] > 150
    # higher explained variance is drawn higher
    ys = {c.get_attribute("data-label"): float(c.get_attribute("cy")) for c in page.locator("circle.point").all()}
    assert ys["bench-a/3-res-topk"] < ys["bench-a/4-res-relu"]
    page.locator("circle.point[data-label='bench-a/3-res-topk']").click()
    page.wait_for_url("**/bench-a/3-res-topk/")
    assert page.locator("#evals").is_visible()
    assert errors == []


def test_nan_and_infinite_values_in_a_saebench_file_are_stored_as_null(db):
    source = SourceFactory()
    output = eval_output_build(
        eval_type="core", config={}, metrics={"sparsity": {"l0": float("nan"), "l1": 2.0}},
        details=[{"index": 0, "consistent_activation_heuristic": float("nan"), "encoder_norm": float("inf")}],
        source=source,
    )  # fmt: skip
    row = eval_store(source=source, output=output)
    row.refresh_from_db()
    assert row.output["eval_result_metrics"]["sparsity"] == {"l0": None, "l1": 2.0}
    assert row.detailed_metrics == [{"index": 0, "consistent_activation_heuristic": None, "encoder_norm": None}]


@pytest.mark.parametrize("type_name", ["core", "sparse_probing"])
def test_the_eval_types_computed_here_list_saebenchs_metrics_in_its_order_and_show_the_same_ones(type_name):
    ours = eval_type_metrics(EvalType(name=type_name, output_schema=EVAL_TYPE_DEFAULTS[type_name]["output_schema"]))
    theirs = eval_type_metrics(EvalType(name=type_name, output_schema=saebench_eval_types()[type_name]["outputSchema"]))
    assert [m.key for m in ours] == [m.key for m in theirs]
    assert {m.key for m in ours if m.default_display} == {m.key for m in theirs if m.default_display}
    assert {m.key for m in theirs if m.default_display} == DEFAULT_DISPLAY[type_name]
    in_file = field_names(saebench_output(type_name))["eval_result_metrics"]
    assert {(m.category, m.metric) for m in ours} == {(c, name) for c, names in in_file.items() for name in names}
