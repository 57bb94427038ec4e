"""Explain, score and vote from the feature dashboard in Chromium, with a real Celery worker and the real local LLM
endpoint (SmolLM2 through serve_llm): the progress shows, the new explanation appears, its score and breakdown
show, and the vote count changes."""

import json

import pytest

from features.models import Explanation, ExplanationScore, Job
from tests.autointerp.planted import planted_source
from tests.conftest import browser_sign_in

pytestmark = [pytest.mark.slow]


def test_a_signed_in_user_explains_scores_votes_and_opens_the_breakdown(
    page, live_server, start_worker, llm_server, user
):
    source, features = planted_source()
    feature = features["birds"]
    start_worker(
        ["autointerp", "embeddings"], name="dash-work", OPENAI_BASE_URL=llm_server, OPENAI_API_KEY="test",
        AUTOINTERP_LLM_RETRIES="0", AUTOINTERP_SCORER_N_ACTIVATING="3", AUTOINTERP_SCORER_N_NON_ACTIVATING="3",
    )  # fmt: skip
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    browser_sign_in(page, live_server, user)
    page.goto(f"{live_server.url}/{source.model_id}/{source.name}/{feature.index}/")
    assert page.locator("#explanations .expl").count() == 0

    # explain: the job line shows progress, then the page shows the new explanation
    page.select_option("#explain-form select[name=explanationType]", "np_max-act")
    page.click("#explain-form button[type=submit]")
    page.wait_for_selector("#explain-job:not([hidden]) [data-job-status]", timeout=10_000)
    page.wait_for_selector("#explanations .expl[data-explanation-id]", timeout=180_000)
    explanation = Explanation.objects.get(feature=feature)
    assert explanation.triggered_by_id == user.pk and explanation.type_id == "np_max-act"
    expl = page.locator(f'#explanations .expl[data-explanation-id="{explanation.id}"]')
    assert expl.locator(".desc").inner_text() == explanation.description
    assert Job.objects.get(kind="explain_feature").status == Job.Status.SUCCEEDED

    # score with detection: progress counts the judged examples, then the score shows and opens its breakdown
    expl.locator("[data-score-form] select").select_option("eleuther_recall")
    expl.locator("[data-score-form] button").click()
    page.wait_for_selector("[data-job-line]:not([hidden]) [data-job-status]", timeout=10_000)
    page.wait_for_selector("#explanations a.score", timeout=180_000)
    score = ExplanationScore.objects.get(explanation=explanation)
    job = Job.objects.get(kind="score_explanation")
    assert job.status == Job.Status.SUCCEEDED and (job.done, job.total) == (6, 6)
    chip = page.locator("#explanations a.score")
    assert "Detection" in chip.inner_text() and f"{score.value:.3f}" in chip.inner_text()
    chip.click()
    page.wait_for_selector("#breakdown-dialog[open] .breakdown-table", timeout=10_000)
    rows = page.locator("#breakdown-dialog .bd-row")
    samples = json.loads(score.json_details)["samples"]
    assert rows.count() == len(samples) == 6
    assert page.locator("#breakdown-dialog .bd-row.judged-wrong").count() == sum(s["correct"] is False for s in samples)
    assert page.locator("#breakdown-dialog .bd-row.judged-right").count() == sum(s["correct"] is True for s in samples)
    page.click("#breakdown-dialog button.close")

    # vote: the count changes at once and stays after a reload; a second click withdraws it
    votes = page.locator(f'.expl[data-explanation-id="{explanation.id}"] [data-votes]')
    assert votes.inner_text() == "0"
    page.click(f'.expl[data-explanation-id="{explanation.id}"] [data-vote]')
    page.wait_for_function(
        "id => document.querySelector(`.expl[data-explanation-id='${id}'] [data-votes]`).textContent === '1'",
        arg=explanation.id, timeout=10_000,
    )  # fmt: skip
    page.reload()
    assert votes.inner_text() == "1"
    assert (
        page.locator(f'.expl[data-explanation-id="{explanation.id}"] [data-vote]').get_attribute("aria-pressed")
        == "true"
    )
    explanation.refresh_from_db()
    assert explanation.score_v1 == 1
    assert errors == []
