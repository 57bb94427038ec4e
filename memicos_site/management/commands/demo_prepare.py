from django.core.management.base import BaseCommand

from features.models import Feature, Model


class Command(BaseCommand):
    help = (
        "Prepare the demo before `make demo` starts the processes: register SmolLM2-135M-Instruct and queue "
        "its pipeline (SAE training on the Brown corpus, dashboards, then explanations of its top features and a "
        "UMAP) unless it already finished."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-pipeline", action="store_true", help="only report what the database holds")

    def handle(self, *args, no_pipeline, **options):
        if not no_pipeline:
            from inference.pipeline.demo import demo_followups_start, demo_pipeline_start

            job = demo_pipeline_start()
            self.stdout.write(f"demo pipeline: job {job.pk} {job.status} ({job.message or job.subject})")
            for followup in demo_followups_start():
                self.stdout.write(f"demo follow-up: {followup.kind} job {followup.pk} queued")
        self.stdout.write(f"database: {Model.objects.count()} models, {Feature.objects.count()} features")
