"""The OpenAPI schema: it builds, validates, documents every route, matches the responses, and the committed
openapi.yaml is current (regenerate with `make schema`)."""

import pytest
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiYamlRenderer
from drf_spectacular.validation import validate_schema

from tests.conftest import ROOT

# Issue 2's routes (Neuronpedia's paths) and the methods each answers.
FEATURE_ROUTES = {
    "/api/feature/{model_id}/{source_id}/{index}": {"get"},
    "/api/features": {"post"},
    "/api/features-offset": {"post"},
    "/api/activation/get": {"post"},
    "/api/list/new": {"post"},
    "/api/list/new-with-features": {"post"},
    "/api/list/add-features": {"post"},
    "/api/list/remove": {"post"},
    "/api/list/edit-feature": {"post"},
    "/api/list/update": {"post"},
    "/api/list/delete": {"post"},
    "/api/list/get": {"post"},
    "/api/list/list": {"post", "get"},
    "/api/comment/new": {"post"},
    "/api/comment/delete": {"post"},
    "/api/bookmark/add": {"post"},
    "/api/bookmark/delete": {"post"},
    "/api/user/bookmarks": {"post", "get"},
    "/api/global": {"post", "get"},
    "/api/model/get": {"post"},
    "/api/model/list": {"post", "get"},
    "/api/model/new": {"post"},
    "/api/source-set/new": {"post"},
    "/api/source-set/{model_id}/{name}": {"get"},
    "/api/source/{model_id}/{source_id}": {"get"},
}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def test_schema_is_valid_openapi_3(schema):
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")


def test_committed_openapi_yaml_is_current(schema):
    committed = (ROOT / "openapi.yaml").read_bytes() if (ROOT / "openapi.yaml").exists() else b""
    generated = OpenApiYamlRenderer().render(schema, renderer_context={})
    assert committed == generated, "openapi.yaml is out of date with the API: run `make schema` and commit it."


def test_schema_documents_every_route_with_its_methods(schema):
    for path, methods in FEATURE_ROUTES.items():
        assert path in schema["paths"], f"{path} missing from the schema"
        assert set(schema["paths"][path]) & HTTP_METHODS == methods, path


def test_every_route_answers_with_and_without_trailing_slash():
    for path in FEATURE_ROUTES:
        concrete = path.replace("{model_id}", "m").replace("{source_id}", "s").replace("{index}", "1")
        concrete = concrete.replace("{name}", "n")
        assert resolve(concrete).url_name == resolve(concrete + "/").url_name != "api_not_found", path
        assert resolve(concrete).func.__name__ != "api_not_found", path


def test_authenticated_routes_document_the_x_api_key_scheme(schema):
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey", "in": "header", "name": "x-api-key",
    }  # fmt: skip
    operation = schema["paths"]["/api/list/new"]["post"]
    assert {"ApiKeyAuth": []} in operation["security"]
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "404"}


def _properties(schema, component: str) -> set[str]:
    return set(schema["components"]["schemas"][component]["properties"])


@pytest.mark.django_db
def test_documented_feature_shape_matches_the_real_response(schema, api_client):
    from tests.factories import ActivationFactory, ExplanationFactory, FeatureFactory

    feature = FeatureFactory()
    ActivationFactory(feature=feature)
    ExplanationFactory(feature=feature)
    body = api_client.get(f"/api/feature/{feature.model_id}/{feature.source.name}/{feature.index}").json()
    assert set(body) == _properties(schema, "NpFeatureDetail")
    assert set(body["activations"][0]) == _properties(schema, "NpActivation")
    assert set(body["explanations"][0]) == _properties(schema, "NpExplanation")
    assert set(body["model"]) == _properties(schema, "NpModel")
    assert set(body["source"]) == _properties(schema, "NpSource")
    assert set(body["sourceSet"]) == _properties(schema, "NpSourceSet")


@pytest.mark.django_db
def test_schema_and_docs_are_served(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/api/feature/{model_id}/{source_id}/{index}" in response.json()["paths"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
