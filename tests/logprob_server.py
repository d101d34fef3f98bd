"""A tiny vLLM-shaped ``/v1/completions`` server for tests: a local causal LM's REAL log-probs.

    python tests/logprob_server.py MODEL_DIR [--mode prompt_logprobs|echo|none]

prints ``PORT <n>`` once it listens on 127.0.0.1. A request's ``prompt`` is a list of token ids;
the model (float32, CPU, one unpadded sequence) scores it and the reply takes the shape of vLLM's
OpenAI-compatible server:

* ``prompt_logprobs`` mode: ``choices[0].prompt_logprobs`` = ``[null, {"<id>": {"logprob", "rank",
  "decoded_token"}, ...}, ...]`` — per position the prompt's token and the top ``prompt_logprobs``;
* ``echo`` mode: with ``echo`` + ``logprobs`` (and ``max_tokens`` 0), ``choices[0].logprobs`` =
  ``{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`` over the prompt, tokens as
  ``token_id:N`` when ``return_tokens_as_token_ids`` is set;
* ``none`` mode: neither (a server without prompt log-probs): only generated text comes back.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock
from typing import Any


def prompt_logprobs(logp: Any, ids: list[int], k: int, tok: Any) -> list[Any]:
    """vLLM's per-position ``{token_id: Logprob}`` for the prompt (position 0: null)."""
    import torch

    out: list[Any] = [None]
    for i in range(1, len(ids)):
        row = logp[i - 1]
        ranks = torch.argsort(row, descending=True)
        rank_of = {int(t): r + 1 for r, t in enumerate(ranks[:k].tolist())}
        entry = {}
        for token in [ids[i], *ranks[:k].tolist()]:
            rank = rank_of.get(token) or int((row > row[token]).sum()) + 1
            entry[str(token)] = {"logprob": float(row[token]), "rank": rank, "decoded_token": tok.decode([token])}
        out.append(entry)
    return out


def echo_logprobs(logp: Any, ids: list[int], k: int, tok: Any, as_ids: bool) -> dict[str, Any]:
    """The legacy completions ``logprobs`` block of an echoed prompt."""
    import torch

    def name(token: int) -> str:
        return f"token_id:{token}" if as_ids else tok.convert_ids_to_tokens(token)

    values: list[Any] = [None]
    tops: list[Any] = [None]
    for i in range(1, len(ids)):
        row = logp[i - 1]
        values.append(float(row[ids[i]]))
        tops.append({name(int(t)): float(row[t]) for t in torch.topk(row, k).indices.tolist()})
    return {
        "tokens": [name(t) for t in ids],
        "token_logprobs": values,
        "top_logprobs": tops,
        "text_offset": list(range(len(ids))),
    }


class Scorer:
    def __init__(self, model_dir: str, mode: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(1)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.name, self.mode, self.lock = model_dir, mode, Lock()

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        import torch

        ids = [int(t) for t in body["prompt"]]
        with self.lock, torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        choice: dict[str, Any] = {
            "index": 0,
            "text": self.tok.decode([int(logp[-1].argmax())]),
            "logprobs": None,
            "finish_reason": "length",
        }
        if self.mode == "prompt_logprobs" and body.get("prompt_logprobs") is not None:
            choice["prompt_logprobs"] = prompt_logprobs(logp, ids, int(body["prompt_logprobs"]), self.tok)
        if self.mode == "echo" and body.get("echo") and body.get("logprobs") is not None:
            choice["logprobs"] = echo_logprobs(
                logp, ids, int(body["logprobs"]), self.tok, bool(body.get("return_tokens_as_token_ids"))
            )
            if body.get("max_tokens") == 0:
                choice["text"] = ""
        return {
            "id": "cmpl-test",
            "object": "text_completion",
            "model": self.name,
            "choices": [choice],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1},
        }


def handler(scorer: Scorer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.reply(200, {"object": "list", "data": [{"id": scorer.name, "object": "model"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if self.path.rstrip("/") != "/v1/completions":
                self.reply(404, {"error": {"message": f"no route {self.path}", "code": 404}})
            elif body.get("model") != scorer.name:
                self.reply(404, {"error": {"message": f"model {body.get('model')!r} does not exist", "code": 404}})
            else:
                self.reply(200, scorer.complete(body))

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--mode", choices=["prompt_logprobs", "echo", "none"], default="prompt_logprobs")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(Scorer(args.model, args.mode)))
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
