"""A rule-based stand-in for an LLM: a tiny OpenAI-compatible server for the offline quickstart.

    python examples/extractive_llm_server.py --port 8765 [--host 127.0.0.1]

THIS IS NOT A LANGUAGE MODEL. It answers `POST /v1/chat/completions` deterministically with rules,
so the quickstart runs offline without downloading an LLM (a tiny random model served with
`transformers serve` cannot write valid JSON). It recognises speechsum's three prompts:

* synth (speechsum_cli/prompts/synth.json): a JSON {query, summary, importance} whose summary is
  *extractive* — the transcript's first sentences, shaped as the requested style and length;
* the pairwise judge (prompts/pairwise.json): {better: A|B|tie, rationale}, decided with
  speechsum_cli.metrics (unsupported numbers/names first, then repetition, then style) — the same
  ranking as `speechsum pairs --judge offline`, so both orders give consistent verdicts;
* the rubric judge (prompts/judge.json): 1-7 scores derived from the same metrics.

Replace it with a real LLM for real data: pass your endpoint and model to `--base-url/--llm`
(synth) and `--judge-base-url/--judge-model` (pairs and eval).
Also serves `GET /v1/models` and `GET /health`. Standard library only (plus speechsum's metrics).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from speechsum_cli.metrics.faithfulness import unsupported_content
from speechsum_cli.metrics.judge import pairwise_prompt, rubric
from speechsum_cli.metrics.preference import offline_key
from speechsum_cli.metrics.repetition import repeated_ngram_rate, repeated_sentences, words
from speechsum_cli.metrics.scores import offline_scores
from speechsum_cli.prompts.styles import styles
from speechsum_cli.prompts.synth import synth_data

MODEL_NAME = "extractive-rules"
BLOCK = re.compile(r"<<<\n(.*?)\n>>>", re.S)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def clip_words(text: str, limit: int | None) -> str:
    tokens = text.split()
    if limit is None or len(tokens) <= limit:
        return text
    return " ".join(tokens[:limit]).rstrip(",;:") + "."


def first_int(text: str) -> int | None:
    m = re.search(r"\d+", text)
    return int(m.group()) if m else None


# ---------------------------------------------------------------- synth
def synth_reply(user: str) -> dict[str, Any]:
    transcript = re.search(r"<transcript>\n(.*?)\n</transcript>", user, re.S).group(1)
    style_desc = re.search(r"- output style: (.*?); the summary must", user).group(1)
    length = re.search(r"- length: (.*)", user).group(1).strip()
    focus = re.search(r"- focus: (.*)", user).group(1).strip()
    fmt = next((s.format for s in styles().values() if s.description == style_desc), "paragraph")
    sents = sentences(transcript)
    limit = first_int(length)
    if fmt in ("bullets", "chapters"):
        n = min(limit or 3, 3, len(sents))
        if fmt == "bullets":
            lines = [f"- {clip_words(s, 12 if 'words each' in length else None)}" for s in sents[:n]]
        else:
            lines = [f"- Part {i + 1}: {s}" for i, s in enumerate(sents[:n])]
        summary = "\n".join(lines)
    elif fmt == "sentence":
        summary = clip_words(sents[0], limit)
    else:
        summary = clip_words(" ".join(sents[:2]), limit if "words" in length else None)
    focus_short = focus.split(" (")[0]
    query = f"Could you give me {style_desc} of this recording ({length}), about {focus_short}?"
    return {"query": query, "summary": summary, "importance": 4}


# ---------------------------------------------------------------- judges
def infer_style(query: str) -> str:
    """The preset a query most likely asks for (style compliance is only checked for these)."""
    q = query.lower()
    for key, name in (
        ("action item", "action-items"),
        ("decision", "decisions"),
        ("chapter", "chapters"),
        ("tl;dr", "tldr"),
        ("one-sentence", "tldr"),
        ("bullet", "bullets"),
        ("paragraph", "paragraph"),
    ):
        if key in q:
            return name
    return ""


def pairwise_reply(user: str) -> dict[str, Any]:
    transcript, query, a, b = BLOCK.findall(user)[:4]
    row = {"transcript": transcript, "style": infer_style(query)}
    ka, kb = offline_key(offline_scores(a, row)), offline_key(offline_scores(b, row))
    if ka == kb:
        return {
            "better": "tie",
            "rationale": "Rule-based stand-in: equal on unsupported content, repetition and style.",
        }
    better = "A" if ka > kb else "B"
    return {
        "better": better,
        "rationale": "Rule-based stand-in: fewer unsupported names/numbers, "
        "then less repetition, then style compliance.",
    }


def clamp(x: float) -> int:
    return max(1, min(7, round(x)))


def judge_reply(user: str) -> dict[str, Any]:
    transcript, query, summary = BLOCK.findall(user)[:3]
    unsupported = unsupported_content(summary, transcript)
    said = {w.lower() for w in words(transcript)}
    summary_words = [w.lower() for w in words(summary)]
    grounded = sum(w in said for w in summary_words) / max(1, len(summary_words))
    repetition = repeated_ngram_rate(summary) + 0.2 * repeated_sentences(summary)
    row = {"transcript": transcript, "style": infer_style(query)}
    style_ok = offline_scores(summary, row).get("style_ok", 1.0) if summary.strip() else 0.0
    scores = {
        "accuracy": clamp(1 + 6 * grounded - unsupported.count),
        "coherence": clamp(7 - 6 * repetition) if summary_words else 1,
        "style": 6 if style_ok else 3,
        "hallucination": clamp(7 - 2 * unsupported.count),
        "instruction_following": clamp(2 + 4 * grounded) if summary_words else 1,
    }
    scores["overall"] = clamp(min(scores.values()) * 0.5 + sum(scores.values()) / len(scores) * 0.5)
    assert set(scores) >= set(rubric()["aspects"])
    return {
        **scores,
        "invented_facts": unsupported.items,
        "rationale": "Rule-based stand-in: scores from unsupported content, word overlap, repetition and style.",
    }


def answer(messages: list[dict[str, Any]]) -> dict[str, Any]:
    system = next((m["content"] for m in messages if m.get("role") == "system"), "")
    user = "\n".join(m["content"] for m in messages if m.get("role") == "user" and isinstance(m.get("content"), str))
    if system == synth_data()["system"]:
        return synth_reply(user)
    if system == pairwise_prompt()["system"]:
        return pairwise_reply(user)
    if system == rubric()["system"]:
        return judge_reply(user)
    raise ValueError("not a speechsum synth/pairwise/judge prompt; this rule-based server answers only those")


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/") in ("/health", "/v1/models"):
            self._send(
                200, {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "owned_by": "speechsum"}]}
            )
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            messages = body["messages"]
            content = json.dumps(answer(messages))
        except Exception as exc:  # a client error, reported the OpenAI way
            self._send(400, {"error": {"message": f"{type(exc).__name__}: {exc}", "type": "invalid_request_error"}})
            return
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 for m in messages)
        self._send(
            200,
            {
                "id": f"chatcmpl-{time.monotonic_ns()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or MODEL_NAME,
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(content) // 4,
                    "total_tokens": prompt_tokens + len(content) // 4,
                },
            },
        )

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet: one line per request is noise
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description="Rule-based OpenAI-compatible stand-in for an LLM (not a model).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(
        f"extractive_llm_server: rule-based stand-in for an LLM (NOT a model) on "
        f"http://{args.host}:{args.port}/v1 — use a real LLM for real data",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
