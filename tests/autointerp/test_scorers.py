"""Scoring math against direct computations, and the classifier mechanics on the real endpoint."""

import json
import random
import re

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from autointerp.examples import Example
from autointerp.llm import LLMConfig
from autointerp.scorers import (
    Sample,
    ScoreInput,
    _fuzz_samples,
    classifier_score,
    confusion,
    embedding_score,
    parse_binary_list,
    pearson,
    roc_auc,
)


def _s(truth, pred):
    return Sample(str_tokens=[], activations=[], distance=0, ground_truth=truth, prediction=pred)


def test_balanced_accuracy_is_the_mean_of_tpr_and_tnr_over_parsed_predictions():
    samples = [_s(True, 1), _s(True, 1), _s(True, 0), _s(False, 0), _s(False, 1), _s(False, None)]
    stats = confusion(samples)
    assert (stats["tp"], stats["fn"], stats["tn"], stats["fp"]) == (2, 1, 1, 1)
    assert stats["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert stats["n_unparsed"] == 1
    # plain accuracy would be 3/5; balanced accuracy does not reward always answering the majority class
    assert confusion([_s(True, 1)] * 9 + [_s(False, 1)])["balanced_accuracy"] == 0.5


def test_roc_auc_and_pearson_match_sklearn_and_numpy():
    rng = random.Random(3)
    labels = [rng.random() < 0.4 for _ in range(60)]
    scores = [rng.choice([0.1, 0.2, 0.5, 0.9]) + (0.3 if y else 0) for y in labels]  # with ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    xs, ys = [rng.random() for _ in range(50)], [rng.random() for _ in range(50)]
    assert pearson(xs, ys) == pytest.approx(np.corrcoef(xs, ys)[0, 1])
    assert roc_auc([True, True], [0.1, 0.2]) is None


def test_parse_binary_list_requires_the_right_length():
    assert parse_binary_list("Sure: [1, 0, 1]", 3) == [1, 0, 1]
    assert parse_binary_list("[1, 0]", 3) is None
    assert parse_binary_list("[1, 2, 0]", 3) is None


def test_fuzzing_negatives_highlight_ceil_mean_active_count_random_tokens():
    act = [Example(tokens=list("abcdef"), values=[0, 5, 5, 0, 0, 0], quantile=0),
           Example(tokens=list("abcdef"), values=[5, 0, 0, 0, 0, 0], quantile=1)]  # fmt: skip
    non = [Example(tokens=list("uvwxyz"), values=[0.0] * 6)]
    samples = _fuzz_samples(ScoreInput("x", act, non), random.Random(22))
    assert samples[0].text == "a<<bc>>def" and samples[1].text == "<<a>>bcdef"
    negative = samples[2]
    assert not negative.ground_truth and negative.distance == -1
    # ceil((2 + 1) / 2) = 2 random tokens highlighted
    assert negative.text.replace("<<", "").replace(">>", "") == "uvwxyz"
    assert sum(len(span) for span in re.findall(r"<<(.*?)>>", negative.text)) == 2


def test_fuzzing_decoy_count_is_the_mean_nonzero_count_not_the_highlighted_one():
    act = [Example(tokens=list("abcdef"), values=[0.2, 5, 0.4, 0.1, 0, 0], quantile=0),
           Example(tokens=list("abcdef"), values=[5, 0.1, 0, 0, 0, 0], quantile=1)]  # fmt: skip
    non = [Example(tokens=list("uvwxyz"), values=[0.0] * 6)]
    samples = _fuzz_samples(ScoreInput("x", act, non), random.Random(22))
    assert samples[0].text == "a<<b>>cdef" and samples[1].text == "<<a>>bcdef"  # only > 0.3×max is highlighted
    # ceil((4 + 2) / 2) = 3 nonzero tokens per example, as delphi's FuzzingScorer counts them
    assert sum(len(span) for span in re.findall(r"<<(.*?)>>", samples[2].text)) == 3


def test_embedding_score_is_the_auc_of_similarities():
    data = ScoreInput("q", [Example(["good"], [1.0], quantile=0)], [Example(["bad"], [0.0]), Example(["meh"], [0.0])])
    table = {"good": [1.0, 0.0], "bad": [0.0, 1.0], "meh": [0.7, 0.7]}
    result = embedding_score(data=data, embed=lambda texts: [[1.0, 0.0]] + [table[t] for t in texts[1:]])
    assert result.value == 1.0
    sims = {tuple(d["str_tokens"]): d["similarity"] for d in result.details}
    assert sims[("good",)] == pytest.approx(1.0) and sims[("meh",)] == pytest.approx(0.7071, abs=1e-3)


def test_detection_on_the_real_endpoint_aggregates_its_own_predictions(llm_env):
    act = [Example(["The", " parrot", " talks"], [0.0, 5.0, 0.0], quantile=q) for q in range(3)]
    non = [Example(["Pay", " the", " invoice"], [0.0, 0.0, 0.0]) for _ in range(3)]
    config = LLMConfig(base_url=llm_env, api_key="x", model="smollm2-135m-instruct", max_retries=0)
    result = classifier_score(kind="detection", data=ScoreInput("parrots", act, non), config=config,
                              n_examples_shown=3)  # fmt: skip
    assert len(result.details) == 6 and result.prompt_tokens > 0 and result.completion_tokens > 0
    samples = [Sample(**d) for d in result.details]
    assert result.summary == confusion(samples)
    assert result.value == confusion(samples)["balanced_accuracy"]
    for s in samples:  # each prediction is a parsed 0/1 or None (unparseable answer, dropped)
        assert s.prediction in (0, 1, None)
        assert s.correct == (None if s.prediction is None else (s.prediction == 1) == s.ground_truth)
    json.loads(result.json_details())


@pytest.mark.parametrize("mode", ["logprobs"])  # json mode: same code path after parsing
def test_simulation_on_the_real_endpoint_is_the_pooled_pearson_of_its_own_predictions(mode, llm_env):
    from autointerp.scorers import simulation_score

    act = [Example(["The", " parrot", " talks"], [0.0, 5.0, 0.5], quantile=0)]
    non = [Example(["Pay", " the", " bill"], [0.0, 0.0, 0.0])]
    config = LLMConfig(base_url=llm_env, api_key="x", model="smollm2-135m-instruct", max_retries=0)
    result = simulation_score(data=ScoreInput("parrots", act, non), config=config, mode=mode)
    rows = [r for r in result.details if r["simulated"] is not None]
    true = [a for r in rows for a in r["activations"]]
    simulated = [s for r in rows for s in r["simulated"]]
    assert result.summary["n_tokens"] == len(true)
    if mode == "logprobs":  # one max_tokens=1 call per token, expected value over "0".."10"
        assert len(rows) == 2 and all(0 <= s <= 10 for s in simulated)
        assert result.completion_tokens == 6
    expected = pearson(true, simulated) if len(true) >= 2 else None
    if expected is None and len(set(simulated)) == 1:  # SmolLM2 often simulates a constant: no correlation
        assert result.value == 0.0 and result.summary["constant_simulation"] is True
    else:
        assert result.value == (pytest.approx(expected) if expected is not None else None)


def test_a_simulation_of_one_value_on_every_token_scores_zero_and_says_so(monkeypatch):
    import math

    from autointerp import scorers
    from autointerp.llm import ChatResult
    from autointerp.scorers import simulation_score

    top = [("The", math.log(0.9)), ("1", math.log(0.01))]  # the only digit in the top logprobs: always 1.0
    monkeypatch.setattr(scorers, "llm_chat", lambda **kw: ChatResult("The", 5, 1, [("The", math.log(0.9), top)]))
    act = [Example(["The", " parrot", " talks"], [0.0, 5.0, 0.5], quantile=0)]
    non = [Example(["Pay", " the", " bill"], [0.0, 0.0, 0.0])]
    config = LLMConfig(base_url="http://127.0.0.1:9/v1", api_key="x", model="m", max_retries=0)
    result = simulation_score(data=ScoreInput("parrots", act, non), config=config)
    assert result.value == 0.0
    assert result.summary == {"mode": "logprobs", "n_tokens": 6, "pearson": None, "constant_simulation": True}
