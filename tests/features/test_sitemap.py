"""/robots.txt, /sitemap.xml and the sitemaps it points at: every listed page and feature, in files of at most
SITEMAP_PAGE_SIZE URLs, and nothing PRIVATE or UNLISTED (nor anything under it), whoever asks."""

import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
from django.test import Client

from features import selectors
from features.models import Visibility
from tests.factories import FeatureFactory, ListFactory, ModelFactory, SourceFactory, SourceSetFactory, UserFactory

pytestmark = pytest.mark.django_db

NS = {"sm": "http://www.sitemaps.org/schemas/sitemap/0.9"}
LEVELS = ("model", "source_set", "source")


def locs(response, tag: str) -> list[str]:
    """The <loc>s of a <urlset> (tag "url") or <sitemapindex> (tag "sitemap"), after checking the document."""
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/xml; charset=utf-8"
    root = ET.fromstring(response.content)
    assert root.tag == f"{{{NS['sm']}}}{'urlset' if tag == 'url' else 'sitemapindex'}"
    return [e.text for e in root.findall(f"sm:{tag}/sm:loc", NS)]


def path_of(url: str) -> str:
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("http", "testserver"), url  # absolute, on the host that was asked
    return parts.path + (f"?{parts.query}" if parts.query else "")


def everything(client) -> set[str]:
    """Every path the sitemaps name, the sitemap files themselves included."""
    seen = set()
    for sitemap in map(path_of, locs(client.get("/sitemap.xml"), "sitemap")):
        seen.add(sitemap)
        seen |= {path_of(u) for u in locs(client.get(sitemap), "url")}
    return seen


def a_source(name: str, *, n_features: int, **visibility):
    """A source with features 0..n-1 that have dashboards; `visibility` sets model/source_set/source levels."""
    model = ModelFactory(id=f"m-{name}", visibility=visibility.get("model", Visibility.PUBLIC))
    source_set = SourceSetFactory(model=model, name=f"set-{name}", visibility=visibility.get("source_set", "PUBLIC"))
    source = SourceFactory(source_set=source_set, name=f"0-{name}", visibility=visibility.get("source", "PUBLIC"))
    for i in range(n_features):
        FeatureFactory(source=source, index=i)
    return source


def test_robots_txt_names_the_sitemap_and_keeps_crawlers_off_the_api_and_admin(client):
    r = client.get("/robots.txt")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/plain")
    lines = r.content.decode().splitlines()
    assert "Sitemap: http://testserver/sitemap.xml" in lines
    assert {"Disallow: /api/", "Disallow: /admin/"} <= set(lines)


def test_the_sitemaps_list_each_public_page_and_feature_and_every_url_opens(client, monkeypatch):
    monkeypatch.setattr(selectors, "SITEMAP_PAGE_SIZE", 2)
    source = a_source("pub", n_features=5)
    source.has_umap = True
    source.save()
    FeatureFactory(source=source, index=7, max_act_approx=0.0)  # no dashboard: the source pager skips it too
    public_list = ListFactory(visibility=Visibility.PUBLIC)
    m, s = source.model_id, source.name

    index = [path_of(u) for u in locs(client.get("/sitemap.xml"), "sitemap")]
    assert index == ["/sitemap-pages.xml", f"/sitemap/{m}/{s}.xml", f"/sitemap/{m}/{s}.xml?p=2",
                     f"/sitemap/{m}/{s}.xml?p=3"]  # fmt: skip
    pages = [path_of(u) for u in locs(client.get("/sitemap-pages.xml"), "url")]
    assert pages == ["/", f"/{m}/", f"/{m}/{source.source_set.name}/", f"/{m}/{s}/", f"/umap/{m}/{s}/",
                     f"/list/{public_list.id}/"]  # fmt: skip
    features = [[path_of(u) for u in locs(client.get(f), "url")] for f in index[1:]]
    assert features == [[f"/{m}/{s}/0/", f"/{m}/{s}/1/"], [f"/{m}/{s}/2/", f"/{m}/{s}/3/"], [f"/{m}/{s}/4/"]]
    for path in pages + [p for page in features for p in page]:
        assert client.get(path).status_code == 200, path
    assert client.get(f"/sitemap/{m}/{s}.xml?p=4").status_code == 404  # past the last page


@pytest.mark.parametrize("hidden", [Visibility.PRIVATE, Visibility.UNLISTED])
@pytest.mark.parametrize("level", LEVELS)
def test_nothing_private_or_unlisted_is_in_any_sitemap_whoever_asks(level, hidden):
    shown = a_source("shown", n_features=2)
    kept = a_source("kept", n_features=2, **{level: hidden})
    owner, staff = UserFactory(), UserFactory(is_staff=True, is_superuser=True)
    for obj in (kept.model, kept.source_set, kept):
        obj.creator = owner
        obj.save()
    ListFactory(user=owner, visibility=hidden, name="kept list")
    clients = {"anonymous": Client(), "owner": Client(), "staff": Client()}
    clients["owner"].force_login(owner)
    clients["staff"].force_login(staff)
    for who, client in clients.items():
        seen = everything(client)
        assert f"/{shown.model_id}/{shown.name}/1/" in seen, who
        # the levels above the hidden one are PUBLIC, so their pages are listed; nothing at or under it is
        above = [f"/{kept.model_id}/", f"/{kept.model_id}/{kept.source_set.name}/"][: LEVELS.index(level)]
        assert sorted(p for p in seen if "kept" in p or "/list/" in p) == above, who
        # the source's own feature sitemap, asked for by name, is a 404, as its page is to others
        assert client.get(f"/sitemap/{kept.model_id}/{kept.name}.xml").status_code == 404, who


@pytest.mark.parametrize("p", ["0", "-1", "x", "1.5", "١", "9999999", ""])
def test_a_page_number_that_is_not_one_from_1_is_a_404(client, p):
    source = a_source("pub", n_features=1)
    assert client.get(f"/sitemap/{source.model_id}/{source.name}.xml", {"p": p}).status_code == 404
    assert client.get(f"/sitemap/{source.model_id}/nope.xml").status_code == 404


def test_names_that_need_escaping_are_percent_encoded_and_the_documents_stay_well_formed(client):
    source = a_source("x", n_features=1)
    source.name = "0-a&b <c>"
    source.save()
    urls = locs(client.get("/sitemap-pages.xml"), "url")  # parsing it checks that & and < were escaped
    assert "http://testserver/m-x/0-a&b%20%3Cc%3E/" in urls
    (feature_sitemap,) = [u for u in locs(client.get("/sitemap.xml"), "sitemap") if "sitemap/" in u]
    assert locs(client.get(path_of(feature_sitemap)), "url") == ["http://testserver/m-x/0-a&b%20%3Cc%3E/0/"]


def test_the_index_costs_the_same_few_queries_however_many_sources(client, django_assert_max_num_queries):
    for k in range(6):
        a_source(f"s{k}", n_features=2)
    with django_assert_max_num_queries(2):  # the sources, then one grouped count of their features
        assert len(locs(client.get("/sitemap.xml"), "sitemap")) == 7
