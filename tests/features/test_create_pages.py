"""Users create models and source sets from the site (/new/), with the same rules as /api/model/new and
/api/source-set/new: unlisted, owned, one source per layer, clear errors."""

from features.models import Model, Source, SourceSet, Visibility
from tests.factories import ModelFactory


def test_a_signed_in_user_creates_a_model_then_a_set_with_a_source_per_layer(client, user, other_user):
    assert client.get("/new/").status_code == 302  # sign in first
    client.force_login(user)
    assert client.get("/new/").status_code == 200
    r = client.post("/new/", {"create": "model", "model-id": "my-gpt", "model-layers": 3, "model-display_name": ""})
    assert r.status_code == 302 and r["Location"] == "/new/?model=my-gpt#new-set"
    model = Model.objects.get(pk="my-gpt")
    assert (model.creator, model.visibility, model.display_name) == (user, Visibility.UNLISTED, "my-gpt")
    assert 'value="my-gpt"' in client.get(r["Location"]).content.decode()  # the set form names the new model

    r = client.post("/new/", {"create": "set", "set-model_id": "my-gpt", "set-name": "res-mine"})
    assert r.status_code == 302 and r["Location"] == "/my-gpt/res-mine/"
    source_set = SourceSet.objects.get(model=model, name="res-mine")
    assert source_set.creator == user and source_set.visibility == Visibility.UNLISTED
    names = sorted(Source.objects.filter(source_set=source_set).values_list("name", flat=True))
    assert names == ["0-res-mine", "1-res-mine", "2-res-mine"]
    assert client.get("/my-gpt/res-mine/").status_code == 200


def test_creation_refusals_say_what_is_wrong_and_create_nothing(client, user, other_user):
    ModelFactory(id="taken-model")
    ModelFactory(id="hidden-model", visibility=Visibility.PRIVATE, creator=other_user)
    client.force_login(user)
    for body, says in (
        ({"model-id": "Bad Id", "model-layers": 2}, "must be 2–32 characters"),
        ({"model-id": "taken-model", "model-layers": 2}, "already exists"),
        ({"model-id": "steer", "model-layers": 2}, "is reserved"),
        ({"model-id": "ok-model", "model-layers": 0}, "greater than or equal to 1"),
    ):
        html = client.post("/new/", {"create": "model", **body}).content.decode()
        assert says in html, (body, says)
    assert not Model.objects.filter(pk="ok-model").exists()
    for body, says in (
        ({"set-model_id": "hidden-model", "set-name": "res"}, "not yours to open"),
        ({"set-model_id": "taken-model", "set-name": "Bad Name"}, "must be 1–64 characters"),
        ({"set-model_id": "taken-model", "set-name": "neurons"}, "is reserved"),
    ):
        html = client.post("/new/", {"create": "set", **body}).content.decode()
        assert says in html, (body, says)
    assert not SourceSet.objects.filter(model_id__in=["hidden-model", "taken-model"]).exists()


def test_the_create_page_says_uploads_go_through_the_api_routes_it_names(client, user):
    import re

    from django.urls import resolve

    client.force_login(user)
    html = client.get("/new/").content.decode()
    assert "upload" not in " ".join(re.findall(r"<form[^>]*>", html))  # it has no upload form, and says so
    assert "— here or" not in html and "This page creates them" in html
    for route in re.findall(r"<code>(?:POST )?(/api/[a-z/-]+)</code>", html):
        assert resolve(route).url_name in ("api-feature-upload-batch", "api-activation-upload-batch"), route
    assert "/api/feature/upload-batch" in html and "/api/activation/upload-batch" in html
    assert "Source.upload_batch" in html and 'href="/account/"' in html
