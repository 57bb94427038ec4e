"""`manage.py train_toy_model cyclic --symbols 4 --period 4 [--hook blocks.0.hook_resid_post] [--steps 300] ...`.

Seed 003: trains a small TransformerLens model on cyclic symbol sequences ("A B C D A B C D ..."), registers it
as a Model with its symbol tokenizer (loader {"kind": "toy-cyclic", "name": <dir>}, so
`manage.py inference_worker <model-id>` serves it), trains a TopK SAE on the chosen hook with SAELens, finds the
feature that tracks each cycle position, and writes dashboards. Then /intervene and POST /api/intervene clamp or
ablate features. The job lives in retrieval/services.py (toy_run, kind `toy_model`).
"""

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Train a toy model on cyclic sequences, an SAE on one of its hooks, and its dashboards."

    def add_arguments(self, parser):
        parser.add_argument("task", choices=["cyclic"])
        parser.add_argument("--symbols", type=int, default=4)
        parser.add_argument("--period", type=int, default=4)
        parser.add_argument("--model-id", default="", help="default toy-cyclic-<symbols>x<period>")
        parser.add_argument("--source-id", default="")
        parser.add_argument("--hook", default="blocks.0.hook_resid_post")
        parser.add_argument("--layers", type=int, default=1)
        parser.add_argument("--d-model", type=int, default=32)
        parser.add_argument("--n-ctx", type=int, default=24)
        parser.add_argument("--steps", type=int, default=300)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--sae-width", type=int, default=16)
        parser.add_argument("--sae-k", type=int, default=2)
        parser.add_argument("--sae-tokens", type=int, default=100_000)
        parser.add_argument("--sae-lr", type=float, default=3e-3)
        parser.add_argument("--no-dashboards", action="store_true")
        parser.add_argument("--queue", action="store_true", help="queue on gpu_batch instead of running here")

    def handle(self, *args, **o):
        from features.services.jobs import job_run
        from retrieval.services import toy_job_create

        try:
            job = toy_job_create(
                model_id=o["model_id"],
                symbols=o["symbols"],
                period=o["period"],
                hook=o["hook"],
                n_layers=o["layers"],
                d_model=o["d_model"],
                n_ctx=o["n_ctx"],
                steps=o["steps"],
                seed=o["seed"],
                sae_width=o["sae_width"],
                sae_k=o["sae_k"],
                sae_tokens=o["sae_tokens"],
                sae_lr=o["sae_lr"],
                source_id=o["source_id"],
                dashboards=not o["no_dashboards"],
                send=o["queue"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if o["queue"]:
            self.stdout.write(f"Queued job {job.pk} ({job.subject}) on gpu_batch")
            return
        job = job_run(job_id=job.pk, echo=lambda m: self.stdout.write(m))
        self.stdout.write(f"Job {job.pk} {job.status}: {job.message or job.error}")
        for row in (job.result or {}).get("position_features", []):
            self.stdout.write(
                f"  cycle position {row['position']} ({row['symbol']}): feature {row['index']} (r = {row['corr']})"
            )
