"""Explainer prompts and parsing (delphi / OpenAI / Neuronpedia definitions), and one real explanation."""

import pytest

from autointerp import prompts
from autointerp.examples import Example, delphi_normalize, highlight, oai_normalize, split_quantiles
from autointerp.explainers import (
    EXPLAINERS,
    ExplainInput,
    ExplanationParseError,
    explain,
    parse_delphi,
    parse_plain,
)
from autointerp.llm import LLMConfig


def test_highlight_merges_runs_of_active_tokens():
    assert highlight(["a", " b", " c", " d"], [False, True, True, False]) == "a<< b c>> d"
    assert highlight(["a", " b"], [True, True]) == "<<a b>>"


def test_normalisations_follow_openai_floor_and_delphi_ceil():
    assert oai_normalize([0.0, 2.5, 4.99, 5.0, -1.0], 5.0) == [0, 5, 9, 10, 0]
    assert delphi_normalize([0.0, 2.5, 4.99, 5.0, 0.01], 5.0) == [0, 5, 10, 10, 1]


def test_quantiles_are_rank_based_equal_count_slices():
    examples = [Example(tokens=["x"], values=[float(v)]) for v in range(1, 21)]
    picked = split_quantiles(examples, n_quantiles=4, n_samples=8)
    assert len(picked) == 8
    for ex in picked:  # quantile 0 holds the 5 strongest (16..20), quantile 3 the weakest (1..5)
        assert 20 - 5 * ex.quantile >= ex.max_value > 15 - 5 * ex.quantile


def test_delphi_prompt_highlights_spans_and_lists_activations():
    ex = Example(tokens=["The", " green", " parrot", " talks"], values=[0.0, 2.0, 10.0, 0.5])
    messages = EXPLAINERS["eleuther_acts_top20"].messages(ExplainInput(examples=[ex], top_logits=[]))
    assert messages[0]["content"] == prompts.DELPHI_EXPLAINER_SYSTEM
    user = messages[1]["content"]
    assert "The green<< parrot>> talks" in user  # 2.0 < 0.3×10: not highlighted
    assert '(" parrot" : 10)' in user


def test_oai_prompt_uses_token_tab_activation_lines():
    ex = Example(tokens=["a", " b"], values=[0.0, 3.0])
    user = EXPLAINERS["oai_token-act-pair"].messages(ExplainInput(examples=[ex], top_logits=[]))[1]["content"]
    assert "a\t0\n b\t10" in user and user.endswith(prompts.OAI_EXPLAINER_TAIL)


def test_logits_explainer_includes_top_logits_and_the_plain_one_does_not():
    ex = Example(tokens=["a", " b"], values=[0.0, 3.0])
    data = ExplainInput(examples=[ex], top_logits=[" feathers"])
    assert "feathers" in EXPLAINERS["np_max-act-logits"].messages(data)[1]["content"]
    assert "feathers" not in EXPLAINERS["np_max-act"].messages(data)[1]["content"]


def test_parsing():
    assert parse_delphi("Thinking...\n[EXPLANATION]: Names of birds.") == "Names of birds"
    with pytest.raises(ExplanationParseError):
        parse_delphi("birds, I think")
    assert parse_plain('\n  Explanation: "words for birds"\nmore') == "words for birds"
    with pytest.raises(ExplanationParseError):
        parse_plain("   \n ")


def test_explaining_on_the_real_endpoint_records_tokens_and_prompt_version(llm_env):
    ex = Example(tokens=["The", " green", " parrot", " talks"], values=[0.0, 0.0, 6.0, 0.5])
    config = LLMConfig(base_url=llm_env, api_key="x", model="smollm2-135m-instruct")
    result = explain(explainer=EXPLAINERS["np_max-act"], data=ExplainInput([ex], []), config=config)
    assert result.description and "<<" not in result.description
    assert result.prompt_tokens > 50 and 0 < result.completion_tokens <= EXPLAINERS["np_max-act"].max_tokens
    assert result.prompt_version == "np_max-act@1"
