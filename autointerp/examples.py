"""Activation examples as explainers and scorers see them: plain dataclasses, no Django, no torch.

Definitions (shared/reference/saelens_dashboard_delphi.md §3):
- highlighting: tokens with act > threshold × the example's max are wrapped in <<...>>, runs merged;
- OpenAI normalisation: floor(10·ReLU(x)/max) capped at 10; delphi's: ceil(10·x/max) clamped 0..10;
- quantiles: rank-based, equal-count slices of the examples sorted by max activation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass
class Example:
    tokens: list[str]
    values: list[float]
    quantile: int = -1  # -1: non-activating
    source_feature: int | None = None  # for non-activating examples: the feature whose top example it is
    extra: dict = field(default_factory=dict)

    @property
    def max_value(self) -> float:
        return max(self.values, default=0.0)

    @property
    def activating(self) -> bool:
        return sum(v for v in self.values if v > 0) > 0

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def clean_token(token: str) -> str:
    return token.replace("\n", "↵").replace("\t", " ")


def window(example: Example, *, size: int = 32) -> Example:
    """A window of `size` tokens around the max (3/4 of the window before it), as delphi's examples."""
    n = len(example.tokens)
    if n <= size:
        return example
    peak = max(range(n), key=lambda i: example.values[i])
    start = max(0, min(n - size, peak - (3 * size) // 4))
    return Example(
        tokens=example.tokens[start : start + size],
        values=example.values[start : start + size],
        quantile=example.quantile,
        source_feature=example.source_feature,
    )


def highlight(tokens: list[str], mask: list[bool]) -> str:
    out, inside = [], False
    for token, on in zip(tokens, mask, strict=True):
        if on and not inside:
            out.append("<<")
        elif not on and inside:
            out.append(">>")
        inside = on
        out.append(clean_token(token))
    if inside:
        out.append(">>")
    return "".join(out)


def active_mask(example: Example, *, threshold: float, scale: float | None = None) -> list[bool]:
    top = scale if scale is not None else example.max_value
    if top <= 0:
        return [False] * len(example.values)
    return [v > threshold * top for v in example.values]


def oai_normalize(values: list[float], max_value: float) -> list[int]:
    if max_value <= 0:
        return [0] * len(values)
    return [min(10, math.floor(10 * max(0.0, v) / max_value)) for v in values]


def delphi_normalize(values: list[float], max_value: float) -> list[int]:
    if max_value <= 0:
        return [0] * len(values)
    return [max(0, min(10, math.ceil(10 * v / max_value))) for v in values]


def dedupe_top(examples: list[Example], *, limit: int) -> list[Example]:
    """Neuronpedia's explainer input: de-duplicated by text, strongest first, top `limit`."""
    seen, out = set(), []
    for ex in sorted(examples, key=lambda e: -e.max_value):
        if ex.text in seen or ex.max_value <= 0:
            continue
        seen.add(ex.text)
        out.append(ex)
    return out[:limit]


def split_quantiles(examples: list[Example], *, n_quantiles: int, n_samples: int, seed: int = 22) -> list[Example]:
    """delphi's sampler: examples sorted by max activation, cut into equal-count rank slices, and
    `n_samples // n_quantiles` drawn from each slice; `quantile` records the slice (0 = strongest)."""
    ranked = sorted((e for e in examples if e.activating), key=lambda e: -e.max_value)
    if not ranked:
        return []
    n_quantiles = max(1, min(n_quantiles, len(ranked), n_samples))
    per = max(1, n_samples // n_quantiles)
    rng = random.Random(seed)
    out = []
    for q in range(n_quantiles):
        lo, hi = (q * len(ranked)) // n_quantiles, ((q + 1) * len(ranked)) // n_quantiles
        chunk = ranked[lo:hi]
        for ex in rng.sample(chunk, min(per, len(chunk))):
            out.append(Example(tokens=ex.tokens, values=ex.values, quantile=q, extra=ex.extra))
    return out
