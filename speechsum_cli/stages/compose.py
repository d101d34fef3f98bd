"""``compose``: a native audio-LLM checkpoint from a Whisper encoder + any causal LM.

The result is an ordinary checkpoint of one family (``qwen2_audio``, ``voxtral``): the Whisper
encoder's weights key for key (positional table cut to the window), the LM's weights (its
vocabulary grown by the family's placeholder tokens), and a fresh, randomly initialised projector
for ``speechsum sft`` to train. It loads in plain transformers and in every speechsum stage.

Chat template, in order of preference:

* ``llm``: the LM's own template, when it already renders an audio item as the family's
  placeholder text;
* ``llm+audio``: the LM's own template behind a short prelude that turns audio items of a
  multimodal message into the family's placeholder text (the LM keeps the turn format it was
  trained on; the usual case);
* ``family``: the family's template (the LM has none, or its template cannot be adapted), with
  the template's control tokens added to the vocabulary.

Every input is checked (configs and tokenizer only) before any weights are loaded.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechsum_cli.errors import InputError, ModelError
from speechsum_cli.families import FAMILIES, AudioFamily
from speechsum_cli.manifest import atomic_output_dir, check_output_dir, write_manifest

STAGE = "compose"
WHISPER_MODEL_TYPE = "whisper"
ENCODER_FIELDS = (
    "d_model",
    "encoder_layers",
    "encoder_attention_heads",
    "encoder_ffn_dim",
    "num_mel_bins",
    "scale_embedding",
    "activation_function",
)
"""Whisper config fields that describe its encoder (the families' audio configs take these)."""
MEL_FRAMES_PER_POSITION = 2
"""Whisper's second convolution has stride 2: two mel frames per encoder position."""
GGUF_SUFFIX = ".gguf"

AUDIO_PRELUDE = """\
{%- set _speechsum = namespace(messages=[]) -%}
{%- for _m in messages -%}
{%- if _m['content'] is string or _m['content'] is none -%}
{%- set _speechsum.messages = _speechsum.messages + [_m] -%}
{%- else -%}
{%- set _text = namespace(value='') -%}
{%- for _c in _m['content'] -%}
{%- if _c.get('type') == 'audio' or 'audio' in _c or 'audio_url' in _c -%}
{%- set _text.value = _text.value + AUDIO_CONTENT -%}
{%- elif 'text' in _c -%}
{%- set _text.value = _text.value + _c['text'] -%}
{%- endif -%}
{%- endfor -%}
{%- set _speechsum.messages = _speechsum.messages + [dict(_m, content=_text.value)] -%}
{%- endif -%}
{%- endfor -%}
{%- set messages = _speechsum.messages -%}
"""
"""Prepended to an LM's chat template: multimodal content lists become plain text in which each
audio item is the family's placeholder text, so templates written for text render audio turns."""


@dataclass(frozen=True)
class ComposeConfig:
    """Settings of one ``speechsum compose`` run."""

    encoder: str
    """Whisper checkpoint (WhisperForConditionalGeneration or WhisperModel): local dir or hub id."""
    llm: str
    """Causal LM: local dir, hub id, local ``.gguf`` file, or ``HUB_ID/FILE.gguf``."""
    family: str
    """model_type of the checkpoint to build (a composable family)."""
    out: Path
    """Output checkpoint directory."""
    window_seconds: int | None = None
    """Audio window; default and maximum: what the encoder's positions cover (30 s for Whisper)."""
    overwrite: bool = False
    """Replace ``out`` if it exists."""
    seed: int = 0
    """Seed of the projector's random initialisation."""


@dataclass
class ComposeResult:
    out: Path
    family: str
    window_seconds: int
    parameters: dict[str, int]
    """Parameter counts: encoder, projector, language_model (embeddings + blocks + lm_head)."""
    added_tokens: list[str]
    """Tokens added to the LM's tokenizer (already present ones are not listed)."""
    audio_token_id: int
    vocab_size: tuple[int, int]
    """Embedding rows of the LM before and after adding tokens."""
    chat_template: str
    """Which template the checkpoint carries: llm, llm+audio or family."""
    encoder_positions: tuple[int, int]
    """Encoder positions kept, of the Whisper encoder's."""
    wall_time: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LlmSource:
    """Where the causal LM comes from: a dir or hub id, plus a GGUF file inside it if any."""

    path: str
    gguf_file: str | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}

    def __str__(self) -> str:
        return f"{self.path}/{self.gguf_file}" if self.gguf_file else self.path


