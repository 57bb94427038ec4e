"""Admin: train an SAE or add a SAELens directory as a source, and watch the job's live progress.

The add form creates a Job (train_sae or dashboards) and queues it on gpu_batch; the job's change page follows its
progress (static/js/jobs.js) and shows the finished row when it ends.
"""

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse

from features.admin import JobKindAdmin
from features.models import Model
from inference.jobs import KIND_DASHBOARDS, KIND_TRAIN
from inference.models import PipelineJob


class PipelineForm(forms.Form):
    action = forms.ChoiceField(choices=[("train", "Train an SAE"), ("add", "Add a SAELens directory")])
    model = forms.ModelChoiceField(queryset=Model.objects.all())
    source_id = forms.CharField(required=False, help_text="default: <layer>-<res|mlp|att>-<corpus>")
    corpus = forms.CharField(initial="brown", help_text="brown, a local .txt/.jsonl file or directory, hf:<name>")
    hook = forms.CharField(required=False, initial="blocks.9.hook_resid_post", help_text="train only")
    arch = forms.ChoiceField(choices=[(a, a) for a in ("topk", "batchtopk", "jumprelu", "standard")])
    width = forms.IntegerField(initial=4096, min_value=16)
    k = forms.IntegerField(initial=32, min_value=1)
    l1_coefficient = forms.FloatField(initial=5.0, help_text="standard architecture only")
    tokens = forms.IntegerField(initial=500_000, min_value=1024, help_text="training tokens")
    dashboard_tokens = forms.IntegerField(initial=65_536, min_value=1024)
    sae_dir = forms.CharField(required=False, help_text="add only: a directory with cfg.json")

    def clean(self):
        data = super().clean()
        if data.get("action") == "train" and not data.get("hook"):
            self.add_error("hook", "Training needs a hook")
        if data.get("action") == "add" and not data.get("sae_dir"):
            self.add_error("sae_dir", "Adding a source needs a SAELens directory")
        return data


@admin.register(PipelineJob)
class PipelineJobAdmin(JobKindAdmin):
    list_filter = ("kind", "status")

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind__in=[KIND_TRAIN, KIND_DASHBOARDS])

    def add_view(self, request, form_url="", extra_context=None):
        from inference.pipeline import services

        form = PipelineForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            d = form.cleaned_data
            try:
                if d["action"] == "train":
                    job = services.train_job_create(
                        model_id=d["model"].id,
                        hook=d["hook"],
                        corpus=d["corpus"],
                        source_id=d["source_id"],
                        arch=d["arch"],
                        width=d["width"],
                        k=d["k"],
                        l1_coefficient=d["l1_coefficient"],
                        tokens=d["tokens"],
                        dashboard_tokens=d["dashboard_tokens"],
                        created_by=request.user,
                    )
                else:
                    job = services.add_source_job_create(
                        model_id=d["model"].id,
                        sae_dir=d["sae_dir"],
                        source_id=d["source_id"],
                        corpus=d["corpus"],
                        tokens=d["dashboard_tokens"],
                        created_by=request.user,
                    )
            except (FileNotFoundError, ValueError) as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Queued job {job.pk} ({job.subject}) on gpu_batch")
                return HttpResponseRedirect(reverse("admin:inference_pipelinejob_change", args=[job.pk]))
        return self.form_page(request, title="Train an SAE or add a source", form=form)
