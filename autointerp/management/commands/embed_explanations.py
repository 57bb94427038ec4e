"""`python manage.py embed_explanations [--model M --source S] [--batch 256]`: backfill missing embeddings
with the configured embedder (AUTOINTERP_EMBEDDER), in this process."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from autointerp.services import explanations_embed, explanations_missing_embedding
from features.models import Source


class Command(BaseCommand):
    help = "Embed explanations that have no embedding yet."

    def add_arguments(self, parser):
        parser.add_argument("--model", default=None)
        parser.add_argument("--source", default=None)
        parser.add_argument("--batch", type=int, default=256)

    def handle(self, *args, model, source, batch, **options):
        src = None
        if source:
            src = Source.objects.filter(model_id=model, name=source).first()
            if src is None:
                raise CommandError(f"Unknown source {model}/{source}")
        ids = list(explanations_missing_embedding(source=src))
        written = 0
        for start in tqdm(range(0, len(ids), batch), unit="batch"):
            written += explanations_embed(explanation_ids=ids[start : start + batch])
        self.stdout.write(f"embedded {written} explanations")
