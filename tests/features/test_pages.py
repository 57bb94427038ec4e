"""Server-rendered pages: status codes, visibility (PRIVATE → 404 for others), ownership (→ 403), and the
writes the forms make (rows in the DB)."""

import re

import pytest
from django.test.utils import override_script_prefix
from django.urls import reverse

from features.models import ApiKey, Bookmark, Comment, List, ListItem, Visibility
from features.services.api_keys import api_key_authenticate
from tests.factories import (
    ActivationFactory,
    ExplanationFactory,
    FeatureFactory,
    ListFactory,
    ModelFactory,
    SourceFactory,
    SourceSetFactory,
)

pytestmark = pytest.mark.django_db


def feature_url(f):
    return f"/{f.model_id}/{f.source.name}/{f.index}/"


@pytest.fixture
def feature():
    f = FeatureFactory()
    ActivationFactory(feature=f)
    ExplanationFactory(feature=f, description="talking birds such as parrots")
    return f


def test_home_without_features_says_how_data_gets_in(client):
    html = client.get("/").content.decode()
    assert "No features yet" in html
    for command in ("import_source", "train_sae", "add_source"):
        assert f"manage.py {command}" in html


def test_home_lists_public_models_not_private_ones(client, feature, other_user):
    ModelFactory(id="secret-model", visibility=Visibility.PRIVATE, creator=other_user)
    html = client.get("/").content.decode()
    assert feature.model_id in html
    assert "secret-model" not in html
    assert "No features yet" not in html
    assert "1 source · 1 feature" in html  # per-model counts on its tile


def test_home_shows_job_progress_and_follows_live_jobs(client):
    from features.services.jobs import job_claim, job_create, job_progress

    ModelFactory(id="gpt2-small")  # a job about a model nobody may read is not listed
    job = job_create(kind="import", model_id="gpt2-small", source="6-res-jb", total=200)
    with job_claim(job_id=job.pk, lease=False):
        pass
    job_progress(job_id=job.pk, done=50)
    html = client.get("/").content.decode()
    assert "gpt2-small/6-res-jb" in html
    assert 'aria-valuenow="50"' in html and "width: 25%" in html
    assert f'data-job-id="{job.pk}"' in html  # the page's poller follows a live job (static/js/jobs.js)


def test_model_set_and_source_pages(client, feature):
    source = feature.source
    r = client.get(f"/{feature.model_id}/")
    assert r.status_code == 200 and source.name.encode() in r.content
    r = client.get(f"/{feature.model_id}/{source.source_set.name}/")  # a source set name → the set page
    assert r.status_code == 200 and b"Sources" in r.content and source.name.encode() in r.content
    r = client.get(f"/{feature.model_id}/{source.name}/")  # otherwise the source page with its browser
    assert r.status_code == 200
    assert feature_url(feature).encode() in r.content
    assert b"talking birds such as parrots" in r.content
    assert client.get(f"/{feature.model_id}/no-such-source/").status_code == 404
    assert client.get("/no-such-model/").status_code == 404


def test_breadcrumbs_link_each_level_down_to_the_page(client, feature):
    source, m = feature.source, feature.model_id
    home, model = ("/", "Home"), (f"/{m}/", m)
    crumbs = {
        f"/{m}/": [home, model],
        f"/{m}/{source.source_set.name}/": [home, model, (f"/{m}/{source.source_set.name}/", source.source_set.name)],
        f"/{m}/{source.name}/": [home, model, (f"/{m}/{source.name}/", source.name)],
        feature_url(feature): [home, model, (f"/{m}/{source.name}/", source.name)],
    }
    for path, links in crumbs.items():
        nav = re.search(r'<nav class="crumbs".*?</nav>', client.get(path).content.decode()).group(0)
        assert re.findall(r'<a href="([^"]*)">([^<]*)</a>', nav) == links, path
    assert nav.endswith(f"<span>{feature.index}</span></nav>")


