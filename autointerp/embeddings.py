"""Which embedder writes and reads which column. Called from worker tasks only (the local embedder
imports torch through inference/runtime/embedder.py)."""

from __future__ import annotations

from dataclasses import dataclass

from autointerp import conf
from autointerp.llm import LLMConfig, LLMError, LLMUnavailable, _client


@dataclass(frozen=True)
class Embedder:
    name: str  # ExplanationScoreModel name when used for scoring
    field: str  # Explanation column its vectors live in
    dimensions: int


LOCAL = Embedder(name="all-minilm-l6-v2", field="embedding", dimensions=384)
OPENAI_256 = Embedder(name="text-embedding-3-large-256", field="embedding_256", dimensions=256)


def embedder_current() -> Embedder:
    return OPENAI_256 if conf.embedder() == "openai" else LOCAL


def embed_texts(texts: list[str], *, embedder: Embedder | None = None) -> list[list[float]]:
    embedder = embedder or embedder_current()
    if embedder is LOCAL:
        from inference.runtime.embedder import embed  # torch: worker processes only

        return embed(texts)
    return _openai_embed(texts, dimensions=embedder.dimensions)


def _openai_embed(texts: list[str], *, dimensions: int) -> list[list[float]]:
    import openai

    config = LLMConfig.default(model=conf.openai_embedding_model())
    try:
        response = _client(config).embeddings.create(model=config.model, input=texts, dimensions=dimensions)
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        raise LLMUnavailable(f"No embedding endpoint reachable at {config.base_url}: {exc}") from exc
    except openai.APIStatusError as exc:
        raise LLMError(f"Embedding endpoint {config.base_url} answered HTTP {exc.status_code}: {exc}") from exc
    return [d.embedding for d in sorted(response.data, key=lambda d: d.index)]
