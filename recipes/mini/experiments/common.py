"""What both experiments share: the aligned student, its clips from the feature cache, a CTC head.

``speechsum align`` outputs since d5ecc62 carry their trained head (``alignment/ctc_head.safetensors``),
which is used as is; for an older checkpoint the head (blank vector, bias, temperature) is refitted
on the training clips with the projector frozen.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from speechsum_cli.families.ctc_head import HEAD_FILE, CorpusVocab, CtcHead, load_head
from speechsum_cli.inference.feature_cache import cache_for_training
from speechsum_cli.training.alignment import (
    Clip,
    ctc_loss,
    encode_clips,
    project_batch,
    projector_parameters,
)
from speechsum_cli.training.model import load_for_training


@dataclass
class Setup:
    lm: Any
    train: list[Clip]
    held: list[Clip]
    head: CtcHead
    vocab: CorpusVocab


def rows(path: Path, n: int) -> Dataset:
    """The first ``n`` rows of a jsonl file, audio paths made absolute."""
    out = []
    for line in path.read_text().splitlines()[:n]:
        row = json.loads(line)
        row["audio"] = str((path.parent / row["audio"]).resolve())
        out.append(row)
    return Dataset.from_list(out)


def fit_head(lm: Any, train: list[Clip], vocab: CorpusVocab, steps: int) -> CtcHead:
    """A head for the frozen projector: ``steps`` Adam steps of CTC on batches of 16 clips."""
    head = CtcHead(lm.model.get_input_embeddings().weight, vocab)
    with torch.no_grad():
        hidden = [project_batch(lm, [c], "cpu")[0][0] for c in train]
    opt = torch.optim.Adam(head.parameters(), lr=3e-2)
    for step in range(steps):
        idx = random.Random(step).sample(range(len(train)), min(16, len(train)))
        batch = torch.zeros(len(idx), max(hidden[i].shape[0] for i in idx), hidden[0].shape[1])
        for j, i in enumerate(idx):
            batch[j, : hidden[i].shape[0]] = hidden[i]
        lengths = torch.tensor([hidden[i].shape[0] for i in idx])
        loss = ctc_loss(head(batch), lengths, [vocab.classes(train[i].target) for i in idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"head refitted: loss {loss.item():.3f}, scale {head.log_scale.exp().item():.2f}", flush=True)
    return head


def load_setup(work: Path, model: str, *, n_fit: int, held_file: str, n_held: int, fit_steps: int) -> Setup:
    """The student, ``n_fit`` hearing training clips, ``n_held`` held-out clips, and a frozen head."""
    torch.manual_seed(0)
    lm, _ = load_for_training(model, "float32")
    lm.model.eval()
    projector_parameters(lm)  # freezes the encoder, as the cache requires
    cache_for_training(
        lm.model, lm.family, work / "diag-out", enabled=True, directory=work / ".feature-cache", max_gb=20
    )
    train = encode_clips(
        lm, rows(work / "hearing/train.jsonl", n_fit), lm.window_seconds, label="train", show_progress=False
    )
    held = encode_clips(lm, rows(work / held_file, n_held), lm.window_seconds, label="held", show_progress=False)
    if (Path(model) / HEAD_FILE).is_file():
        head, vocab = load_head(Path(model), lm.model.get_input_embeddings().weight)
    else:
        vocab = CorpusVocab.of([c.target for c in train])  # the training rows only, as align
        head = fit_head(lm, train, vocab, fit_steps)
    for param in head.parameters():
        param.requires_grad = False
    return Setup(lm, train, held, head, vocab)
