from django.core.management.base import BaseCommand

from memicos_site.embedded import embedded_stop
from memicos_site.env import var_dir


class Command(BaseCommand):
    help = "Stop the embedded PostgreSQL in ./var/pg (it is started on demand by any memicos process)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["stop"])

    def handle(self, *args, action, **options):
        stopped = embedded_stop(var_dir() / "pg")
        self.stdout.write("stopped" if stopped else "not running")
