"""Provider keys encrypted at rest: existing plaintext keys are encrypted into api_key_encrypted, then the clear
column is dropped. Reversible (decrypts back), so a rollback keeps working keys."""

from django.db import migrations, models


def encrypt_existing(apps, schema_editor):
    from autointerp.crypto import secret_encrypt

    ProviderKey = apps.get_model("autointerp", "ProviderKey")
    for row in ProviderKey.objects.all().only("id", "api_key"):
        ProviderKey.objects.filter(pk=row.pk).update(
            api_key_encrypted=secret_encrypt(plaintext=row.api_key), last4=row.api_key[-4:]
        )


def decrypt_existing(apps, schema_editor):
    from autointerp.crypto import SecretUnreadable, secret_decrypt

    ProviderKey = apps.get_model("autointerp", "ProviderKey")
    for row in ProviderKey.objects.all().only("id", "api_key_encrypted"):
        try:
            plain = secret_decrypt(token=row.api_key_encrypted)
        except SecretUnreadable:
            plain = ""
        ProviderKey.objects.filter(pk=row.pk).update(api_key=plain)


class Migration(migrations.Migration):
    dependencies = [("autointerp", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="providerkey", name="api_key_encrypted", field=models.TextField(default=""), preserve_default=False
        ),
        migrations.AddField(model_name="providerkey", name="last4", field=models.CharField(blank=True, max_length=4)),
        migrations.AlterField(
            model_name="providerkey", name="api_key", field=models.CharField(blank=True, default="", max_length=512)
        ),
        migrations.AlterField(
            model_name="providerkey",
            name="provider",
            field=models.CharField(
                choices=[("openai", "OpenAI"), ("openrouter", "OpenRouter"), ("custom", "Custom (OpenAI-compatible)")],
                max_length=16,
            ),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
        migrations.RemoveField(model_name="providerkey", name="api_key"),
    ]
