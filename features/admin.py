"""Django admin for the domain (staff only). Heavy tables use raw_id_fields so pages stay fast at scale."""

from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils.html import format_html

from features import models as m


@admin.register(m.Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ("id", "display_name", "layers", "dimension", "visibility", "inference_enabled", "created_at")
    list_filter = ("visibility", "inference_enabled")
    search_fields = ("id", "display_name")


@admin.register(m.SourceRelease)
class SourceReleaseAdmin(admin.ModelAdmin):
    list_display = ("name", "creator_name", "featured", "visibility", "created_at")
    list_filter = ("visibility", "featured")
    search_fields = ("name", "description")


@admin.register(m.SourceSet)
class SourceSetAdmin(admin.ModelAdmin):
    list_display = ("name", "model", "release", "visibility", "has_dashboards")
    list_filter = ("visibility", "model")
    search_fields = ("name", "description")


@admin.register(m.Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "model", "source_set", "visibility", "has_dashboards", "inference_enabled")
    list_filter = ("visibility", "model", "inference_enabled")
    search_fields = ("name",)


@admin.register(m.Feature)
class FeatureAdmin(admin.ModelAdmin):
    list_display = ("model", "source", "index", "max_act_approx", "frac_nonzero", "has_vector")
    list_filter = ("has_vector",)
    raw_id_fields = ("model", "source", "creator")
    search_fields = ("=index",)
    show_full_result_count = False


@admin.register(m.Explanation)
class ExplanationAdmin(admin.ModelAdmin):
    list_display = ("id", "feature", "description", "type", "explanation_model", "created_at")
    raw_id_fields = ("feature", "model", "source", "author", "triggered_by")
    search_fields = ("description",)
    exclude = ("embedding", "embedding_256")
    show_full_result_count = False


for lookup in (m.ExplanationType, m.ExplanationModelType, m.ExplanationScoreType, m.ExplanationScoreModel):
    admin.site.register(lookup, list_display=("name", "display_name", "featured"), search_fields=("name",))


@admin.register(m.List)
class ListAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "visibility", "updated_at")
    raw_id_fields = ("user",)


@admin.register(m.Comment)
class CommentAdmin(admin.ModelAdmin):
    list_display = ("feature", "user", "created_at")
    raw_id_fields = ("feature", "user")


@admin.register(m.ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("key_hash", "prefix", "created_at", "last_used_at")
    raw_id_fields = ("user",)


@admin.register(m.Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "subject", "status", "done", "total", "created_at", "finished_at")
    list_filter = ("kind", "status")
    readonly_fields = ("created_at", "started_at", "finished_at", "updated_at")


@admin.register(m.SteerOutput)
class SteerOutputAdmin(admin.ModelAdmin):
    list_display = ("id", "model", "type", "steer_method", "created_at")
    raw_id_fields = ("model", "creator", "connected_default_output")


class JobKindAdmin(admin.ModelAdmin):
    """Base of the admins that start one kind of job from a form (SAE pipeline, transcoders) and follow it: a read-only
    job page with a live progress bar (static/js/jobs.js while the job runs)."""

    list_display = ("id", "kind", "model", "source_name", "status", "progress", "message", "created_at")
    readonly_fields = (
        "kind", "model", "source_name", "status", "progress", "message", "error", "params", "result",
        "created_at", "started_at", "finished_at", "updated_at",
    )  # fmt: skip
    fields = readonly_fields
    change_form_template = "admin/inference/pipelinejob/change_form.html"

    @admin.display(description="progress")
    def progress(self, obj):
        pct = round(100 * obj.fraction)
        return format_html('<progress max="100" value="{}"></progress> {}% ({} / {})', pct, pct, obj.done, obj.total)

    def has_change_permission(self, request, obj=None):
        return False if obj is None else request.user.is_staff

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = m.Job.objects.filter(pk=object_id).first()
        extra = {"live": job is not None and not job.finished, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def form_page(self, request, *, title: str, form):
        """The add page: the form that starts the job."""
        context = {**self.admin_site.each_context(request), "title": title, "form": form, "opts": self.model._meta}
        return TemplateResponse(request, "admin/inference/pipelinejob/add_form.html", context)
