from django.apps import AppConfig


class FeaturesConfig(AppConfig):
    name = "features"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # every app declares its job kinds in its own jobs.py; the job machinery lives here and imports none of them
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("jobs")
