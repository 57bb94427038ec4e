"""The one place that imports circuit-tracer 0.5.0 (installed with --no-deps beside our pins).

Its `utils.hf_utils` imports `huggingface_hub.constants.HF_HUB_ENABLE_HF_TRANSFER`, which huggingface_hub 2.x
removed; the constant only chooses sequential hub downloads, which we never do (no hub at run time), so it is
set to False before the first import. Its other missing dependencies (nnsight, IPython, matplotlib) are only
imported by the nnsight backend and the notebook helpers, which we do not use.
"""

from __future__ import annotations

import importlib


def circuit_tracer():
    """Import circuit_tracer (after the shim) and return the module."""
    import huggingface_hub.constants as hub_constants

    if not hasattr(hub_constants, "HF_HUB_ENABLE_HF_TRANSFER"):
        hub_constants.HF_HUB_ENABLE_HF_TRANSFER = False
    return importlib.import_module("circuit_tracer")


def ct_import(module: str):
    """`ct_import("graph")` → circuit_tracer.graph, imported after the shim."""
    circuit_tracer()
    return importlib.import_module(f"circuit_tracer.{module}")
