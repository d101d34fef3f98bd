"""What does the frozen-encoder feature cache buy per training step, and is the loss unchanged?

An sft step (collate -> forward -> answer-token loss -> backward -> AdamW step) is timed with the
encoder run every step (A) and served from a warm feature cache (B), alternately A, B, A, B on the
same batches in one process, so load from other processes hits both alike. The learning rate is 0,
so both see the same weights and their losses must agree (to float tolerance: the cache stores the
encoder's exact float32 output).

Default model: the mini recipe's student shape, built offline from configs with random weights
(same FLOPs as the real one): a Whisper-base-sized encoder (d 512, 6 layers) in the Voxtral layout
with a 16 s window, and a SmolLM2-135M-sized LM (576 wide, 30 layers), LoRA r16 on the LM. Or
``--model DIR``: any checkpoint of a family the cache serves (e.g. runs/mini/student).

    python benchmarks/feature_cache_step.py                   # 8 rows of ~12 s, 4 pairs
    python benchmarks/feature_cache_step.py --model runs/mini/student --pairs 6
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEECH = (
    "Good morning everyone. Alice Chen opened the budget review at nine. The team agreed to move "
    "the launch to March fourteenth and to hire three engineers. Bob will send the contract."
)
SUMMARY = "The team moved the launch to March fourteenth and will hire three engineers."


def build_student(folder: Path) -> Path:
    """A randomly initialised voxtral checkpoint shaped like the mini student (offline)."""
    from transformers import (
        GenerationConfig,
        VoxtralConfig,
        VoxtralForConditionalGeneration,
        VoxtralProcessor,
        WhisperFeatureExtractor,
    )

    from speechsum_cli.families.tiny import seed_everything, tiny_tokenizer
    from speechsum_cli.families.voxtral import AUDIO_TOKEN, CHAT_TEMPLATE, SPECIAL_TOKENS

    words = sorted(set(SPEECH.replace(".", "").split() + SUMMARY.replace(".", "").split()))
    tok = tiny_tokenizer(
        list(SPECIAL_TOKENS) + words,
        chat_template=CHAT_TEMPLATE,
        eos_token="</s>",
        pad_token="<pad>",
        bos_token="<s>",
        unk_token="<unk>",
    )
    fe = WhisperFeatureExtractor(feature_size=80, chunk_length=16)
    config = VoxtralConfig(
        audio_config={
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_hidden_layers": 6,
            "num_attention_heads": 8,
            "num_mel_bins": 80,
            "max_source_positions": 800,
        },
        text_config={
            "model_type": "llama",
            "hidden_size": 576,
            "intermediate_size": 1536,
            "num_hidden_layers": 30,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "head_dim": 64,
            "vocab_size": 49152,
            "max_position_embeddings": 2048,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
            "tie_word_embeddings": True,
        },
        audio_token_id=tok.convert_tokens_to_ids(AUDIO_TOKEN),
    )
    seed_everything(0)
    model = VoxtralForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(folder)
    VoxtralProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(folder)
    return folder


def make_rows(folder: Path, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        wav = folder / f"speech{i}.wav"
        subprocess.run(["espeak-ng", "-s", str(150 + 5 * i), "-w", str(wav), SPEECH], check=True)
        rows.append(
            {
                "id": f"r{i}",
                "audio": str(wav),
                "query": "Summarize the recording.",
                "summary": SUMMARY,
                "truncate": False,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="checkpoint (default: a random mini-student-shaped voxtral)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=4, help="A/B step pairs timed")
    args = parser.parse_args()

    import torch

    from speechsum_cli.families import load
    from speechsum_cli.inference import feature_cache as fc
    from speechsum_cli.stages.sft import SpeechCollator
    from speechsum_cli.training.model import prepare_model
    from speechsum_cli.training.settings import SFT_DEFAULTS
    from speechsum_cli.training.trainer import answer_token_loss

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = args.model or str(build_student(folder / "student"))
        lm = load(source, device="cpu", dtype="float32")
        rows = make_rows(folder, args.batch_size)
        model = prepare_model(lm.model, lm.family, SFT_DEFAULTS, source)
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)
        collate = SpeechCollator(lm, lm.window_seconds)
        cache = fc.FeatureCache(folder / "cache")
        encoder = fc.encoder_module(model, lm.family)

        def step(cached: bool) -> tuple[float, float]:
            if cached:
                fc.attach(model, lm.family, cache)
            start = time.perf_counter()
            inputs = collate(rows)
            labels = inputs.pop("labels")
            loss = answer_token_loss(model(**inputs), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - start
            if cached:
                encoder.forward.detach()
            return seconds, loss.item()

        step(True)  # warm the cache (and the allocator) before timing
        times: dict[str, list[float]] = {"encoder": [], "cache": []}
        losses: dict[str, list[float]] = {"encoder": [], "cache": []}
        for _ in range(args.pairs):
            for name in ("encoder", "cache"):
                seconds, loss = step(name == "cache")
                times[name].append(seconds)
                losses[name].append(loss)
        ratios = [a / b for a, b in zip(times["encoder"], times["cache"])]
        diff = max(abs(a - b) for a, b in zip(losses["encoder"], losses["cache"]))
        print(
            "model: "
            + (source if args.model else "random mini-student shape (whisper-base encoder, 16 s, smollm2-135m LM)")
        )
        print(
            f"batch: {args.batch_size} rows of ~{len(SPEECH.split()) / 2.6:.0f} s speech, LoRA r16, {args.pairs} A/B "
            f"pairs"
        )
        for name, seconds in times.items():
            print(
                f"  {name:8s} median step {statistics.median(seconds):.2f} s  "
                f"({', '.join(f'{t:.2f}' for t in seconds)})"
            )
        print(
            f"step-time ratio encoder/cache per pair: {', '.join(f'{r:.2f}' for r in ratios)}; "
            f"median {statistics.median(ratios):.2f}x"
        )
        print(
            f"cache hits {cache.stats.hits}, misses {cache.stats.misses}; max |loss(encoder) - loss(cache)| = "
            f"{diff:.2e}"
        )
        return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
