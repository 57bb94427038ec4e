"""The /api/list/* routes: owner-only writes (401/403), PRIVATE lists 404 for others, Neuronpedia names."""

import pytest

from features.models import List, ListItem, Visibility
from tests.factories import FeatureFactory, ListFactory, ModelFactory, SourceFactory, SourceSetFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def source():
    model = ModelFactory(id="gpt2-small")
    return SourceFactory(source_set=SourceSetFactory(model=model, name="res-jb"), model=model, name="6-res-jb")


@pytest.fixture
def features(source):
    return [FeatureFactory(source=source, model=source.model, index=i) for i in range(3)]


@pytest.fixture
def as_user(api_client, user, api_key_for):
    api_client.credentials(HTTP_X_API_KEY=api_key_for(user))
    return api_client


@pytest.fixture
def as_other(api_client, other_user, api_key_for):
    api_client.credentials(HTTP_X_API_KEY=api_key_for(other_user))
    return api_client


def key(index, description=None):
    out = {"modelId": "gpt2-small", "layer": "6-res-jb", "index": index}
    if description is not None:
        out["description"] = description
    return out


def test_list_new_creates_an_unlisted_list_with_a_url(as_user, user):
    response = as_user.post(
        "/api/list/new/", {"name": "birds", "description": "bird features", "testText": "a parrot"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    row = List.objects.get(pk=body["id"])
    assert (row.user, row.name, row.description, row.default_test_text) == (user, "birds", "bird features", "a parrot")
    assert row.visibility == Visibility.UNLISTED
    assert body["url"] == f"http://testserver/list/{row.id}/"
    assert body["defaultTestText"] == "a parrot" and body["userId"] == user.pk


def test_list_new_without_credentials_is_401(api_client):
    response = api_client.post("/api/list/new", {"name": "x"}, format="json")
    assert response.status_code == 401
    assert response.json() == {"message": "Authentication credentials were not provided."}


def test_list_new_with_a_bad_key_is_401(api_client):
    response = api_client.post("/api/list/new", {"name": "x"}, format="json", HTTP_X_API_KEY="mk-wrong")
    assert response.status_code == 401 and "API key" in response.json()["message"]


@pytest.mark.parametrize(
    "body, field",
    [({}, "name:"), ({"name": 5, "description": ["x"]}, "description:"), ({"name": "x" * 300}, "name:")],
)
def test_list_new_bad_bodies_are_400_naming_the_field(as_user, body, field):
    response = as_user.post("/api/list/new", body, format="json")
    assert response.status_code == 400 and field in response.json()["message"]


def test_list_new_with_features_adds_them_in_one_go(as_user, features):
    body = {"name": "trio", "description": "", "features": [key(0, "first"), key(2)]}
    response = as_user.post("/api/list/new-with-features", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["added"] == 2
    items = ListItem.objects.filter(list_id=response.json()["id"]).order_by("feature__index")
    assert [(i.feature.index, i.description) for i in items] == [(0, "first"), (2, "")]


def test_list_new_with_an_unknown_feature_is_404_and_creates_nothing(as_user, features):
    body = {"name": "bad", "features": [key(0), key(77)]}
    response = as_user.post("/api/list/new-with-features", body, format="json")
    assert response.status_code == 404 and "gpt2-small/6-res-jb/77" in response.json()["message"]
    assert not List.objects.filter(name="bad").exists()


def test_list_add_features_is_idempotent_and_owner_only(as_user, user, other_user, api_key_for, features):
    feature_list = ListFactory(user=user)
    body = {"listId": feature_list.id, "featuresToAdd": [key(0, "a"), key(1)]}
    first = as_user.post("/api/list/add-features", body, format="json")
    assert first.status_code == 200
    assert [(x["layer"], x["index"], x["description"]) for x in first.json()] == [
        ("6-res-jb", "0", "a"),
        ("6-res-jb", "1", ""),
    ]
    again = as_user.post("/api/list/add-features/", body, format="json")
    assert again.json() == []
    assert ListItem.objects.filter(list=feature_list).count() == 2

    as_user.credentials(HTTP_X_API_KEY=api_key_for(other_user))
    forbidden = as_user.post("/api/list/add-features", {**body, "featuresToAdd": [key(2)]}, format="json")
    assert forbidden.status_code == 403 and "owner" in forbidden.json()["message"]
    assert ListItem.objects.filter(list=feature_list).count() == 2


def test_list_add_features_caps_at_100_and_names_bad_items(as_user, user):
    feature_list = ListFactory(user=user)
    too_many = {"listId": feature_list.id, "featuresToAdd": [key(i) for i in range(101)]}
    response = as_user.post("/api/list/add-features", too_many, format="json")
    assert response.status_code == 400 and "featuresToAdd" in response.json()["message"]
    bad_index = {"listId": feature_list.id, "featuresToAdd": [key(0), key("zero")]}
    response = as_user.post("/api/list/add-features", bad_index, format="json")
    assert response.status_code == 400 and "featuresToAdd[1].index" in response.json()["message"]


def test_list_remove_removes_one_feature(as_user, user, features):
    feature_list = ListFactory(user=user)
    for f in features:
        ListItem.objects.create(list=feature_list, feature=f)
    response = as_user.post("/api/list/remove", {"listId": feature_list.id, **key(1)}, format="json")
    assert response.status_code == 200 and response.json()["removed"] is True
    assert sorted(ListItem.objects.filter(list=feature_list).values_list("feature__index", flat=True)) == [0, 2]
    again = as_user.post("/api/list/remove/", {"listId": feature_list.id, **key(1)}, format="json")
    assert again.json()["removed"] is False


def test_list_update_changes_only_given_fields(as_user, user):
    feature_list = ListFactory(user=user, name="old", description="keep me")
    response = as_user.post(
        "/api/list/update", {"listId": feature_list.id, "name": "new", "defaultTestText": "hello"}, format="json"
    )
    assert response.status_code == 200, response.content
    feature_list.refresh_from_db()
    assert (feature_list.name, feature_list.description, feature_list.default_test_text) == ("new", "keep me", "hello")
    assert response.json()["name"] == "new"


def test_list_delete_by_owner(as_user, user):
    feature_list = ListFactory(user=user)
    response = as_user.post("/api/list/delete", {"listId": feature_list.id}, format="json")
    assert response.status_code == 200 and response.json() == {"id": feature_list.id, "deleted": True}
    assert not List.objects.filter(pk=feature_list.pk).exists()


@pytest.mark.parametrize(
    "path, extra",
    [
        ("/api/list/update", {"name": "hijacked"}),
        ("/api/list/delete", {}),
        ("/api/list/remove", key(0)),
        ("/api/list/add-features", {"featuresToAdd": [key(0)]}),
    ],
)
def test_writes_to_someone_elses_list_are_403_or_404_when_private(as_other, user, features, path, extra):
    readable = ListFactory(user=user, name="mine", visibility=Visibility.UNLISTED)
    private = ListFactory(user=user, name="hidden", visibility=Visibility.PRIVATE)
    for feature_list in (readable, private):
        ListItem.objects.create(list=feature_list, feature=features[0])
    assert as_other.post(path, {"listId": readable.id, **extra}, format="json").status_code == 403
    response = as_other.post(path, {"listId": private.id, **extra}, format="json")
    assert response.status_code == 404 and private.id in response.json()["message"]
    assert List.objects.filter(pk__in=[readable.pk, private.pk], name__in=["mine", "hidden"]).count() == 2
    assert ListItem.objects.filter(list__in=[readable, private]).count() == 2


def test_list_get_is_public_for_unlisted_and_404_for_private_of_others(api_client, user, api_key_for, features):
    shared = ListFactory(user=user, name="shared", visibility=Visibility.UNLISTED)
    ListItem.objects.create(list=shared, feature=features[1], description="why")
    ListItem.objects.create(list=shared, feature=features[0])
    response = api_client.post("/api/list/get", {"listId": shared.id}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "shared" and body["user"] == {"id": user.pk, "name": user.username}
    assert [(n["index"], n["description"]) for n in body["neurons"]] == [("1", "why"), ("0", "")]
    assert body["neurons"][0]["neuron"]["layer"] == "6-res-jb"
    assert body["neurons"][0]["neuron"]["sourceSetName"] == "res-jb"

    private = ListFactory(user=user, visibility=Visibility.PRIVATE)
    assert api_client.post("/api/list/get", {"listId": private.id}, format="json").status_code == 404
    owner = api_client.post("/api/list/get/", {"listId": private.id}, format="json", HTTP_X_API_KEY=api_key_for(user))
    assert owner.status_code == 200


def test_list_get_hides_features_of_private_sources_from_others(api_client, user, source, features):
    hidden_source = SourceFactory(model=source.model, source_set=source.source_set, name="7-res-jb")
    hidden_source.visibility, hidden_source.creator = Visibility.PRIVATE, user
    hidden_source.save()
    hidden = FeatureFactory(source=hidden_source, model=source.model, index=0)
    shared = ListFactory(user=user, visibility=Visibility.PUBLIC)
    ListItem.objects.create(list=shared, feature=features[0])
    ListItem.objects.create(list=shared, feature=hidden)
    body = api_client.post("/api/list/get", {"listId": shared.id}, format="json").json()
    assert [n["layer"] for n in body["neurons"]] == ["6-res-jb"]


def test_list_get_unknown_is_404(api_client):
    response = api_client.post("/api/list/get", {"listId": "nope"}, format="json")
    assert response.status_code == 404 and "nope" in response.json()["message"]


def test_list_list_returns_only_own_lists_with_counts(as_user, user, other_user, features):
    mine = ListFactory(user=user, visibility=Visibility.PRIVATE)
    ListItem.objects.create(list=mine, feature=features[0])
    ListItem.objects.create(list=mine, feature=features[1])
    ListFactory(user=other_user, visibility=Visibility.PUBLIC)
    response = as_user.post("/api/list/list", format="json")
    assert response.status_code == 200
    assert [(x["id"], x["featureCount"]) for x in response.json()] == [(mine.id, 2)]
    assert as_user.get("/api/list/list/").json()[0]["id"] == mine.id


def test_list_list_without_credentials_is_401(api_client):
    assert api_client.post("/api/list/list").status_code == 401


def test_session_auth_needs_csrf_for_writes(user):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/api/list/new", {"name": "x"}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["message"]
    from django.middleware.csrf import _get_new_csrf_string

    token = _get_new_csrf_string()  # what a page's {% csrf_token %} would have set
    client.cookies["csrftoken"] = token
    ok = client.post("/api/list/new", {"name": "x"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 200 and List.objects.get(pk=ok.json()["id"]).user == user


def test_neuronpedia_python_client_request_shapes_work(client, user, api_key_for, features):
    """What the official client sends: JSON via `requests`, header spelled `X-Api-Key`, a slash on list/new."""
    import json

    headers = {"X-Api-Key": api_key_for(user)}
    created = client.post(
        "/api/list/new/", data=json.dumps({"name": "from client", "description": "d"}),
        content_type="application/json", headers=headers,
    )  # fmt: skip
    assert created.status_code == 200, created.content
    added = client.post(
        "/api/list/add-features",
        data=json.dumps({"listId": created.json()["id"], "featuresToAdd": [key("1", "string index")]}),
        content_type="application/json", headers=headers,
    )  # fmt: skip
    assert added.status_code == 200 and [x["index"] for x in added.json()] == ["1"]
    feature = client.get("/api/feature/gpt2-small/6-res-jb/1", headers=headers)
    assert feature.status_code == 200 and feature.json()["lists"][0]["list"]["name"] == "from client"


# --- regressions ---


def test_list_list_counts_only_the_features_you_may_read(as_user, user, other_user, source, features):
    hidden_source = SourceFactory(model=source.model, source_set=source.source_set, name="7-res-jb")
    hidden_source.visibility, hidden_source.creator = Visibility.PRIVATE, other_user
    hidden_source.save()
    hidden = FeatureFactory(source=hidden_source, model=source.model, index=0)  # once readable, then hidden
    mine = ListFactory(user=user)
    ListItem.objects.create(list=mine, feature=features[0])
    ListItem.objects.create(list=mine, feature=hidden)
    assert [x["featureCount"] for x in as_user.post("/api/list/list", format="json").json()] == [1]


def test_feature_get_lists_public_lists_and_your_own_not_others_unlisted(api_client, user, other_user, features):
    from features.selectors import feature_lists

    shown = ListFactory(user=other_user, visibility=Visibility.PUBLIC)
    link_only = ListFactory(user=other_user, visibility=Visibility.UNLISTED)
    own = ListFactory(user=user, visibility=Visibility.UNLISTED)
    for lst in (shown, link_only, own):
        ListItem.objects.create(list=lst, feature=features[0])
    body = api_client.get("/api/feature/gpt2-small/6-res-jb/0").json()
    assert [x["list"]["id"] for x in body["lists"]] == [shown.id]
    assert {x.id for x in feature_lists(feature=features[0], user=user)} == {shown.id, own.id}


# --- POST /api/list/edit-feature ---


def test_list_edit_feature_changes_the_note_of_one_feature(as_user, user, features):
    feature_list = ListFactory(user=user)
    ListItem.objects.create(list=feature_list, feature=features[0], description="old")
    ListItem.objects.create(list=feature_list, feature=features[1], description="other")
    body = {"listId": feature_list.id, **key(0, "new note")}
    response = as_user.post("/api/list/edit-feature", body, format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["id"] == feature_list.id and data["item"]["description"] == "new note"
    assert data["item"]["index"] == "0" and data["item"]["layer"] == "6-res-jb"
    notes = dict(ListItem.objects.filter(list=feature_list).values_list("feature__index", "description"))
    assert notes == {0: "new note", 1: "other"}
    assert as_user.post("/api/list/edit-feature/", {**body, "description": ""}, format="json").status_code == 200


def test_list_edit_feature_errors(api_client, as_user, user, other_user, api_key_for, features):
    feature_list = ListFactory(user=user, visibility=Visibility.UNLISTED)
    ListItem.objects.create(list=feature_list, feature=features[0], description="old")
    body = {"listId": feature_list.id, **key(0, "x")}
    absent = as_user.post("/api/list/edit-feature", {**body, **key(1, "x")}, format="json")
    assert absent.status_code == 404 and "not in this list" in absent.json()["message"]
    assert as_user.post("/api/list/edit-feature", {**body, **key(99, "x")}, format="json").status_code == 404
    missing = as_user.post("/api/list/edit-feature", {k: v for k, v in body.items() if k != "description"},
                           format="json")  # fmt: skip
    assert missing.status_code == 400 and missing.json()["message"].startswith("description:")
    api_client.credentials()
    assert api_client.post("/api/list/edit-feature", body, format="json").status_code == 401
    api_client.credentials(HTTP_X_API_KEY=api_key_for(other_user))
    assert api_client.post("/api/list/edit-feature", body, format="json").status_code == 403
    private = ListFactory(user=user, visibility=Visibility.PRIVATE)
    ListItem.objects.create(list=private, feature=features[0])
    assert api_client.post("/api/list/edit-feature", {**body, "listId": private.id}, format="json").status_code == 404
    assert ListItem.objects.get(list=feature_list).description == "old"