def test_header_and_crumbs_follow_the_script_prefix_the_site_is_mounted_under(client, feature):
    # their URLs are reversed once per process: a site mounted under a prefix must not get the root's
    plain = client.get(feature_url(feature)).content.decode()
    with override_script_prefix("/memicos/"):
        mounted = client.get(feature_url(feature)).content.decode()
    for name in ("inference:steer", "autointerp:search", "api-docs", "signup"):
        assert f'href="{reverse(name)}"' in plain and f'href="/memicos{reverse(name)}"' in mounted
    assert f'<a href="/memicos/{feature.model_id}/">' in mounted and 'href="/memicos/"><img' in mounted


def test_source_browser_pages_by_25_and_jumps(client):
    source = SourceFactory()
    for i in range(60):
        FeatureFactory(source=source, index=i)
    base = f"/{source.model_id}/{source.name}/"
    first = client.get(base).content.decode()
    indexes = [int(i) for i in re.findall(rf'href="{re.escape(base)}(\d+)/"', first)]
    assert indexes == list(range(25))
    assert "?offset=25" in first
    third = client.get(base + "?offset=50").content.decode()
    assert [int(i) for i in re.findall(rf'href="{re.escape(base)}(\d+)/"', third)] == list(range(50, 60))
    assert 'rel="next"' not in third
    r = client.get(base + "?index=42")
    assert r.status_code == 302 and r["Location"] == base + "42/"


def test_the_source_browser_shows_a_features_scored_explanation_before_an_unscored_one(client, feature):
    ExplanationFactory(feature=feature, description="scored birds", score_v2=0.8)
    ExplanationFactory(feature=feature, description="unscored guess", score_v2=None)
    page = client.get(f"/{feature.model_id}/{feature.source.name}/").content.decode()
    assert "scored birds" in page and "unscored guess" not in page


def test_source_page_shows_training_metrics(client):
    source = SourceFactory(metrics={"l0": 31.7, "explained_variance": 0.812})
    html = client.get(f"/{source.model_id}/{source.name}/").content.decode()
    assert "Training metrics" in html and "explained_variance" in html and "0.812" in html


def test_private_source_is_404_for_others_and_200_for_owner(client, user, other_user):
    ss = SourceSetFactory()
    source = SourceFactory(source_set=ss, visibility=Visibility.PRIVATE, creator=user)
    f = FeatureFactory(source=source)
    for url in (f"/{source.model_id}/{source.name}/", feature_url(f)):
        assert client.get(url).status_code == 404
        client.force_login(other_user)
        assert client.get(url).status_code == 404
        client.force_login(user)
        assert client.get(url).status_code == 200
        client.logout()


def test_private_model_hides_its_features(client, user):
    model = ModelFactory(visibility=Visibility.PRIVATE, creator=user)
    f = FeatureFactory(source=SourceFactory(source_set=SourceSetFactory(model=model)))
    assert client.get(f"/{model.id}/").status_code == 404
    assert client.get(feature_url(f)).status_code == 404
    client.force_login(user)
    assert client.get(feature_url(f)).status_code == 200


def test_feature_dashboard_renders_data(client, feature):
    feature.topk_cos_sim_indices = [feature.index, 7, 9]
    feature.topk_cos_sim_values = [1.0, 0.61, 0.4]
    feature.save()
    html = client.get(feature_url(feature)).content.decode()
    assert "talking birds such as parrots" in html
    assert "1.23%" in html  # frac_nonzero 0.0123 as density
    for tok in feature.pos_str + feature.neg_str:
        assert tok in html
    assert html.count('<svg class="hist') == 2
    assert 'id="activation-test"' in html
    assert f'href="/api/feature/{feature.model_id}/{feature.source.name}/{feature.index}"' in html
    assert f'href="/{feature.model_id}/{feature.source.name}/7/"' in html  # similar features link
    # the max token is fully shaded; others proportionally (value / max)
    assert re.search(r'class="tok max"[^>]*style="--a:1\.0"[^>]*>.{0,3}parrot<', html)
    assert re.search(r'style="--a:0\.564"[^>]*data-v="3\.100"', html)  # 3.1 / 5.5


