from features.models import Activation, Explanation, Feature
from imports.services.importer import import_run_create, import_run_inline
from imports.services.origin import OriginParams


def params(endpoint: str, bucket: str, prefix: str = "v1/") -> OriginParams:
    return OriginParams.from_options(bucket=bucket, prefix=prefix, endpoint_url=endpoint)


def run_import(p: OriginParams, model_id: str, source_id: str, **kw):
    run = import_run_create(params=p, model_id=model_id, source_id=source_id, send=False, **kw)
    return import_run_inline(run_id=run.pk)


def db_counts(model_id: str, source_id: str) -> dict:
    return {
        "features": Feature.objects.filter(model_id=model_id, source__name=source_id).count(),
        "activations": Activation.objects.filter(feature__model_id=model_id, feature__source__name=source_id).count(),
        "explanations": Explanation.objects.filter(model_id=model_id, source__name=source_id).count(),
    }
