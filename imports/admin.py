from django.contrib import admin

from imports.models import ImportFile, ImportRun


@admin.register(ImportRun)
class ImportRunAdmin(admin.ModelAdmin):
    list_display = ["id", "model_id", "source_id", "phase", "files_total", "bytes_total", "resync", "created_at"]
    list_filter = ["phase", "resync"]
    search_fields = ["model_id", "source_id"]
    raw_id_fields = ["job", "created_by"]


@admin.register(ImportFile)
class ImportFileAdmin(admin.ModelAdmin):
    list_display = [
        "key", "kind", "status", "rows_read", "rows_loaded", "rows_skipped", "rows_waiting", "attempts", "finished_at"
    ]  # fmt: skip
    list_filter = ["status", "kind"]
    search_fields = ["key", "model_id", "source_id"]
    readonly_fields = ["errors", "warnings"]
    raw_id_fields = ["run"]
