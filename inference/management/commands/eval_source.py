"""`manage.py eval_source MODEL_ID SOURCE_ID [--types core,sparse_probing] [--queue]`.

Runs the SAE benchmarks of a source (the `sae_evals` job) here with a progress bar, or queues them on gpu_batch.
"""

from django.core.management.base import BaseCommand, CommandError

from features.models import Source
from inference.management.commands.train_sae import tqdm_echo


class Command(BaseCommand):
    help = "Benchmark an SAE source (SAEBench-format core and sparse_probing evals), stored with the source."

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("source_id")
        parser.add_argument("--types", default="core,sparse_probing", help="comma-separated eval types")
        parser.add_argument("--core-batches", type=int, default=10, help="batches of 8 contexts for core")
        parser.add_argument("--max-per-class", type=int, default=120, help="probe texts per class and task")
        parser.add_argument("--queue", action="store_true", help="queue on gpu_batch instead of running here")

    def handle(self, *args, **o):
        from features.services.jobs import job_run
        from inference.pipeline.evals import evals_job_create

        if not Source.objects.filter(model_id=o["model_id"], name=o["source_id"]).exists():
            raise CommandError(f"Unknown source {o['model_id']}/{o['source_id']}")
        types = [t.strip() for t in o["types"].split(",") if t.strip()]
        try:
            job = evals_job_create(
                model_id=o["model_id"], source_id=o["source_id"], types=types, send=o["queue"],
                core_batches=o["core_batches"], max_per_class=o["max_per_class"],
            )  # fmt: skip
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if o["queue"]:
            self.stdout.write(f"Queued job {job.pk} ({job.subject}) on gpu_batch")
            return
        job = job_run(job_id=job.pk, echo=tqdm_echo())
        self.stdout.write(f"\nJob {job.pk} {job.status}: {job.message}")
        if job.status != "SUCCEEDED":
            raise CommandError(job.error or job.message)