def parse_llm_source(spec: str) -> LlmSource:
    """``dir`` / ``hub_id`` as is; ``path/file.gguf`` or ``owner/repo/file.gguf`` -> GGUF loading."""
    if not spec.lower().endswith(GGUF_SUFFIX):
        return LlmSource(spec)
    path = Path(spec)
    if path.is_file():
        return LlmSource(str(path.parent), path.name)
    parts = spec.split("/")
    if len(parts) >= 3 and not path.is_absolute() and not spec.startswith("."):
        return LlmSource("/".join(parts[:2]), "/".join(parts[2:]))
    raise InputError(
        f"--llm '{spec}': no such GGUF file. Pass a local .gguf file, or a hub GGUF as OWNER/REPO/FILE.gguf."
    )


def composable_families() -> list[str]:
    return sorted(name for name, family in FAMILIES.items() if family.composable)


def check_family(name: str) -> AudioFamily:
    choices = composable_families()
    if name not in choices:
        raise InputError(
            f"--family '{name}' cannot be composed from a Whisper encoder and a causal LM. "
            f"Choose one of: {', '.join(choices)}."
        )
    return FAMILIES[name]


def looks_local(source: str) -> bool:
    """A path rather than a hub id (``owner/name``)."""
    return Path(source).is_absolute() or source.startswith(".") or source.count("/") > 1


def _read_config(source: str, flag: str, **kwargs: Any) -> Any:
    from transformers import AutoConfig

    if looks_local(source) and not Path(source).exists():
        raise InputError(
            f"{flag} '{source}': no such directory. Pass a local checkpoint directory or a hub id (OWNER/NAME)."
        )
    try:
        return AutoConfig.from_pretrained(source, **kwargs)
    except ImportError as exc:
        if "gguf" in str(exc).lower():
            raise ModelError(
                f"{flag} '{source}' is a GGUF file and reading it needs the 'gguf' package. Run "
                "\"pip install 'speechsum[gguf]'\" and retry."
            ) from None
        raise
    except (OSError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{flag} '{source}': cannot read its config ({first_line}). Pass a local checkpoint "
            "directory, or a hub id that is cached or reachable."
        ) from None


def check_encoder(config: Any, source: str) -> None:
    if config.model_type != WHISPER_MODEL_TYPE:
        raise InputError(
            f"--encoder '{source}' is a '{config.model_type}' checkpoint (config.model_type); "
            "compose needs a Whisper encoder (model_type 'whisper'), e.g. a "
            "WhisperForConditionalGeneration or WhisperModel directory or hub id."
        )


def check_llm(config: Any, source: str) -> None:
    """A decoder-only, text-only causal LM that transformers can build as a base model."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_MAPPING_NAMES,
    )

    model_type = config.model_type
    architectures = list(getattr(config, "architectures", None) or [])
    problem = None
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or model_type not in MODEL_MAPPING_NAMES:
        problem = "transformers has no causal-LM class for it"
    elif getattr(config, "is_encoder_decoder", False):
        problem = "it is an encoder-decoder model"
    elif getattr(config, "sub_configs", None):
        problem = "it is a multimodal model with sub-models"
    elif architectures and not any(a.endswith("ForCausalLM") for a in architectures):
        problem = f"its architecture is {', '.join(architectures)}"
    if problem:
        raise InputError(
            f"--llm '{source}' is not a decoder-only causal LM: model_type '{model_type}', "
            f"{problem}. Pass a causal LM (Llama, Qwen2, Mistral, ... *ForCausalLM) as a local "
            "directory, hub id or .gguf file."
        )


def encoder_fields(whisper_config: Any, positions: int) -> dict[str, Any]:
    fields = {name: getattr(whisper_config, name) for name in ENCODER_FIELDS}
    fields["max_source_positions"] = positions
    return fields


def base_feature_extractor(encoder_source: str) -> Any:
    """The encoder checkpoint's WhisperFeatureExtractor, or Whisper's defaults if it has none."""
    from transformers import WhisperFeatureExtractor

    try:
        return WhisperFeatureExtractor.from_pretrained(encoder_source)
    except (OSError, ValueError):
        return WhisperFeatureExtractor()


def feature_extractor_for(base: Any, num_mel_bins: int, window_seconds: int) -> Any:
    """``base`` with the encoder's mel count and the window as chunk length."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=num_mel_bins,
        sampling_rate=base.sampling_rate,
        hop_length=base.hop_length,
        n_fft=base.n_fft,
        padding_value=base.padding_value,
        chunk_length=window_seconds,
    )


