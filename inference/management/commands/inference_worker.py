"""`manage.py inference_worker MODEL_ID`: a Celery worker on the model's queue, holding the model once.

Concurrency 1 (solo pool): one model in memory per process; more throughput = more workers on the same
queue. The model is loaded at worker start (inference.tasks._load_and_beat), then the worker announces
itself in Redis so the web side can tell "no worker" (503) from "busy".
"""

import os
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from features.models import Model
from memicos_site.queues import inference_queue


class Command(BaseCommand):
    help = "Run the inference worker for one registered model (queue inference.<model_id>)."

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("--loglevel", default="INFO")
        parser.add_argument("--hostname", default="", help="Celery node name (default inference-<model>@%%h)")
        parser.add_argument(
            "--wait", action="store_true", help="wait until the model is registered (the demo registers its toy later)"
        )

    def handle(self, *args, model_id, loglevel, hostname, wait, **options):
        model = Model.objects.filter(id=model_id).first()
        if model is None and wait:
            self.stdout.write(f"waiting for model {model_id} to be registered")
            while model is None:
                time.sleep(5)
                model = Model.objects.filter(id=model_id).first()
        if model is None:
            raise CommandError(
                f"No model {model_id!r}; register it first: manage.py register_model {model_id} --kind ..."
            )
        if not model.inference_enabled:
            raise CommandError(f"Model {model_id} has inference_enabled=False")
        argv = [
            sys.executable, "-m", "celery", "-A", "memicos_site", "worker",
            "-Q", inference_queue(model_id), "-P", "solo", "--concurrency", "1",
            "-n", hostname or f"inference-{model_id}@%h",
            "--without-gossip", "--without-mingle", "--loglevel", loglevel,
        ]  # fmt: skip
        sys.stdout.flush()
        os.execv(sys.executable, argv)  # replace this process: signals reach Celery directly
