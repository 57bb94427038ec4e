"""UMAP per source (umap-learn): 2-d coordinates and clusters stored on Feature.umap_* (worker only).

Input vectors: the SAE's decoder directions (W_dec rows, read through inference/runtime/sae_weights.py)
when the source has a local SAE directory, else the features' explanation embeddings. Clusters are
k-means on the 2-d layout with k ≈ √(n/2) (capped at 40): cheap, deterministic and readable as colours.
"""

from __future__ import annotations

import math

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction

from autointerp.jobs import UMAP_JOB
from features.models import Explanation, Feature, Job, Source
from features.services.jobs import JobContext, job_enqueue


def umap_job_create(*, source: Source, input_kind: str = "auto", user=None, send: bool = True) -> Job:
    if input_kind not in ("auto", "decoder", "explanations"):
        raise ValueError("input must be auto, decoder or explanations")
    if input_kind == "decoder" and not source.sae_path:
        # Refused here, not in the worker: the caller learns why now instead of from a FAILED job.
        raise ValidationError(
            {"input": f"{source} has no local SAE directory (sae_path) to read decoder directions from."}
        )
    return job_enqueue(
        kind=UMAP_JOB, model_id=source.model_id, source=source.name,
        params={"source_pk": source.pk, "input": input_kind}, created_by=user, send=send,
    )  # fmt: skip


def _vectors(source: Source, input_kind: str) -> tuple[list[int], np.ndarray, str]:
    """(feature ids, vectors, what they are)."""
    if input_kind in ("auto", "decoder") and source.sae_path:
        from inference.runtime.sae_weights import decoder_directions  # torch: worker only

        w_dec = decoder_directions(source.sae_path)
        rows = dict(Feature.objects.filter(source=source, index__lt=len(w_dec)).values_list("index", "id"))
        indexes = sorted(rows)
        return [rows[i] for i in indexes], w_dec[indexes], "decoder"
    if input_kind == "decoder":
        raise ValueError(f"{source}: no local SAE directory (sae_path) to read decoder directions from")
    by_feature = {}
    for feature_id, vector in (
        Explanation.objects.filter(source=source, embedding__isnull=False)
        .order_by("feature_id", "-score_v1", "created_at")
        .values_list("feature_id", "embedding")
    ):
        by_feature.setdefault(feature_id, vector)
    ids = sorted(by_feature)
    return ids, np.array([by_feature[i] for i in ids], dtype=np.float32), "explanations"


def umap_layout(vectors: np.ndarray, *, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) coordinates and (n,) cluster labels."""
    import umap
    from sklearn.cluster import KMeans

    n = len(vectors)
    reducer = umap.UMAP(
        n_neighbors=max(2, min(15, n - 1)), min_dist=0.1, metric="cosine", random_state=seed,
        init="random" if n < 10 else "spectral",
    )  # fmt: skip
    coords = reducer.fit_transform(vectors)
    k = max(1, min(40, round(math.sqrt(n / 2))))
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(coords)
    return coords, labels


def umap_source(*, source: Source, input_kind: str = "auto") -> dict:
    ids, vectors, used = _vectors(source, input_kind)
    if len(ids) < 4:
        raise ValueError(f"{source}: UMAP needs at least 4 features with {used} vectors, found {len(ids)}")
    coords, labels = umap_layout(vectors)
    features = list(Feature.objects.filter(id__in=ids).only("id", "frac_nonzero"))
    where = {fid: i for i, fid in enumerate(ids)}
    for f in features:
        i = where[f.id]
        f.umap_x, f.umap_y, f.umap_cluster = float(coords[i, 0]), float(coords[i, 1]), int(labels[i])
        f.umap_log_feature_sparsity = math.log10(f.frac_nonzero) if f.frac_nonzero else None
    with transaction.atomic():
        Feature.objects.filter(source=source).exclude(id__in=ids).update(umap_x=None, umap_y=None, umap_cluster=None)
        Feature.objects.bulk_update(
            features, ["umap_x", "umap_y", "umap_cluster", "umap_log_feature_sparsity"], batch_size=2000
        )
        Source.objects.filter(pk=source.pk).update(
            has_umap=True, has_umap_clusters=True,
            has_umap_log_sparsity=any(f.umap_log_feature_sparsity is not None for f in features),
        )  # fmt: skip
    return {"points": len(ids), "input": used, "clusters": int(labels.max()) + 1}


def umap_run(job: JobContext, **inline) -> dict:
    """The `umap` job: params {"source_pk", "input"}."""
    job.progress(done=0, total=1, message="computing UMAP")
    source = Source.objects.get(pk=job.params["source_pk"])
    result = umap_source(source=source, input_kind=job.params.get("input", "auto"))
    job.progress(done=1, total=1)
    job.message = f"{result['points']} points from {result['input']}"
    return result
