"""The offline endpoint (serve_llm) with the real openai client, and the LLM layer's errors."""

import time

import pytest
from openai import OpenAI

from autointerp.llm import LLMConfig, LLMError, LLMUnavailable, expected_digit, llm_chat, p_one


def test_serve_llm_answers_the_real_openai_client_with_usage_and_logprobs(llm_server):
    client = OpenAI(base_url=llm_server, api_key="anything")
    assert [m.id for m in client.models.list().data] == ["smollm2-135m-instruct"]
    response = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Name one colour."}],
        max_tokens=6, temperature=0, logprobs=True, top_logprobs=3, seed=1,
    )  # fmt: skip
    choice = response.choices[0]
    assert choice.message.content
    assert 1 <= response.usage.completion_tokens <= 6
    assert response.usage.prompt_tokens > 5
    content = choice.logprobs.content
    assert len(content) == response.usage.completion_tokens or choice.finish_reason == "stop"
    first = content[0]
    assert len(first.top_logprobs) == 3 and first.logprob <= 0
    # greedy decoding: the chosen token is the most likely one
    assert first.token == first.top_logprobs[0].token


def test_greedy_generation_is_deterministic(llm_env):
    config = LLMConfig(base_url=llm_env, api_key="x", model="smollm2-135m-instruct")
    messages = [{"role": "user", "content": "Say hello."}]
    a = llm_chat(config=config, messages=messages, max_tokens=5)
    b = llm_chat(config=config, messages=messages, max_tokens=5)
    assert a.text == b.text and a.completion_tokens == b.completion_tokens


def test_unreachable_endpoint_raises_a_clear_error_quickly(dead_endpoint):
    config = LLMConfig(base_url=dead_endpoint, api_key="x", model="m", timeout=2, max_retries=1)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable) as err:
        llm_chat(config=config, messages=[{"role": "user", "content": "hi"}])
    assert dead_endpoint in str(err.value) and "serve_llm" in str(err.value)
    assert time.monotonic() - started < 15


def test_endpoint_errors_name_the_status(llm_server):
    config = LLMConfig(base_url=llm_server, api_key="x", model="m", max_retries=0)
    with pytest.raises(LLMError) as err:
        llm_chat(config=config, messages=[], max_tokens=2)
    assert "HTTP 400" in str(err.value) and "messages" in str(err.value)


def test_expected_digit_and_p_one_follow_their_definitions():
    import math

    top = [("3", math.log(0.5)), (" 7", math.log(0.25)), ("x", math.log(0.25))]
    assert expected_digit(top) == pytest.approx((3 * 0.5 + 7 * 0.25) / 0.75)
    assert p_one([("1", math.log(0.6)), ("0", math.log(0.2))]) == pytest.approx(0.75)
    assert p_one([("a", 0.0)]) is None


def test_expected_digit_ignores_digit_tokens_int_cannot_read():
    import math

    top = [("²", math.log(0.4)), ("٣", math.log(0.2)), ("4", math.log(0.3)), ("10", math.log(0.1))]
    assert expected_digit(top) == pytest.approx((4 * 0.3 + 10 * 0.1) / 0.4)
    assert expected_digit([("²", 0.0)]) is None
