"""Scorers (shared/reference/saelens_dashboard_delphi.md §3.4, §3.6). Pure Python + LLM calls; the
embedding scorer takes an `embed` function so torch stays in inference/runtime.

- detection (`eleuther_recall`): plain windows; the LLM says which ones the explained feature fires on.
- fuzzing (`eleuther_fuzz`): windows with <<highlights>>; activating ones highlight their true tokens
  (act > 0.3×max), non-activating ones highlight ceil(mean #nonzero tokens per activating example) random
  tokens (seed 22), as delphi's FuzzingScorer does; the LLM says whether the highlights match the explanation.
  Both: samples shuffled, `n_examples_shown` per prompt, the LLM returns a list of 0/1; the score is
  **balanced accuracy** (TPR+TNR)/2 over the examples with a parseable prediction (delphi's `accuracy`).
- embedding (`eleuther_embedding`): cosine similarity of the explanation (with delphi's retrieval
  instruction) to each example; the score is ROC-AUC of activating vs non-activating.
- simulation (`oai_simulation`): the LLM predicts a 0–10 activation per token, as the expected value
  over number tokens of its top logprobs (one call per token, max_tokens=1) or, for endpoints without
  logprobs, one JSON answer per example; the score is the Pearson correlation pooled over all tokens (0 when
  the simulation is the same value on every token).
"""

from __future__ import annotations

import ast
import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from autointerp import prompts
from autointerp.examples import Example, active_mask, clean_token, highlight, oai_normalize
from autointerp.llm import LLMConfig, expected_digit, llm_chat, p_one

FUZZ_THRESHOLD = 0.3
SEED = 22


@dataclass
class ScoreInput:
    explanation: str
    activating: list[Example]
    non_activating: list[Example]


@dataclass
class Sample:
    """One scored example; field names are the snake_case keys of Neuronpedia's jsonDetails."""

    str_tokens: list[str]
    activations: list[float]
    distance: int  # delphi's quantile; -1 for non-activating
    ground_truth: bool
    highlighted: bool = False
    text: str = ""
    prediction: int | None = None
    probability: float | None = None
    correct: bool | None = None
    similarity: float | None = None


@dataclass
class ScoreResult:
    value: float | None
    details: list[dict]
    summary: dict = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def json_details(self) -> str:
        return json.dumps({"summary": self.summary, "samples": self.details})


# --- aggregation (delphi result_analysis) ---


def confusion(samples: list[Sample]) -> dict:
    """Confusion counts and rates over samples with a prediction (prediction ≥ 0.5 is positive)."""
    scored = [s for s in samples if s.prediction is not None]
    tp = sum(1 for s in scored if s.ground_truth and s.prediction == 1)
    fn = sum(1 for s in scored if s.ground_truth and s.prediction == 0)
    tn = sum(1 for s in scored if not s.ground_truth and s.prediction == 0)
    fp = sum(1 for s in scored if not s.ground_truth and s.prediction == 1)
    tpr = tp / (tp + fn) if tp + fn else None
    tnr = tn / (tn + fp) if tn + fp else None
    precision = tp / (tp + fp) if tp + fp else None
    f1 = 2 * precision * tpr / (precision + tpr) if precision and tpr else 0.0
    return {
        "tp": tp, "fn": fn, "tn": tn, "fp": fp, "tpr": tpr, "tnr": tnr, "precision": precision, "f1": f1,
        "n_scored": len(scored), "n_unparsed": len(samples) - len(scored),
        "balanced_accuracy": (tpr + tnr) / 2 if tpr is not None and tnr is not None else None,
    }  # fmt: skip


