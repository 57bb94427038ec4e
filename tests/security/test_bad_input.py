"""Bad input to the main POST routes is a 4xx whose `message` names the problem, never a 500.

Covered: bodies over the size limit, JSON nested 10,000 levels deep, over-long prompts and too many
tokens/texts/features, NaN/±Infinity and overflowing numbers, lone surrogates and NUL in text, non-object bodies,
a wrong Content-Type, invalid UTF-8 and a compressing charset. RTL, zero-width and emoji text is accepted as it is.

No worker runs and Celery is not eager: the inference routes answer 503 to a valid body (shown for each), so the
400s they give bad bodies come from validation before anything is queued.
"""

import json
import zlib

import pytest

from features.models import Comment, List
from tests.factories import ExplanationFactory, FeatureFactory, ModelFactory, SourceFactory, SourceSetFactory

pytestmark = pytest.mark.django_db

MODEL, SOURCE = "bad-input-model", "0-res-bad"


@pytest.fixture
def world(user, api_key_for, real_celery):
    model = ModelFactory(id=MODEL, inference_enabled=True, creator=user, dimension=4, layers=2)
    source_set = SourceSetFactory(model=model, name="res-bad", creator=user)
    source = SourceFactory(source_set=source_set, name=SOURCE, creator=user, sae_path="/nonexistent/sae")
    feature = FeatureFactory(source=source, index=3)
    ExplanationFactory(feature=feature)
    return {"key": api_key_for(user), "user": user}


