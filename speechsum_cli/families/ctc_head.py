"""The CTC head that ``speechsum align`` trains and CTC-guided compression reads.

It scores audio embeddings against the LM's own (frozen) input embeddings of the corpus
vocabulary, plus one learned *blank*. Training it is :mod:`speechsum_cli.training.alignment`'s
job; inference (:mod:`speechsum_cli.families.compression`, which keeps the frames it does not
blank) only loads it, so it lives here, below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from speechsum_cli.errors import ModelError

BLANK = 0
"""Index of the blank class; token ``vocab[i]`` is class ``i + 1``."""
BLANK_BIAS_START = 5.0
"""The blank's logit starts this far ahead, so training starts where CTC usually does (blank on
most frames) and tokens emerge from it; started at 0, one of two runs of the mini student fell into
the repeat collapse instead (held-out WER 0.90 after 600 steps; with 5: 0.43 after 300)."""
HEAD_FILE = "alignment/ctc_head.safetensors"
"""Where ``align`` saves the trained head inside its output: with the checkpoint's projector it
decodes the audio into the corpus vocabulary, the selector that CTC-guided compression needs."""


@dataclass(frozen=True)
class CorpusVocab:
    """The LM token ids the corpus's transcripts use, in class order (blank excluded)."""

    ids: tuple[int, ...]

    @classmethod
    def of(cls, targets: list[list[int]]) -> CorpusVocab:
        return cls(tuple(sorted({t for row in targets for t in row})))

    def classes(self, row: list[int]) -> list[int]:
        """``row``'s token ids as CTC classes; tokens outside the vocabulary are skipped."""
        index = {t: i + 1 for i, t in enumerate(self.ids)}
        return [index[t] for t in row if t in index]


class CtcHead(torch.nn.Module):
    """Scores audio embeddings against the LM's (frozen) input embeddings of the corpus vocabulary."""

    def __init__(self, embeddings: Any, vocab: CorpusVocab) -> None:
        super().__init__()
        table = embeddings[list(vocab.ids)].detach().float().clone()
        self.register_buffer("table", table)
        self.blank = torch.nn.Parameter(table.mean(0).clone())
        """The blank's vector, learned (it starts at the mean token embedding)."""
        self.log_scale = torch.nn.Parameter(torch.zeros(()))
        """Logit temperature, learned, so sharpening need not inflate the audio embeddings' norm."""
        self.blank_bias = torch.nn.Parameter(torch.tensor(BLANK_BIAS_START))
        """A free logit for the blank. Without it the blank (a vector near the embeddings' large
        common component) never beats the best of thousands of tokens, CTC cannot use it, and the
        projector collapses to repeating frequent tokens ("the the the")."""
        self.embedding_norm = float(table.norm(dim=-1).mean())

    def forward(self, hidden: Any) -> Any:
        """``[batch, frames, 1 + vocab]`` log-probabilities (class 0 = blank).

        The audio embeddings are scored at the tokens' mean norm (their direction decides), so the
        projector cannot win by inflating norms: with raw dot products it did (audio norm 25 vs
        token 2.8), every logit outgrew the blank's and the alignment collapsed to repeating
        frequent words. :meth:`norm_penalty` keeps the norms the LM will read near the tokens'.
        """
        hidden = hidden.float()
        self.last_norms = hidden.norm(dim=-1)
        scaled = torch.nn.functional.normalize(hidden, dim=-1) * self.embedding_norm
        weights = torch.cat([self.blank[None, :], self.table], dim=0)
        logits = torch.matmul(scaled, weights.T) * self.log_scale.exp()
        blank = torch.zeros_like(logits[..., :1]) + self.blank_bias
        return torch.log_softmax(torch.cat([logits[..., :1] + blank, logits[..., 1:]], dim=-1), dim=-1)

    def norm_penalty(self) -> Any:
        """Mean squared relative gap between the last batch's audio-embedding norms and the
        tokens' mean norm."""
        return ((self.last_norms / self.embedding_norm - 1) ** 2).mean()


def save_head(head: CtcHead, vocab: CorpusVocab, folder: Path) -> Path:
    """Write ``head``'s learned parameters and ``vocab`` to ``folder / HEAD_FILE`` (the token table
    is the LM's own embeddings, read again on load)."""
    from safetensors.torch import save_file

    path = Path(folder) / HEAD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: param.detach().float().cpu().contiguous() for name, param in head.named_parameters()}
    tensors["vocab_ids"] = torch.tensor(vocab.ids, dtype=torch.long)
    save_file(tensors, str(path), metadata={"format": "speechsum-ctc-head-1"})
    return path


def load_head(folder: Path, embeddings: Any) -> tuple[CtcHead, CorpusVocab]:
    """The head ``align`` saved in ``folder``, scoring against ``embeddings`` (the LM's input table)."""
    from safetensors.torch import load_file

    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        raise ModelError(
            f"'{folder}' has no {HEAD_FILE}: it is not a 'speechsum align' output "
            "(or one from before the head was saved); run align on it again."
        )
    tensors = load_file(str(path))
    vocab = CorpusVocab(tuple(int(i) for i in tensors.pop("vocab_ids").tolist()))
    if max(vocab.ids) >= embeddings.shape[0]:
        raise ModelError(
            f"'{path}' names token ids up to {max(vocab.ids)} but the LM has "
            f"{embeddings.shape[0]} embeddings: the head belongs to another model."
        )
    head = CtcHead(embeddings, vocab)
    head.load_state_dict({**tensors, "table": head.table}, strict=True)
    return head, vocab


def greedy_decode(log_probs: Any, lengths: Any, vocab: CorpusVocab) -> list[list[int]]:
    """Best path per row: argmax, repeats collapsed, blanks dropped; as LM token ids."""
    best = log_probs.argmax(-1).tolist()
    out = []
    for row, n in zip(best, lengths.tolist()):
        ids, previous = [], BLANK
        for c in row[:n]:
            if c != previous and c != BLANK:
                ids.append(vocab.ids[c - 1])
            previous = c
        out.append(ids)
    return out
