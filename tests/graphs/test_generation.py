"""Generation in-process (eager job): clerp labels from the features' explanations, scores and settings stored."""

import gzip
import json

import pytest

from features.models import Explanation, Feature, Source
from graphs.models import Graph
from graphs.services.graphs import graph_generate_start, graph_json_bytes
from graphs.services.storage import graph_object_get


def test_a_generated_graph_labels_its_features_with_their_explanations_and_stores_its_scores(
    tiny_graph_model, user, var_dir, run_on_commit
):
    explanations = []
    for source in Source.objects.filter(model=tiny_graph_model):
        features = Feature.objects.bulk_create(
            [Feature(model=tiny_graph_model, source=source, index=i) for i in range(64)]
        )
        explanations += [
            Explanation(feature=f, model=tiny_graph_model, source=source, description=f"{source.name} says {f.index}")
            for f in features
        ]
    Explanation.objects.bulk_create(explanations)
    with run_on_commit():
        graph = graph_generate_start(model=tiny_graph_model, prompt="The capital of France is", slug="labelled",
                                     settings={"maxFeatureNodes": 200}, user=user)  # fmt: skip
    graph = Graph.objects.get(pk=graph.pk)
    assert graph.status == Graph.Status.READY and graph.job.status == "SUCCEEDED"
    data = json.loads(gzip.decompress(graph_json_bytes(graph=graph)))
    features = [n for n in data["nodes"] if n["feature_type"] == "cross layer transcoder"]
    assert features
    for node in features:
        layer, index, _ = node["node_id"].split("_")
        assert node["clerp"] == f"{layer}-tc-tiny says {index}"
    assert data["metadata"]["feature_details"] == {"neuronpedia_source_set": "tc-tiny"}
    assert data["metadata"]["info"]["creator_name"] == user.username
    assert graph.n_nodes == len(data["nodes"]) and graph.n_links == len(data["links"])
    assert graph.params["maxFeatureNodes"] == 200 and graph.params["nodeThreshold"] == 0.8
    assert 0 <= graph.replacement_score <= 1 and 0 <= graph.completeness_score <= 1
    assert graph_object_get(key=graph.storage_key) is not None


def test_a_prompt_over_the_token_limit_fails_the_job_and_marks_the_graph_failed(
    tiny_graph_model, var_dir, run_on_commit
):
    with pytest.raises(Exception, match="64"), run_on_commit():
        graph_generate_start(model=tiny_graph_model, prompt="word " * 100, slug="too-long")
    graph = Graph.objects.get(slug="too-long")
    assert graph.status == Graph.Status.FAILED and graph.job.status == "FAILED" and "64" in graph.job.error


def test_labels_refresh_fills_empty_labels_from_later_explanations_and_keeps_the_owners(
    tiny_graph_model, user, var_dir, run_on_commit
):
    from graphs.services.graphs import graph_clerps_set
    from graphs.services.labels import graph_features, graph_labels_refresh, graph_top_features

    for source in Source.objects.filter(model=tiny_graph_model):
        Feature.objects.bulk_create([Feature(model=tiny_graph_model, source=source, index=i) for i in range(64)])
    with run_on_commit():
        graph = graph_generate_start(model=tiny_graph_model, prompt="The capital of France is", slug="later",
                                     settings={"maxFeatureNodes": 200}, user=user)  # fmt: skip
    graph = Graph.objects.get(pk=graph.pk)
    top = graph_top_features(graph=graph, count=3)
    assert len(top) == 3 and len(set(top)) == 3
    data = json.loads(gzip.decompress(graph_json_bytes(graph=graph)))
    influence = {}
    for n in data["nodes"]:
        if n["feature_type"] == "cross layer transcoder":
            key = tuple(int(x) for x in n["node_id"].split("_")[:2])
            influence[key] = min(influence.get(key, 1.0), n["influence"])
    assert [influence[k] for k in top] == sorted(influence.values())[:3]  # most influential first
    assert all(not n["clerp"] for n in data["nodes"] if n["feature_type"] == "cross layer transcoder")

    first, second, third = graph_features(graph=graph, keys=top)
    owners = [n["node_id"] for n in data["nodes"] if n["node_id"].startswith(f"{top[1][0]}_{top[1][1]}_")]
    graph = graph_clerps_set(user=user, graph=graph, clerps=[[owners[0], "mine"]])
    for feature in (first, second):
        Explanation.objects.create(feature=feature, model=tiny_graph_model, source=feature.source, description="later")
    filled = graph_labels_refresh(graph=Graph.objects.get(pk=graph.pk))
    data = json.loads(gzip.decompress(graph_json_bytes(graph=Graph.objects.get(pk=graph.pk))))
    labels = {n["node_id"]: n["clerp"] for n in data["nodes"]}
    firsts = [i for i in labels if i.startswith(f"{top[0][0]}_{top[0][1]}_")]
    assert filled == len(firsts) + len(owners) - 1 and all(labels[i] == "later" for i in firsts)
    assert labels[owners[0]] == "mine"  # an owner's label is never overwritten
    assert all(not labels[i] for i in labels if i.startswith(f"{top[2][0]}_{top[2][1]}_"))  # not explained
    assert graph_labels_refresh(graph=Graph.objects.get(pk=graph.pk)) == 0  # nothing left to fill


def test_the_generate_wait_ends_at_its_limit_at_once_when_too_many_wait_and_names_a_failure(tiny_model, settings):
    import time

    from features.models import Job
    from features.services.jobs import job_create
    from graphs.jobs import KIND_GRAPH_GENERATE
    from graphs.services.graphs import graph_generate_failure, graph_generate_wait

    job = job_create(kind=KIND_GRAPH_GENERATE, model_id=tiny_model.id, params={})  # never sent: stays PENDING
    graph = Graph.objects.create(model=tiny_model, slug="w", prompt="x", status=Graph.Status.PENDING, job=job)
    settings.GRAPH_GENERATE_MAX_WAITING = 4
    started = time.monotonic()
    assert graph_generate_wait(graph=graph, timeout_s=0.6).status == Graph.Status.PENDING
    assert 0.6 <= time.monotonic() - started < 5
    assert graph_generate_failure(graph) == ""
    settings.GRAPH_GENERATE_MAX_WAITING = 0  # the web process's threads are all taken by waiting requests
    started = time.monotonic()
    graph_generate_wait(graph=graph, timeout_s=60)
    assert time.monotonic() - started < 5
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.FAILED, error="ValidationError: ['The prompt is 80 tokens (with BOS); the limit is 64']"
    )
    graph = graph_generate_wait(graph=graph, timeout_s=60)
    assert (
        graph_generate_failure(graph) == "Graph generation failed: The prompt is 80 tokens (with BOS); the limit is 64"
    )
