"""register_model and inference_worker (the worker itself runs in test_worker.py and bench/activation.py)."""

import pytest
from django.core.management import CommandError, call_command

from features.models import Model

pytestmark = pytest.mark.django_db


def test_register_model_creates_an_inference_enabled_model_with_its_loader():
    call_command("register_model", "tiny-cmd", "--kind", "tiny", "--params", '{"n_layers": 1}')
    model = Model.objects.get(id="tiny-cmd")
    assert model.inference_enabled and model.loader["kind"] == "tiny" and model.loader["params"] == {"n_layers": 1}
    call_command("register_model", "tiny-cmd", "--kind", "smollm2-gguf")
    assert Model.objects.get(id="tiny-cmd").loader["kind"] == "smollm2-gguf"
    with pytest.raises(CommandError):
        call_command("register_model", "x", "--kind", "hf-dir")  # hf-dir needs --name


def test_inference_worker_refuses_an_unknown_or_disabled_model():
    with pytest.raises(CommandError, match="register it first"):
        call_command("inference_worker", "nope")
    Model.objects.create(id="off", inference_enabled=False)
    with pytest.raises(CommandError, match="inference_enabled"):
        call_command("inference_worker", "off")