def roc_auc(labels: list[bool], scores: list[float]) -> float | None:
    """ROC-AUC as the Mann–Whitney statistic (ties count one half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def pearson(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


# --- classifier scorers ---


def parse_binary_list(text: str, n: int) -> list[int] | None:
    """The first list literal of 0/1 values with exactly n items, else None (delphi drops those)."""
    for match in re.finditer(r"\[[^\[\]]*\]", text):
        try:
            values = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            continue
        if isinstance(values, (list, tuple)) and len(values) == n and all(v in (0, 1) for v in values):
            return [int(v) for v in values]
    return None


def _fuzz_samples(data: ScoreInput, rng: random.Random) -> list[Sample]:
    samples = []
    counts = []
    for ex in data.activating:
        # delphi sizes the decoys by nonzero tokens, not by the highlighted (> 0.3×max) ones
        counts.append(sum(1 for v in ex.values if v != 0))
        mask = active_mask(ex, threshold=FUZZ_THRESHOLD)
        samples.append(_sample(ex, True, highlight(ex.tokens, mask), highlighted=True))
    n_incorrect = max(1, math.ceil(sum(counts) / len(counts))) if counts else 1
    for ex in data.non_activating:
        picks = set(rng.sample(range(len(ex.tokens)), min(n_incorrect, len(ex.tokens))))
        mask = [i in picks for i in range(len(ex.tokens))]
        samples.append(_sample(ex, False, highlight(ex.tokens, mask), highlighted=True))
    return samples


def _detection_samples(data: ScoreInput) -> list[Sample]:
    return [_sample(ex, True, _plain(ex)) for ex in data.activating] + [
        _sample(ex, False, _plain(ex)) for ex in data.non_activating
    ]


def _plain(ex: Example) -> str:
    return "".join(clean_token(t) for t in ex.tokens)


def _sample(ex: Example, truth: bool, text: str, highlighted: bool = False) -> Sample:
    return Sample(
        str_tokens=list(ex.tokens),
        activations=list(ex.values),
        distance=ex.quantile if truth else -1,
        ground_truth=truth,
        highlighted=highlighted,
        text=text,
    )


Progress = Callable[[int, int], None]  # (examples done, examples in all): a job's progress bar


def classifier_score(
    *, kind: str, data: ScoreInput, config: LLMConfig, n_examples_shown: int = 5, log_prob: bool = False,
    progress: Progress | None = None,
) -> ScoreResult:  # fmt: skip
    """kind: 'detection' or 'fuzz'. With n_examples_shown=1 and log_prob (delphi's class defaults with
    logprobs on), each example is one prompt answered by a single token: probability = P(1)/(P(0)+P(1))
    from the top logprobs, prediction = probability ≥ 0.5. Otherwise the answer is a list of 0/1."""
    rng = random.Random(SEED)
    samples = _fuzz_samples(data, rng) if kind == "fuzz" else _detection_samples(data)
    rng.shuffle(samples)
    single = n_examples_shown == 1 and log_prob
    if kind == "fuzz":
        system, user = prompts.FUZZ_SYSTEM, (prompts.FUZZ_USER_SINGLE if single else prompts.FUZZ_USER)
    else:
        system, user = prompts.DETECTION_SYSTEM, (prompts.DETECTION_USER_SINGLE if single else prompts.DETECTION_USER)
    result = ScoreResult(value=None, details=[])
    for start in range(0, len(samples), n_examples_shown):
        batch = samples[start : start + n_examples_shown]
        listing = batch[0].text if single else "\n".join(f"Example {i}: {s.text}" for i, s in enumerate(batch, 1))
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": user.format(explanation=data.explanation, examples=listing, n=len(batch))},
        ]
        answer = llm_chat(
            config=config, messages=messages, max_tokens=1 if single else 4 * len(batch) + 4, logprobs=log_prob,
            top_logprobs=20 if single else 5,
        )  # fmt: skip
        result.prompt_tokens += answer.prompt_tokens
        result.completion_tokens += answer.completion_tokens
        if single:
            probability = p_one(answer.logprobs[0][2]) if answer.logprobs else None
            predictions = None if probability is None else [int(probability >= 0.5)]
            probabilities = [probability]
        else:
            predictions = parse_binary_list(answer.text, len(batch))
            probabilities = _list_probabilities(answer.logprobs, len(batch)) if log_prob and predictions else None
        for i, s in enumerate(batch):
            if predictions is not None:
                s.prediction = predictions[i]
                s.correct = (s.prediction == 1) == s.ground_truth
                s.probability = probabilities[i] if probabilities else None
        if progress:
            progress(start + len(batch), len(samples))
    return _classifier_result(samples, result)


def _list_probabilities(logprobs, n: int) -> list[float | None] | None:
    """P(1)/(P(0)+P(1)) at each digit position of the answered list."""
    if not logprobs:
        return None
    probs = [p_one(top) for token, _, top in logprobs if token.strip() in ("0", "1")]
    return probs if len(probs) == n else None


def _classifier_result(samples: list[Sample], result: ScoreResult) -> ScoreResult:
    stats = confusion(samples)
    with_prob = [s for s in samples if s.probability is not None]
    if with_prob:
        stats["auc"] = roc_auc([s.ground_truth for s in with_prob], [s.probability for s in with_prob])
    result.value = stats["balanced_accuracy"]
    result.summary = stats
    result.details = [asdict(s) for s in samples]
    return result


# --- embedding scorer ---


def embedding_score(*, data: ScoreInput, embed: Callable[[list[str]], list[list[float]]]) -> ScoreResult:
    samples = _detection_samples(data)
    vectors = embed([prompts.EMBEDDING_QUERY.format(explanation=data.explanation)] + [s.text for s in samples])
    query, rest = vectors[0], vectors[1:]
    for s, v in zip(samples, rest, strict=True):
        s.similarity = _cosine(query, v)
    auc = roc_auc([s.ground_truth for s in samples], [s.similarity for s in samples])
    return ScoreResult(
        value=auc,
        details=[asdict(s) for s in samples],
        summary={"auc": auc, "n_activating": len(data.activating), "n_non_activating": len(data.non_activating)},
    )


def _cosine(a, b) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


# --- simulation scorer ---


def simulation_score(
    *, data: ScoreInput, config: LLMConfig, mode: str = "logprobs", progress: Progress | None = None
) -> ScoreResult:
    """mode 'logprobs': expected 0–10 value per token from one max_tokens=1 call each (OpenAI's
    all-at-once estimate, token by token since chat endpoints give no prompt logprobs); 'json': one call
    per example returning a JSON list (examples whose list has the wrong length are dropped)."""
    examples = [(ex, True) for ex in data.activating] + [(ex, False) for ex in data.non_activating]
    top = max((ex.max_value for ex, _ in examples), default=0.0)
    result = ScoreResult(value=None, details=[])
    true_all, sim_all = [], []
    for n, (ex, truth) in enumerate(examples, 1):
        true = oai_normalize(ex.values, top)
        simulated = _simulate_logprobs(ex, data.explanation, config, result) if mode == "logprobs" else (
            _simulate_json(ex, data.explanation, config, result)
        )  # fmt: skip
        row = {"str_tokens": ex.tokens, "activations": true, "simulated": simulated, "distance": ex.quantile,
               "ground_truth": truth}  # fmt: skip
        result.details.append(row)
        if simulated is not None:
            true_all.extend(true)
            sim_all.extend(simulated)
        if progress:
            progress(n, len(examples))
    r = pearson(true_all, sim_all)
    # Pearson is undefined when the simulator predicts one value on every token (a small model often does). Such a
    # simulation says nothing about where the feature fires: it scores 0, as no correlation, instead of failing the
    # job after all its calls. Constant true activations stay undefined (no score): nothing to predict.
    constant = r is None and len(set(sim_all)) == 1 and len(set(true_all)) > 1
    result.value = 0.0 if constant else r
    result.summary = {"mode": mode, "n_tokens": len(true_all), "pearson": r, "constant_simulation": constant}
    return result


def _simulate_logprobs(ex: Example, explanation: str, config: LLMConfig, acc: ScoreResult) -> list[float] | None:
    text = _plain(ex)
    values = []
    for i, token in enumerate(ex.tokens):
        prefix = "".join(clean_token(t) for t in ex.tokens[: i + 1])
        messages = [
            {"role": "system", "content": prompts.SIMULATION_SYSTEM},
            {"role": "user", "content": prompts.SIMULATION_TOKEN_USER.format(
                explanation=explanation, text=text, token=clean_token(token), prefix=prefix)},
        ]  # fmt: skip
        answer = llm_chat(config=config, messages=messages, max_tokens=1, logprobs=True, top_logprobs=20)
        acc.prompt_tokens += answer.prompt_tokens
        acc.completion_tokens += answer.completion_tokens
        if not answer.logprobs:
            return None  # the endpoint gives no logprobs: use mode='json'
        values.append(expected_digit(answer.logprobs[0][2]) or 0.0)
    return values


def _simulate_json(ex: Example, explanation: str, config: LLMConfig, acc: ScoreResult) -> list[float] | None:
    tokens = json.dumps([clean_token(t) for t in ex.tokens])
    messages = [
        {"role": "system", "content": prompts.SIMULATION_SYSTEM},
        {"role": "user", "content": prompts.SIMULATION_JSON_USER.format(explanation=explanation, tokens=tokens)},
    ]
    answer = llm_chat(config=config, messages=messages, max_tokens=4 * len(ex.tokens) + 16, json_mode=True)
    acc.prompt_tokens += answer.prompt_tokens
    acc.completion_tokens += answer.completion_tokens
    try:
        parsed = json.loads(answer.text)
    except ValueError:
        return None
    values = parsed.get("activations") if isinstance(parsed, dict) else parsed
    if not isinstance(values, list) or len(values) != len(ex.tokens):
        return None
    try:
        return [max(0.0, min(10.0, float(v))) for v in values]
    except (TypeError, ValueError):
        return None
