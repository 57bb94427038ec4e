"""Autointerp configuration, read from the environment at call time (tests and workers can switch it).

- `OPENAI_BASE_URL` (default: the local `serve_llm` endpoint), `OPENAI_API_KEY` (default "local"):
  any OpenAI-compatible endpoint (OpenAI, OpenRouter, vLLM, Ollama, serve_llm).
- `AUTOINTERP_EXPLAINER_MODEL` / `AUTOINTERP_SCORER_MODEL`: model names sent to the endpoint, with
  per-type overrides `AUTOINTERP_MODEL_<TYPE>` (type upper-cased, `-` and `.` as `_`, e.g.
  `AUTOINTERP_MODEL_NP_MAX_ACT`, `AUTOINTERP_MODEL_ELEUTHER_FUZZ`); `AUTOINTERP_EXPLAINER_MODELS`: other
  names the endpoint serves that users may choose as explainer (comma-separated).
- `AUTOINTERP_LLM_TIMEOUT` seconds per request, `AUTOINTERP_LLM_RETRIES` retries (429/5xx/connection,
  exponential backoff by the openai client).
- `AUTOINTERP_EMBEDDER`: `local` (all-MiniLM-L6-v2, 384-d → Explanation.embedding) or `openai`
  (text-embedding-3-large at 256-d → Explanation.embedding_256, the Neuronpedia datasets' embeddings).
"""

from memicos_site.env import env_int, env_list, env_str


def local_llm_url() -> str:
    """`serve_llm` in the Procfile listens on MEMICOS_LLM_PORT (8101 by default)."""
    return f"http://127.0.0.1:{env_str('MEMICOS_LLM_PORT', '8101')}/v1"


LOCAL_LLM_MODEL = "smollm2-135m-instruct"


def llm_base_url() -> str:
    return env_str("OPENAI_BASE_URL", local_llm_url())


def llm_api_key() -> str:
    return env_str("OPENAI_API_KEY", "local")


def llm_timeout() -> float:
    return float(env_str("AUTOINTERP_LLM_TIMEOUT", "120"))


def llm_retries() -> int:
    return env_int("AUTOINTERP_LLM_RETRIES", 2)


def model_for(type_name: str, *, role: str) -> str:
    """The endpoint model name for an explanation type (role=explainer) or score type (role=scorer)."""
    key = "AUTOINTERP_MODEL_" + type_name.upper().replace("-", "_").replace(".", "_")
    default = env_str(f"AUTOINTERP_{role.upper()}_MODEL", LOCAL_LLM_MODEL)
    return env_str(key, default)


def explainer_models(type_names) -> list[str]:
    """The explainer models users may name for the deployment's endpoint: each type's default and the extra ones."""
    names = [model_for(t, role="explainer") for t in type_names] + env_list("AUTOINTERP_EXPLAINER_MODELS", [])
    return sorted(set(names))


def embedder() -> str:
    value = env_str("AUTOINTERP_EMBEDDER", "local")
    if value not in ("local", "openai"):
        raise ValueError(f"AUTOINTERP_EMBEDDER must be local or openai, not {value!r}")
    return value


def openai_embedding_model() -> str:
    return env_str("AUTOINTERP_OPENAI_EMBEDDING_MODEL", "text-embedding-3-large")


def hnsw_ef_search() -> int:
    # bench/search.py, 1M clustered 384-d rows, index m=16 ef_construction=128 (features migration 0002),
    # 200 queries, mean recall@20: ef 40 → 0.952, 60 → 0.962, 80 → 0.974, 100 → 0.980, 200 → 0.980,
    # 300 → 0.985. The walk reads ~2 buffers per candidate, so ef is most of the search statement's cost;
    # past 100 recall barely moves (what remains are queries the graph sends to a wrong topic).
    return env_int("AUTOINTERP_HNSW_EF_SEARCH", 100)


def scorer_examples_per_prompt() -> int:
    """delphi's class default is 1 (its CLI uses 5); 1 + logprobs is what a small local model can answer."""
    return env_int("AUTOINTERP_SCORER_EXAMPLES_PER_PROMPT", 1)


def scorer_logprobs() -> bool:
    return env_str("AUTOINTERP_SCORER_LOGPROBS", "1") not in ("0", "false", "no")


def scorer_n_examples() -> tuple[int, int]:
    """(activating, non-activating) examples per score; delphi's paper setup is 100 + 100."""
    return env_int("AUTOINTERP_SCORER_N_ACTIVATING", 10), env_int("AUTOINTERP_SCORER_N_NON_ACTIVATING", 10)
