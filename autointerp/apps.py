from django.apps import AppConfig


class AutointerpConfig(AppConfig):
    name = "autointerp"
    default_auto_field = "django.db.models.BigAutoField"
