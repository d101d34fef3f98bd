"""`speechsum compose`: tiny Whisper + tiny Llama -> a native checkpoint of each composable family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.data.audio import load_audio
from speechsum_cli.families import Prompt, load
from speechsum_cli.families.tiny import seed_everything, tiny_tokenizer
from speechsum_cli.stages.compose import (
    AUDIO_PRELUDE,
    choose_template,
    composable_families,
    parse_llm_source,
)
from tests.conftest import speech_of_duration

COMPOSABLE = ["audioflamingo3", "qwen2_audio", "voxtral"]
WHISPER_POSITIONS = 500  # 10 s of audio
runner = CliRunner()

LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
"""A Llama-3-style text-only template: it prints a content list as its Python repr."""


def save_tiny_whisper(path: Path, *, positions: int = WHISPER_POSITIONS, ffn: int = 64) -> Path:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        max_source_positions=positions,
        max_target_positions=64,
        vocab_size=100,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
    )
    seed_everything(1)
    WhisperForConditionalGeneration(config).save_pretrained(path)
    return path


def save_tiny_llama(path: Path, *, template: str | None, tied: bool) -> Path:
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    specials = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
    tok = tiny_tokenizer(
        specials,
        chat_template=template or "",
        eos_token="<|eot_id|>",
        pad_token="<|eot_id|>",
        bos_token="<|begin_of_text|>",
    )
    if template is None:
        tok.chat_template = None
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        vocab_size=len(tok),
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=tied,
    )
    seed_everything(2)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("compose-parts")
    return {
        "whisper": save_tiny_whisper(root / "whisper"),
        "llama": save_tiny_llama(root / "llama", template=LLAMA_TEMPLATE, tied=False),
        "llama_plain": save_tiny_llama(root / "llama-plain", template=None, tied=True),
    }


@pytest.fixture(scope="module")
def composed(parts, tmp_path_factory):
    """``composed(family)`` -> checkpoint composed through the CLI (once per family)."""
    root = tmp_path_factory.mktemp("composed")
    built: dict[str, Path] = {}

    def build(family: str) -> Path:
        if family not in built:
            out = root / family
            result = compose(
                "--family", family, "--encoder", str(parts["whisper"]), "--llm", str(parts["llama"]), "--out", str(out)
            )
            assert result.exit_code == 0, result.output
            built[family] = out
        return built[family]

    return build


def compose(*args: str):
    return runner.invoke(app, ["compose", *args])


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.state_dict().items()}


def test_composable_families_are_the_ones_the_issue_names():
    assert composable_families() == COMPOSABLE


@pytest.mark.parametrize("family", COMPOSABLE)
def test_composed_checkpoint_holds_the_whisper_encoder_and_the_llama_weights(family, composed, parts):
    from transformers import (
        AutoConfig,
        AutoTokenizer,
        LlamaForCausalLM,
        WhisperForConditionalGeneration,
    )

    out = composed(family)
    lm = load(str(out), device="cpu", dtype="float32")
    assert lm.family.model_type == family
    assert AutoConfig.from_pretrained(out).model_type == family
    model = lm.model
    whisper = WhisperForConditionalGeneration.from_pretrained(parts["whisper"]).model.encoder
    llama = LlamaForCausalLM.from_pretrained(parts["llama"])

    encoder = state(model.get_submodule(lm.family.audio_encoder_prefixes[0]))
    expected = state(whisper)
    assert sorted(encoder) == sorted(expected)
    for name, tensor in expected.items():
        if name == "embed_positions.weight":  # the full table covers the encoder's 10 s
            assert torch.equal(encoder[name], tensor[:WHISPER_POSITIONS])
        else:
            assert torch.equal(encoder[name], tensor), name

    rows = llama.config.vocab_size
    language_model = state(model.get_submodule(lm.family.language_model_prefix))
    for name, tensor in state(llama.model).items():
        mine = language_model[name]
        if name == "embed_tokens.weight":
            assert mine.shape[0] > rows  # placeholder tokens were added
            mine = mine[:rows]
        assert torch.equal(mine, tensor), name
    assert torch.equal(model.get_output_embeddings().weight[:rows], llama.lm_head.weight)

    tok = AutoTokenizer.from_pretrained(out)
    assert tok.convert_tokens_to_ids(lm.family.audio_placeholder) == model.config.audio_token_id
    assert model.config.audio_token_id >= rows
    assert tok(lm.family.audio_placeholder, add_special_tokens=False)["input_ids"] == [model.config.audio_token_id]
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    assert lm.window_seconds == 10


@pytest.mark.parametrize("family", COMPOSABLE)
def test_composed_checkpoint_loads_in_plain_transformers(family, composed):
    from transformers import (
        AutoConfig,
        AutoModelForMultimodalLM,
        AutoModelForSeq2SeqLM,
        AutoProcessor,
        AutoTokenizer,
    )

    out = composed(family)
    config = AutoConfig.from_pretrained(out)
    # transformers 5.24 registers Audio Flamingo 3 under the seq2seq auto class, not the multimodal one
    auto = AutoModelForSeq2SeqLM if family == "audioflamingo3" else AutoModelForMultimodalLM
    model = auto.from_pretrained(out)
    assert (
        type(model).__name__
        == {
            "qwen2_audio": "Qwen2AudioForConditionalGeneration",
            "voxtral": "VoxtralForConditionalGeneration",
            "audioflamingo3": "AudioFlamingo3ForConditionalGeneration",
        }[family]
    )
    processor = AutoProcessor.from_pretrained(out)
    assert processor.feature_extractor.feature_size == config.audio_config.num_mel_bins == 80
    assert processor.feature_extractor.chunk_length == 10
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == processor.tokenizer.chat_template
    assert tok.chat_template.endswith(LLAMA_TEMPLATE)


@pytest.mark.parametrize("family", COMPOSABLE)
def test_composed_checkpoint_keeps_the_llm_chat_format_with_audio_and_records_lineage(family, composed, parts):
    out = composed(family)
    lm = load(str(out), device="cpu", dtype="float32")
    prompt = Prompt("Summarize.", audio=torch.zeros(16000).numpy(), answer="Short.")
    text = lm.family.render(lm.processor, prompt, with_answer=True)
    assert text.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n")
    assert lm.family.audio_content in text and text.endswith("Short.<|eot_id|>")

    manifest = json.loads((out / "speechsum.json").read_text())
    assert manifest["stage"] == "compose"
    lineage = manifest["lineage"]
    assert lineage["encoder"]["source"] == str(parts["whisper"])
    assert lineage["llm"]["source"] == str(parts["llama"])
    assert lineage["chat_template"] == "llm+audio"
    assert lineage["added_tokens"] == list(lm.family.compose_tokens)
    assert manifest["counts"]["encoder_positions_dropped"] == 0


@pytest.mark.parametrize("family", COMPOSABLE)
def test_composed_checkpoint_summarizes_speech(family, composed, speech_wav):
    result = runner.invoke(
        app,
        [
            "summarize",
            str(speech_wav),
            "--model",
            str(composed(family)),
            "--max-new-tokens",
            "4",
            "--no-progress",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["encoded_seconds"] == pytest.approx(report["duration"], abs=1e-3)


@pytest.mark.parametrize("family", COMPOSABLE)
def test_composed_checkpoint_trains_its_projector(family, composed, speech_wav):
    lm = load(str(composed(family)), device="cpu", dtype="float32")
    audio = load_audio(speech_wav, lm.sampling_rate)[: int(lm.window_seconds * lm.sampling_rate)]
    batch = lm.encode([Prompt("Summarize the recording.", audio=audio, answer="Budget review.")])
    projector = lm.model.get_submodule(lm.family.projector_prefixes[0])
    before = {k: v.clone() for k, v in projector.state_dict().items()}
    optimizer = torch.optim.SGD(projector.parameters(), lr=0.1)
    lm.model.train()
    loss = lm.model(**lm.to_model(batch.inputs)).loss
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    after = projector.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("family", COMPOSABLE)
def test_composed_checkpoint_trains_with_speechsum_sft(family, composed, tmp_path):
    from safetensors.torch import load_file

    rows = []
    for i in range(4):
        audio = speech_of_duration(tmp_path / f"clip{i}.wav", 2.0 + i, workdir=tmp_path)
        rows.append(
            {
                "id": f"row{i}",
                "audio": str(audio),
                "query": "Summarize the recording.",
                "summary": "Alice opened the budget review.",
            }
        )
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    base, out = composed(family), tmp_path / "sft"

    result = runner.invoke(
        app,
        [
            "sft",
            "--data",
            str(data),
            "--model",
            str(base),
            "--out",
            str(out),
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--lr",
            "1e-2",
            "--json",
        ],
    )

    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "speechsum.json").read_text())
    assert manifest["metrics"]["global_step"] == 2
    assert [i.get("manifest", {}).get("stage") for i in manifest["inputs"]] == [None, "compose"]
    adapter = load_file(out / "adapter_model.safetensors")
    assert any("lora_" in name for name in adapter)
    assert any("multi_modal_projector" in name for name in adapter)


def test_the_same_seed_composes_the_same_weights_and_another_seed_other_ones(parts, tmp_path):
    """Every random draw of compose is seeded: the projector AND the new tokens' embedding rows (drawn
    around the mean embedding), so one command gives one checkpoint."""
    from safetensors.torch import load_file

    def weights(seed: str, name: str) -> dict[str, torch.Tensor]:
        out = tmp_path / name
        result = compose(
            "--family",
            "qwen2_audio",
            "--encoder",
            str(parts["whisper"]),
            "--llm",
            str(parts["llama"]),
            "--out",
            str(out),
            "--seed",
            seed,
        )
        assert result.exit_code == 0, result.output
        return load_file(str(out / "model.safetensors"))

    first, again, other = weights("3", "a"), weights("3", "b"), weights("4", "c")
    assert all(torch.equal(first[k], again[k]) for k in first)
    embeddings = next(k for k in first if k.endswith("embed_tokens.weight"))
    rows = int(json.loads((tmp_path / "a" / "speechsum.json").read_text())["counts"].get("tokens_added", 1))
    assert not torch.equal(first[embeddings][-rows:], other[embeddings][-rows:])


def test_window_cuts_the_positional_table_and_the_feature_extractor(parts, tmp_path):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    out = tmp_path / "short"
    result = compose(
        "--family",
        "qwen2_audio",
        "--encoder",
        str(parts["whisper"]),
        "--llm",
        str(parts["llama"]),
        "--out",
        str(out),
        "--window-seconds",
        "4",
    )
    assert result.exit_code == 0, result.output
    model = Qwen2AudioForConditionalGeneration.from_pretrained(out)
    assert model.config.audio_config.max_source_positions == 200
    assert model.model.audio_tower.embed_positions.weight.shape[0] == 200
    processor = AutoProcessor.from_pretrained(out)
    assert processor.feature_extractor.chunk_length == 4
    assert processor.feature_extractor.feature_size == 80
    manifest = json.loads((out / "speechsum.json").read_text())
    assert manifest["counts"]["encoder_positions_dropped"] == 300
    assert load(str(out), device="cpu").window_seconds == 4


def test_llm_without_chat_template_gets_the_family_template_and_untied_head(parts, tmp_path):
    from transformers import LlamaForCausalLM

    out = tmp_path / "plain"
    result = compose(
        "--family",
        "qwen2_audio",
        "--encoder",
        str(parts["whisper"]),
        "--llm",
        str(parts["llama_plain"]),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "<|im_start|>" in result.stderr and "chat template: family" in result.stderr
    lm = load(str(out), device="cpu", dtype="float32")
    llama = LlamaForCausalLM.from_pretrained(parts["llama_plain"])
    rows = llama.config.vocab_size
    # The Llama ties lm_head to its embeddings; the composed model carries an untied copy.
    assert torch.equal(lm.model.get_output_embeddings().weight[:rows], llama.model.embed_tokens.weight)
    text = lm.family.render(lm.processor, Prompt("Hi.", audio=torch.zeros(1600).numpy()), with_answer=False)
    assert "<|im_start|>user\n" in text and "<|audio_bos|><|AUDIO|><|audio_eos|>" in text
    im_end = lm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in lm.stop_token_ids()


def test_summary_on_stderr_names_parameters_and_added_tokens(parts, tmp_path):
    result = compose(
        "--family",
        "voxtral",
        "--encoder",
        str(parts["whisper"]),
        "--llm",
        str(parts["llama"]),
        "--out",
        str(tmp_path / "v"),
    )
    assert result.exit_code == 0, result.output
    from transformers import WhisperForConditionalGeneration

    whisper = WhisperForConditionalGeneration.from_pretrained(parts["whisper"]).model.encoder
    encoder_params = sum(p.numel() for p in whisper.parameters())
    projector_params = 64 * 32 + 32 * 32  # voxtral: linear(intermediate -> hidden), linear(hidden -> hidden)
    assert f"encoder {encoder_params:,} · projector {projector_params:,} (random)" in result.stderr
    assert "[INST], [/INST], [AUDIO], [BEGIN_AUDIO]" in result.stderr
    assert result.stdout.strip() == str(tmp_path / "v")


def test_json_prints_the_result_as_one_object(parts, tmp_path):
    result = compose(
        "--family",
        "qwen2_audio",
        "--encoder",
        str(parts["whisper"]),
        "--llm",
        str(parts["llama"]),
        "-o",
        str(tmp_path / "q"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["out"] == str(tmp_path / "q") and printed["family"] == "qwen2_audio"
    assert set(printed["parameters"]) == {"encoder", "projector", "language_model"}
    assert printed["added_tokens"] and printed["vocab_size"][1] > printed["vocab_size"][0]
    assert printed["window_seconds"] == 10  # all 500 positions of the tiny encoder


# --- bad input ------------------------------------------------------------------------------


def test_encoder_that_is_not_whisper_is_refused_before_loading(parts, tmp_path):
    result = compose(
        "--family",
        "qwen2_audio",
        "--encoder",
        str(parts["llama"]),
        "--llm",
        str(parts["llama"]),
        "--out",
        str(tmp_path / "x"),
    )
    assert result.exit_code == 1
    assert f"--encoder '{parts['llama']}' is a 'llama' checkpoint" in result.output
    assert not (tmp_path / "x").exists()


def test_missing_encoder_directory_is_named(parts, tmp_path):
    missing = tmp_path / "no-such-whisper"
    result = compose(
        "--family", "qwen2_audio", "--encoder", str(missing), "--llm", str(parts["llama"]), "--out", str(tmp_path / "x")
    )
    assert result.exit_code == 1
    assert f"--encoder '{missing}': no such directory." in result.output


def test_llm_that_is_not_causal_is_refused(parts, tmp_path):
    result = compose(
        "--family",
        "qwen2_audio",
        "--encoder",
        str(parts["whisper"]),
        "--llm",
        str(parts["whisper"]),
        "--out",
        str(tmp_path / "x"),
    )
    assert result.exit_code == 1
    assert f"--llm '{parts['whisper']}' is not a decoder-only causal LM: model_type 'whisper'" in result.output


def test_masked_lm_is_refused_as_llm(tmp_path):
    from transformers import BertConfig

    BertConfig(architectures=["BertForMaskedLM"]).save_pretrained(tmp_path / "bert")
    result = compose(
        "--family",
        "voxtral",
        "--encoder",
        str(tmp_path / "bert"),
        "--llm",
        str(tmp_path / "bert"),
        "--out",
        str(tmp_path / "x"),
    )
    assert result.exit_code == 1  # the encoder is checked first
    assert "is a 'bert' checkpoint" in result.output


def test_unknown_family_lists_the_composable_ones(parts, tmp_path):
    result = compose(
        "--family",
        "phi4_multimodal",
        "--encoder",
        str(parts["whisper"]),
        "--llm",
        str(parts["llama"]),
        "--out",
        str(tmp_path / "x"),
    )
    assert result.exit_code == 1
    assert "--family 'phi4_multimodal' cannot be composed" in result.output
    assert "Choose one of: audioflamingo3, qwen2_audio, voxtral." in result.output


def test_window_beyond_the_encoder_positions_is_refused(parts, tmp_path):
    result = compose(
        "--family",
        "voxtral",
        "--encoder",
        str(parts["whisper"]),
        "--llm",
        str(parts["llama"]),
        "--out",
        str(tmp_path / "x"),
        "--window-seconds",
        "11",
    )
    assert result.exit_code == 1
    assert "--window-seconds 11 is beyond what the encoder" in result.output
    assert "500 positions cover 10 s of audio. Pass --window-seconds 10 or less." in result.output


def test_voxtral_window_must_hold_whole_projector_groups(parts, tmp_path):
    """Whisper's FFN is 4 x d_model, so Voxtral folds 4 positions (80 ms) into one embedding."""
    whisper = save_tiny_whisper(tmp_path / "whisper-ffn4", ffn=128)
    args = ["--family", "voxtral", "--encoder", str(whisper), "--llm", str(parts["llama"])]
    result = compose(*args, "--out", str(tmp_path / "odd"), "--window-seconds", "5")
    assert result.exit_code == 1
    assert "max_source_positions (250) is not a multiple of the projector's frame group (4)" in result.output
    assert "Choose another --window-seconds." in result.output
    assert compose(*args, "--out", str(tmp_path / "even"), "--window-seconds", "4").exit_code == 0
    assert load(str(tmp_path / "even"), device="cpu").encode(
        [Prompt("Hi.", audio=torch.zeros(16000).numpy())]
    ).audio_tokens == [50]