def test_feature_dashboard_shows_scores_authors_and_forms_with_csrf(client, user, feature):
    from features.models import ExplanationScore, ExplanationScoreModel, ExplanationScoreType, ExplanationType

    explanation = feature.explanations.get()
    explanation.author = user
    explanation.type = ExplanationType.objects.create(name="oai_token-act-pair", display_name="")
    explanation.save()
    detection = ExplanationScoreType.objects.create(name="detection", description="how <well> it detects")
    scorer = ExplanationScoreModel.objects.create(name="gpt-4o-mini", display_name="GPT-4o mini")
    score = ExplanationScore.objects.create(
        explanation=explanation, score_type=detection, score_model=scorer, value=0.81249
    )
    html = client.get(feature_url(feature)).content.decode()
    # each score links to its per-example breakdown
    assert re.search(rf'<a class="score" href="/explanations/scores/{score.id}/" data-breakdown title="how &lt;well&gt; '
                     r'it detects — scored by gpt-4o-mini\. Open the per-example breakdown\.">detection '
                     r'<b>0\.812</b> <span class="muted">GPT-4o mini</span>', html)  # fmt: skip
    assert "oai_token-act-pair" in html and f"· {user.username}" in html  # type falls back to its name
    assert "csrfmiddlewaretoken" not in html.split("<main>")[1]  # anonymous: no forms in the dashboard

    client.force_login(user)
    ListFactory(user=user, name="Mine")
    body = client.get(feature_url(feature)).content.decode().split("<main>")[1]
    # bookmark, add-to-list, comment and explain forms, each with its token (the explain form's script reads it)
    assert body.count('name="csrfmiddlewaretoken"') == 4 and '<option value="' in body


def test_feature_dashboard_groups_interval_samples(client):
    f = FeatureFactory()
    ActivationFactory(feature=f, bin_min=-1, bin_max=5.5, bin_contains=-1)
    ActivationFactory(
        feature=f,
        values=[0, 1.0, 2.0, 0, 0, 0, 0, 0],
        max_value=2.0,
        max_value_token_index=2,
        bin_min=1.5,
        bin_max=2.75,
        bin_contains=0.08,
    )
    html = client.get(feature_url(f)).content.decode()
    assert "Interval 1.50 – 2.75" in html and "contains 8.00% of activations" in html


def test_whitespace_tokens_are_visible(client):
    f = FeatureFactory()
    ActivationFactory(
        feature=f, tokens=["a", "\n", "  ", "b"], values=[0, 1, 0, 2], max_value=2, max_value_token_index=3
    )
    html = client.get(feature_url(f)).content.decode()
    assert ">↵</span>" in html and ">··</span>" in html


def test_unknown_feature_is_404_page(client, feature):
    r = client.get(f"/{feature.model_id}/{feature.source.name}/99999/")
    assert r.status_code == 404 and b"Not found" in r.content


def test_bookmark_toggle_and_comments(client, user, other_user, feature):
    url = feature_url(feature)
    assert client.post(url + "bookmark/").status_code == 302  # anonymous → log in
    assert not Bookmark.objects.exists()
    client.force_login(user)
    client.post(url + "bookmark/", {"action": "add"})
    assert Bookmark.objects.filter(user=user, feature=feature).exists()
    assert 'aria-pressed="true"' in client.get(url).content.decode()
    client.post(url + "bookmark/", {"action": "remove"})
    assert not Bookmark.objects.exists()

    client.post(url + "comment/", {"text": "fires on bird names"})
    comment = Comment.objects.get(feature=feature)
    assert comment.user == user and "fires on bird names" in client.get(url).content.decode()
    client.force_login(other_user)
    assert client.post(f"/comment/{comment.id}/delete/").status_code == 403
    client.force_login(user)
    client.post(f"/comment/{comment.id}/delete/", {"next": url})
    assert not Comment.objects.exists()