def resolve_window(requested: int | None, whisper_config: Any, fe: Any, source: str) -> tuple[int, int]:
    """(window seconds, encoder positions) — the window must fit the encoder's positions."""
    positions_per_second = fe.sampling_rate / fe.hop_length / MEL_FRAMES_PER_POSITION
    available = int(whisper_config.max_source_positions)
    max_seconds = available / positions_per_second
    window = requested if requested is not None else math.floor(max_seconds)
    if window < 1 or window > max_seconds:
        raise InputError(
            f"--window-seconds {window} is beyond what the encoder '{source}' supports: its "
            f"{available} positions cover {max_seconds:g} s of audio. Pass --window-seconds "
            f"{math.floor(max_seconds)} or less."
        )
    positions = window * positions_per_second
    if positions != int(positions):
        raise InputError(
            f"--window-seconds {window} is not a whole number of encoder positions "
            f"({positions_per_second:g} per second); choose another window."
        )
    return window, int(positions)


def _render(tok: Any, template: str, messages: list[dict[str, Any]], *, generation: bool) -> str:
    return tok.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=generation)


def template_works(family: AudioFamily, tok: Any, template: str) -> bool:
    """Whether ``template`` renders an audio turn as the family needs, a text-only turn without
    placeholders, and the generation prompt as a prefix of the answered conversation."""
    audio_turn = [{"type": "audio", "audio": "<audio>"}, {"type": "text", "text": "Summarize."}]
    prompt = [{"role": "user", "content": audio_turn}]
    answered = prompt + [{"role": "assistant", "content": "A summary."}]
    text_only = [{"role": "user", "content": [{"type": "text", "text": "Summarize."}]}]
    try:
        head = _render(tok, template, prompt, generation=True)
        full = _render(tok, template, answered, generation=False)
        plain = _render(tok, template, text_only, generation=True)
    except Exception:  # noqa: BLE001 - any template error means "does not work"; we fall back
        return False
    return family.template_renders_audio(head) and full.startswith(head) and family.audio_placeholder not in plain


def jinja_string(text: str) -> str:
    """``text`` as a Jinja string literal."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def choose_template(family: AudioFamily, tok: Any) -> tuple[str, str]:
    """(template, which): the LM's own, the LM's behind the audio prelude, or the family's."""
    own = getattr(tok, "chat_template", None)
    if isinstance(own, dict):  # named templates: the default one is the chat template
        own = own.get("default")
    if own:
        if template_works(family, tok, own):
            return own, "llm"
        adapted = AUDIO_PRELUDE.replace("AUDIO_CONTENT", jinja_string(family.audio_content)) + own
        if template_works(family, tok, adapted):
            return adapted, "llm+audio"
    if family.chat_template is None:
        raise ModelError(f"the {family.model_type} family has no chat template to install")
    return family.chat_template, "family"


def add_tokens(tok: Any, tokens: list[str]) -> list[str]:
    """Add ``tokens`` as special tokens unless each already encodes to its own single id."""
    from tokenizers import AddedToken

    missing = []
    for token in dict.fromkeys(tokens):
        token_id = tok.convert_tokens_to_ids(token)
        single = token_id is not None and (token_id != tok.unk_token_id or token == tok.unk_token)
        if not single or tok(token, add_special_tokens=False)["input_ids"] != [token_id]:
            missing.append(token)
    if missing:
        tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
    return missing


