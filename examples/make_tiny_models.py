"""Build the quickstart's tiny random models offline (no hub download):

    python examples/make_tiny_models.py OUT_DIR

  OUT_DIR/whisper   a tiny Whisper (config only, random weights; 30 s window)
  OUT_DIR/text-lm   a tiny Llama chat text LM with speechsum's byte-level tokenizer (the teacher)

The student is then built around the teacher's LLM, so the two share a tokenizer (distill needs it):

    speechsum compose --encoder OUT_DIR/whisper --llm OUT_DIR/text-lm --family qwen2_audio --out OUT_DIR/student

Random weights write nonsense: these models prove the pipeline runs, not that it summarizes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechsum_cli.fs import staged_dir

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def save_whisper(path: Path) -> None:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from speechsum_cli.families.tiny import seed_everything

    config = WhisperConfig(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        max_source_positions=1500,
        max_target_positions=64,
        vocab_size=100,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
    )
    seed_everything(1)
    with staged_dir(path) as tmp:  # ordinary permissions as stage outputs (safetensors: 0600)
        WhisperForConditionalGeneration(config).save_pretrained(tmp)


def save_text_lm(path: Path) -> None:
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from speechsum_cli.families.tiny import seed_everything, tiny_tokenizer

    tok = tiny_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        chat_template=CHAT_TEMPLATE,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    # A wider initializer gives the random teacher context-dependent (peaked) predictions, so the
    # distillation loss is not ~0 from the start.
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=0.2,
    )
    seed_everything(3)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with staged_dir(path) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def main() -> int:
    parser = argparse.ArgumentParser(description="Build the quickstart's tiny random Whisper and text LM.")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    save_whisper(args.out / "whisper")
    save_text_lm(args.out / "text-lm")
    print(f"tiny random models in {args.out}: whisper/ (encoder) and text-lm/ (teacher LLM)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
