"""Queue names. Stdlib only: workers, the web process and scripts import this without Django."""

import enum


class Queue(enum.StrEnum):
    DEFAULT = "default"
    IMPORTS = "imports"
    GPU_BATCH = "gpu_batch"
    AUTOINTERP = "autointerp"
    EMBEDDINGS = "embeddings"


INFERENCE_PREFIX = "inference."


def inference_queue(model_id: str) -> str:
    """One queue per loaded model: every worker on it holds that model, concurrency 1."""
    return f"{INFERENCE_PREFIX}{model_id}"


STATIC_QUEUES = [q.value for q in Queue]