def test_list_lifecycle(client, user, other_user, feature):
    client.force_login(user)
    r = client.post("/list/new/", {"name": "Birds", "description": "bird features", "visibility": "UNLISTED"})
    lst = List.objects.get(user=user)
    assert r.status_code == 302 and r["Location"] == f"/list/{lst.id}/"
    assert lst.visibility == Visibility.UNLISTED
    client.post(feature_url(feature) + "add-to-list/", {"list_id": lst.id})
    assert ListItem.objects.filter(list=lst, feature=feature).exists()
    second = FeatureFactory(source=feature.source)
    client.post(
        f"/list/{lst.id}/add/",
        {
            "model_id": second.model_id,
            "source_id": second.source.name,
            "index": second.index,
            "description": "also birds",
        },
    )
    assert ListItem.objects.get(list=lst, feature=second).description == "also birds"
    html = client.get(f"/list/{lst.id}/").content.decode()
    assert feature_url(feature) in html and feature_url(second) in html
    # the dashboard shows the lists containing the feature
    assert "Birds" in client.get(feature_url(feature)).content.decode()

    # unlisted: anyone with the link can read it, only the owner may change it
    client.logout()
    assert client.get(f"/list/{lst.id}/").status_code == 200
    client.force_login(other_user)
    assert client.get(f"/list/{lst.id}/edit/").status_code == 403
    assert client.post(f"/list/{lst.id}/edit/", {"name": "x", "visibility": "PUBLIC"}).status_code == 403
    assert client.post(f"/list/{lst.id}/delete/").status_code == 403
    assert client.post(f"/list/{lst.id}/remove/{feature.pk}/").status_code == 403
    lst.refresh_from_db()
    assert lst.name == "Birds"
    # ...and an unlisted list is not on the owner's public page
    assert "Birds" not in client.get(f"/user/{user.username}/").content.decode()

    client.force_login(user)
    client.post(f"/list/{lst.id}/edit/", {"name": "Birds!", "visibility": "PUBLIC"})
    lst.refresh_from_db()
    assert (lst.name, lst.visibility) == ("Birds!", Visibility.PUBLIC)
    client.post(f"/list/{lst.id}/remove/{feature.pk}/")
    assert not ListItem.objects.filter(list=lst, feature=feature).exists()
    client.logout()
    assert "Birds!" in client.get(f"/user/{user.username}/").content.decode()
    client.force_login(user)
    client.post(f"/list/{lst.id}/delete/")
    assert not List.objects.filter(pk=lst.pk).exists()


def test_private_list_is_404_for_others(client, user, other_user):
    lst = ListFactory(user=user, visibility=Visibility.PRIVATE)
    assert client.get(f"/list/{lst.id}/").status_code == 404
    client.force_login(other_user)
    assert client.get(f"/list/{lst.id}/").status_code == 404
    client.force_login(user)
    assert client.get(f"/list/{lst.id}/").status_code == 200
    assert lst.name in client.get(f"/user/{user.username}/").content.decode()  # own lists: all


def test_account_api_keys_shown_once_and_revocable(client, user):
    assert client.get("/account/").status_code == 302
    client.force_login(user)
    r = client.post("/account/", {"name": "notebook"}, follow=True)
    raw = re.search(r"<code class=\"raw-key\">(mk-[^<]+)</code>", r.content.decode()).group(1)
    key = ApiKey.objects.get(user=user)
    assert api_key_authenticate(raw_key=raw) == user
    assert raw.startswith(key.prefix)
    again = client.get("/account/").content.decode()
    assert raw not in again and key.prefix in again  # the key is shown once; the prefix stays
    client.post(reverse("api-key-revoke", args=[key.pk]))
    assert api_key_authenticate(raw_key=raw) is None


def test_signup_login_logout(client, django_user_model):
    r = client.post(
        "/accounts/signup/",
        {"username": "ada", "email": "", "password1": "a-long-Passphrase-42", "password2": "a-long-Passphrase-42"},
    )
    assert r.status_code == 302
    assert django_user_model.objects.filter(username="ada").exists()
    assert "ada" in client.get("/").content.decode()
    client.post("/accounts/logout/")
    assert "Log in" in client.get("/").content.decode()
    r = client.post("/accounts/login/", {"username": "ada", "password": "a-long-Passphrase-42"})
    assert r.status_code == 302
    assert client.get("/account/").status_code == 200
    assert client.get("/accounts/login/").status_code == 200


def test_api_docs_uses_vendored_swagger(client):
    html = client.get("/api/docs/").content.decode()
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert "//cdn" not in html and "unpkg" not in html
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200


def test_other_apps_pages_extend_the_site_layout(client):
    html = client.get(reverse("inference:steer")).content.decode()
    assert 'class="site-header"' in html and "/static/css/memicos.css" in html


def test_error_templates_render_without_a_request():
    from django.template.loader import render_to_string

    # Django renders 500.html with no context at all; it must not depend on the request or the user.
    assert "Something went wrong" in render_to_string("500.html")


