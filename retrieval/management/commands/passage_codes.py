"""`manage.py passage_codes MODEL_ID SOURCE_ID [--corpus brown] [--max-passages 2000] [--max-tokens 128]`.

Stores each corpus paragraph's code under a language-model SAE (per feature, the max activation over the
paragraph's tokens), so composite retrieval (/retrieve, POST /api/retrieve) works over that source too.
"""

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Compute per-passage codes of a language-model SAE for composite retrieval."

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("source_id")
        parser.add_argument("--corpus", default="brown")
        parser.add_argument("--max-passages", type=int, default=2000)
        parser.add_argument("--max-tokens", type=int, default=128)
        parser.add_argument("--queue", action="store_true", help="queue on gpu_batch instead of running here")

    def handle(self, *args, **o):
        from features.models import Source
        from features.services.jobs import job_run
        from retrieval.services import lm_codes_job_create

        try:
            job = lm_codes_job_create(
                model_id=o["model_id"],
                source_id=o["source_id"],
                corpus=o["corpus"],
                max_passages=o["max_passages"],
                max_tokens=o["max_tokens"],
                send=o["queue"],
            )
        except (Source.DoesNotExist, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if o["queue"]:
            self.stdout.write(f"Queued job {job.pk} ({job.subject}) on gpu_batch")
            return
        job = job_run(job_id=job.pk, echo=lambda m: None)
        self.stdout.write(f"Job {job.pk} {job.status}: {job.message}")
