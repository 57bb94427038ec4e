from django.core.management.base import BaseCommand

from features.services.api_keys import api_key_create, user_get_or_create


class Command(BaseCommand):
    help = "Create the user if needed and print a new API key for it (for scripts and tests)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--staff", action="store_true", help="make the user staff (admin, imports)")
        parser.add_argument("--name", default="cli", help="a label for the key")

    def handle(self, *args, username, staff, name, **options):
        user = user_get_or_create(username=username, staff=staff)
        _, raw = api_key_create(user=user, name=name)
        self.stdout.write(raw)