def test_existing_output_needs_overwrite(parts, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = [
        "--family",
        "qwen2_audio",
        "--encoder",
        str(parts["whisper"]),
        "--llm",
        str(parts["llama"]),
        "--out",
        str(out),
    ]
    result = compose(*args)
    assert result.exit_code == 1
    assert f"output '{out}' already exists" in result.output and "--overwrite" in result.output
    assert (out / "keep.txt").read_text() == "mine"
    assert compose(*args, "--overwrite").exit_code == 0
    assert not (out / "keep.txt").exists() and (out / "speechsum.json").is_file()


def write_tiny_gguf(llama_dir: Path, path: Path) -> Path:
    """The tiny Llama as an F32 GGUF file, written with gguf-py the way llama.cpp converts it."""
    gguf = pytest.importorskip("gguf")
    import numpy as np
    from transformers import AutoTokenizer, LlamaForCausalLM

    model, tok = LlamaForCausalLM.from_pretrained(llama_dir), AutoTokenizer.from_pretrained(llama_dir)
    c = model.config

    def permute(w: np.ndarray, heads: int) -> np.ndarray:  # llama.cpp's rotary layout for q/k
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_key_length(c.head_dim)
    writer.add_value_length(c.head_dim)
    writer.add_rope_dimension_count(c.head_dim)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens = [token for token, _ in sorted(tok.get_vocab().items(), key=lambda item: item[1])]
    special = set(tok.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    writer.add_bos_token_id(tok.bos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_pad_token_id(tok.pad_token_id)
    writer.add_chat_template(tok.chat_template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, c.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        module, suffix = name.rsplit(".", 1)
        array = tensor.detach().float().numpy()
        if module.endswith("q_proj"):
            array = permute(array, c.num_attention_heads)
        elif module.endswith("k_proj"):
            array = permute(array, c.num_key_value_heads)
        writer.add_tensor(f"{names.get_name(module)}.{suffix}", np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_llm_from_a_gguf_file(parts, tmp_path, speech_wav):
    from transformers import LlamaForCausalLM

    gguf_path = write_tiny_gguf(parts["llama"], tmp_path / "tiny-llama.F32.gguf")
    out = tmp_path / "from-gguf"
    result = compose(
        "--family", "qwen2_audio", "--encoder", str(parts["whisper"]), "--llm", str(gguf_path), "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    lm = load(str(out), device="cpu", dtype="float32")
    llama = LlamaForCausalLM.from_pretrained(parts["llama"])
    rows = llama.config.vocab_size
    language_model = state(lm.model.get_submodule(lm.family.language_model_prefix))
    for name, tensor in state(llama.model).items():
        assert torch.equal(language_model[name][:rows], tensor), name
    assert torch.equal(lm.model.get_output_embeddings().weight[:rows], llama.lm_head.weight)
    lineage = json.loads((out / "speechsum.json").read_text())["lineage"]["llm"]
    assert lineage["gguf_file"] == gguf_path.name and lineage["model_type"] == "llama"
    assert lm.family.render(lm.processor, Prompt("Hi."), with_answer=False).startswith(
        "<|begin_of_text|><|start_header_id|>user"
    )


def test_gguf_paths_are_routed_to_gguf_loading(tmp_path):
    gguf = tmp_path / "model.Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    assert parse_llm_source(str(gguf)).kwargs() == {"gguf_file": "model.Q8_0.gguf"}
    assert parse_llm_source(str(gguf)).path == str(tmp_path)
    hub = parse_llm_source("owner/repo-GGUF/model.Q8_0.gguf")
    assert (hub.path, hub.gguf_file) == ("owner/repo-GGUF", "model.Q8_0.gguf")
    assert parse_llm_source("owner/repo").kwargs() == {}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("qwen2_audio", "llm"),
        (LLAMA_TEMPLATE, "llm+audio"),
        (None, "family"),
        ("{{ raise_exception('no audio here') }}", "family"),
    ],
)
def test_template_choice_keeps_what_works(template, expected):
    from speechsum_cli.families import get_family
    from speechsum_cli.families.qwen2_audio import CHAT_TEMPLATE

    family = get_family("qwen2_audio")
    own = CHAT_TEMPLATE if template == "qwen2_audio" else template
    tok = tiny_tokenizer(["<|eot_id|>"], chat_template=own or "", eos_token="<|eot_id|>", pad_token="<|eot_id|>")
    tok.chat_template = own
    chosen, which = choose_template(family, tok)
    assert which == expected
    if which == "llm":
        assert chosen == own
    elif which == "llm+audio":
        assert chosen.startswith(AUDIO_PRELUDE.split("AUDIO_CONTENT")[0]) and chosen.endswith(own)
    else:
        assert chosen == family.chat_template
