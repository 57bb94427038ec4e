from django.core.management.base import BaseCommand

from imports.cli import add_origin_arguments, origin_params
from imports.selectors import remote_models, remote_sources
from imports.services.origin import origin_from_params


class Command(BaseCommand):
    help = "List the models of a v1 dataset, or the sources of one model with their local status."

    def add_arguments(self, parser):
        parser.add_argument("model_id", nargs="?")
        add_origin_arguments(parser)

    def handle(self, *args, **options):
        origin = origin_from_params(origin_params(options))
        if not options["model_id"]:
            for name in remote_models(origin=origin):
                self.stdout.write(name)
            return
        for group in remote_sources(origin=origin, model_id=options["model_id"], check_files=True):
            self.stdout.write(f"{group['set']}  ({group['done']} of {group['total']} downloaded)")
            for s in group["sources"]:
                self.stdout.write(f"  {s['source_id']:<40} {s['status']}")
