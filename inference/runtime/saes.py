"""Loading SAEs (SAELens format) and steering vectors, with an LRU cache per worker process.

An SAE is named by a `SaeRef`: a SAELens directory (cfg.json + sae_weights.safetensors), or a SAELens
release + id (needs hub access or a warm cache). The cache limit is `MEMICOS_MAX_LOADED_SAES` (default
32): big SAEs cost hundreds of MB each, so a worker keeps the recently used ones and drops the rest.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
from sae_lens import SAE


@dataclass(frozen=True)
class SaeRef:
    path: str = ""  # SAELens directory
    release: str = ""  # SAELens release (when no path)
    sae_id: str = ""

    @property
    def key(self) -> str:
        return self.path or f"{self.release}/{self.sae_id}"

    @classmethod
    def from_dict(cls, data: dict) -> SaeRef:
        return cls(path=data.get("path", ""), release=data.get("release", ""), sae_id=data.get("sae_id", ""))


def max_loaded_saes() -> int:
    return max(1, int(os.environ.get("MEMICOS_MAX_LOADED_SAES", "32")))


class SaeCache:
    def __init__(self, device: str = "cpu", limit: int | None = None):
        self.device = device
        self.limit = limit or max_loaded_saes()
        self._saes: OrderedDict[str, SAE] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._saes)

    def keys(self) -> list[str]:
        return list(self._saes)

    def get(self, ref: SaeRef) -> SAE:
        with self._lock:
            if ref.key in self._saes:
                self._saes.move_to_end(ref.key)
                return self._saes[ref.key]
        sae = load_sae(ref, device=self.device)
        with self._lock:
            self._saes[ref.key] = sae
            while len(self._saes) > self.limit:
                self._saes.popitem(last=False)
        return sae


def load_sae(ref: SaeRef, *, device: str = "cpu") -> SAE:
    if ref.path:
        if not os.path.exists(os.path.join(ref.path, "cfg.json")):
            raise FileNotFoundError(f"No SAELens cfg.json in {ref.path}")
        sae = SAE.load_from_disk(ref.path, device=device)
    elif ref.release:
        sae = SAE.from_pretrained(ref.release, ref.sae_id, device=device)
    else:
        raise ValueError("An SAE needs a path or a SAELens release")
    return sae.eval()


def sae_hook_name(sae: SAE) -> str:
    name = getattr(sae.cfg.metadata, "hook_name", None)
    if not name:
        raise ValueError("The SAE's cfg.json has no metadata.hook_name; cannot tell where it reads the model")
    return name


def sae_encode(sae: SAE, acts: torch.Tensor) -> torch.Tensor:
    """sae.encode in the SAE's dtype/device (it applies normalisation and apply_b_dec_to_input itself)."""
    return sae.encode(acts.to(device=sae.device, dtype=sae.dtype)).float()


def decoder_rows(sae: SAE, indexes: list[int]) -> torch.Tensor:
    return sae.W_dec[indexes].detach().float()
