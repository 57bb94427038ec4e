from django.apps import AppConfig


class AutointerpConfig(AppConfig):
    name = "autointerp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from autointerp.selectors import account_provider_keys, dashboard_work
        from features import hooks

        hooks.dashboard_work.append(dashboard_work)
        hooks.account_extras.append(account_provider_keys)