# --- regressions: odd addresses and input are a 404 (or a form error), never a 500 ----------------------------


@pytest.fixture
def quiet_client():
    """A client that answers a server error as a 500 response instead of raising it in the test."""
    from django.test import Client

    return Client(raise_request_exception=False)


@pytest.mark.parametrize("index", ["99999999999999999999", "2147483648", "%D9%A3", "%EF%BC%93"])
def test_a_feature_index_beyond_the_column_or_in_other_digits_is_a_404(quiet_client, user, feature, index):
    base = f"/{feature.model_id}/{feature.source.name}/{index}/"
    assert quiet_client.get(base).status_code == 404
    quiet_client.force_login(user)
    for action in ("bookmark/", "comment/", "add-to-list/"):
        assert quiet_client.post(base + action, {"text": "x", "list_id": "x"}).status_code == 404


def test_the_jump_box_refuses_an_index_beyond_the_column(quiet_client, feature):
    base = f"/{feature.model_id}/{feature.source.name}/"
    r = quiet_client.get(base + "?index=9999999999999999999999999")
    assert r.status_code == 200 and "Enter a feature index from 0 to 2,147,483,647." in r.content.decode()
    assert quiet_client.get(base + "?index=2147483647").status_code == 302


@pytest.mark.parametrize("offset", ["999999999999999999999999999999", "9223372036854775808", "-5", "x"])
def test_a_huge_or_odd_offset_on_the_source_page_is_an_ordinary_page(quiet_client, feature, offset):
    r = quiet_client.get(f"/{feature.model_id}/{feature.source.name}/?offset={offset}")
    assert r.status_code == 200


def test_a_nul_in_a_page_address_is_a_404(quiet_client, user, feature):
    m, s = feature.model_id, feature.source.name
    urls = ["/list/a%00b/", "/user/a%00b/", f"/{m}/a%00b/", f"/{m}/a%00b/{feature.index}/", f"/{m}/{s}%00/1/"]
    for url in urls:
        assert quiet_client.get(url).status_code == 404, url
    quiet_client.force_login(user)
    for url in ("/comment/a%00b/delete/", "/list/a%00b/delete/", "/list/a%00b/edit/", "/list/a%00b/add/"):
        assert quiet_client.post(url).status_code == 404, url


def test_a_nul_in_a_form_field_is_a_404_or_a_form_error(quiet_client, user, feature):
    quiet_client.force_login(user)
    lst = ListFactory(user=user)
    r = quiet_client.post(feature_url(feature) + "add-to-list/", {"list_id": "a\x00b"})
    assert r.status_code == 404
    r = quiet_client.post(f"/list/{lst.id}/add/", {"model_id": "a\x00", "source_id": "b", "index": 1})
    assert r.status_code == 302 and not ListItem.objects.exists()
    for url, data in (
        ("/list/new/", {"name": "a\x00b", "visibility": "PUBLIC"}),
        (feature_url(feature) + "comment/", {"text": "a\x00b"}),
        ("/account/", {"name": "a\x00b"}),
    ):
        assert quiet_client.post(url, data).status_code in (200, 302), url
    assert not List.objects.exclude(pk=lst.pk).exists() and not Comment.objects.exists()
    assert quiet_client.get(f"/{feature.model_id}/{feature.source.name}/?index=%00&offset=%00").status_code == 200


def test_pages_linking_a_feature_with_a_negative_index_still_render(client, user):
    f = FeatureFactory(index=-1)  # imported before negative indexes were refused
    base = f"/{f.model_id}/{f.source.name}/"
    assert f'href="{base}-1/"' in client.get(base).content.decode()
    assert client.get(f"{base}-1/").status_code == 200
    lst = ListFactory(user=user, visibility=Visibility.PUBLIC)
    ListItem.objects.create(list=lst, feature=f)
    Bookmark.objects.create(user=user, feature=f)
    assert client.get(f"/list/{lst.id}/").status_code == 200
    client.force_login(user)
    assert f'href="{base}-1/"' in client.get("/account/").content.decode()


# --- regressions: what pages list ------------------------------------------------------------------------------


