"""The import panel (staff only): browse a v1 dataset, start Download / Re-sync / Download all, watch progress."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from imports.models import ImportRun
from imports.selectors import completeness_lines, remote_models, remote_sources, set_sources_to_load
from imports.services.importer import import_run_create, import_run_progress
from imports.services.origin import OriginParams, origin_from_params


def _params(data) -> OriginParams:
    return OriginParams.from_options(
        bucket=data.get("bucket") or None,
        prefix=data.get("prefix") if data.get("prefix") else None,
        endpoint_url=data.get("endpoint_url") or None,
        directory=data.get("dir") or None,
    )


def _is_check(result) -> bool:
    return isinstance(result, dict) and "files_to_resync" in result  # runs before per-kind checks kept less


def _staff_json(view):
    """JSON endpoints answer 403 JSON rather than redirecting to a login page."""

    def wrapped(request, *args, **kwargs):
        if not (request.user.is_authenticated and request.user.is_staff):
            return JsonResponse({"message": "Staff only."}, status=403)
        return view(request, *args, **kwargs)

    return wrapped


@staff_member_required
def import_panel(request):
    params = _params(request.GET)
    origin = origin_from_params(params)
    model_id = request.GET.get("model", "")
    context = {"params": params, "origin": origin.label, "model_id": model_id, "models": [], "groups": [], "error": ""}
    try:
        context["models"] = remote_models(origin=origin)
        if model_id:
            context["groups"] = remote_sources(origin=origin, model_id=model_id)
    except Exception as exc:  # an unreachable bucket is shown, not a 500
        context["error"] = f"{type(exc).__name__}: {exc}"
    context["runs"] = [
        {"run": run, "check": completeness_lines(run.job.result) if _is_check(run.job.result) else []}
        for run in ImportRun.objects.select_related("job")[:10]
    ]
    return render(request, "imports/panel.html", context)


@require_POST
@_staff_json
def import_start(request):
    params = _params(request.POST)
    model_id = request.POST.get("model_id", "")
    if request.POST.get("set"):  # Download all: every source of the set that is not complete yet
        todo = set_sources_to_load(origin=origin_from_params(params), model_id=model_id, set_name=request.POST["set"])
    else:
        todo = [(s, request.POST.get("resync") == "1") for s in request.POST.getlist("source_id")]
    if not model_id or not todo:
        return JsonResponse({"message": "model_id and source_id (or set) are required."}, status=400)
    runs = []  # each run's plan is sent when its transaction commits (import_run_create)
    for source_id, resync in todo:
        run = import_run_create(
            params=params,
            model_id=model_id,
            source_id=source_id,
            resync=resync,
            explanations=request.POST.get("explanations", "1") == "1",
            created_by=request.user,
        )
        runs.append(run)
    return JsonResponse({"runs": [run.pk for run in runs], "jobs": [run.job_id for run in runs]})


@_staff_json
def import_progress(request, run_id: int):
    get_object_or_404(ImportRun, pk=run_id)
    return JsonResponse(import_run_progress(run_id=run_id))
