"""The admin form: train an SAE from the browser-facing form (Celery eager in tests) and see its progress."""

import pytest

from features.models import Feature, Job, Source


@pytest.mark.slow
def test_admin_form_trains_and_shows_progress(client, staff_user, brown, tiny_model, pipeline_var, run_on_commit):
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    page = client.get("/admin/inference/pipelinejob/add/")
    assert page.status_code == 200 and b"Train an SAE" in page.content
    form = {"model": tiny_model.id, "corpus": "brown", "arch": "topk", "width": 64, "k": 4, "l1_coefficient": 5,
            "tokens": 4096, "dashboard_tokens": 4096}  # fmt: skip

    bad = client.post(
        "/admin/inference/pipelinejob/add/",
        {**form, "action": "add", "sae_dir": str(pipeline_var / "missing")},
    )
    assert bad.status_code == 200 and b"No such file" in bad.content

    with run_on_commit():  # the form's job is sent on commit, and runs eagerly here
        resp = client.post(
            "/admin/inference/pipelinejob/add/",
            {**form, "action": "train", "hook": "blocks.0.hook_resid_post", "source_id": "0-res-admin"},
        )
    job = Job.objects.get(kind="train_sae", model_id=tiny_model.id, source_name="0-res-admin")
    assert resp.status_code == 302 and resp["Location"].endswith(f"/admin/inference/pipelinejob/{job.pk}/change/")
    assert job.status == "SUCCEEDED" and job.created_by == staff_user
    source = Source.objects.get(model=tiny_model, name="0-res-admin")
    assert Feature.objects.filter(source=source).count() == 64 and source.metrics["l0"] == pytest.approx(4.0)
    detail = client.get(resp["Location"])
    assert detail.status_code == 200 and b"<progress" in detail.content and b"SUCCEEDED" in detail.content
    listing = client.get("/admin/inference/pipelinejob/")
    assert listing.status_code == 200 and b"0-res-admin" in listing.content
