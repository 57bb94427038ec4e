"""Live job progress in Chromium: the one poller (static/js/jobs.js) follows GET /api/job/<id> on the home page."""

import pytest

from features.models import Job
from features.services.jobs import job_claim, job_create, job_fail, job_finish, job_progress
from tests.conftest import wait_until
from tests.factories import ModelFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _bar(page, job_id):
    row = page.locator(f'[data-job-id="{job_id}"]')
    return row, row.locator(".progress")


def test_the_home_page_follows_running_jobs_to_their_end_without_a_reload(page, live_server):
    model = ModelFactory(id="jobs-live-model")
    running = job_create(kind="dashboards", model_id=model.id, source="0-res-live", total=400)
    failing = job_create(kind="umap", model_id=model.id, source="0-res-live")
    for job in (running, failing):
        with job_claim(job_id=job.pk, lease=False):
            pass
    job_progress(job_id=running.pk, done=100)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server.url}/")
    row, bar = _bar(page, running.pk)
    assert bar.get_attribute("aria-valuenow") == "100"
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    job_progress(job_id=running.pk, done=300, message="batch 3 of 4")
    wait_until(lambda: bar.get_attribute("aria-valuenow") == "300", 10, "the bar to move")
    assert row.locator("[data-job-message]").inner_text() == "batch 3 of 4"
    assert row.locator("[data-job-count]").inner_text() == "300 / 400"
    assert row.locator(".progress span").evaluate("e => e.style.width") == "75%"

    job_finish(job_id=running.pk, message="400 dashboards")
    job_fail(job_id=failing.pk, error="ValueError: no decoder")
    wait_until(lambda: row.get_attribute("data-job-status") == "SUCCEEDED", 10, "the job to show as finished")
    assert row.locator("[data-job-status]").text_content() == "succeeded"
    assert "done" in (bar.get_attribute("class") or "")
    failed_row, failed_bar = _bar(page, failing.pk)
    wait_until(lambda: failed_row.get_attribute("data-job-status") == "FAILED", 10, "the job to show as failed")
    assert failed_row.locator("[data-job-message]").inner_text() == "ValueError: no decoder"
    assert "failed" in (failed_bar.get_attribute("class") or "")
    assert navigations == [] and errors == []  # no reload: the poller updated the rows in place
    assert Job.objects.get(pk=running.pk).status == Job.Status.SUCCEEDED
