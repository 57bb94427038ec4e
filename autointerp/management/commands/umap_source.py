"""`python manage.py umap_source MODEL SOURCE [--input auto|decoder|explanations]`: UMAP + clusters, in this process."""

from django.core.management.base import BaseCommand, CommandError

from autointerp.services_umap import umap_job_create
from features.models import Job, Source
from features.services.jobs import job_run


class Command(BaseCommand):
    help = "Compute a source's UMAP layout (decoder directions or explanation embeddings) and clusters."

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("source_id")
        parser.add_argument("--input", default="auto", choices=["auto", "decoder", "explanations"])

    def handle(self, *args, model_id, source_id, input, **options):
        source = Source.objects.filter(model_id=model_id, name=source_id).first()
        if source is None:
            raise CommandError(f"Unknown source {model_id}/{source_id}")
        job = umap_job_create(source=source, input_kind=input, send=False)
        try:
            job_run(job_id=job.pk)
        except Exception:
            raise CommandError(Job.objects.get(pk=job.pk).error) from None
        self.stdout.write(Job.objects.get(pk=job.pk).message)
