"""The passage-embedding cache of a memory-source rebuild (inference/runtime/passage_sae.passages_embed_cached),
which retrieval/services.py calls so that torch stays in the runtime."""

import torch

from inference.runtime.embedder import embed
from inference.runtime.passage_sae import passages_embed_cached

TEXTS = ["The jury praised the administration of the election.", "Rain fell on the harbour all night."]


def test_a_cache_with_the_same_stamp_is_read_and_nothing_is_embedded(tmp_path):
    cache = tmp_path / "embeddings.pt"
    stored = torch.randn(len(TEXTS), 384)  # not what the embedder returns: equal only when read from the file
    torch.save({"stamp": "brown/2", "embeddings": stored}, cache)
    calls = []
    got = passages_embed_cached(TEXTS, cache_file=cache, stamp="brown/2", on_embed=lambda: calls.append(1))
    assert calls == []
    assert torch.equal(got, stored)


def test_a_stale_cache_is_embedded_again_and_replaced_without_a_temporary_file_left(tmp_path):
    cache = tmp_path / "embeddings.pt"
    torch.save({"stamp": "brown/1", "embeddings": torch.zeros(len(TEXTS), 384)}, cache)
    calls = []
    got = passages_embed_cached(TEXTS, cache_file=cache, stamp="brown/2", on_embed=lambda: calls.append(1))
    assert calls == [1]
    assert torch.allclose(got, torch.tensor(embed(TEXTS)), atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings.pt"]
    again = passages_embed_cached(TEXTS, cache_file=cache, stamp="brown/2", on_embed=lambda: calls.append(2))
    assert calls == [1] and torch.equal(again, got)


def test_a_missing_cache_is_embedded_and_written(tmp_path):
    cache = tmp_path / "embeddings.pt"
    got = passages_embed_cached(TEXTS, cache_file=cache, stamp="brown/2")
    assert got.shape == (len(TEXTS), 384)
    saved = torch.load(cache)
    assert saved["stamp"] == "brown/2" and torch.equal(saved["embeddings"], got)
