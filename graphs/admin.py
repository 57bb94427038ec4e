"""Admin: train a model's transcoders (one per layer) and follow the job; graphs and subgraphs as rows."""

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse

from features.admin import JobKindAdmin
from features.models import Model
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
    epochs = forms.IntegerField(
        required=False, min_value=1, max_value=100, help_text="default 1; >1: tokens/epochs distinct tokens, replayed"
    )
    dashboard_tokens = forms.IntegerField(initial=65_536, min_value=1024)
    explain = forms.BooleanField(required=False, initial=True, help_text="queue autointerp explanations")


@admin.register(TranscoderJob)
class TranscoderJobAdmin(JobKindAdmin):
    list_display = ("id", "model", "source_name", "status", "progress", "message", "created_at")
    list_filter = ("status",)

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind=KIND_TRAIN_TRANSCODERS)

    def add_view(self, request, form_url="", extra_context=None):
        from graphs.services.transcoders import transcoders_job_create

        form = TranscoderForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            d = form.cleaned_data
            try:
                job = transcoders_job_create(
                    model_id=d["model"].id, set_name=d["set_name"], corpus=d["corpus"], arch=d["arch"],
                    width=d["width"], k=d["k"], skip=d["skip"], tokens=d["tokens"], epochs=d["epochs"] or 1,
                    dashboard_tokens=d["dashboard_tokens"], explain=d["explain"], created_by=request.user,
                )  # fmt: skip
            except (FileNotFoundError, ValueError) as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Queued job {job.pk} ({job.subject}) on gpu_batch")
                return HttpResponseRedirect(reverse("admin:graphs_transcoderjob_change", args=[job.pk]))
        return self.form_page(request, title="Train transcoders (one per layer)", form=form)


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
