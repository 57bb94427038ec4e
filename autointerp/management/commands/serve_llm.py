"""`python manage.py serve_llm [--port 8101]`: the offline OpenAI-compatible endpoint (SmolLM2-135M-Instruct)."""

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve /v1/chat/completions and /v1/models for the bundled SmolLM2-135M-Instruct."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8101)
        parser.add_argument("--api-key", default="", help="require this bearer key (default: accept any)")

    def handle(self, *args, host, port, api_key, **options):
        # torch loads here, in this process only: the web process never imports it.
        from inference.runtime.llm_server import serve

        def ready(server):
            self.stdout.write(f"serve_llm: listening on http://{host}:{server.server_port}/v1", ending="\n")
            self.stdout.flush()

        serve(host=host, port=port, api_key=api_key or None, ready=ready)
