"""Attribution graphs (Neuronpedia's GraphMetadata), their upload tickets and saved subgraphs.

The graph JSON itself lives in the object store (graphs/services/storage.py), gzip-encoded; a row holds where.
"""

import uuid

from django.conf import settings
from django.db import models

from features.models import Job, Model, VisibilityMixin


class Graph(VisibilityMixin):
    """One graph of one prompt. `creator` is its owner; slugs are unique per model."""

    class Status(models.TextChoices):
        PENDING = "PENDING"  # a generate job is making it
        READY = "READY"
        FAILED = "FAILED"

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="graphs")
    slug = models.CharField(max_length=128)
    prompt = models.TextField(blank=True)
    prompt_tokens = models.JSONField(default=list, blank=True)
    title_prefix = models.CharField(max_length=255, blank=True)
    source_set_name = models.CharField(max_length=255, blank=True)
    params = models.JSONField(default=dict, blank=True)  # generation and pruning settings
    replacement_score = models.FloatField(null=True, blank=True)
    completeness_score = models.FloatField(null=True, blank=True)
    n_nodes = models.IntegerField(default=0)
    n_links = models.IntegerField(default=0)
    storage_key = models.CharField(max_length=512, blank=True)  # key of the gzip JSON in the object store
    size_bytes = models.BigIntegerField(default=0)  # gzipped
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.READY)
    job = models.ForeignKey("features.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "slug"], name="graph_slug_unique_per_model")]
        indexes = [models.Index(fields=["creator", "-created_at"]), models.Index(fields=["model", "-created_at"])]

    def __str__(self):
        return f"{self.model_id}/{self.slug}"


class GraphPutRequest(models.Model):
    """A signed-put ticket: its unguessable id is the PUT URL's secret, valid for an hour, for its user only."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    filename = models.CharField(max_length=255)
    content_length = models.BigIntegerField()
    storage_key = models.CharField(max_length=512)
    ip_address = models.CharField(max_length=64, blank=True)
    received_bytes = models.BigIntegerField(null=True, blank=True)  # set once the PUT arrived
    created_at = models.DateTimeField(auto_now_add=True)


class Subgraph(models.Model):
    """Saved viewer state of a graph (Neuronpedia's GraphMetadataSubgraph): pins, supernodes, labels, thresholds.
    Readable by whoever may read its graph; written and deleted by its owner."""

    graph = models.ForeignKey(Graph, on_delete=models.CASCADE, related_name="subgraphs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    display_name = models.CharField(max_length=255, blank=True)
    pinned_ids = models.JSONField(default=list)
    supernodes = models.JSONField(default=list)
    clerps = models.JSONField(default=list)
    pruning_threshold = models.FloatField(null=True, blank=True)
    density_threshold = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)


class TranscoderJob(Job):
    """Transcoder training jobs (features.Job rows of kind train_transcoders), for the admin's form."""

    class Meta:
        proxy = True
        verbose_name = "transcoder training job"
        verbose_name_plural = "Transcoders (train a set per layer)"