def send(client, world, path, body, content_type="application/json"):
    """POST a body (bytes sent as they are, anything else as JSON) with the user's API key."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, raw, content_type=content_type, headers={"x-api-key": world["key"]})


FEATURE = {"modelId": MODEL, "layer": SOURCE, "index": 3}
ACTIVATION = {"feature": {"modelId": MODEL, "source": SOURCE, "index": 3}, "customText": "hello there"}
STEER = {"modelId": MODEL, "prompt": "Once upon a time", "features": [{**FEATURE, "strength": 4.0}], "n_tokens": 8}
UPLOAD = {
    "modelId": MODEL,
    "source": SOURCE,
    "features": [{"index": 9, "activations": [{"tokens": ["a", "b"], "values": [0.5, 1.5]}]}],
}
# route → a valid body (what each test spoils)
ROUTES = {
    "/api/explanation/search-all": {"query": "parrots and birds"},
    "/api/activation/new": ACTIVATION,
    "/api/steer": STEER,
    "/api/list/new": {"name": "my list", "description": "d"},
    "/api/comment/new": {**FEATURE, "text": "nice feature"},
    "/api/vector/new": {
        "modelId": MODEL,
        "layerNumber": 1,
        "hookType": "hook_resid_post",
        "vector": [0.1, 0.2, 0.3, 0.4],
        "vectorLabel": "v",
    },  # fmt: skip
    "/api/feature/upload-batch": UPLOAD,
    "/api/retrieve/": {"modelId": MODEL, "source": SOURCE, "positive": [{"index": 3}]},
}
PARAMS = pytest.mark.parametrize("path", list(ROUTES))


def assert_refused(response, status, *words):
    assert response.status_code == status, (response.status_code, response.content[:300])
    message = response.json()["message"]
    for word in words:
        assert word in message, (word, message)
    return message


# --- size, depth, shape ---------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413_naming_the_limit_before_it_is_read(client, world):
    padding = {"pad": "x" * (2 * 1024 * 1024)}
    assert_refused(send(client, world, "/api/steer", {**STEER, **padding}), 413, "2,097,152")
    assert_refused(send(client, world, "/api/explanation/search-all", padding), 413, "limit")
    # upload routes take up to DATA_UPLOAD_MAX_MEMORY_SIZE (32 MiB): the same body is read and validated
    assert send(client, world, "/api/feature/upload-batch", {**UPLOAD, **padding}).status_code == 200


def test_upload_routes_have_their_own_larger_limit(client, world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 5000
    big = {**UPLOAD, "pad": "x" * 6000}
    assert_refused(send(client, world, "/api/feature/upload-batch", big), 413, "5,000")
    assert_refused(send(client, world, "/api/vector/new", {**ROUTES["/api/vector/new"], "pad": "x" * 6000}), 413)


@PARAMS
def test_json_nested_ten_thousand_levels_deep_is_a_400(client, world, path):
    deep = b'{"modelId": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    assert_refused(send(client, world, path, deep), 400, "nested too deeply")
    fairly_deep = {**ROUTES[path], "extra": json.loads("[" * 100 + "]" * 100)}
    assert_refused(send(client, world, path, fairly_deep), 400, "nested more than 64 levels")


@PARAMS
def test_a_list_or_a_string_instead_of_an_object_is_a_400(client, world, path):
    for body in ([ROUTES[path]], "just a string", 42, None):
        assert_refused(send(client, world, path, body), 400, "body: must be a JSON object")


def test_the_batch_route_that_takes_a_list_refuses_an_object(client, world):
    assert_refused(send(client, world, "/api/features", FEATURE), 400, "body: must be a JSON array, not an object")


# --- encodings and content types ----------------------------------------------------------------------------


@PARAMS
def test_invalid_utf8_is_a_400_naming_the_byte(client, world, path):
    raw = json.dumps(ROUTES[path]).encode()[:-1] + b', "x": "\xff\xfe"}'
    assert_refused(send(client, world, path, raw), 400, "not valid utf-8", "0xff")


def test_a_compressing_charset_is_a_400_and_an_unknown_one_reads_as_utf8(client, world):
    def post(charset, raw):
        return client.generic("POST", "/api/list/new", raw, f"application/json; charset={charset}",
                              headers={"x-api-key": world["key"]})  # fmt: skip

    bomb = zlib.compress(json.dumps({"name": "x" * 10_000_000}).encode())  # 10 MB of JSON in ~10 kB
    assert_refused(post("zlib_codec", bomb), 400, "zlib_codec")
    assert post("no-such-charset", json.dumps(ROUTES["/api/list/new"])).status_code == 200


def test_a_non_json_body_under_another_content_type_is_a_400_naming_it(client, world):
    form = send(client, world, "/api/list/new", b"name=my+list&description=d", "application/x-www-form-urlencoded")
    assert_refused(form, 400, "JSON parse error", "application/x-www-form-urlencoded")
    text = send(client, world, "/api/comment/new", b"nice feature", "text/plain")
    assert_refused(text, 400, "text/plain")
    # Neuronpedia's leniency stays: JSON under another type (curl -d sends a form type) is read as JSON
    assert send(client, world, "/api/list/new", ROUTES["/api/list/new"], "text/plain").status_code == 200


# --- numbers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-1e999"])
def test_nan_infinity_and_overflowing_strengths_are_a_400(client, world, literal):
    body = json.dumps(STEER).replace('"strength": 4.0', '"strength": STRENGTH').encode().replace(b"STRENGTH", literal)
    message = assert_refused(send(client, world, "/api/steer", body), 400)
    assert literal.decode().lstrip("-") in message, message


@pytest.mark.parametrize("spelled", ["NaN", "Infinity", "-Infinity", "1e309", "inf"])
def test_non_finite_numbers_spelled_as_strings_are_a_400_naming_the_field(client, world, spelled):
    steer = {**STEER, "features": [{**FEATURE, "strength": spelled}]}
    assert_refused(send(client, world, "/api/steer", steer), 400, "features[0].strength", "valid number")
    assert_refused(send(client, world, "/api/steer", {**STEER, "temperature": spelled}), 400, "temperature")
    vector = {**ROUTES["/api/vector/new"], "vector": [0.1, spelled, 0.3, 0.4]}
    assert_refused(send(client, world, "/api/vector/new", vector), 400, "vector")
    upload = {**UPLOAD, "features": [{"index": 9, "activations": [{"tokens": ["a"], "values": [spelled]}]}]}
    assert_refused(send(client, world, "/api/feature/upload-batch", upload), 400, "values")
    retrieve = {**ROUTES["/api/retrieve/"], "positive": [{"index": 3, "weight": spelled}]}
    assert_refused(send(client, world, "/api/retrieve/", retrieve), 400, "weight")


# --- lengths: prompts, texts, tokens, batch sizes -----------------------------------------------------------

TOO_MUCH = [
    ("/api/steer", {**STEER, "prompt": "x" * 2049}, "prompt"),
    ("/api/steer", {**STEER, "n_tokens": 10**9}, "n_tokens"),
    ("/api/steer", {**STEER, "features": [{**FEATURE, "strength": 1}] * 33}, "features"),
    ("/api/steer", {**STEER, "features": [{**FEATURE, "strength": 301}]}, "strength"),
    ("/api/steer", {**STEER, "seed": 10**30}, "seed"),
    ("/api/activation/new", {**ACTIVATION, "customText": "x" * 4097}, "customText"),
    ("/api/activation/new", {**ACTIVATION, "customText": ["x"] * 9}, "customText"),
    ("/api/search-topk-by-token", {"modelId": MODEL, "source": SOURCE, "text": "x" * 1701}, "text"),
    ("/api/search-all", {"modelId": MODEL, "sourceSet": "res-bad", "text": "x", "numResults": 101}, "numResults"),
    ("/api/explanation/search-all", {"query": "x" * 1001}, "query"),
    ("/api/list/new", {"name": "x" * 100_000}, "name"),
    ("/api/comment/new", {**FEATURE, "text": "x" * 100_000}, "text"),
    ("/api/feature/upload-batch", {**UPLOAD, "features": UPLOAD["features"] * 129}, "features"),
    (
        "/api/feature/upload-batch",
        {**UPLOAD, "features": [{"index": 9, "activations": [{"tokens": ["a"] * 1025, "values": [1.0] * 1025}]}]},
        "tokens",
    ),
    ("/api/retrieve/", {**ROUTES["/api/retrieve/"], "positive": [{"index": i} for i in range(33)]}, "positive"),
    ("/api/retrieve/", {**ROUTES["/api/retrieve/"], "k": 10**6}, "k"),
]


@pytest.mark.parametrize("path,body,field", TOO_MUCH, ids=[f"{p}:{f}" for p, _, f in TOO_MUCH])
def test_over_long_prompts_and_too_many_tokens_texts_or_items_are_a_400_naming_the_field(
    client, world, path, body, field
):
    assert_refused(send(client, world, path, body), 400, field)


@pytest.mark.parametrize("path", ["/api/steer", "/api/activation/new", "/api/search-topk-by-token"])
def test_the_same_routes_answer_a_valid_body_with_503_as_no_worker_runs(client, world, path):
    body = {"/api/search-topk-by-token": {"modelId": MODEL, "source": SOURCE, "text": "x" * 1700}}.get(path)
    response = send(client, world, path, body or ROUTES[path])
    assert_refused(response, 503, "worker")


# --- unicode ------------------------------------------------------------------------------------------------

TEXT_FIELDS = [
    ("/api/comment/new", "text"),
    ("/api/list/new", "name"),
    ("/api/explanation/search-all", "query"),
    ("/api/steer", "prompt"),
    ("/api/activation/new", "customText"),
    ("/api/vector/new", "vectorLabel"),
]


@pytest.mark.parametrize("path,field", TEXT_FIELDS)
def test_a_nul_character_in_text_is_a_400_not_a_database_error(client, world, path, field):
    raw = json.dumps({**ROUTES[path], field: "abc\x00def"}).encode()
    assert b"\\u0000" in raw
    assert_refused(send(client, world, path, raw), 400, field, "NUL")


@pytest.mark.parametrize("path,field", TEXT_FIELDS)
def test_a_lone_surrogate_in_text_is_a_400(client, world, path, field):
    raw = json.dumps({**ROUTES[path], field: "abc"}).encode().replace(b'"abc"', b'"ab\\ud800c"')
    assert_refused(send(client, world, path, raw), 400, field, "lone surrogate")
    as_key = json.dumps(ROUTES[path]).encode()[:-1] + b', "\\udfff": 1}'
    assert_refused(send(client, world, path, as_key), 400, "lone surrogate")


def test_nul_deep_inside_an_upload_names_its_place(client, world):
    upload = {**UPLOAD, "features": [{"index": 9, "activations": [{"tokens": ["a", "b\x00"], "values": [1, 2]}]}]}
    assert_refused(send(client, world, "/api/feature/upload-batch", upload), 400, "features[0].activations[0]")


TRICKY = "שלום \u200f\u200b\u202e مرحبا 😀👩\u200d🔬 e\u0301 \ufeff"


def test_rtl_zero_width_and_emoji_text_is_accepted_and_kept_exactly(client, world):
    # sent both raw (UTF-8) and \u-escaped, as Python clients send it (surrogate pairs for emoji)
    for raw in (
        json.dumps({**FEATURE, "text": TRICKY}, ensure_ascii=False).encode(),
        json.dumps({**FEATURE, "text": TRICKY}).encode(),
    ):
        response = send(client, world, "/api/comment/new", raw)
        assert response.status_code == 200, response.content
        assert response.json()["text"] == TRICKY
    assert list(Comment.objects.values_list("text", flat=True)) == [TRICKY, TRICKY]
    listed = send(client, world, "/api/list/new", {"name": TRICKY[:40], "description": TRICKY})
    assert listed.status_code == 200 and List.objects.get(pk=listed.json()["id"]).description == TRICKY
    assert_refused(send(client, world, "/api/steer", {**STEER, "prompt": TRICKY}), 503)  # valid: reaches admission


def test_a_nul_in_a_path_segment_is_a_404(client, world):
    for path in ("/api/explanation/a%00b", "/api/explanation/a%00b/vote", "/api/feature/m%00/0-res-bad/3"):
        response = client.post(path, b"{}", content_type="application/json", headers={"x-api-key": world["key"]})
        if path.startswith("/api/feature/"):
            response = client.get(path, headers={"x-api-key": world["key"]})
        assert response.status_code == 404, (path, response.status_code)


# --- found by the fuzzer (tests/fuzz) -------------------------------------------------------------------------


def test_an_unreachable_embedding_endpoint_is_a_503_naming_it_not_a_500(client, monkeypatch):
    # Celery is eager here: the query is embedded in-process, against a port where nothing listens
    monkeypatch.setenv("AUTOINTERP_EMBEDDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("AUTOINTERP_LLM_RETRIES", "0")
    response = client.post("/api/explanation/search-all", {"query": "talking birds"}, content_type="application/json")
    assert_refused(response, 503, "Query embedding failed", "127.0.0.1:9")


def test_umap_from_decoder_directions_without_a_local_sae_is_a_400_before_any_job(client, world):
    from features.models import Job, Source

    Source.objects.filter(name=SOURCE).update(sae_path="")
    body = {"modelId": MODEL, "layer": SOURCE, "input": "decoder"}
    assert_refused(send(client, world, "/api/umap/generate", body), 400, "input", "sae_path")
    assert not Job.objects.exists()
