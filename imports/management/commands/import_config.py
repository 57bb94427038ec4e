from django.core.management.base import BaseCommand, CommandError

from imports.cli import add_origin_arguments, origin_params
from imports.services.importer import config_import
from imports.services.loader import LoadError
from imports.services.origin import origin_from_params


class Command(BaseCommand):
    help = "Upsert the v1/config lookup tables (explanation types, models, score types) by name."

    def add_arguments(self, parser):
        add_origin_arguments(parser)

    def handle(self, *args, **options):
        warnings: list[dict] = []
        try:
            counts = config_import(origin=origin_from_params(origin_params(options)), warnings=warnings)
        except LoadError as exc:
            raise CommandError(str(exc)) from None
        for name, n in counts.items():
            self.stdout.write(f"{name}: {n} row(s)")
        for w in warnings:
            self.stdout.write(f"warning: {w['file']}: {w['warning']}")
