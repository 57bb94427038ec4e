"""/api/comment/new|delete, /api/bookmark/add|delete, /api/user/bookmarks."""

import pytest

from features.models import Bookmark, Comment, Visibility
from tests.factories import ExplanationFactory, FeatureFactory, ModelFactory, SourceFactory, SourceSetFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def source():
    model = ModelFactory(id="gpt2-small")
    return SourceFactory(source_set=SourceSetFactory(model=model, name="res-jb"), model=model, name="6-res-jb")


@pytest.fixture
def feature(source):
    return FeatureFactory(source=source, model=source.model, index=7)


KEY = {"modelId": "gpt2-small", "layer": "6-res-jb", "index": 7}


def test_comment_new_stores_the_comment_and_returns_it(api_client, user, api_key_for, feature):
    response = api_client.post("/api/comment/new", {**KEY, "text": "fires on parrots"}, format="json",
                               HTTP_X_API_KEY=api_key_for(user))  # fmt: skip
    assert response.status_code == 200, response.content
    body = response.json()
    comment = Comment.objects.get(pk=body["id"])
    assert (comment.feature, comment.user, comment.text) == (feature, user, "fires on parrots")
    assert (body["modelId"], body["layer"], body["index"]) == ("gpt2-small", "6-res-jb", "7")
    assert body["user"] == {"name": user.username}
    shown = api_client.get("/api/feature/gpt2-small/6-res-jb/7").json()["comments"]
    assert [c["text"] for c in shown] == ["fires on parrots"]


@pytest.mark.parametrize("text, status", [("", 400), ("   ", 400), ("x" * 10_001, 400), ("x" * 10_000, 200)])
def test_comment_text_must_be_1_to_10000_characters(api_client, user, api_key_for, feature, text, status):
    response = api_client.post("/api/comment/new/", {**KEY, "text": text}, format="json",
                               HTTP_X_API_KEY=api_key_for(user))  # fmt: skip
    assert response.status_code == status
    if status == 400:
        assert response.json()["message"].startswith("text:")


def test_comment_on_unknown_or_private_feature_is_404(api_client, user, other_user, api_key_for, feature, source):
    key = api_key_for(other_user)
    unknown = api_client.post("/api/comment/new", {**KEY, "index": 8, "text": "hi"}, format="json", HTTP_X_API_KEY=key)
    assert unknown.status_code == 404
    source.visibility, source.creator = Visibility.PRIVATE, user
    source.save()
    private = api_client.post("/api/comment/new", {**KEY, "text": "hi"}, format="json", HTTP_X_API_KEY=key)
    assert private.status_code == 404
    assert not Comment.objects.exists()


def test_comment_new_needs_credentials(api_client, feature):
    assert api_client.post("/api/comment/new", {**KEY, "text": "hi"}, format="json").status_code == 401


def test_comment_delete_is_author_or_staff_only(api_client, user, other_user, staff_user, api_key_for, feature):
    mine = Comment.objects.create(feature=feature, user=user, text="a")
    forbidden = api_client.post("/api/comment/delete", {"commentId": mine.id}, format="json",
                                HTTP_X_API_KEY=api_key_for(other_user))  # fmt: skip
    assert forbidden.status_code == 403
    assert Comment.objects.filter(pk=mine.pk).exists()
    ok = api_client.post("/api/comment/delete", {"commentId": mine.id}, format="json", HTTP_X_API_KEY=api_key_for(user))
    assert ok.status_code == 200 and ok.json() == {"id": mine.id, "deleted": True}
    assert not Comment.objects.filter(pk=mine.pk).exists()
    theirs = Comment.objects.create(feature=feature, user=other_user, text="b")
    by_staff = api_client.post("/api/comment/delete/", {"commentId": theirs.id}, format="json",
                               HTTP_X_API_KEY=api_key_for(staff_user))  # fmt: skip
    assert by_staff.status_code == 200
    gone = api_client.post("/api/comment/delete", {"commentId": theirs.id}, format="json",
                           HTTP_X_API_KEY=api_key_for(user))  # fmt: skip
    assert gone.status_code == 404


def test_bookmark_add_is_idempotent_and_delete_reports_whether_it_existed(api_client, user, api_key_for, feature):
    api_client.credentials(HTTP_X_API_KEY=api_key_for(user))
    first = api_client.post("/api/bookmark/add", KEY, format="json")
    assert first.status_code == 200 and first.json()["index"] == "7"
    assert api_client.post("/api/bookmark/add/", KEY, format="json").status_code == 200
    assert Bookmark.objects.filter(user=user, feature=feature).count() == 1
    deleted = api_client.post("/api/bookmark/delete", KEY, format="json")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert not Bookmark.objects.exists()
    assert api_client.post("/api/bookmark/delete/", KEY, format="json").json()["deleted"] is False


def test_bookmark_errors(api_client, user, api_key_for, feature):
    assert api_client.post("/api/bookmark/add", KEY, format="json").status_code == 401
    api_client.credentials(HTTP_X_API_KEY=api_key_for(user))
    assert api_client.post("/api/bookmark/add", {**KEY, "index": 99}, format="json").status_code == 404
    bad = api_client.post("/api/bookmark/add", {**KEY, "layer": None}, format="json")
    assert bad.status_code == 400 and bad.json()["message"].startswith("layer:")


def test_user_bookmarks_lists_own_readable_bookmarks_newest_first(
    api_client, user, other_user, api_key_for, feature, source
):
    older = FeatureFactory(source=source, model=source.model, index=3)
    ExplanationFactory(feature=feature, description="parrots")
    Bookmark.objects.create(user=user, feature=older)
    Bookmark.objects.create(user=user, feature=feature)
    Bookmark.objects.create(user=other_user, feature=older)
    hidden_source = SourceFactory(model=source.model, source_set=source.source_set, name="9-res-jb")
    hidden_source.visibility, hidden_source.creator = Visibility.PRIVATE, other_user
    hidden_source.save()
    hidden = FeatureFactory(source=hidden_source, model=source.model, index=1)
    Bookmark.objects.create(user=user, feature=hidden)  # made before the source became someone's private one
    api_client.credentials(HTTP_X_API_KEY=api_key_for(user))
    response = api_client.post("/api/user/bookmarks")
    assert response.status_code == 200
    body = response.json()
    assert [b["index"] for b in body] == ["7", "3"]
    assert body[0]["neuron"]["explanations"][0]["description"] == "parrots"
    assert api_client.get("/api/user/bookmarks/").json() == body


def test_user_bookmarks_needs_credentials(api_client):
    assert api_client.post("/api/user/bookmarks").status_code == 401
