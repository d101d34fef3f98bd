"""The contract every audio family keeps, run over every family in ``FAMILIES``.

Adding a family means writing its adapter and registering it in ``FAMILIES``: this module then
holds it to the same contract as the others, on its tiny random model (tests/conftest.py):

* each clip expands to exactly as many placeholders as the model's own audio path makes
  embeddings, for one clip, several clips, one recording in windows, and batches mixing audio
  rows with text-only rows — and the model's forward runs on them;
* training labels are -100 on every prompt, audio and padding position;
* audio longer than the window is refused with an error naming the window, or taken whole —
  never cut;
* the parameter groups add up to the model, LoRA wraps language-model modules only and the
  encoder stays frozen;
* generation never emits an audio placeholder;
* save -> load gives the same logits, bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechsum_cli.data.audio import load_audio
from speechsum_cli.errors import SpeechsumError, UnsupportedFamilyError
from speechsum_cli.families import FAMILIES, GenerationSettings, Prompt, SpeechLM, get_family, load
from speechsum_cli.families.base import windows_of
from speechsum_cli.training.model import ParameterGroup, parameter_groups, prepare_model
from speechsum_cli.training.settings import TrainSettings
from tests.conftest import speech_of_duration

FAMILY_TYPES = sorted(FAMILIES)
QUERY = "Summarize the recording."


@pytest.fixture(scope="module", params=FAMILY_TYPES)
def model_type(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def lm(model_type, tiny_models) -> SpeechLM:
    return load(str(tiny_models(model_type)), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def fresh(model_type, tiny_models):
    """A new load of the family's tiny model for each call (tests that change the model)."""
    return lambda: load(str(tiny_models(model_type)), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """Six seconds of espeak-ng speech, more than the tiny models' 5 s window."""
    work = tmp_path_factory.mktemp("conformance-audio")
    return speech_of_duration(work / "speech.wav", 6.0, workdir=work)


@pytest.fixture(scope="module")
def clips(lm, speech) -> dict[str, np.ndarray]:
    """A full window, 2.3 s and 0.05 s of speech at the family's sampling rate."""
    audio, sr = load_audio(speech, lm.sampling_rate), lm.sampling_rate
    return {
        "full": audio[: int(lm.window_seconds * sr)],
        "mid": audio[: int(2.3 * sr)],
        "tiny": audio[: int(0.05 * sr)],
    }


def placeholder_id(lm: SpeechLM) -> int:
    return lm.tokenizer.convert_tokens_to_ids(lm.family.audio_placeholder)


def placeholder_counts(lm: SpeechLM, input_ids: torch.Tensor) -> list[int]:
    return (input_ids == placeholder_id(lm)).sum(-1).tolist()


BATCHES = {
    "one clip": [("full",)],
    "several clips": [("full",), ("mid",), ("tiny",)],
    "one recording in windows": [("full", "mid")],
    "audio and text-only rows": [("mid",), (), ("full",), ()],
    "text only": [(), ()],
}
"""Each batch: one tuple of clip names per row (several = consecutive windows of one recording)."""


def prompts_of(rows: list[tuple[str, ...]], clips: dict[str, np.ndarray], **extra) -> list[Prompt]:
    def audio(names):
        if not names:
            return None
        return clips[names[0]] if len(names) == 1 else [clips[n] for n in names]

    return [
        Prompt(QUERY if i % 2 else "Who spoke, and what did they decide?", audio=audio(names), **extra)
        for i, names in enumerate(rows)
    ]


# --- placeholders == the model's audio embeddings ----------------------------------------------


@pytest.mark.parametrize("case", list(BATCHES))
def test_placeholders_equal_the_embeddings_the_models_audio_path_makes(lm, clips, case):
    prompts = prompts_of(BATCHES[case], clips)
    batch = lm.encode(prompts)

    placeholders = placeholder_counts(lm, batch.inputs["input_ids"])
    assert placeholders == batch.audio_tokens
    assert [n > 0 for n in placeholders] == [p.audio is not None for p in prompts]

    waves = [clip for p in prompts for clip in windows_of(p)]
    if waves:
        features = lm.family.audio_features(lm.processor, lm.config, waves)
        made = lm.family.embedding_counts(lm.model, features.tensors)
        assert made == features.num_tokens
        per_row, start = [], 0
        for p in prompts:
            k = len(windows_of(p))
            per_row.append(sum(made[start : start + k]))
            start += k
        assert per_row == placeholders
    else:
        assert not set(batch.inputs) - {"input_ids", "attention_mask"}

    with torch.inference_mode():
        logits = lm.model(**lm.to_model(batch.inputs)).logits  # the forward takes them as they are
    assert logits.shape[:2] == batch.inputs["input_ids"].shape
    assert torch.isfinite(logits).all()


def test_every_clip_gets_at_least_one_embedding(lm, clips):
    features = lm.family.audio_features(lm.processor, lm.config, [clips["tiny"]])
    assert features.num_tokens[0] >= 1
    assert lm.family.embedding_counts(lm.model, features.tensors) == features.num_tokens


# --- training labels -------------------------------------------------------------------------


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_labels_are_ignored_on_every_prompt_audio_and_padding_position(lm, clips, padding_side):
    answers = ["- Budget review at nine.", "Alice and Bob.", "Nobody spoke."]
    prompts = [
        Prompt(QUERY, audio=clips["full"], answer=answers[0]),
        Prompt("Who spoke?", audio=clips["tiny"], answer=answers[1], system="Be brief."),
        Prompt("Was anything said?", answer=answers[2]),
    ]
    batch = lm.encode(prompts, padding_side=padding_side)
    ids, labels, mask = batch.inputs["input_ids"], batch.inputs["labels"], batch.inputs["attention_mask"]
    audio_id, width = placeholder_id(lm), ids.shape[1]
    for row, answer in enumerate(answers):
        length = int(mask[row].sum())
        start = width - length if padding_side == "left" else 0
        answer_start = start + batch.prompt_lengths[row]
        kept = (labels[row] != -100).nonzero().flatten().tolist()
        assert kept == list(range(answer_start, start + length))  # the answer, and only it
        assert torch.equal(labels[row, kept], ids[row, kept])
        assert (labels[row][mask[row] == 0] == -100).all()  # padding
        assert audio_id not in labels[row].tolist()  # audio
        assert audio_id not in ids[row, answer_start:].tolist()
        assert lm.tokenizer.decode(labels[row, kept], skip_special_tokens=True).strip() == answer

    with torch.no_grad():
        loss = lm.model(**lm.to_model(batch.inputs)).loss
    assert torch.isfinite(loss)


# --- long audio --------------------------------------------------------------------------------


def test_audio_longer_than_the_window_is_refused_or_taken_whole(lm, speech):
    family, sr = lm.family, lm.sampling_rate
    window = lm.window_seconds
    assert window > 0
    audio = load_audio(speech, sr)
    whole = int(window * sr)
    assert len(audio) > whole, "the test clip must be longer than the tiny model's window"
    at_window = family.audio_features(lm.processor, lm.config, [audio[:whole]])
    assert at_window.num_tokens[0] > 0
    try:
        longer = family.audio_features(lm.processor, lm.config, [audio])
    except (ValueError, SpeechsumError) as exc:
        assert f"{window:g} s window" in str(exc), str(exc)
        with pytest.raises((ValueError, SpeechsumError), match="window"):
            lm.encode([Prompt(QUERY, audio=audio)])
        return
    # Taken whole: more audio, more embeddings, all of them made by the model.
    assert longer.num_tokens[0] > at_window.num_tokens[0]
    assert family.embedding_counts(lm.model, longer.tensors) == longer.num_tokens


# --- what trains -----------------------------------------------------------------------------


def group_table(groups: list[ParameterGroup]) -> dict[str, ParameterGroup]:
    return {g.name: g for g in groups}


def test_parameter_groups_add_up_to_the_model(lm):
    family = lm.family
    names = {name for name, _ in lm.model.named_modules()}
    for prefix in (family.language_model_prefix, *family.audio_encoder_prefixes, *family.projector_prefixes):
        assert prefix in names, f"{family.model_type}: no module {prefix!r}"
    groups = group_table(parameter_groups(lm.model, family))
    assert sum(g.total for g in groups.values()) == sum(p.numel() for p in lm.model.parameters())
    for name in ("encoder", "projector", "language model"):
        assert groups[name].total > 0, name


def test_lora_wraps_language_model_modules_only_and_the_encoder_stays_frozen(fresh):
    lm = fresh()
    family = lm.family
    model = prepare_model(lm.model, family, TrainSettings(), "tiny")
    wrapped = [
        name.removeprefix("base_model.model.")
        for name, module in model.named_modules()
        if hasattr(module, "lora_A") and len(module.lora_A)
    ]
    assert wrapped
    assert all(name.startswith(family.language_model_prefix + ".") for name in wrapped), wrapped
    outside = family.audio_encoder_prefixes + family.projector_prefixes
    assert not [n for n in wrapped if any(n.startswith(p + ".") for p in outside)]
    assert {n.rsplit(".", 1)[-1] for n in wrapped} == set(family.lora_targets)

    groups = group_table(parameter_groups(model, family))
    assert groups["encoder"].trainable == 0 < groups["encoder"].total
    assert groups["projector"].trainable == groups["projector"].total > 0
    assert groups["language model"].trainable == 0
    assert groups["LoRA"].trainable > 0


@pytest.mark.parametrize("how", ["full", "lora + encoder", "full + encoder"])
def test_the_encoder_trains_only_when_asked_and_the_projector_always(fresh, how):
    train = TrainSettings(full=how.startswith("full"), train_encoder=how.endswith("encoder"))
    lm = fresh()
    groups = group_table(parameter_groups(prepare_model(lm.model, lm.family, train, "tiny"), lm.family))
    encoder = groups["encoder"]
    assert encoder.trainable == (encoder.total if train.train_encoder else 0)
    assert groups["projector"].trainable == groups["projector"].total > 0
    assert groups["language model"].trainable == (groups["language model"].total if train.full else 0)


# --- generation --------------------------------------------------------------------------------


def test_generation_never_emits_an_audio_placeholder(fresh, clips):
    """A head biased towards the placeholders makes the raw model emit them; our settings must not."""
    lm = fresh()
    banned = lm.family.placeholder_token_ids(lm.processor)
    assert placeholder_id(lm) in banned
    head = lm.model.get_output_embeddings()
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[banned] = 1e4
    lm.model.set_output_embeddings(biased)

    inputs = lm.to_model(lm.encode([Prompt(QUERY, audio=clips["mid"])]).inputs)
    settings = GenerationSettings(max_new_tokens=4)
    kwargs = lm.generation_kwargs(settings)
    prompt_length = inputs["input_ids"].shape[1]
    with torch.inference_mode():
        # one step: a placeholder fed back would make some models' next forward fail
        raw = lm.model.generate(**inputs, **{**kwargs, "suppress_tokens": None, "max_new_tokens": 1})
        raw = raw[0, prompt_length:]
        ours = lm.model.generate(**inputs, **kwargs)[0, prompt_length:]
    assert set(raw.tolist()) & set(banned), "the biased head should prefer the placeholders"
    assert not set(ours.tolist()) & set(banned)
    assert len(ours) > 0


# --- save -> load ------------------------------------------------------------------------------


def test_save_then_load_gives_the_same_logits(lm, clips, tmp_path):
    lm.model.save_pretrained(tmp_path)
    lm.processor.save_pretrained(tmp_path)
    again = load(str(tmp_path), device="cpu", dtype="float32")
    assert type(again.family) is type(lm.family)
    assert again.window_seconds == lm.window_seconds

    prompts = [Prompt(QUERY, audio=clips["full"]), Prompt("Who spoke?", audio=clips["mid"]), Prompt(QUERY)]
    before, after = lm.encode(prompts), again.encode(prompts)
    assert before.inputs.keys() == after.inputs.keys()
    for key, tensor in before.inputs.items():
        assert torch.equal(tensor, after.inputs[key]), key
    with torch.inference_mode():
        expected = lm.model(**before.inputs).logits
        got = again.model(**after.inputs).logits
    assert torch.equal(expected, got)


def test_an_unknown_model_type_names_every_family():
    with pytest.raises(UnsupportedFamilyError) as caught:
        get_family("not_an_audio_llm")
    message = str(caught.value)
    assert "'not_an_audio_llm' is not supported" in message
    for model_type in FAMILIES:
        assert model_type in message
