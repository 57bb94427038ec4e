"""`manage.py register_model MODEL_ID --kind tiny|smollm2-gguf|hf-dir|tlens`: a Model row with its loader."""

import json

from django.core.management.base import BaseCommand, CommandError

from features.models import Model

KINDS = ("smollm2-gguf", "tiny", "hf-dir", "tlens")


class Command(BaseCommand):
    help = "Create or update a Model row that an inference worker can load."

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("--kind", choices=KINDS, required=True)
        parser.add_argument("--name", default="", help="TransformerLens name (tlens) or directory (hf-dir)")
        parser.add_argument("--display-name", default="")
        parser.add_argument("--device", default="cpu")
        parser.add_argument("--dtype", default="float32")
        parser.add_argument("--params", default="{}", help='JSON, e.g. {"n_layers": 2} for tiny')

    def handle(self, *args, model_id, kind, name, display_name, device, dtype, params, **options):
        if kind in ("hf-dir", "tlens") and not name:
            raise CommandError(f"--name is required for --kind {kind}")
        try:
            params = json.loads(params)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not JSON: {exc}") from exc
        loader = {"kind": kind, "name": name, "dtype": dtype, "device": device, "params": params}
        model, created = Model.objects.update_or_create(
            id=model_id,
            defaults={"loader": loader, "inference_enabled": True, "display_name": display_name or model_id},
        )
        self.stdout.write(f"{'Created' if created else 'Updated'} model {model.id} with loader {json.dumps(loader)}")
