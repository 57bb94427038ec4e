"""Reading an SAE's decoder directions (W_dec rows) from a SAELens directory, for UMAP and cossim.

Reads `sae_weights.safetensors` directly (no model construction), so any SAELens architecture works.
Returns a plain float32 numpy array [d_sae, d_in].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def decoder_directions(sae_path: str) -> np.ndarray:
    from safetensors.torch import load_file

    path = Path(sae_path)
    weights = load_file(str(path / "sae_weights.safetensors") if path.is_dir() else str(path))
    if "W_dec" not in weights:
        raise ValueError(f"{sae_path}: no W_dec in the SAE weights (keys: {', '.join(sorted(weights))})")
    return weights["W_dec"].float().numpy()
