"""Jobs name their model and source by key instead of a "model/source" string (visibility becomes a join)."""

from django.db import migrations, models


def subject_to_keys(apps, schema_editor):
    Job = apps.get_model("features", "Job")
    for job in Job.objects.exclude(subject="").only("pk", "subject"):
        model_id, _, source = job.subject.partition("/")
        Job.objects.filter(pk=job.pk).update(model_id=model_id or None, source_name=source)


def keys_to_subject(apps, schema_editor):
    Job = apps.get_model("features", "Job")
    for job in Job.objects.exclude(model_id=None).only("pk", "model_id", "source_name"):
        Job.objects.filter(pk=job.pk).update(subject="/".join(x for x in (job.model_id, job.source_name) if x))


class Migration(migrations.Migration):
    dependencies = [("features", "0003_explanation_description_fts_fastupdate_off")]

    operations = [
        migrations.AddField(
            model_name="job",
            name="model",
            field=models.ForeignKey(
                blank=True, db_constraint=False, null=True, on_delete=models.deletion.CASCADE,
                related_name="jobs", to="features.model",
            ),
        ),
        migrations.AddField(model_name="job", name="source_name", field=models.CharField(blank=True, max_length=256)),
        migrations.RunPython(subject_to_keys, keys_to_subject),
        migrations.RemoveField(model_name="job", name="subject"),
        migrations.AddIndex(
            model_name="job", index=models.Index(fields=["model", "source_name"], name="job_subject_idx")
        ),
    ]
