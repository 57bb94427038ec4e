"""Builds datasets in Neuronpedia's exact v1 layout (shared/reference/neuronpedia.md §4) for tests and bench.

Rows are generated from a seeded RNG; field names are Neuronpedia's, explanation embeddings are pgvector
text literals of 256 floats, activations carry token arrays drawn from a small English vocabulary.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

VOCAB = (
    " the of and to in is was for on that with as by at from his her it an were are which this be or has "
    "had not but one all their there been they new more would who when will after also two first other "
    "river bank money water city music church garden parrot birds ocean school paper market station train "
    "doctor science history winter summer language computer engine memory signal light energy"
).split(" ")
CONFIG_ROWS = {
    "explanation_type.jsonl": [{"name": "oai_token-act-pair", "displayName": "OpenAI token-activation pairs",
                                "description": "Explainer from Bills et al.", "featured": True, "isAttention": False,
                                "settings": None, "url": "", "creatorName": "OpenAI"}],
    "explanation_model_type.jsonl": [{"name": "gpt-4o-mini", "displayName": "GPT-4o mini", "description": "",
                                      "featured": True, "openRouterModelId": "openai/gpt-4o-mini", "url": "",
                                      "creatorName": "OpenAI"}],
    "explanation_score_model.jsonl": [{"name": "gpt-4o-mini", "displayName": "GPT-4o mini"}],
    "explanation_score_type.jsonl": [{"name": "recall_alt", "displayName": "Recall", "scoreDescription": "",
                                      "featured": False, "isAttention": False}],
    "eval_type.jsonl": [{"name": "core", "displayName": "Core"}],
}  # fmt: skip


@dataclass
class SourceSpec:
    source_id: str
    n_features: int
    acts_per_feature: int = 3
    n_tokens: int = 12
    batch_size: int = 1024
    explanations: bool = True
    seed: int = 0


@dataclass
class DatasetSpec:
    model_id: str = "tiny-gpt"
    dimension: int = 16
    sources: list[SourceSpec] = field(default_factory=list)


def gz(lines: list[dict] | list[bytes]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=5, mtime=0) as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n")
    return buf.getvalue()


def feature_row(model_id: str, source_id: str, index: int, rng: random.Random, dimension: int) -> dict:
    pos = rng.sample(VOCAB[1:], 5)
    return {
        "modelId": model_id, "layer": source_id, "index": str(index), "maxActApprox": round(rng.uniform(1, 9), 4),
        "creatorId": "clkht01d40000jv08hvalcvly", "frac_nonzero": round(rng.uniform(0, 0.05), 6),
        "freq_hist_data_bar_heights": [rng.randint(0, 50) for _ in range(8)],
        "freq_hist_data_bar_values": [round(0.2 * i, 3) for i in range(8)],
        "logits_hist_data_bar_heights": [rng.randint(0, 30) for _ in range(8)],
        "logits_hist_data_bar_values": [round(-0.8 + 0.2 * i, 3) for i in range(8)],
        "neuron_alignment_indices": [], "neuron_alignment_l1": [], "neuron_alignment_values": [],
        "correlated_neurons_indices": [], "correlated_neurons_l1": [], "correlated_neurons_pearson": [],
        "decoder_weights_dist": [], "neg_str": rng.sample(VOCAB[1:], 5),
        "neg_values": sorted(round(-rng.random(), 4) for _ in range(5)), "pos_str": pos,
        "pos_values": sorted((round(rng.random(), 4) for _ in range(5)), reverse=True),
        "sourceSetName": source_id.split("-", 1)[1], "topkCosSimIndices": [rng.randint(0, 99) for _ in range(3)],
        "topkCosSimValues": [round(rng.random(), 4) for _ in range(3)], "vector": [], "vectorLabel": None,
        "hookName": None, "vectorDefaultSteerStrength": 10, "hasVector": False,
    }  # fmt: skip


def activation_row(model_id: str, source_id: str, index: int, k: int, rng: random.Random, n_tokens: int) -> dict:
    tokens = [rng.choice(VOCAB) for _ in range(n_tokens)]
    peak = rng.randrange(n_tokens)
    values = [0.0 if rng.random() < 0.6 else round(rng.uniform(0, 2), 3) for _ in range(n_tokens)]
    values[peak] = round(rng.uniform(3, 9), 3)
    return {
        "id": f"act-{source_id}-{index}-{k}", "modelId": model_id, "layer": source_id, "index": str(index),
        "creatorId": "clkht01d40000jv08hvalcvly", "dataSource": "brown", "tokens": tokens,
        "maxValue": values[peak], "minValue": min(values), "values": values, "maxValueTokenIndex": peak,
        "dfaValues": [], "dfaMaxValue": None, "dfaTargetIndex": None, "binContains": None, "binMin": None,
        "binMax": None,
    }  # fmt: skip


def embedding_literal(rng: random.Random, dim: int = 256) -> str:
    return "[" + ",".join(f"{rng.gauss(0, 0.06):.6f}" for _ in range(dim)) + "]"


def explanation_row(model_id: str, source_id: str, index: int, rng: random.Random) -> dict:
    return {
        "id": f"exp-{source_id}-{index}", "modelId": model_id, "layer": source_id, "index": str(index),
        "authorId": "clkht01d40000jv08hvalcvly", "description": f"mentions of {rng.choice(VOCAB[20:])}",
        "embedding": embedding_literal(rng), "typeName": "oai_token-act-pair",
        "explanationModelName": "gpt-4o-mini", "umap_x": None, "umap_y": None, "umap_cluster": None,
        "umap_log_feature_sparsity": None,
    }  # fmt: skip


def source_rows(model_id: str, dimension: int, s: SourceSpec) -> dict[str, list[dict]]:
    rng = random.Random(f"{model_id}/{s.source_id}/{s.seed}")
    feats = [feature_row(model_id, s.source_id, i, rng, dimension) for i in range(s.n_features)]
    acts = [
        activation_row(model_id, s.source_id, i, k, rng, s.n_tokens)
        for i in range(s.n_features)
        for k in range(s.acts_per_feature)
    ]
    exps = [explanation_row(model_id, s.source_id, i, rng) for i in range(s.n_features)] if s.explanations else []
    return {"features": feats, "activations": acts, "explanations": exps}


def metadata(model_id: str, dimension: int, source_id: str) -> dict[str, dict]:
    set_name = source_id.split("-", 1)[1]
    return {
        "model.jsonl": {"id": model_id, "displayName": "Tiny GPT (test)", "displayNameShort": "tiny",
                        "creatorId": "x", "tlensId": model_id, "dimension": dimension, "thinking": False,
                        "visibility": "PUBLIC", "defaultSourceSetName": set_name, "defaultSourceId": source_id,
                        "inferenceEnabled": False, "instruct": False, "layers": 4, "neuronsPerLayer": 64,
                        "owner": "tests", "website": "", "createdAt": "2024-05-01T10:00:00.000Z",
                        "updatedAt": "2024-05-01T10:00:00.000Z"},
        "release.jsonl": {"name": f"{model_id}-release", "visibility": "PUBLIC", "description": "test release",
                          "descriptionShort": "test", "urls": [], "creatorName": "tests",
                          "createdAt": "2024-05-01T10:00:00.000Z"},
        "sourceset.jsonl": {"modelId": model_id, "name": set_name, "hasDashboards": True, "visibility": "PUBLIC",
                            "description": f"{set_name} SAEs", "type": "sae", "creatorName": "tests", "urls": [],
                            "releaseName": f"{model_id}-release", "defaultRange": 1, "showDfa": False},
        "source.jsonl": {"modelId": model_id, "id": source_id, "setName": set_name, "hasDashboards": True,
                         "inferenceEnabled": False, "saelensConfig": None, "visibility": "PUBLIC",
                         "num_prompts": 24576, "num_tokens_in_prompt": 128, "dataset": "brown", "notes": ""},
    }  # fmt: skip


def batches(rows: list[dict], size: int) -> list[list[dict]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)] or []


def activation_batches(acts: list[dict], size: int) -> dict[int, list[dict]]:
    """File N holds the activations of features N·size … N·size+size-1 (Neuronpedia's export rule)."""
    out: dict[int, list[dict]] = {}
    for a in acts:
        out.setdefault(int(a["index"]) // size, []).append(a)
    return out


def write_dataset(put: Callable[[str, bytes], None], spec: DatasetSpec) -> dict[str, dict[str, list[dict]]]:
    """Writes config, metadata and batch files via put(key_relative_to_prefix, bytes); returns the rows."""
    for name, rows in CONFIG_ROWS.items():
        put(f"config/{name}", b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    out = {}
    for s in spec.sources:
        rows = source_rows(spec.model_id, spec.dimension, s)
        out[s.source_id] = rows
        write_source(put, spec.model_id, spec.dimension, s, rows)
    return out


def write_source(put, model_id: str, dimension: int, s: SourceSpec, rows: dict[str, list[dict]]):
    base = f"{model_id}/{s.source_id}/"
    for name, row in metadata(model_id, dimension, s.source_id).items():
        put(base + name, json.dumps(row).encode() + b"\n")
    for n, chunk in enumerate(batches(rows["features"], s.batch_size)):
        put(f"{base}features/batch-{n}.jsonl.gz", gz(chunk))
    for n, chunk in sorted(activation_batches(rows["activations"], s.batch_size).items()):
        put(f"{base}activations/batch-{n}.jsonl.gz", gz(chunk))
    for n, chunk in enumerate(batches(rows["explanations"], s.batch_size)):
        put(f"{base}explanations/batch-{n}.jsonl.gz", gz(chunk))


def s3_put(client, bucket: str, prefix: str) -> Callable[[str, bytes], None]:
    return lambda key, data: client.put_object(Bucket=bucket, Key=prefix + key, Body=data)
