"""The Content-Security-Policy in a real browser: no page of the site trips it (Swagger UI included)."""

import json
from urllib.parse import quote

import pytest

from tests.factories import (
    ActivationFactory,
    ExplanationFactory,
    FeatureFactory,
    ModelFactory,
    ReleaseFactory,
    SourceFactory,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_no_page_breaks_the_content_security_policy(live_server, page):
    model = ModelFactory(inference_enabled=True)
    source = SourceFactory(source_set__model=model, source_set__release=ReleaseFactory(), has_umap=True)
    feature = FeatureFactory(source=source, umap_x=0.1, umap_y=0.2)
    ActivationFactory(feature=feature)
    ExplanationFactory(feature=feature)
    violations = []
    page.on("console", lambda msg: "Content Security Policy" in msg.text and violations.append(msg.text))
    paths = [
        "/", f"/{model.id}/", f"/{model.id}/{source.name}/", f"/{model.id}/{source.name}/{feature.index}/",
        f"/umap/{model.id}/{source.name}/", "/steer", "/search-inference", "/search-topk", "/explanations/search/",
        "/retrieve", "/intervene", "/accounts/login/", "/api/docs/",
        f"/release/{source.source_set.release.name}/",
        "/quick-list/?name=q&features=" + quote(json.dumps([{"modelId": model.id, "layer": source.name, "index": "0"}])),
    ]  # fmt: skip
    embeds = [f"/{model.id}/{source.name}/{feature.index}/?embed=true", f"/umap/{model.id}/{source.name}/?embed=true",
              "/steer?embed=true"]  # fmt: skip
    for path in paths:
        response = page.goto(live_server.url + path)
        assert response.status == 200 and "frame-ancestors 'none'" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
    for path in embeds:  # the embeds' policy differs only in who may frame them
        response = page.goto(live_server.url + path)
        assert response.status == 200 and "frame-ancestors *" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
    page.goto(live_server.url + "/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title", timeout=15000)  # the UI rendered from /api/schema/
    assert not violations, violations
