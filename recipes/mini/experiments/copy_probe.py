"""Does SmolLM2 read the aligned projector's vectors as text? A zero-shot copy test (RESULTS.md,
"Why the student still does not listen", table 1).

"Repeat this text exactly: X" with X given as input embeddings, for 12 held-out hearing clips:
the true transcript's token embeddings, the CTC transcript's, and the projector's vectors with
blank frames kept / dropped / replaced by a filler token, repeats kept or merged, raw or snapped to
the argmax token's embedding. A CTC head (blank vector, bias, temperature) is refitted on 200
training clips with the projector frozen (``align`` does not save its head).

    N_FIT=200 FIT_STEPS=120 python recipes/mini/experiments/copy_probe.py runs/mini runs/mini/aligned 12 \
        runs/mini/weights/smollm2-135m-instruct

Experiment code, not part of the package: it reads the run's feature cache (``runs/mini/.feature-cache``).
"""

import os
import sys
import time
from pathlib import Path

import torch
from common import load_setup

from speechsum_cli.families.ctc_head import BLANK, greedy_decode
from speechsum_cli.metrics.wer import error_rates
from speechsum_cli.training.alignment import project_batch

WORK = Path(sys.argv[1])
MODEL = sys.argv[2]
N_HELD = int(sys.argv[3]) if len(sys.argv) > 3 else 20
setup = load_setup(
    WORK,
    MODEL,
    n_fit=int(os.environ.get("N_FIT", "400")),
    held_file="hearing/heldout.jsonl",
    n_held=N_HELD,
    fit_steps=int(os.environ.get("FIT_STEPS", "150")),
)
lm, held, head, vocab = setup.lm, setup.held, setup.head, setup.vocab
emb = lm.model.get_input_embeddings().weight
with torch.no_grad():
    HH = [project_batch(lm, [c], "cpu")[0][0] for c in held]

tok = lm.tokenizer
llm_tok_dir = sys.argv[4] if len(sys.argv) > 4 else None
from transformers import AutoTokenizer  # noqa: E402 (after the setup it needs)

chat_tok = AutoTokenizer.from_pretrained(llm_tok_dir) if llm_tok_dir else tok
chat = chat_tok.apply_chat_template(
    [{"role": "user", "content": "Repeat this text exactly:\n@@X@@"}], tokenize=False, add_generation_prompt=True
)
before, after = chat.split("@@X@@")
ids_b = tok(before, add_special_tokens=False, return_tensors="pt").input_ids[0]
ids_a = tok(after, add_special_tokens=False, return_tensors="pt").input_ids[0]


def copy(x):
    with torch.no_grad():
        e = torch.cat([emb[ids_b], x.to(emb.dtype), emb[ids_a]])[None]
        out = lm.model.generate(
            inputs_embeds=e,
            attention_mask=torch.ones(e.shape[:2], dtype=torch.long),
            max_new_tokens=60,
            do_sample=False,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.eos_token_id,
        )
    return tok.decode(out[0], skip_special_tokens=True).strip()


FILLERS = {"space": " ", "nl": "\n"}
fill_ids = {k: tok(v, add_special_tokens=False).input_ids for k, v in FILLERS.items()}
print("filler ids", fill_ids)
variants = {
    k: []
    for k in (
        "text",
        "ctc_text",
        "nonblank",
        "nonblank_dedup",
        "all_real",
        *[f"fill_{k}" for k in FILLERS],
        *[f"filldedup_{k}" for k in FILLERS],
    )
}
refs, ctcs = [], []
space = emb[fill_ids["space"][-1]]
table = emb[list(vocab.ids)]
for k in ("snap_fill_space", "snap_nonblank"):
    variants[k] = []
t0 = time.time()
for c, h in zip(held, HH):
    with torch.no_grad():
        lp = head(h[None])[0]
    best = lp.argmax(-1)
    ctc_ids = greedy_decode(lp[None], torch.tensor([h.shape[0]]), vocab)[0]
    keep = best != BLANK
    first = keep.clone()
    first[1:] &= best[1:] != best[:-1]
    refs.append(c.transcript)
    ctcs.append(tok.decode(ctc_ids))
    variants["text"].append(copy(emb[torch.tensor(c.target)]))
    variants["ctc_text"].append(copy(emb[torch.tensor(ctc_ids, dtype=torch.long)] if ctc_ids else emb[:0]))
    variants["nonblank"].append(copy(h[keep]))
    variants["nonblank_dedup"].append(copy(h[first]))
    variants["all_real"].append(copy(h))
    tok_emb = table[(best - 1).clamp(min=0)]
    variants["snap_fill_space"].append(copy(torch.where(keep[:, None], tok_emb, space[None])))
    variants["snap_nonblank"].append(copy(tok_emb[keep]))
    for k, ids in fill_ids.items():
        f = emb[ids[-1]]
        variants[f"fill_{k}"].append(copy(torch.where(keep[:, None], h, f[None])))
        variants[f"filldedup_{k}"].append(copy(torch.where(first[:, None], h, f[None])))
print(f"{len(held)} clips, {time.time() - t0:.0f} s; CTC WER {error_rates(refs, ctcs).wer:.3f}")
for k, outs in variants.items():
    print(f"{k:16s} copy WER {error_rates(refs, outs).wer:.3f}   e.g. {outs[0][:100]!r}")
print("ref:", refs[0][:100])
print("ctc:", ctcs[0][:100])
cos = torch.nn.functional.cosine_similarity
