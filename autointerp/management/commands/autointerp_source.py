"""`python manage.py autointerp_source MODEL SOURCE [--type np_max-act] [--indexes 1,2] [--inline]`

Batch autointerp with a progress bar read from the Job row. Without --inline the chunks run on
`autointerp` workers; --inline runs them in this process. `--resume JOB_ID` continues a killed or
failed job: features already explained are skipped.
"""

import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from autointerp import services
from features.models import Job, Source


class Command(BaseCommand):
    help = "Explain every feature of a source (or some indexes) with an LLM, resumably."

    def add_arguments(self, parser):
        parser.add_argument("model_id", nargs="?")
        parser.add_argument("source_id", nargs="?")
        parser.add_argument("--type", default="np_max-act", dest="type_name")
        parser.add_argument("--model", default=None, dest="model_name", help="endpoint model name")
        parser.add_argument("--indexes", default="", help="comma-separated feature indexes")
        parser.add_argument("--limit", type=int, default=None)
        parser.add_argument("--chunk-size", type=int, default=services.CHUNK_SIZE)
        parser.add_argument("--inline", action="store_true", help="run in this process, no worker needed")
        parser.add_argument("--resume", type=int, default=None, metavar="JOB_ID")
        parser.add_argument("--no-wait", action="store_true")

    def handle(self, *args, **o):
        from features.services.jobs import job_resume

        if o["inline"]:  # the job and its chunk tasks run in this process as they are sent
            from memicos_site.celery import app

            app.conf.task_always_eager = True
        if o["resume"]:
            job = job_resume(job_id=o["resume"])
        else:
            source = Source.objects.filter(model_id=o["model_id"], name=o["source_id"]).first()
            if source is None:
                raise CommandError(f"Unknown source {o['model_id']}/{o['source_id']}")
            indexes = [int(i) for i in o["indexes"].split(",") if i.strip()] or None
            job = services.autointerp_job_create(
                source=source, type_name=o["type_name"], model_name=o["model_name"], indexes=indexes,
                limit=o["limit"], chunk_size=o["chunk_size"],
            )  # fmt: skip
        self.stdout.write(f"job {job.pk}: {job.subject} {job.params['type_name']} by {job.params['model_name']}")
        if o["no_wait"]:
            return
        self._follow(job.pk)

    def _follow(self, job_id: int):
        bar = tqdm(total=0, unit="feature", dynamic_ncols=True)
        while True:
            job = Job.objects.get(pk=job_id)
            bar.total = job.total
            bar.n = job.done
            bar.set_postfix_str(f"{job.result.get('prompt_tokens', 0) + job.result.get('completion_tokens', 0)} tok")
            bar.refresh()
            if job.finished:
                break
            time.sleep(1)
        bar.close()
        self.stdout.write(f"{job.status}: {job.message}")
        if job.status == Job.Status.FAILED:
            raise CommandError(job.error)
