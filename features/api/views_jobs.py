"""GET /api/job/<id>: a background job's status and progress (the UI's progress bars and scripts poll it)."""

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from features.api import outputs as out
from features.api.base import ApiView
from features.selectors import job_get


class JobOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.ChoiceField(choices=["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"])
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    fraction = serializers.FloatField(help_text="done / total, 0 while the total is unknown")
    message = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True)
    result = serializers.JSONField()
    modelId = serializers.CharField(allow_null=True)
    source = serializers.CharField(allow_blank=True)
    createdAt = serializers.DateTimeField()
    startedAt = serializers.DateTimeField(allow_null=True)
    finishedAt = serializers.DateTimeField(allow_null=True)
    updatedAt = serializers.DateTimeField()


def job_wire(job) -> dict:
    return {
        "id": job.pk, "kind": job.kind, "status": job.status, "done": job.done, "total": job.total,
        "fraction": job.fraction, "message": job.message, "error": job.error, "result": job.result,
        "modelId": job.model_id, "source": job.source_name, "createdAt": job.created_at,
        "startedAt": job.started_at, "finishedAt": job.finished_at, "updatedAt": job.updated_at,
    }  # fmt: skip


class JobDetailView(ApiView):
    @extend_schema(
        operation_id="job_get", tags=["jobs"], summary="A background job's status and progress",
        description="Training, dashboards, imports, autointerp, UMAP… Every route that starts a job returns its id. "
        "Owners and staff see their jobs; everyone sees jobs about the models and sources they may read "
        "(a job about a PRIVATE model is a 404 to others).",
        responses={200: JobOut, 404: out.ErrorOut},
    )  # fmt: skip
    def get(self, request, job_id: str):
        if not job_id.isascii() or not job_id.isdigit() or len(job_id) > 18:
            raise Http404(f"No job {job_id!r}.")
        job = job_get(job_id=int(job_id), user=request.user)
        if job is None:
            raise Http404(f"No job {job_id}.")
        return Response(job_wire(job))
