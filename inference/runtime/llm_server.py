"""An OpenAI-compatible chat endpoint for the bundled SmolLM2-135M-Instruct (`manage.py serve_llm`).

Stdlib HTTP server + HF `generate`: enough for offline autointerp and the tests, which talk to it with
the real `openai` client. Non-streaming only. Honours temperature, top_p, max_tokens, seed, stop,
logprobs/top_logprobs and (best effort) `response_format: json_object`.

Generation runs under one lock: torch already uses every core for one request, so parallel requests
would only thrash; the HTTP threads queue behind it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from inference.runtime.models import SMOLLM2_MODEL_ID, smollm2_hf_dir

log = logging.getLogger(__name__)

MAX_NEW_TOKENS_CAP = 1024
JSON_HINT = "Answer with a single valid JSON value only, no prose."


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Generation:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None


class ChatModel:
    """SmolLM2 (or any local HF causal LM directory with a chat template)."""

    def __init__(self, path=None, name: str = SMOLLM2_MODEL_ID):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_grad_enabled(False)
        path = path or smollm2_hf_dir()
        self.name = name
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.lock = threading.Lock()

    def generate(
        self,
        messages: list[dict],
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: list[str] | None = None,
        logprobs: bool = False,
        top_logprobs: int = 0,
        json_mode: bool = False,
    ) -> Generation:
        if json_mode:
            messages = [{"role": "system", "content": JSON_HINT}, *messages]
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        max_tokens = max(1, min(int(max_tokens), MAX_NEW_TOKENS_CAP))
        sample = temperature is not None and temperature > 0
        kwargs = dict(
            max_new_tokens=max_tokens,
            do_sample=sample,
            return_dict_in_generate=True,
            output_logits=bool(logprobs),
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        )
        if sample:
            kwargs.update(temperature=float(temperature), top_p=float(top_p or 1.0))
        else:  # greedy: unset the sampling knobs the model's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=self.tokenizer)
        with self.lock:
            if seed is not None:
                torch.manual_seed(int(seed))
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        new = out.sequences[0, ids.shape[1] :]
        eos = self.tokenizer.eos_token_id
        finish = "length"
        if len(new) and int(new[-1]) == eos:
            new, finish = new[:-1], "stop"
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        if stop:
            for s in stop:
                if s in text:
                    text, finish = text.split(s, 1)[0], "stop"
        if json_mode:
            text = _json_best_effort(text)
        lps = self._logprobs(new, out.logits, top_logprobs) if logprobs else None
        return Generation(
            text=text,
            finish_reason=finish,
            prompt_tokens=int(ids.shape[1]),
            completion_tokens=int(out.sequences.shape[1] - ids.shape[1]),
            logprobs=lps,
        )

    def _logprobs(self, new_ids, logits, top_n: int) -> list[TokenLogprob]:
        # Raw (unprocessed) logits: the model's own distribution, as OpenAI reports it.
        result = []
        for i, tok in enumerate(new_ids):
            lp = torch.log_softmax(logits[i][0].float(), dim=-1)
            item = TokenLogprob(token=self.tokenizer.decode([int(tok)]), logprob=float(lp[int(tok)]))
            if top_n:
                vals, idx = torch.topk(lp, k=min(int(top_n), 20))
                item.top = [(self.tokenizer.decode([int(j)]), float(v)) for v, j in zip(vals, idx, strict=True)]
            result.append(item)
        return result


def _json_best_effort(text: str) -> str:
    """Return the first parseable JSON object/array in `text`, else the text unchanged."""
    for match in re.finditer(r"[\[{]", text):
        start = match.start()
        for end in range(len(text), start, -1):
            if text[end - 1] not in "]}":
                continue
            try:
                json.loads(text[start:end])
            except ValueError:
                continue
            return text[start:end]
    return text


def completion_body(gen: Generation, model_name: str) -> dict:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": gen.text},
        "finish_reason": gen.finish_reason,
        "logprobs": None,
    }
    if gen.logprobs is not None:
        choice["logprobs"] = {
            "content": [
                {
                    "token": t.token,
                    "logprob": t.logprob,
                    "bytes": list(t.token.encode()),
                    "top_logprobs": [{"token": s, "logprob": v, "bytes": list(s.encode())} for s, v in t.top],
                }
                for t in gen.logprobs
            ]
        }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [choice],
        "usage": {
            "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": gen.completion_tokens,
            "total_tokens": gen.prompt_tokens + gen.completion_tokens,
        },
    }


def _error(status: int, message: str, kind: str = "invalid_request_error") -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": kind, "param": None, "code": None}}


def handle_chat(chat: ChatModel, body: dict) -> tuple[int, dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "messages: a non-empty list is required")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            return _error(400, "messages: each message needs a string content")
    if body.get("stream"):
        return _error(400, "stream: streaming is not supported by this server")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else (stop or None)
    fmt = (body.get("response_format") or {}).get("type")
    gen = chat.generate(
        [{"role": m.get("role", "user"), "content": m["content"]} for m in messages],
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens") or 64,
        temperature=float(body.get("temperature") if body.get("temperature") is not None else 1.0),
        top_p=float(body.get("top_p") or 1.0),
        seed=body.get("seed"),
        stop=stop,
        logprobs=bool(body.get("logprobs")),
        top_logprobs=int(body.get("top_logprobs") or 0),
        json_mode=fmt in ("json_object", "json_schema"),
    )
    return 200, completion_body(gen, body.get("model") or chat.name)


def make_handler(chat: ChatModel, api_key: str | None):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            log.info("%s %s", self.address_string(), fmt % args)

        def _send(self, status: int, payload: dict):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if not api_key:
                return True
            if self.headers.get("Authorization", "") == f"Bearer {api_key}":
                return True
            self._send(*_error(401, "Incorrect API key provided.", "authentication_error"))
            return False

        def do_GET(self):
            path = self.path.split("?", 1)[0].rstrip("/")
            if path in ("/v1/models", "/models"):
                if self._authorized():
                    self._send(200, {"object": "list", "data": [_model_entry(chat.name)]})
            elif path in ("", "/health", "/v1"):
                self._send(200, {"status": "ok", "model": chat.name})
            else:
                self._send(*_error(404, f"Unknown path {self.path}"))

        def do_POST(self):
            path = self.path.split("?", 1)[0].rstrip("/")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if path not in ("/v1/chat/completions", "/chat/completions"):
                self._send(*_error(404, f"Unknown path {self.path}"))
                return
            if not self._authorized():
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._send(*_error(400, "The body is not valid JSON."))
                return
            try:
                self._send(*handle_chat(chat, body))
            except Exception as exc:  # a 500 the client retries, with the reason
                log.exception("generation failed")
                self._send(*_error(500, f"generation failed: {exc}", "server_error"))

    return Handler


def _model_entry(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "memicos"}


def serve(*, host: str = "127.0.0.1", port: int = 8101, api_key: str | None = None, ready=None) -> None:
    chat = ChatModel()
    server = ThreadingHTTPServer((host, port), make_handler(chat, api_key))
    server.daemon_threads = True
    if ready:
        ready(server)
    try:
        server.serve_forever()
    finally:
        server.server_close()
