"""A tiny vLLM-shaped ``/v1/chat/completions`` server for tests: a local audio LM REALLY generating
from ``input_audio`` content parts.

    python tests/audio_chat_server.py MODEL_DIR

prints ``PORT <n>`` once it listens on 127.0.0.1. It serves the checkpoint under the name MODEL_DIR
(as ``vllm serve MODEL_DIR`` would): every ``input_audio`` part of the user message is decoded from
its base64 wav with soundfile, and the model (float32, CPU, one request at a time) generates
through speechsum's own family code (:meth:`SpeechLM.generate` / :meth:`SpeechLM.sample`), greedy
at ``temperature`` 0, else sampled with ``top_p`` after ``torch.manual_seed(seed)``; ``n`` choices
come back as vLLM returns them.

Why not ``transformers serve`` (transformers 5.24): it does decode ``input_audio`` parts, but hands
them to the processor's chat template as ``{"type": "audio", "url": ...}``, which Qwen2-Audio's
template (it looks for an ``audio`` / ``audio_url`` key) does not render: the request fails with
HTTP 500 "Found total 0 <|AUDIO|> tokens and 1 audio inputs" (tried on the tiny qwen2_audio model).
It also cannot count the requests it answered, the audio it heard, or fail on purpose, which the
tests assert on.

Test-only routes: ``GET /stats`` lists every chat request received (its audio parts' durations and
sampling rate, its text, its sampling fields, and the status it got); ``POST /control`` sets
faults: ``{"fail": N, "status": 500}`` answers the next N chat requests with that status (429s
carry ``retry-after-ms: 50``), ``{"fail_text_only": 503}`` answers every text-only request so,
``{"no_audio": true}`` refuses audio like a text-only model served by vLLM (HTTP 400),
``{"ignore_n": true}`` returns one choice whatever ``n`` asks (as ``transformers serve`` does).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock
from typing import Any


class Generator:
    def __init__(self, model_dir: str) -> None:
        import torch

        from speechsum_cli.families import load

        torch.set_num_threads(1)
        self.lm = load(model_dir, device="cpu", dtype="float32")
        self.name, self.lock = model_dir, Lock()
        self.received: list[dict[str, Any]] = []
        self.faults: dict[str, Any] = {}

    def parse(self, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The speechsum Prompt the chat messages carry, and what the request held (for /stats)."""
        import numpy as np
        import soundfile as sf
        import soxr

        from speechsum_cli.families import Prompt

        system, text, windows, seconds, rates = None, "", [], [], []
        for message in body["messages"]:
            content = message["content"]
            if message["role"] == "system":
                system = content
                continue
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for part in parts:
                if part["type"] == "text":
                    text += part["text"]
                elif part["type"] == "input_audio":
                    data, sr = sf.read(io.BytesIO(base64.b64decode(part["input_audio"]["data"])), dtype="float32")
                    seconds.append(len(data) / sr)
                    rates.append(sr)
                    if sr != self.lm.sampling_rate:
                        data = soxr.resample(data, sr, self.lm.sampling_rate).astype(np.float32)
                    windows.append(data)
        audio = None if not windows else windows[0] if len(windows) == 1 else windows
        seen = {
            "audio_seconds": seconds,
            "sample_rates": rates,
            "text": text,
            **{k: body.get(k) for k in ("model", "temperature", "top_p", "seed", "n", "max_tokens")},
        }
        return Prompt(query=text, audio=audio, system=system), seen

    def complete(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        import torch

        from speechsum_cli.families import GenerationSettings

        with self.lock:
            prompt, seen = self.parse(body)
            self.received.append(seen)
            faults = self.faults
            status, headers = 200, {}
            if faults.get("fail", 0) > 0:
                faults["fail"] -= 1
                status = int(faults.get("status", 500))
                headers = {"retry-after-ms": "50"} if status == 429 else {}
            elif faults.get("fail_text_only") and prompt.audio is None:
                status = int(faults["fail_text_only"])
            elif faults.get("no_audio") and prompt.audio is not None:
                status = 400
            elif body.get("model") != self.name:
                status = 404
            seen["status"] = status
            if status == 400:
                return (
                    status,
                    {
                        "error": {
                            "message": f"{self.name} is not a multimodal model: it does not take audio input",
                            "type": "BadRequestError",
                            "code": 400,
                        }
                    },
                    {},
                )
            if status == 404:
                return (
                    status,
                    {
                        "error": {
                            "message": f"The model `{body.get('model')}` does not exist.",
                            "type": "NotFoundError",
                            "code": 404,
                        }
                    },
                    {},
                )
            if status != 200:
                return status, {"error": {"message": f"injected fault {status}", "code": status}}, headers
            temperature = float(body.get("temperature") or 0.0)
            settings = GenerationSettings(
                int(body.get("max_tokens") or 16), temperature, float(body.get("top_p") or 1.0)
            )
            n = 1 if faults.get("ignore_n") else int(body.get("n") or 1)
            if temperature > 0 and body.get("seed") is not None:
                torch.manual_seed(int(body["seed"]))
            texts = self.lm.sample([prompt], settings, n, [0])[0] if n > 1 else self.lm.generate([prompt], settings)
        tokens = sum(len(self.lm.tokenizer(t)["input_ids"]) for t in texts)
        return (
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": self.name,
                "choices": [
                    {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                    for i, t in enumerate(texts)
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
            },
            {},
        )


def handler(gen: Generator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def reply(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/stats":
                self.reply(200, {"requests": gen.received})
            else:
                self.reply(200, {"object": "list", "data": [{"id": gen.name, "object": "model"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if self.path.rstrip("/") == "/control":
                with gen.lock:
                    gen.faults = body
                    if body.get("reset"):
                        gen.received.clear()
                self.reply(200, {"ok": True})
            elif self.path.rstrip("/") != "/v1/chat/completions":
                self.reply(404, {"error": {"message": f"no route {self.path}", "code": 404}})
            else:
                self.reply(*gen.complete(body))

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(Generator(args.model)))
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