def count_parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def run(config: ComposeConfig) -> ComposeResult:
    """Check every input, then build, save and describe the composed checkpoint."""
    started = time.monotonic()
    family = check_family(config.family)
    check_output_dir(Path(config.out), overwrite=config.overwrite)
    whisper_config = _read_config(config.encoder, "--encoder")
    check_encoder(whisper_config, config.encoder)
    llm_source = parse_llm_source(config.llm)
    llm_config = _read_config(llm_source.path, "--llm", **llm_source.kwargs())
    check_llm(llm_config, config.llm)
    base_fe = base_feature_extractor(config.encoder)
    window, positions = resolve_window(config.window_seconds, whisper_config, base_fe, config.encoder)
    fe = feature_extractor_for(base_fe, whisper_config.num_mel_bins, window)

    tok = _load_tokenizer(llm_source, config.llm)
    template, which = choose_template(family, tok)
    wanted = list(family.compose_tokens)
    if which == "family":
        wanted += list(family.compose_template_tokens)
    added = add_tokens(tok, wanted)
    tok.chat_template = template
    audio_token_id = tok.convert_tokens_to_ids(family.audio_placeholder)

    text_config = llm_config.__class__.from_dict(llm_config.to_dict())
    rows_before = int(text_config.vocab_size)
    text_config.vocab_size = max(rows_before, len(tok))
    text_config.tie_word_embeddings = False  # families keep lm_head separate from embeddings
    try:
        model_config = family.compose_config(encoder_fields(whisper_config, positions), text_config, audio_token_id)
    except ModelError as exc:
        hint = " Choose another --window-seconds." if "max_source_positions" in str(exc) else ""
        raise InputError(
            f"cannot build a {family.model_type} model with a {window} s window from '{config.encoder}': {exc}{hint}"
        ) from None

    # --- weights -----------------------------------------------------------------------------
    llm = _load_llm(llm_source)
    rows_loaded = llm.get_input_embeddings().weight.shape[0]
    if rows_loaded != rows_before:
        raise ModelError(
            f"--llm '{config.llm}' has {rows_loaded} embedding rows but its config says "
            f"vocab_size {rows_before}; the checkpoint is inconsistent."
        )
    if len(tok) > rows_loaded:  # the new rows are drawn around the mean embedding: seeded, so --seed reproduces
        import torch

        torch.manual_seed(config.seed)
        llm.resize_token_embeddings(len(tok), mean_resizing=True)
    encoder_state = _whisper_encoder_state(config.encoder, positions, llm.dtype)
    model = _assemble(family, model_config, llm, encoder_state, seed=config.seed)
    model.generation_config = _generation_config(llm, tok, family, which)
    processor = family.compose_processor(fe, tok, template)

    parameters = {
        "encoder": count_parameters(model.get_submodule(family.audio_encoder_prefixes[0])),
        "projector": count_parameters(model.get_submodule(family.projector_prefixes[0])),
        "language_model": count_parameters(model.get_submodule(family.language_model_prefix))
        + count_parameters(model.get_output_embeddings()),
    }
    result = ComposeResult(
        out=Path(config.out),
        family=family.model_type,
        window_seconds=window,
        parameters=parameters,
        added_tokens=added,
        audio_token_id=int(audio_token_id),
        vocab_size=(rows_before, int(llm.get_input_embeddings().weight.shape[0])),
        chat_template=which,
        encoder_positions=(positions, int(whisper_config.max_source_positions)),
    )
    if positions < whisper_config.max_source_positions:
        result.notes.append(
            f"encoder positional table cut to {positions} of {whisper_config.max_source_positions} "
            f"rows for the {window} s window"
        )
    with atomic_output_dir(config.out, overwrite=config.overwrite) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        result.wall_time = time.monotonic() - started
        write_manifest(
            tmp,
            stage=STAGE,
            config=config,
            inputs=[config.encoder, str(llm_source)],
            counts={
                "parameters": parameters,
                "added_tokens": len(added),
                "encoder_positions_kept": positions,
                "encoder_positions_dropped": int(whisper_config.max_source_positions) - positions,
            },
            wall_time=result.wall_time,
            extra={"lineage": _lineage(config, llm_source, whisper_config, llm_config, result)},
        )
    return result


def _load_tokenizer(source: LlmSource, spec: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source.path, **source.kwargs())
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"--llm '{spec}': cannot load its tokenizer ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}). The LM must ship "
            "a tokenizer."
        ) from None


def _load_llm(source: LlmSource) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(source.path, dtype="auto", **source.kwargs())


def _whisper_encoder_state(source: str, positions: int, dtype: Any) -> dict[str, Any]:
    """The Whisper encoder's weights (decoder never loaded), positional table cut to the window.

    ``WhisperForAudioClassification`` is an encoder-only Whisper: loading a full checkpoint into
    it reads just the encoder's tensors (its small classifier head is discarded)."""
    from transformers import WhisperForAudioClassification

    whisper = WhisperForAudioClassification.from_pretrained(source, dtype=dtype)
    state = {name: tensor.detach() for name, tensor in whisper.encoder.state_dict().items()}
    state["embed_positions.weight"] = state["embed_positions.weight"][:positions].clone()
    return state


