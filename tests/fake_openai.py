"""A small OpenAI-compatible chat server for tests and benchmarks, with fault injection.

``FakeOpenAI(responder=..., latency=...)`` serves ``POST /v1/chat/completions`` on 127.0.0.1 with
a free port, counts requests, and answers each request by popping the next fault from ``faults``
(``"429"``, ``"500"``, ``"timeout"``, ``"garbage"``, ``"echo-auth"``) or, when none is queued,
with ``responder(messages)`` as the assistant text. Threaded: concurrent requests overlap.

``port=N`` listens on that port instead of a free one (a server started where a run found
nothing listening).

``capacity=N`` makes it a server of fixed capacity: it works on at most N requests at a time, and
one more is answered ``429`` at once (``over_capacity="429"``, as a rate-limited API) or waits its
turn (``over_capacity="queue"``, as a serial ``transformers serve``: the client times out while it
waits, and the server still works through what it queued). ``in_flight_seen`` records how many
requests were at the server when each one arrived.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def default_responder(messages: list[dict[str, Any]]) -> str:
    """A valid synth reply, distinct per prompt (the query carries a digest of the prompt)."""
    digest = hashlib.sha1(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:10]
    return json.dumps(
        {
            "query": f"Summarize the recording for me, variant {digest}.",
            "summary": f"- The team met and agreed on a plan ({digest}).",
            "importance": 4,
        }
    )


def speech_wav(text: str, sample_rate: int = 16000) -> bytes:
    """A 16-bit mono wav whose length grows with the text (0.05 s per character, >= 0.5 s)."""
    import io
    import wave

    frames = max(int(0.5 * sample_rate), int(0.05 * sample_rate * len(text)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(bytes(2 * frames))
    return buf.getvalue()


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 drops bursts of connects (1 s SYN retry)
    daemon_threads = True


class FakeOpenAI:
    def __init__(
        self,
        responder: Callable[[list[dict[str, Any]]], str] = default_responder,
        *,
        latency: float = 0.0,
        usage: tuple[int, int] | None = None,
        timeout_sleep: float = 3.0,
        capacity: int | None = None,
        over_capacity: str = "429",
        port: int = 0,
    ) -> None:
        if over_capacity not in ("429", "queue"):
            raise ValueError(f"over_capacity must be '429' or 'queue', got {over_capacity!r}")
        self.responder = responder
        self.capacity = capacity
        self.over_capacity = over_capacity
        self.in_flight = 0
        self.in_flight_seen: list[int] = []
        self.rejected = 0
        self.served = 0
        self._workers = threading.BoundedSemaphore(capacity) if capacity else None
        self.latency = latency
        self.usage = usage
        self.timeout_sleep = timeout_sleep
        self.faults: collections.deque[str] = collections.deque()
        self.requests = 0
        self.auth_headers: list[str] = []
        self.speech_inputs: list[str] = []
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", port), self._handler())  # 0: a free port
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, *faults: str) -> None:
        self.faults.extend(faults)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                if fake._workers is None:
                    return self._answer(payload)
                with fake.lock:
                    fake.in_flight += 1
                    fake.in_flight_seen.append(fake.in_flight)
                try:
                    if fake.over_capacity == "429" and not fake._workers.acquire(blocking=False):
                        with fake.lock:
                            fake.requests += 1
                            fake.rejected += 1
                        return self._send(429, b'{"error": {"message": "over capacity"}}')
                    if fake.over_capacity == "queue":
                        fake._workers.acquire()
                    try:
                        self._answer(payload)
                        with fake.lock:
                            fake.served += 1
                    finally:
                        fake._workers.release()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a time-out)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def _answer(self, payload: dict[str, Any]) -> None:
                with fake.lock:
                    fake.requests += 1
                    fake.auth_headers.append(self.headers.get("Authorization", ""))
                    fault = fake.faults.popleft() if fake.faults else None
                if fake.latency:
                    time.sleep(fake.latency)
                if fault == "429":
                    return self._send(429, b'{"error": {"message": "slow down"}}', {"Retry-After": "1"})
                if fault == "500":
                    return self._send(500, b'{"error": {"message": "boom"}}')
                if fault == "echo-auth":
                    msg = json.dumps({"error": {"message": f"bad gateway for {self.headers.get('Authorization')}"}})
                    return self._send(502, msg.encode())
                if fault == "401":
                    msg = json.dumps(
                        {"error": {"message": f"Incorrect API key provided: {self.headers.get('Authorization')}"}}
                    )
                    return self._send(401, msg.encode())
                if fault == "timeout":
                    time.sleep(fake.timeout_sleep)
                if self.path.endswith("/audio/speech"):
                    with fake.lock:
                        fake.speech_inputs.append(payload.get("input", ""))
                    return self._send(200, speech_wav(payload.get("input", "")), {"X-Kind": "audio"})
                messages = payload.get("messages", [])
                text = "this is {not json" if fault == "garbage" else fake.responder(messages)
                prompt_chars = sum(len(m.get("content") or "") for m in messages)
                tin, tout = fake.usage or (max(1, prompt_chars // 4), max(1, len(text) // 4))
                body = json.dumps(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": payload.get("model", "fake"),
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                        ],
                        "usage": {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout},
                    }
                ).encode()
                try:
                    self._send(200, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
