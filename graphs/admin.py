"""Admin: train a model's transcoders (one per layer) and follow the job; graphs and subgraphs as rows."""

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from features.models import Job, Model
from graphs.jobs import KIND_TRAIN_TRANSCODERS
from graphs.models import Graph, Subgraph, TranscoderJob


class TranscoderForm(forms.Form):
    model = forms.ModelChoiceField(queryset=Model.objects.all())
    set_name = forms.CharField(required=False, help_text="default: tc-<arch>-<width>-<corpus>")
    corpus = forms.CharField(initial="brown", help_text="brown, a local .txt/.jsonl file or directory, hf:<name>")
    arch = forms.ChoiceField(choices=[("topk", "topk"), ("jumprelu", "jumprelu")])
    width = forms.IntegerField(initial=2048, min_value=16)
    k = forms.IntegerField(initial=32, min_value=1, help_text="topk: active features per token")
    skip = forms.BooleanField(required=False, help_text="a linear skip connection (W_skip)")
    tokens = forms.IntegerField(initial=200_000, min_value=1024, help_text="training tokens per layer")
    dashboard_tokens = forms.IntegerField(initial=65_536, min_value=1024)
    explain = forms.BooleanField(required=False, initial=True, help_text="queue autointerp explanations")


@admin.register(TranscoderJob)
class TranscoderJobAdmin(admin.ModelAdmin):
    list_display = ("id", "model", "source_name", "status", "progress", "message", "created_at")
    list_filter = ("status",)
    readonly_fields = (
        "kind", "model", "source_name", "status", "progress", "message", "error", "params", "result",
        "created_at", "started_at", "finished_at", "updated_at",
    )  # fmt: skip
    fields = readonly_fields
    change_form_template = "admin/inference/pipelinejob/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind=KIND_TRAIN_TRANSCODERS)

    @admin.display(description="progress")
    def progress(self, obj):
        pct = round(100 * obj.fraction)
        return format_html('<progress max="100" value="{}"></progress> {}% ({} / {})', pct, pct, obj.done, obj.total)

    def has_change_permission(self, request, obj=None):
        return False if obj is None else request.user.is_staff

    def add_view(self, request, form_url="", extra_context=None):
        from graphs.services.transcoders import transcoders_job_create

        form = TranscoderForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            d = form.cleaned_data
            try:
                job = transcoders_job_create(
                    model_id=d["model"].id, set_name=d["set_name"], corpus=d["corpus"], arch=d["arch"],
                    width=d["width"], k=d["k"], skip=d["skip"], tokens=d["tokens"],
                    dashboard_tokens=d["dashboard_tokens"], explain=d["explain"], created_by=request.user,
                )  # fmt: skip
            except (FileNotFoundError, ValueError) as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Queued job {job.pk} ({job.subject}) on gpu_batch")
                return HttpResponseRedirect(reverse("admin:graphs_transcoderjob_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Train transcoders (one per layer)",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/inference/pipelinejob/add_form.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = Job.objects.filter(pk=object_id).first()
        extra = {"live": job is not None and not job.finished, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context=extra)


@admin.register(Graph)
class GraphAdmin(admin.ModelAdmin):
    list_display = ("id", "model", "slug", "creator", "visibility", "status", "n_nodes", "created_at")
    list_filter = ("visibility", "status")
    search_fields = ("slug", "prompt")
    raw_id_fields = ("creator", "job")


@admin.register(Subgraph)
class SubgraphAdmin(admin.ModelAdmin):
    list_display = ("id", "graph", "user", "display_name", "updated_at")
    raw_id_fields = ("graph", "user")
