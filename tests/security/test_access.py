"""Every URL pattern of the project, pointed at another user's PRIVATE objects: neither an anonymous client nor a
signed-in user who is not the owner gets them.

The test walks the URL resolver, so a route added later is covered without being named here. Its path parameters
are filled from the owner's objects; API routes are also sent POST and DELETE with a body naming those objects,
pages POST with a form naming them. Then, for each response:

- no private text (every one starts with SECRET) appears in it, whatever the status;
- a route that names a private object denies it: 401/403/404/405, or a redirect to a login page (pages);
- a page POST that names one changes nothing (checked on the owner's objects at the end).

Routes that name nothing private (listings, searches, the caller's own things) may answer 200, without secrets.
Three scenarios: the private level is the model, the source set, or the source (a feature inherits the strictest).
Static files are served by WhiteNoise before URL resolution, so they have no pattern to walk.
"""

import json
import re
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from autointerp.models import ProviderKey
from autointerp.services import lookup_rows_ensure, provider_key_set
from features.models import (
    Bookmark,
    Comment,
    Explanation,
    ExplanationScore,
    ExplanationScoreModel,
    Feature,
    Job,
    List,
    ListComment,
    ListItem,
    SteerOutput,
    SteerOutputFeature,
    Visibility,
)
from features.services.api_keys import api_key_create
from graphs.models import Graph, GraphPutRequest, Subgraph
from inference.services import InferenceError
from retrieval.models import Passage, PassageCode
from tests.factories import (
    ActivationFactory,
    ExplanationFactory,
    FeatureFactory,
    ListFactory,
    ModelFactory,
    ReleaseFactory,
    SourceFactory,
    SourceSetFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

SECRET = "zx7secret"  # every private text starts with it; no request ever sends it
DENIED = {401, 403, 404, 405}
LOGIN_PAGES = ("/accounts/login/", "/admin/login/")
DEPTH = {"model": 0, "source_set": 1, "source": 2}  # a route naming something at or below the private level is denied
ALWAYS = 9  # features and everything hanging off them: private in every scenario

# Not requested at all.
SKIPPED = {
    "logout": "POST ends the test client's session (the routes after it would be tested anonymously); names nothing",
    "admin:logout": "the same, for the admin",
}
# Answered alike to everyone and naming nothing: a 200 is right (their bodies are still checked for secrets).
EXEMPT = {
    "healthz": "health check: database/Redis/worker status, no user data",
    "api-schema": "the OpenAPI document, the same for everyone",
    "api-docs": "Swagger UI, static",
    "login": "the login form",
    "signup": "the signup form (POST with this test's form data is invalid: no user is created)",
    "admin:login": "the admin's login form",
    "admin:jsi18n": "the admin's JavaScript translation catalog, static",
}
# Routes that name no private object: listings and searches (only PUBLIC things and the caller's own), creating
# the caller's own things, pages without path parameters. A 200 is right; secrets must be absent.
OPEN = {
    "api-global": "listing",
    "api-model-list": "listing",
    "api-list-new": "creates the caller's own list",
    "api-model-new": "creates the caller's own model (an id taken by any model, even a PRIVATE one, is a 400)",
    "api-list-list": "the caller's own lists",
    "api-user-bookmarks": "the caller's own bookmarks",
    "api-vector-list-owned": "the caller's own vectors",
    "api-features": "batch get: null at the position of a feature the caller may not read (Neuronpedia's semantics)",
    "api-explanation-search-all": "search over everything listed",
    "api-explanation-search-release": "search in a PUBLIC release",
    "api-umap": "points of the listed sources among those named; others are left out",
    "user": "a user's public page: lists only their PUBLIC lists",
    "robots": "robots.txt, the same for everyone",
    "sitemap": "listing: PUBLIC sources under PUBLIC parents only, whoever asks",
    "sitemap-pages": "listing: PUBLIC models, sets, sources and lists only, whoever asks",
    "api-graph-list": "listing: PUBLIC graphs and the caller's own",
    "api-graph-list-owned": "the caller's own graphs",
    "api-graph-signed-put": "creates the caller's own upload ticket",
    "graph-list": "listing: PUBLIC graphs and the caller's own",
}
# Routes whose request names only the model (or source set): denied only when that level is private.
NAMES = {
    "api-tokenize": "model",
    "api-vector-new": "model",
    "api-model-get": "model",
    "api-source-set-new": "model",  # creates the caller's own set on a model they can open
    "api-explanation-search": "model",  # `layers` only narrows the search
    "api-explanation-search-model": "model",
    "model": "model",
    "api-source-set": "source_set",
    "api-graph-generate": "model",  # graphs hang off the model (and its transcoder set), not a source
    "api-graph-tokenize": "model",
    "api-steer-logits": "model",
}
PARAM_DEPTH = {"model_id": DEPTH["model"], "source_id": DEPTH["source"]}  # other path parameters: ALWAYS


@dataclass
class Private:
    """The owner's objects, and what to put in a request to point at them."""

    level: str
    owner: object
    model: object
    source_set: object
    source: object
    feature: object
    explanation: object
    comment: object
    list: object
    steer: object
    key: object
    release: object
    params: dict = field(default_factory=dict)

    def snapshot(self) -> dict:
        """What a denied write must leave as it was."""
        f = self.feature
        return {
            "list": List.objects.filter(pk=self.list.pk).values_list("name", "description", "visibility").first(),
            "list_items": sorted(ListItem.objects.filter(feature=f).values_list("list_id", "user_id")),
            "comments": sorted(Comment.objects.filter(feature=f).values_list("id", "user_id", "text")),
            "list_comments": sorted(ListComment.objects.filter(list=self.list).values_list("id", "user_id", "text")),
            "bookmarks": sorted(Bookmark.objects.filter(feature=f).values_list("user_id", flat=True)),
            "explanations": sorted(Explanation.objects.filter(feature=f).values_list("id", "description")),
            "votes": sorted(self.explanation.votes.values_list("voter_id", flat=True)),
            "activations": f.activations.count(),
            "vector": Feature.objects.filter(pk=f.pk).values_list("vector_label", "has_vector").first(),
            "key_revoked": type(self.key).objects.get(pk=self.key.pk).revoked_at,
            "provider_keys": sorted(ProviderKey.objects.filter(user=self.owner).values_list("id", "updated_at")),
            "jobs": Job.objects.count(),
            "steer": SteerOutput.objects.filter(pk=self.steer.pk).exists(),
            "visibility": [type(o).objects.get(pk=o.pk).visibility for o in (self.model, self.source_set, self.source)],
        }


@pytest.fixture(params=["model", "source_set", "source"], ids=["private-model", "private-source-set", "private-source"])
def private(request):
    level = request.param
    owner = UserFactory()

    def vis(lvl):
        return Visibility.PRIVATE if lvl == level else Visibility.PUBLIC

    def text(lvl, what):  # a secret only where the object is private (itself or through a parent)
        return f"{SECRET} {what}" if DEPTH[lvl] >= DEPTH[level] else f"public {what}"

    release = ReleaseFactory()  # PUBLIC: search-release over it must still leave the private explanation out
    model = ModelFactory(
        visibility=vis("model"),
        creator=owner,
        display_name=text("model", "model"),
        inference_enabled=True,
        dimension=64,
    )
    source_set = SourceSetFactory(
        model=model, release=release, visibility=vis("source_set"), creator=owner, description=text("source_set", "set")
    )
    source = SourceFactory(
        source_set=source_set, visibility=vis("source"), creator=owner, notes=f"{SECRET} notes",
        dataset=f"{SECRET}-dataset", sae_path="/nonexistent/sae", has_umap=True,
    )  # fmt: skip
    feature = FeatureFactory(
        source=source, creator=owner, pos_str=[f"{SECRET}-logit"], has_vector=True, vector=[0.1] * 64,
        vector_label=f"{SECRET} vector", hook_name="blocks.0.hook_resid_post", umap_x=0.5, umap_y=0.5,
    )  # fmt: skip
    ActivationFactory(feature=feature, tokens=["a", f"{SECRET}-token"], values=[0.0, 5.5], max_value_token_index=1)
    explanation = ExplanationFactory(
        feature=feature, author=owner, description=f"{SECRET} parrots and talking birds", embedding=[0.1] * 384
    )
    comment = Comment.objects.create(feature=feature, user=owner, text=f"{SECRET} comment")
    # the private list's comment shares the feature comment's id, so that `comment_id` names both
    Bookmark.objects.create(feature=feature, user=owner)
    feature_list = ListFactory(user=owner, visibility=Visibility.PRIVATE, name=f"{SECRET} list")
    ListItem.objects.create(list=feature_list, feature=feature, user=owner, description=f"{SECRET} item")
    ListComment.objects.create(id=comment.id, list=feature_list, user=owner, text=f"{SECRET} list comment")
    default = SteerOutput.objects.create(type="DEFAULT", model=model, input_text="hi", output_text="plain")
    steer = SteerOutput.objects.create(
        type="STEERED", model=model, input_text="hi", output_text=f"{SECRET} steered", creator=owner,
        connected_default_output=default,
    )  # fmt: skip
    SteerOutputFeature.objects.create(steer_output=steer, feature=feature, strength=4.0)
    passage = Passage.objects.create(source=source, data_index=0, text=f"{SECRET} passage", genre="news")
    PassageCode.objects.create(source=source, passage=passage, feature_index=feature.index, value=1.0)
    job = Job.objects.create(
        kind="autointerp", model_id=model.id, source_name=source.name, message=f"{SECRET} job", created_by=owner
    )
    graph = Graph.objects.create(
        model=model, slug="owners-graph", creator=owner, visibility=Visibility.PRIVATE, prompt=f"{SECRET} prompt",
        prompt_tokens=[f"{SECRET}-tok"], storage_key="user-graphs/none.json",
    )  # fmt: skip
    subgraph = Subgraph.objects.create(graph=graph, user=owner, display_name=f"{SECRET} subgraph", pinned_ids=[])
    ticket = GraphPutRequest.objects.create(user=owner, filename="g.json", content_length=2048, storage_key="k.json")
    key, _ = api_key_create(user=owner, name="owner's key")
    # the owner's provider key shares the API key's id, so that `key_id` names both; a score with a breakdown
    provider_key_set(user=owner, provider="openai", api_key=f"sk-{SECRET}-provider-key")
    ProviderKey.objects.filter(user=owner).update(id=key.id)
    lookup_rows_ensure()
    score = ExplanationScore.objects.create(
        explanation=explanation, score_type_id="eleuther_recall", value=0.5,
        score_model=ExplanationScoreModel.objects.get_or_create(name="scorer")[0],
        json_details=json.dumps({"samples": [{"str_tokens": [f"{SECRET}-example"], "activations": [1.0],
                                              "ground_truth": True, "prediction": 1, "correct": True}]}),
    )  # fmt: skip
    p = Private(level, owner, model, source_set, source, feature, explanation, comment, feature_list, steer, key,
                release)  # fmt: skip
    content_type = ContentType.objects.get_for_model(type(model))
    p.params = {
        "model_id": model.id, "source_id": source.name, "index": feature.index, "name": source_set.name,
        "list_id": feature_list.id, "explanation_id": explanation.id, "output_id": steer.id,
        "comment_id": comment.id, "key_id": key.id, "run_id": 1, "username": owner.username,
        "feature_id": feature.pk, "job_id": job.pk, "score_id": score.id, "type_name": "core", "slug": graph.slug,
        "subgraph_id": subgraph.pk, "put_request_id": str(ticket.pk),
        # the admin's: every one is behind the staff check, whatever object it names
        "object_id": model.id, "id": owner.pk, "content_type_id": content_type.pk, "app_label": "features", "url": "features/nothing/",
    }  # fmt: skip
    return p


@pytest.fixture(autouse=True)
def no_inference_or_embedding(monkeypatch):
    """No model runs here: a route that reached inference answers 503 (which is not a denial), and a query
    embeds to the private explanation's own vector, so that a search that leaked it would rank it first."""

    def refuse(**kwargs):
        raise InferenceError("inference is not run in this test", status=503)

    monkeypatch.setattr("inference.services.inference_call", refuse)
    monkeypatch.setattr("autointerp.api.views.query_vector", lambda text: ([0.1] * 384, "embedding"))


# ---- the URL patterns, filled in -----------------------------------------------------------------------------


@dataclass
class Route:
    name: str  # `namespace:name`, or the pattern itself when it has none
    pattern: str
    callback: object
    params: list[str]

    @property
    def api(self) -> bool:
        return self.pattern.startswith("api/") or self.pattern.startswith("^api/")

    @property
    def admin(self) -> bool:
        return self.pattern.startswith("admin/")


def routes(patterns=None, prefix: str = "", namespace: str = ""):
    """Every URL pattern of the project, includes walked recursively."""
    for p in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from routes(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            pattern = prefix + str(p.pattern)
            params = re.findall(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>", pattern)
            name = f"{namespace}{p.name}" if p.name else pattern
            yield Route(name, pattern, p.callback, [a or b for a, b in params])


def fill(route: Route, params: dict) -> str:
    """A concrete path for a pattern: `<int:index>` and `(?P<index>...)` replaced, regex syntax removed."""

    def value(m):
        return quote(str(params[m[1]]), safe="/")

    path = re.sub(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)", value, route.pattern)  # before <...>: it holds one
    path = re.sub(r"<(?:\w+:)?(\w+)>", value, path)
    for token in ("(?:/)?", "/?", "^", "$"):
        path = path.replace(token, "")
    path = "/" + path.replace(".*", "no-such-route")  # the /api/ catch-all
    assert not re.search(r"[()\[\]\\*+?]", path), f"cannot fill {route.pattern!r}: teach fill() its syntax"
    match = resolve(path)
    assert match.func is route.callback, f"{path} resolves to {match.view_name}, not {route.name}"
    return path


def depth_named(route: Route) -> int | None:
    """How deep the object a request to this route names is; None when it names nothing private."""
    if route.name in OPEN or route.name in EXEMPT or route.admin:
        return None
    if route.name in NAMES:
        return DEPTH[NAMES[route.name]]
    if route.params:
        return max(PARAM_DEPTH.get(p, ALWAYS) for p in route.params)
    return ALWAYS if route.api else None  # an API body names the owner's objects; a page without parameters none


def paths(route: Route, p: Private) -> list[tuple[str, int | None]]:
    """(path, depth named) for a route: `/<model>/<name>/` is a source set's page or, by a source's name, a source's."""
    if route.name == "set-or-source":
        return [(fill(route, p.params), DEPTH["source_set"]),
                (fill(route, {**p.params, "name": p.source.name}), DEPTH["source"])]  # fmt: skip
    if route.name == "release":  # the PUBLIC release that holds the private objects: a 200 that must not show them
        return [(fill(route, {**p.params, "name": p.release.name}), None)]
    return [(fill(route, p.params), depth_named(route))]


# ---- what is sent -------------------------------------------------------------------------------------------


def api_body(route: Route, p: Private):
    m, s, f = p.model.id, p.source.name, p.feature.index
    ref = {"modelId": m, "layer": s, "index": f, "description": "mine"}
    body = {
        **ref, "source": s, "id": m, "sourceSet": p.source_set.name, "selectedLayers": [s], "layers": [s],
        "feature": {"modelId": m, "source": s, "index": f}, "customText": "hello", "text": "hello",
        "prompt": "hello", "query": "parrots", "releaseName": p.release.name, "listId": p.list.id,
        "commentId": p.comment.id, "explanationId": p.explanation.id, "steerOutputId": p.steer.id,
        "features": [{**ref, "strength": 4.0}], "featuresToAdd": [ref], "name": "mine",
        "explanationType": "oai_token-act-pair", "scorerType": "detection", "positive": [{"index": f}],
        "positions": [0], "mode": "ablate", "targetModelId": m, "targetSourceId": s, "layerNumber": 0,
        "hookType": "hook_resid_post", "vector": [0.0] * 64, "vectorLabel": "mine", "vectorDefaultSteerStrength": 1,
        "activations": [{"tokens": ["a"], "values": [1.0]}], "steer_special_tokens": True,
        "defaultChatMessages": [{"role": "user", "content": "hi"}],
        "steeredChatMessages": [{"role": "user", "content": "hi"}],
        "slug": "owners-graph", "subgraphId": str(Subgraph.objects.get(graph__slug="owners-graph").pk),
        "putRequestId": str(GraphPutRequest.objects.get().pk), "pinnedIds": [], "clerps": [],
    }  # fmt: skip
    if route.name == "api-features":
        return [ref]
    if route.name == "api-feature-upload-batch":
        return {"modelId": m, "source": s, "features": [{"index": f, "activations": body["activations"]}]}
    return body


def page_form(p: Private) -> dict:
    return {
        "list_id": p.list.id, "model_id": p.model.id, "source_id": p.source.name, "index": p.feature.index,
        "text": "mine", "name": "mine", "description": "mine", "visibility": "PUBLIC", "action": "add",
        "features": json.dumps([{"modelId": p.model.id, "layer": p.source.name, "index": str(p.feature.index)}]),
    }  # fmt: skip


def page_queries(p: Private) -> list[str]:
    """Query strings for pages without parameters: their searches and forms, aimed at the private objects."""
    target = f"{p.model.id}/{p.source.name}"
    return [
        "",
        f"?q=parrots&modelId={p.model.id}&source={target}&positive={p.feature.index}&index={p.feature.index}"
        f"&prompt=A+B&positions=1&mode=ablate&model={p.model.id}",
        f"?q={p.source.name}/{p.feature.index}&modelId={p.model.id}",
        # a quick list (and its save) naming the private feature
        "?name=mine&features="
        + quote(json.dumps([{"modelId": p.model.id, "layer": p.source.name, "index": str(p.feature.index)}])),
    ]


def body_of(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def to_login(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith(LOGIN_PAGES)


# ---- the test -----------------------------------------------------------------------------------------------


def requests_for(route: Route, path: str, p: Private):
    """(method, url, client kwargs): pages without parameters get their query strings, the API a body."""
    if not route.params and not route.api and not route.admin:
        for query in page_queries(p):
            yield "get", path + query, {}
    else:
        yield "get", path, {}
    if route.api:
        yield "post", path, {"data": json.dumps(api_body(route, p)), "content_type": "application/json"}
        yield "delete", path, {}
    else:
        yield "post", path, {"data": page_form(p)}


def check(route: Route, method: str, response, depth: int | None, level: str) -> str | None:
    """What is wrong with this answer, if anything."""
    if SECRET in body_of(response):
        return "shows private data"
    if response.status_code >= 500 and response.status_code != 503:
        return "crashes"
    if route.admin and route.name not in EXEMPT:
        return None if to_login(response) or response.status_code in DENIED else "passes the staff check"
    if depth is None or depth < DEPTH[level]:
        return None
    if response.status_code in DENIED or to_login(response):
        return None
    if method == "post" and not route.api and response.status_code == 302:
        return None  # a page write that redirects; that it changed nothing is checked at the end
    return "does not deny it"


def test_no_route_gives_a_private_object_to_anonymous_clients_or_other_users(private):
    p = private
    other = UserFactory()
    _, other_key = api_key_create(user=other, name="other")
    signed_in = Client(headers={"x-api-key": other_key})  # API: the key; pages: the session
    signed_in.force_login(other)
    actors = {"anonymous": Client(), "other user": signed_in}
    before = p.snapshot()
    problems, seen = [], 0
    for route in routes():
        if route.name in SKIPPED or (route.admin and p.level != "model"):  # the admin does not vary by scenario
            continue
        for path, depth in paths(route, p):
            for method, url, kwargs in requests_for(route, path, p):
                for actor, client in actors.items():
                    response = getattr(client, method)(url, **kwargs)
                    seen += 1
                    problem = check(route, method, response, depth, p.level)
                    if problem:
                        problems.append(f"{actor} {method.upper()} {url} [{route.name}] → {response.status_code}: "
                                        f"{problem}")  # fmt: skip
    assert not problems, "\n".join(problems)
    # and the owner does see what the others were refused, so the secrets above are where a leak would put them
    owner = Client()
    owner.force_login(p.owner)
    for url in (f"/{p.model.id}/{p.source.name}/{p.feature.index}/", f"/list/{p.list.id}/", f"/steer/{p.steer.id}",
                f"/api/explanation/{p.explanation.id}", "/"):  # fmt: skip
        assert SECRET in body_of(owner.get(url)), url
    assert p.snapshot() == before, "a denied request changed the owner's objects"
    assert seen > 400  # the walk found the routes


def test_the_url_walk_covers_every_kind_of_route():
    names = {r.name for r in routes()}
    for name in ("api-feature", "api-steer", "api-explanation", "feature", "list", "inference:steer-share",
                 "autointerp:umap", "retrieval:genre-spread", "imports-progress", "admin:features_model_change"):  # fmt: skip
        assert name in names
    assert set(EXEMPT) | set(OPEN) | set(NAMES) | set(SKIPPED) <= names, "an exemption names no route any more"
