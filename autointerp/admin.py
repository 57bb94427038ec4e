from django.contrib import admin

from autointerp.models import ProviderKey


@admin.register(ProviderKey)
class ProviderKeyAdmin(admin.ModelAdmin):
    list_display = ("user", "provider", "base_url", "updated_at")
    list_filter = ("provider",)
    search_fields = ("user__username",)
    exclude = ("api_key_encrypted",)  # never shown back; set through provider_key_set
