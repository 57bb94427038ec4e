"""`manage.py train_transcoders MODEL_ID [--width --k --tokens --corpus --skip --arch ...]`.

Trains one transcoder per layer (MLP input → MLP output), registers the set as a source set with one source per
layer, writes their dashboards and queues their explanations. Re-running after a kill resumes from the finished
layers (the same job is picked up).
"""

from django.core.management.base import BaseCommand, CommandError

from features.models import Job, Model
from inference.management.commands.train_sae import tqdm_echo


class Command(BaseCommand):
    help = "Train a model's transcoders (one per layer), register them and generate their dashboards (resumable)."

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("--width", type=int, default=2048)
        parser.add_argument("--k", type=int, default=32, help="topk: active features per token")
        parser.add_argument("--tokens", type=int, default=200_000, help="training tokens per layer")
        parser.add_argument("--corpus", default="brown", help="brown, a .txt/.jsonl file or directory, hf:<name>")
        parser.add_argument("--skip", action="store_true", help="add a linear skip connection")
        parser.add_argument("--arch", default="topk", choices=["topk", "jumprelu"])
        parser.add_argument("--set-name", default="", help="default: tc-<arch>-<width>-<corpus>")
        parser.add_argument("--context-size", type=int, default=128)
        parser.add_argument("--batch-size-tokens", type=int, default=1024)
        parser.add_argument("--lr", type=float, default=1e-3)
        parser.add_argument("--epochs", type=int, default=1, help=">1: tokens/epochs distinct tokens, replayed")
        parser.add_argument("--layers-per-pass", type=int, default=1, help="layers trained from one forward pass")
        parser.add_argument("--dashboard-tokens", type=int, default=65_536)
        parser.add_argument("--no-dashboards", action="store_true")
        parser.add_argument("--no-explain", action="store_true", help="do not queue autointerp explanations")
        parser.add_argument("--no-evals", action="store_true", help="do not queue each layer's benchmarks (sae_evals)")
        parser.add_argument("--queue", action="store_true", help="queue on gpu_batch instead of running here")

    def handle(self, *args, **o):
        from features.services.jobs import job_run
        from graphs.services.transcoders import transcoders_job_create

        if not Model.objects.filter(pk=o["model_id"]).exists():
            raise CommandError(f"Unknown model {o['model_id']!r} (register it first: manage.py register_model)")
        try:
            job = transcoders_job_create(
                model_id=o["model_id"], width=o["width"], k=o["k"], tokens=o["tokens"], corpus=o["corpus"],
                skip=o["skip"], arch=o["arch"], set_name=o["set_name"], context_size=o["context_size"],
                batch_size_tokens=o["batch_size_tokens"], lr=o["lr"], dashboards=not o["no_dashboards"],
                dashboard_tokens=o["dashboard_tokens"], explain=not o["no_explain"], evals=not o["no_evals"], epochs=o["epochs"],
                layers_per_pass=o["layers_per_pass"], send=o["queue"],
            )  # fmt: skip
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if o["queue"]:
            self.stdout.write(f"Queued job {job.pk} ({job.subject}) on gpu_batch")
            return
        job = job_run(job_id=job.pk, echo=tqdm_echo())
        self.stdout.write(f"\nJob {job.pk} {job.status}: {job.message or job.error}")
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(f"Job {job.pk} ended {job.status}: {job.error}")
