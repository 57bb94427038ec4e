"""`manage.py train_sae MODEL_ID --hook HOOK [--corpus brown] [--arch topk --k 32 --width 4608 --tokens 2000000]`.

Trains an SAE with SAELens, registers it as a Source with its metrics, and generates its dashboards.
Re-running the same command after an interruption resumes the unfinished job from its checkpoints.
"""

from django.core.management.base import BaseCommand, CommandError

from features.models import Model


def tqdm_echo():
    from tqdm import tqdm

    bars = {}

    def echo(done, total, message=None):
        stage = (message or "").split(":")[0] or "progress"
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, unit_scale=True)
        bar.total = total
        bar.n = done
        bar.refresh()

    return echo


class Command(BaseCommand):
    help = "Train an SAE on a registered model's hook, then generate its dashboards (resumable)."

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("--hook", required=True, help="e.g. blocks.10.hook_resid_post")
        parser.add_argument("--corpus", default="brown", help="brown, a .txt/.jsonl file or directory, hf:<name>")
        parser.add_argument("--source-id", default="", help="default: <layer>-<res|mlp|att>-<corpus>")
        parser.add_argument("--arch", default="topk", choices=["standard", "topk", "jumprelu", "batchtopk"])
        parser.add_argument("--width", type=int, default=4608)
        parser.add_argument("--k", type=int, default=32)
        parser.add_argument("--l1", type=float, default=5.0, help="sparsity coefficient (standard)")
        parser.add_argument("--tokens", type=int, default=2_000_000)
        parser.add_argument("--context-size", type=int, default=128)
        parser.add_argument("--batch-size-tokens", type=int, default=4096)
        parser.add_argument("--lr", type=float, default=3e-4)
        parser.add_argument("--dashboard-tokens", type=int, default=262_144)
        parser.add_argument("--no-dashboards", action="store_true")
        parser.add_argument("--queue", action="store_true", help="queue on gpu_batch instead of running here")

    def handle(self, *args, **o):
        from features.services.jobs import job_run
        from inference.pipeline.services import train_job_create

        if not Model.objects.filter(pk=o["model_id"]).exists():
            raise CommandError(f"Unknown model {o['model_id']!r} (register it first: manage.py register_model)")
        job = train_job_create(
            model_id=o["model_id"],
            hook=o["hook"],
            corpus=o["corpus"],
            source_id=o["source_id"],
            arch=o["arch"],
            width=o["width"],
            k=o["k"],
            l1_coefficient=o["l1"],
            tokens=o["tokens"],
            context_size=o["context_size"],
            batch_size_tokens=o["batch_size_tokens"],
            lr=o["lr"],
            dashboards=not o["no_dashboards"],
            dashboard_tokens=o["dashboard_tokens"],
            send=o["queue"],
        )
        if o["queue"]:
            self.stdout.write(f"Queued job {job.pk} ({job.subject}) on gpu_batch")
            return
        job = job_run(job_id=job.pk, echo=tqdm_echo())
        self.stdout.write(f"\nJob {job.pk} {job.status}: {job.message}")
        metrics = (job.result or {}).get("metrics", {})
        for key in ("l0", "explained_variance", "ce_loss_score", "num_dead_features", "train_tokens_per_second"):
            self.stdout.write(f"  {key}: {metrics.get(key)}")