def test_the_dashboard_lists_public_lists_and_your_own_but_not_others_unlisted_ones(client, user, other_user, feature):
    for name, visibility in (("Shown list", Visibility.PUBLIC), ("Link-only list", Visibility.UNLISTED)):
        ListItem.objects.create(list=ListFactory(user=other_user, name=name, visibility=visibility), feature=feature)
    mine = ListFactory(user=user, name="My unlisted list", visibility=Visibility.UNLISTED)
    ListItem.objects.create(list=mine, feature=feature)
    html = client.get(feature_url(feature)).content.decode()
    assert "Shown list" in html and "Link-only list" not in html and "My unlisted list" not in html
    client.force_login(user)
    html = client.get(feature_url(feature)).content.decode()
    assert "Shown list" in html and "Link-only list" not in html and "My unlisted list" in html


def test_home_hides_jobs_about_private_models_and_sets_even_before_their_source_exists(client, user, other_user):
    from features.services.jobs import job_create

    secret_model = ModelFactory(id="aud-secret-model", visibility=Visibility.PRIVATE, creator=other_user)
    open_model = ModelFactory(id="aud-open-model")
    SourceSetFactory(model=open_model, name="res-hidden", visibility=Visibility.PRIVATE, creator=other_user)
    job_create(kind="import", model_id=secret_model.id, source="3-res-secret")
    job_create(kind="import", model_id=open_model.id, source="3-res-hidden")
    job_create(kind="import", model_id=open_model.id, source="3-res-open")
    for viewer in (None, user):
        if viewer:
            client.force_login(viewer)
        html = client.get("/").content.decode()
        assert "aud-secret-model" not in html and "3-res-hidden" not in html and "3-res-open" in html
    client.force_login(other_user)  # the owner sees their jobs
    html = client.get("/").content.decode()
    assert "aud-secret-model/3-res-secret" in html and "3-res-hidden" in html


def test_home_counts_only_the_source_sets_of_a_release_you_may_see(client, user, feature):
    release = feature.source.source_set.release
    SourceSetFactory(release=release, visibility=Visibility.PRIVATE, creator=user)
    SourceSetFactory(release=release, model=ModelFactory(visibility=Visibility.PRIVATE, creator=user))
    assert re.search(rf"{re.escape(release.name)}.*?1 set<", client.get("/").content.decode(), re.S)
    client.force_login(user)
    assert re.search(rf"{re.escape(release.name)}.*?3 sets<", client.get("/").content.decode(), re.S)


def test_a_users_page_counts_only_the_features_of_a_list_the_viewer_may_read(client, user, other_user, feature):
    hidden = FeatureFactory(source=SourceFactory(visibility=Visibility.PRIVATE, creator=user))
    lst = ListFactory(user=user, name="Mixed", visibility=Visibility.PUBLIC)
    ListItem.objects.create(list=lst, feature=feature)
    ListItem.objects.create(list=lst, feature=hidden)

    def count():
        html = client.get(f"/user/{user.username}/").content.decode()
        return int(re.search(r"Mixed.*?<td class=\"num\">(\d+)</td>", html, re.S)[1])

    assert count() == 1
    client.force_login(other_user)
    assert count() == 1
    client.force_login(user)
    assert count() == 2


def test_staff_read_the_private_lists_their_profile_pages_link(client, user, staff_user, feature):
    lst = ListFactory(user=user, name="Owner only", visibility=Visibility.PRIVATE)
    ListItem.objects.create(list=lst, feature=feature)
    client.force_login(staff_user)
    assert f'href="/list/{lst.id}/"' in client.get(f"/user/{user.username}/").content.decode()
    assert client.get(f"/list/{lst.id}/").status_code == 200
    assert "Owner only" in client.get(feature_url(feature)).content.decode()
    assert client.post(f"/list/{lst.id}/edit/", {"name": "x", "visibility": "PUBLIC"}).status_code == 403


def test_the_source_pager_counts_only_the_features_it_lists(client):
    source = SourceFactory()
    for i in range(30):
        FeatureFactory(source=source, index=i)
    for i in range(30, 90):
        FeatureFactory(source=source, index=i, max_act_approx=0)  # no dashboard: not listed
    html = client.get(f"/{source.model_id}/{source.name}/").content.decode()
    assert "?offset=25" in html and "?offset=50" not in html and "of 30" in html
