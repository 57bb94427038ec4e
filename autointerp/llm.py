"""Every LLM call goes through here: the `openai` client against an OpenAI-compatible endpoint.

Timeouts and retries with exponential backoff (429, 5xx, connection errors) are the openai client's
own (`max_retries`, `timeout`). Failures surface as two exceptions with messages a user can act on:
`LLMUnavailable` (nothing answered at the URL → start `manage.py serve_llm` or fix OPENAI_BASE_URL)
and `LLMError` (the endpoint answered with an error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from autointerp import conf


class LLMUnavailable(Exception):
    """No endpoint reachable (connection refused, DNS, timeout after retries)."""


class LLMError(Exception):
    """The endpoint answered, with an error (bad key, unknown model, 4xx/5xx after retries)."""


@dataclass(frozen=True)
class LLMConfig:
    base_url: str
    api_key: str
    model: str
    timeout: float = 120.0
    max_retries: int = 2

    @classmethod
    def default(cls, *, model: str) -> LLMConfig:
        return cls(
            base_url=conf.llm_base_url(),
            api_key=conf.llm_api_key(),
            model=model,
            timeout=conf.llm_timeout(),
            max_retries=conf.llm_retries(),
        )


@dataclass
class ChatResult:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # per generated token: (token, logprob, [(alternative, logprob), ...]) when logprobs were asked for
    logprobs: list[tuple[str, float, list[tuple[str, float]]]] | None = None
    usage: dict = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


_clients: dict[tuple, object] = {}


def _client(config: LLMConfig):
    from openai import OpenAI  # the client is light, but only workers need it

    key = (config.base_url, config.api_key, config.timeout, config.max_retries)
    if key not in _clients:
        _clients[key] = OpenAI(
            base_url=config.base_url, api_key=config.api_key, timeout=config.timeout, max_retries=config.max_retries
        )
    return _clients[key]


def llm_chat(
    *,
    config: LLMConfig,
    messages: list[dict],
    max_tokens: int = 64,
    temperature: float = 0.0,
    seed: int | None = 0,
    logprobs: bool = False,
    top_logprobs: int = 0,
    json_mode: bool = False,
) -> ChatResult:
    import openai

    kwargs = dict(model=config.model, messages=messages, max_tokens=max_tokens, temperature=temperature)
    if seed is not None:
        kwargs["seed"] = seed
    if logprobs:
        kwargs.update(logprobs=True, top_logprobs=top_logprobs or None)
    if json_mode:
        kwargs["response_format"] = {"type": "json_object"}
    try:
        response = _client(config).chat.completions.create(**kwargs)
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        raise LLMUnavailable(
            f"No LLM endpoint reachable at {config.base_url} ({exc.__class__.__name__}: {exc}). "
            "Start one with `python manage.py serve_llm` or set OPENAI_BASE_URL / OPENAI_API_KEY."
        ) from exc
    except openai.APIStatusError as exc:
        raise LLMError(f"LLM endpoint {config.base_url} answered HTTP {exc.status_code}: {_message(exc)}") from exc
    if not response.choices:
        raise LLMError(f"LLM endpoint {config.base_url} returned no choices")
    choice = response.choices[0]
    usage = response.usage
    result = ChatResult(
        text=(choice.message.content or "").strip(),
        prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
        completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
    )
    if logprobs and choice.logprobs and choice.logprobs.content:
        result.logprobs = [
            (t.token, t.logprob, [(a.token, a.logprob) for a in (t.top_logprobs or [])])
            for t in choice.logprobs.content
        ]
    return result


def _message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(exc)


def expected_digit(top: list[tuple[str, float]], *, low: int = 0, high: int = 10) -> float | None:
    """Expected value over number tokens in a top-logprobs list (OpenAI's "all at once" simulator)."""
    weights = {}
    for token, logprob in top:
        t = token.strip()
        # isdigit() alone admits "²" or "٣", which int() rejects or a simulator never means
        if t.isascii() and t.isdigit() and low <= int(t) <= high:
            weights[int(t)] = weights.get(int(t), 0.0) + math.exp(logprob)
    total = sum(weights.values())
    if total <= 0:
        return None
    return sum(k * w for k, w in weights.items()) / total


def p_one(top: list[tuple[str, float]]) -> float | None:
    """delphi's classifier probability: P("1") / (P("0") + P("1")) from top logprobs."""
    p = {"0": 0.0, "1": 0.0}
    for token, logprob in top:
        t = token.strip()
        if t in p:
            p[t] += math.exp(logprob)
    total = p["0"] + p["1"]
    return p["1"] / total if total > 0 else None