def _assemble(family: AudioFamily, model_config: Any, llm: Any, encoder_state: dict, *, seed: int) -> Any:
    """The family model with the encoder's and LM's weights moved in and a fresh projector.

    The shell is built on the meta device (no memory for a second copy of the LM); every
    sub-module is then replaced by a real one.
    """
    import torch
    from transformers import AutoModel

    cls = family.model_class()
    with torch.device("meta"):
        model = cls(model_config)
    dtype = llm.dtype

    encoder = AutoModel.from_config(model_config.audio_config)
    encoder.load_state_dict(encoder_state, strict=True, assign=True)
    encoder.to(dtype)
    model.set_submodule(family.audio_encoder_prefixes[0], encoder)

    base = getattr(llm, llm.base_model_prefix)
    shell = model.get_submodule(family.language_model_prefix)
    if type(base) is not type(shell):
        raise ModelError(
            f"the LM's base model is {type(base).__name__} but {family.model_type} builds "
            f"{type(shell).__name__} from its config; cannot move the weights across."
        )
    model.set_submodule(family.language_model_prefix, base)
    head = llm.get_output_embeddings()
    if head.weight.data_ptr() == llm.get_input_embeddings().weight.data_ptr():
        untied = torch.nn.Linear(head.in_features, head.out_features, bias=False, dtype=dtype)
        untied.weight = torch.nn.Parameter(head.weight.detach().clone())
        head = untied
    model.set_output_embeddings(head)

    projector_path = family.projector_prefixes[0]
    torch.manual_seed(seed)
    projector = type(model.get_submodule(projector_path))(model_config)
    for module in projector.modules():
        model._init_weights(module)
    model.set_submodule(projector_path, projector.to(dtype))

    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"compose left tensors unset: {', '.join(left[:5])}")
    return model.eval()


def _generation_config(llm: Any, tok: Any, family: AudioFamily, which: str) -> Any:
    from transformers import GenerationConfig

    base = llm.generation_config.to_dict() if llm.generation_config is not None else {}
    eos = base.get("eos_token_id", tok.eos_token_id)
    eos_ids = list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
    if which == "family" and family.end_of_turn:
        eos_ids.append(tok.convert_tokens_to_ids(family.end_of_turn))
    if tok.eos_token_id is not None:
        eos_ids.append(tok.eos_token_id)
    eos_ids = list(dict.fromkeys(eos_ids))
    pad = tok.pad_token_id if tok.pad_token_id is not None else (eos_ids[0] if eos_ids else None)
    settings = {
        k: v
        for k, v in base.items()
        if k in ("bos_token_id", "do_sample", "temperature", "top_p", "top_k", "repetition_penalty")
    }
    settings.update(eos_token_id=eos_ids[0] if len(eos_ids) == 1 else eos_ids, pad_token_id=pad)
    return GenerationConfig(**settings)


def _lineage(
    config: ComposeConfig,
    llm_source: LlmSource,
    whisper_config: Any,
    llm_config: Any,
    result: ComposeResult,
) -> dict[str, Any]:
    return {
        "encoder": {
            "source": config.encoder,
            "model_type": whisper_config.model_type,
            "d_model": whisper_config.d_model,
            "layers": whisper_config.encoder_layers,
            "num_mel_bins": whisper_config.num_mel_bins,
            "positions_kept": result.encoder_positions[0],
            "positions_total": result.encoder_positions[1],
            "parameters": result.parameters["encoder"],
        },
        "llm": {
            "source": llm_source.path,
            "gguf_file": llm_source.gguf_file,
            "model_type": llm_config.model_type,
            "architectures": list(getattr(llm_config, "architectures", None) or []),
            "vocab_rows_before": result.vocab_size[0],
            "vocab_rows_after": result.vocab_size[1],
            "parameters": result.parameters["language_model"],
        },
        "projector": {"init": "random", "seed": config.seed, "parameters": result.parameters["projector"]},
        "added_tokens": result.added_tokens,
        "audio_token_id": result.audio_token_id,
        "chat_template": result.chat_template,
        "window_seconds": result.window_seconds,
    }
