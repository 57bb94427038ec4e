"""Writes to features and their dashboards' derived fields."""

from django.db.models import Max, OuterRef, Subquery

from features.models import Activation, Feature


def source_refresh_max_act(*, source_id: int) -> int:
    """Set each feature's maxActApprox to the max of its stored activations (after uploads/imports)."""
    best = Activation.objects.filter(feature=OuterRef("pk")).values("feature").annotate(m=Max("max_value")).values("m")
    return Feature.objects.filter(source_id=source_id).update(max_act_approx=Subquery(best[:1]))


def source_refresh_max_act_run(job, **inline) -> dict:
    """The `refresh_max_act` job: params {"source_id": pk}."""
    updated = source_refresh_max_act(source_id=job.params["source_id"])
    job.message = f"{updated} features updated"
    return {"updated": updated}
