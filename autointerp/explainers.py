"""Explainers: activation examples → a prompt → one LLM call → a parsed explanation.

Types (Neuronpedia's names, shared/reference/neuronpedia.md §6): `oai_token-act-pair` (OpenAI's
token<TAB>activation explainer), `np_max-act` and `np_max-act-logits` (max-activating excerpts with
<<highlights>>, the latter with the feature's top positive logits), and `eleuther_acts_top20`
(delphi's DefaultExplainer: <<spans>> at act > 0.3×max, an "Activations:" line of ("token" : n) pairs
on delphi's 0–10 scale, and the answer parsed after `[EXPLANATION]:`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from autointerp import prompts
from autointerp.examples import (
    Example,
    active_mask,
    clean_token,
    dedupe_top,
    delphi_normalize,
    highlight,
    oai_normalize,
    window,
)
from autointerp.llm import LLMConfig, llm_chat

MAX_EXPLANATION_CHARS = 512  # Neuronpedia's upload limit for an explanation text


class ExplanationParseError(ValueError):
    """The LLM's answer held no usable explanation; nothing is stored and a re-run retries the feature."""


@dataclass
class ExplainInput:
    examples: list[Example]
    top_logits: list[str]  # the feature's top positive logits (pos_str), for np_max-act-logits


@dataclass
class ExplainResult:
    description: str
    raw: str
    prompt_tokens: int
    completion_tokens: int
    prompt_version: str


@dataclass(frozen=True)
class Explainer:
    name: str
    n_examples: int  # Neuronpedia uses the top 10 (20 for the Eleuther explainer)
    max_tokens: int
    window: int = 32

    @property
    def prompt_version(self) -> str:
        return prompts.VERSIONS[self.name]

    def messages(self, data: ExplainInput) -> list[dict]:
        examples = [window(e, size=self.window) for e in dedupe_top(data.examples, limit=self.n_examples)]
        if not examples:
            raise ExplanationParseError("The feature has no activating examples to explain.")
        return BUILDERS[self.name](examples, data)

    def parse(self, text: str) -> str:
        return PARSERS.get(self.name, parse_plain)(text)


def _oai(examples: list[Example], data: ExplainInput) -> list[dict]:
    top = max(e.max_value for e in examples)
    blocks = []
    for i, ex in enumerate(examples, 1):
        acts = oai_normalize(ex.values, top)
        lines = "\n".join(f"{clean_token(t)}\t{a}" for t, a in zip(ex.tokens, acts, strict=True))
        blocks.append(f"Excerpt {i}\nActivations:\n<start>\n{lines}\n<end>")
    user = "\n\n".join(blocks) + "\n\nSame activations, but with all zeros filtered out:\n<start>\n"
    user += "\n".join(
        f"{clean_token(t)}\t{a}"
        for ex in examples
        for t, a in zip(ex.tokens, oai_normalize(ex.values, top), strict=True)
        if a > 0
    )
    user += f"\n<end>\n\n{prompts.OAI_EXPLAINER_TAIL}"
    return [{"role": "system", "content": prompts.OAI_EXPLAINER_SYSTEM}, {"role": "user", "content": user}]


def _np_examples(examples: list[Example]) -> str:
    return "\n".join(f"{i}. {highlight(ex.tokens, active_mask(ex, threshold=0.5))}" for i, ex in enumerate(examples, 1))


def _np_max_act(examples: list[Example], data: ExplainInput) -> list[dict]:
    user = prompts.NP_MAX_ACT_USER.format(examples=_np_examples(examples))
    return [{"role": "system", "content": prompts.NP_MAX_ACT_SYSTEM}, {"role": "user", "content": user}]


def _np_max_act_logits(examples: list[Example], data: ExplainInput) -> list[dict]:
    logits = ", ".join(repr(t) for t in data.top_logits[:10]) or "(none recorded)"
    user = prompts.NP_MAX_ACT_LOGITS_USER.format(examples=_np_examples(examples), logits=logits)
    return [{"role": "system", "content": prompts.NP_MAX_ACT_SYSTEM}, {"role": "user", "content": user}]


def _delphi(examples: list[Example], data: ExplainInput) -> list[dict]:
    blocks = []
    for i, ex in enumerate(examples, 1):
        mask = active_mask(ex, threshold=0.3)
        norm = delphi_normalize(ex.values, ex.max_value)
        pairs = ", ".join(f'("{clean_token(t)}" : {n})' for t, n, on in zip(ex.tokens, norm, mask, strict=True) if on)
        blocks.append(f"Example {i}: {highlight(ex.tokens, mask)}\nActivations: {pairs}")
    return [
        {"role": "system", "content": prompts.DELPHI_EXPLAINER_SYSTEM},
        {"role": "user", "content": "\n".join(blocks) + "\n\nEnd with one line: [EXPLANATION]: <your explanation>"},
    ]


BUILDERS = {
    "oai_token-act-pair": _oai,
    "np_max-act": _np_max_act,
    "np_max-act-logits": _np_max_act_logits,
    "eleuther_acts_top20": _delphi,
}


def _tidy(text: str) -> str:
    text = text.strip().strip("\"'` ").replace("<<", "").replace(">>", "")
    text = re.sub(r"\s+", " ", text)
    return text[:MAX_EXPLANATION_CHARS].rstrip(" .")


def parse_plain(text: str) -> str:
    """First non-empty line, without a leading 'Explanation:' label or the OpenAI prompt's tail echoed."""
    for line in text.splitlines():
        line = re.sub(r"^\s*(explanation( of neuron behavior)?\s*:|the main thing this neuron does is find)\s*", "",
                      line, flags=re.I)  # fmt: skip
        line = _tidy(line)
        if len(line) >= 2:
            return line
    raise ExplanationParseError("Explanation could not be parsed.")


def parse_delphi(text: str) -> str:
    """delphi: the answer must end with `[EXPLANATION]: ...`; anything else is unparseable."""
    match = re.search(r"\[EXPLANATION\]\s*:\s*(.*)", text, re.DOTALL | re.IGNORECASE)
    if not match:
        raise ExplanationParseError("Explanation could not be parsed.")
    return parse_plain(match.group(1))


PARSERS = {"eleuther_acts_top20": parse_delphi}

EXPLAINERS = {
    e.name: e
    for e in (
        Explainer("oai_token-act-pair", n_examples=5, max_tokens=40, window=24),
        Explainer("np_max-act", n_examples=10, max_tokens=40),
        Explainer("np_max-act-logits", n_examples=10, max_tokens=40),
        Explainer("eleuther_acts_top20", n_examples=20, max_tokens=120),
    )
}


def explainer_get(name: str) -> Explainer:
    try:
        return EXPLAINERS[name]
    except KeyError:
        raise ValueError(f"Unknown explanation type {name!r}; one of {', '.join(EXPLAINERS)}") from None


def explain(*, explainer: Explainer, data: ExplainInput, config: LLMConfig) -> ExplainResult:
    result = llm_chat(config=config, messages=explainer.messages(data), max_tokens=explainer.max_tokens)
    return ExplainResult(
        description=explainer.parse(result.text),
        raw=result.text,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        prompt_version=explainer.prompt_version,
    )
