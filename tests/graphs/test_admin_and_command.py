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


def test_train_transcoders_trains_registers_and_reports_its_quality(tiny_model, var_dir, capsys):
    from features.models import Source
    from tests.conftest import ROOT

    (var_dir / "corpus").symlink_to(ROOT / "var" / "corpus")
    call_command(
        "train_transcoders", TINY_ID, "--width", "64", "--k", "4", "--tokens", "4096", "--batch-size-tokens", "256",
        "--context-size", "32", "--lr", "3e-3", "--set-name", "tc-cmd", "--no-dashboards", "--no-explain", "--no-evals",
    )  # fmt: skip
    out = capsys.readouterr().out
    job = Job.objects.get(kind="train_transcoders")
    assert f"Job {job.pk} SUCCEEDED" in out and "CE loss score" in out
    sources = Source.objects.filter(model_id=TINY_ID, source_set__name="tc-cmd").order_by("name")
    assert [s.name for s in sources] == ["0-tc-cmd", "1-tc-cmd"]
    assert all(0 < s.metrics["l0"] <= 8 for s in sources)
    assert (var_dir / "transcoders" / TINY_ID / "tc-cmd" / "config.yaml").exists()
