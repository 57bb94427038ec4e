"""The Celery app, wired to Django settings (CELERY_* names). Workers: celery -A memicos_site worker -Q ..."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memicos_site.settings")

app = Celery("memicos_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
