"""`manage.py add_source MODEL_ID --sae-dir PATH [--source-id ...] [--corpus brown --tokens N]`.

Registers a SAELens directory as a Source of a model and generates its dashboards into the database.
Re-running after an interruption resumes the dashboards job.
"""

from django.core.management.base import BaseCommand, CommandError

from features.models import Model
from inference.management.commands.train_sae import tqdm_echo


class Command(BaseCommand):
    help = "Add an SAE (SAELens directory) as a source and generate its dashboards (resumable)."

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("--sae-dir", default="")
        parser.add_argument(
            "--transcoder-dir",
            default="",
            help="a transcoder set directory (config.yaml, layer_<L>/): one source per layer",
        )
        parser.add_argument(
            "--set-name", default="", help="--transcoder-dir: the source set's name (default: the dir's)"
        )
        parser.add_argument("--source-id", default="")
        parser.add_argument("--corpus", default="brown")
        parser.add_argument("--tokens", type=int, default=262_144, help="corpus tokens for the dashboards")
        parser.add_argument("--context-size", type=int, default=128)
        parser.add_argument("--queue", action="store_true", help="queue on gpu_batch instead of running here")

    def handle(self, *args, **o):
        from features.services.jobs import job_run
        from inference.pipeline.services import add_source_job_create

        if not Model.objects.filter(pk=o["model_id"]).exists():
            raise CommandError(f"Unknown model {o['model_id']!r} (register it first: manage.py register_model)")
        if bool(o["sae_dir"]) == bool(o["transcoder_dir"]):
            raise CommandError("Give one of --sae-dir or --transcoder-dir")
        if o["transcoder_dir"]:
            return self.add_transcoders(o)
        try:
            job = add_source_job_create(
                model_id=o["model_id"],
                sae_dir=o["sae_dir"],
                source_id=o["source_id"],
                corpus=o["corpus"],
                tokens=o["tokens"],
                context_size=o["context_size"],
                send=o["queue"],
            )
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if o["queue"]:
            self.stdout.write(f"Queued job {job.pk} ({job.subject}) on gpu_batch")
            return
        job = job_run(job_id=job.pk, echo=tqdm_echo())
        self.stdout.write(f"\nJob {job.pk} {job.status}: {job.message} {job.result}")

    def add_transcoders(self, o):
        from features.services.jobs import job_run
        from graphs.services.transcoders import transcoder_set_add

        try:
            jobs = transcoder_set_add(
                model_id=o["model_id"], set_dir=o["transcoder_dir"], set_name=o["set_name"], corpus=o["corpus"],
                tokens=o["tokens"], context_size=o["context_size"], send=o["queue"],
            )  # fmt: skip
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        for job in jobs:
            if o["queue"]:
                self.stdout.write(f"Queued job {job.pk} ({job.subject}) on gpu_batch")
                continue
            job = job_run(job_id=job.pk, echo=tqdm_echo())
            self.stdout.write(f"\nJob {job.pk} {job.status}: {job.message} {job.result}")
