"""The admin's transcoder form queues the job; the command refuses an unknown model."""

import pytest
from django.core.management import CommandError, call_command

from features.models import Job
from tests.graphs.conftest import TINY_ID


def test_the_admin_form_queues_a_transcoder_training_job_and_shows_it(client, staff_user, tiny_model):
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    assert client.get("/admin/graphs/transcoderjob/add/").status_code == 200
    r = client.post("/admin/graphs/transcoderjob/add/", {
        "model": TINY_ID, "corpus": "brown", "arch": "jumprelu", "width": 128, "k": 8, "skip": "on",
        "tokens": 4096, "dashboard_tokens": 2048,
    })  # fmt: skip
    job = Job.objects.get(kind="train_transcoders")
    assert r.status_code == 302 and r["Location"].endswith(f"/admin/graphs/transcoderjob/{job.pk}/change/")
    assert job.source_name == "tc-jumprelu-128-brown"
    assert (job.params["arch"], job.params["width"], job.params["skip"]) == ("jumprelu", 128, True)
    assert client.get(r["Location"]).status_code == 200
    listing = client.get("/admin/graphs/transcoderjob/")
    assert "tc-jumprelu-128-brown" in listing.content.decode()


def test_train_transcoders_refuses_an_unknown_model(db):
    with pytest.raises(CommandError, match="Unknown model"):
        call_command("train_transcoders", "nope")
