"""Checkpoints of v1-dataset imports: one ImportRun per requested import, one ImportFile per remote file.

An ImportFile's committed status changes in the same transaction as the rows of its file, so a worker
that dies mid-file leaves the file PENDING and none of its rows visible; the next run simply redoes it.
"""

from django.conf import settings
from django.db import models

from features.models import Job


class ImportRun(models.Model):
    """One Download / Re-sync of one source (progress lives on its Job row)."""

    class Phase(models.TextChoices):
        PLANNED = "PLANNED"
        FEATURES = "FEATURES"  # activations/explanations join on features, so they wait for this phase
        ROWS = "ROWS"
        DONE = "DONE"

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="import_run")
    origin = models.CharField(max_length=1024)  # "s3://bucket/prefix@endpoint" or "dir:/path"
    origin_params = models.JSONField(default=dict)  # what Origin.from_params needs (no secrets)
    model_id = models.CharField(max_length=128)
    source_id = models.CharField(max_length=255)
    resync = models.BooleanField(default=False)
    explanations = models.BooleanField(default=True)
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.PLANNED)
    files_total = models.IntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    # the largest feature id when the run was planned: a feature of this source with a larger id was loaded by
    # another file of this run, so a feature file that repeats its index is reported (not a silent overwrite)
    feature_id_floor = models.BigIntegerField(null=True, blank=True)
    # the metadata and config files' notes ({"file", "warning"}: unknown columns), for the run's report
    warnings = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["model_id", "source_id"], name="importrun_source_idx")]

    def __str__(self):
        return f"import {self.model_id}/{self.source_id} ({self.phase})"


class ImportFile(models.Model):
    class Kind(models.TextChoices):
        FEATURES = "features"
        ACTIVATIONS = "activations"
        EXPLANATIONS = "explanations"

    class Status(models.TextChoices):
        PENDING = "PENDING"
        DONE = "DONE"
        FAILED = "FAILED"
        # rows name features that are not in the database (their feature file failed, or is not loaded yet):
        # nothing of the file is loaded, and the next import or Re-sync of the source tries it again
        WAITING = "WAITING"
        # no longer in the dataset's listing (removed, or renamed upstream): left out of the rows phase's wait for
        # feature files and of completeness, and named in the report; rows loaded from it stay
        REMOVED = "REMOVED"

    origin = models.CharField(max_length=1024)
    key = models.CharField(max_length=1024)  # path under the origin's prefix: <model>/<source>/<kind>/batch-N.jsonl.gz
    model_id = models.CharField(max_length=128)
    source_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    etag = models.CharField(max_length=255, blank=True)
    size = models.BigIntegerField(default=0)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    # etag/size of the version that was loaded, so Re-sync can tell a changed upstream file
    loaded_etag = models.CharField(max_length=255, blank=True)
    loaded_size = models.BigIntegerField(default=0)
    rows_read = models.IntegerField(default=0)  # rows the file holds, counted when it is read
    rows_loaded = models.IntegerField(default=0)  # inserted or changed
    rows_skipped = models.IntegerField(default=0)
    rows_unchanged = models.IntegerField(default=0)
    rows_waiting = models.IntegerField(default=0)  # rows whose feature is not in the database (file not DONE)
    # rows refused for a reason outside the file (an id another source owns): a Re-sync tries the file again
    rows_retryable = models.IntegerField(default=0)
    warnings = models.JSONField(default=list, blank=True)  # e.g. unknown columns, named once per file
    errors = models.JSONField(default=list, blank=True)  # [{"file", "line", "reason"}], capped
    attempts = models.IntegerField(default=0)
    run = models.ForeignKey(ImportRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="files")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_id", "source_id", "kind", "key"]
        constraints = [models.UniqueConstraint(fields=["origin", "key"], name="importfile_origin_key_uniq")]
        indexes = [models.Index(fields=["model_id", "source_id", "kind"], name="importfile_source_idx")]

    def __str__(self):
        return f"{self.key} [{self.status}]"

    @property
    def rows_expected(self) -> int:
        """Rows of this file that should be in the database (read minus skipped bad rows; waiting rows count)."""
        return self.rows_read - self.rows_skipped
