"""`manage.py build_memory_source [--source-id 0-passage-sae] [--corpus brown] [--max-passages N] [--width 512 --k 8]`.

Sparse memory retrieval (seed 002): splits the corpus into paragraphs (genre kept), embeds them with
all-MiniLM-L6-v2, trains a TopK SAE on the embeddings, stores every passage's sparse code, and writes the
features' dashboards (one activation = one passage). Re-running reuses the cached embeddings and the SAE.
"""

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Build the passage-SAE source of all-minilm-l6-v2 (sparse memory retrieval)."

    def add_arguments(self, parser):
        parser.add_argument("--source-id", default="0-passage-sae")
        parser.add_argument("--corpus", default="brown", help="brown, or a .txt/.jsonl file or directory")
        parser.add_argument("--max-passages", type=int, default=None, help="a seeded sample (default: all)")
        parser.add_argument("--width", type=int, default=512)
        parser.add_argument("--k", type=int, default=8)
        parser.add_argument("--steps", type=int, default=3000)
        parser.add_argument("--batch-size", type=int, default=256)
        parser.add_argument("--lr", type=float, default=1e-3)
        parser.add_argument("--queue", action="store_true", help="queue on gpu_batch instead of running here")

    def handle(self, *args, **o):
        from features.services.jobs import job_run
        from retrieval.services import memory_source_job_create

        job = memory_source_job_create(
            source_id=o["source_id"],
            corpus=o["corpus"],
            max_passages=o["max_passages"],
            width=o["width"],
            k=o["k"],
            steps=o["steps"],
            batch_size=o["batch_size"],
            lr=o["lr"],
            send=o["queue"],
        )
        if o["queue"]:
            self.stdout.write(f"Queued job {job.pk} ({job.subject}) on gpu_batch")
            return
        job = job_run(job_id=job.pk, echo=lambda m: self.stdout.write(m))
        self.stdout.write(f"Job {job.pk} {job.status}: {job.message}")
        for key, value in ((job.result or {}).get("metrics") or {}).items():
            self.stdout.write(f"  {key}: {value}")
