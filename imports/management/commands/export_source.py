"""python manage.py export_source MODEL_ID SOURCE_ID --to DIR|s3://bucket/prefix [--endpoint-url URL]"""

from django.core.management.base import BaseCommand
from tqdm import tqdm

from imports.services.exporter import source_export
from imports.services.origin import origin_from_url


class Command(BaseCommand):
    help = "Export one source in Neuronpedia's v1 layout (gzip JSONL, 1024 rows per batch, ids preserved)."

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("source_id")
        parser.add_argument("--to", required=True, help="a directory, or s3://bucket/prefix")
        parser.add_argument("--endpoint-url", help="S3-compatible endpoint for an s3:// target")

    def handle(self, *args, **options):
        target = origin_from_url(options["to"], endpoint_url=options.get("endpoint_url"))
        bar = tqdm(unit=" files", desc="export", disable=None)
        counts = source_export(
            model_id=options["model_id"],
            source_id=options["source_id"],
            target=target,
            on_file=lambda key, n: bar.update(1),
        )
        bar.close()
        self.stdout.write(
            f"{counts['features']} features, {counts['activations']} activations, "
            f"{counts['explanations']} explanations in {counts['files']} files → {target.label}"
        )
