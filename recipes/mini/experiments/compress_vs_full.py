"""LM-in-the-loop transcription warm-up from the aligned projector: every real frame (A) against
CTC-compressed frames (B: frames whose CTC argmax is not blank, consecutive repeats merged; the
frozen head selects, gradients flow through the kept vectors). Two copies of the student (LoRA r16
+ projector, lr 5e-4) step on the same batches of 8 hearing clips, alternately A, B, A, B in one
process, so machine load hits both alike; held-out WER of the LM's own transcript every EVERY steps
and the step-time ratio. RESULTS.md, "Why the student still does not listen", table 2.

    STEPS=30 EVERY=10 OMP_NUM_THREADS=1 python recipes/mini/experiments/compress_vs_full.py \
        runs/mini runs/mini/aligned runs/mini/weights/smollm2-135m-instruct

ARMS=compressed (or full) runs one arm; HELD=corpus/test.jsonl measures on the mini test items
(names and spoken numbers) instead of the hearing corpus's held-out sentences.

Experiment code, not part of the package: it reads the run's feature cache (``runs/mini/.feature-cache``).
"""

import copy
import json
import os
import random
import sys
import time
from pathlib import Path

import torch
from common import load_setup
from peft import LoraConfig, get_peft_model

from speechsum_cli.families.ctc_head import BLANK
from speechsum_cli.metrics.wer import error_rates
from speechsum_cli.training.model import lora_pattern

WORK, MODEL = Path(sys.argv[1]), sys.argv[2]
STEPS, BS, LR, EVERY, N_HELD = int(os.environ.get("STEPS", "30")), 8, 5e-4, int(os.environ.get("EVERY", "10")), 12
setup = load_setup(
    WORK, MODEL, n_fit=400, held_file=os.environ.get("HELD", "hearing/heldout.jsonl"), n_held=N_HELD, fit_steps=120
)
lm, train, held, head = setup.lm, setup.train, setup.held, setup.head

tok = lm.tokenizer
from transformers import AutoTokenizer  # noqa: E402 (after the setup it needs)

chat_tok = AutoTokenizer.from_pretrained(sys.argv[3])
chat = chat_tok.apply_chat_template(
    [{"role": "user", "content": "@@X@@\nTranscribe the audio exactly, word for word."}],
    tokenize=False,
    add_generation_prompt=True,
)
before, after = chat.split("@@X@@")
ids_b = tok(before, add_special_tokens=False).input_ids
ids_a = tok(after, add_special_tokens=False).input_ids
eos = tok.convert_tokens_to_ids("<|im_end|>")


def make_arm():
    model = copy.deepcopy(lm.model)
    pattern = lora_pattern(lm.family.language_model_prefix, lm.family.lora_targets)
    cfg = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=pattern,
        modules_to_save=list(lm.family.projector_prefixes),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    return {
        "model": model,
        "opt": torch.optim.AdamW(params, lr=LR, weight_decay=0.0),
        "params": params,
        "losses": [],
        "secs": [],
        "curve": [],
        "tokens": [],
    }


def audio_vectors(model, clip, compress):
    states = clip.states.float()[None]
    h = lm.family.project(model.get_base_model(), states)[0][: clip.tokens]
    if not compress:
        return h
    with torch.no_grad():
        best = head(h.detach()[None])[0].argmax(-1)
    keep = best != BLANK
    keep[1:] &= best[1:] != best[:-1]
    return h[keep] if keep.any() else h[:1]


def embed_row(model, clip, compress, with_answer=True):
    E = model.get_input_embeddings()
    a = audio_vectors(model, clip, compress)
    ans = clip.target + [eos] if with_answer else []
    pre = E(torch.tensor(ids_b))
    post = E(torch.tensor(ids_a + ans))
    x = torch.cat([pre, a, post])
    labels = torch.full((x.shape[0],), -100)
    if ans:
        labels[-len(ans) :] = torch.tensor(ans)
    return x, labels, a.shape[0]


def step(arm, batch, compress, lr_scale):
    model = arm["model"]
    model.train()
    t0 = time.perf_counter()
    rows_ = [embed_row(model, c, compress) for c in batch]
    n = max(r[0].shape[0] for r in rows_)
    X = torch.zeros(len(rows_), n, rows_[0][0].shape[1])
    L = torch.full((len(rows_), n), -100)
    M = torch.zeros(len(rows_), n, dtype=torch.long)
    for i, (x, length, _) in enumerate(rows_):
        X[i, : x.shape[0]] = x
        L[i, : x.shape[0]] = length
        M[i, : x.shape[0]] = 1
    for g in arm["opt"].param_groups:
        g["lr"] = LR * lr_scale
    out = model(inputs_embeds=X, attention_mask=M, labels=L)
    arm["opt"].zero_grad()
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(arm["params"], 1.0)
    arm["opt"].step()
    arm["secs"].append(time.perf_counter() - t0)
    arm["losses"].append(out.loss.item())
    arm["tokens"].append(sum(r[2] for r in rows_) / len(rows_))


def wer(arm, compress):
    model = arm["model"]
    model.eval()
    outs = []
    with torch.no_grad():
        for c in held:
            x, _, _ = embed_row(model, c, compress, with_answer=False)
            g = model.generate(
                inputs_embeds=x[None],
                attention_mask=torch.ones(1, x.shape[0], dtype=torch.long),
                max_new_tokens=80,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=eos,
            )
            outs.append(tok.decode(g[0], skip_special_tokens=True).strip())
    return error_rates([c.transcript for c in held], outs).wer, outs[0]


arms = {name: make_arm() for name in os.environ.get("ARMS", "full,compressed").split(",")}
rng = random.Random(0)
order = list(range(len(train)))
rng.shuffle(order)
for s in range(STEPS + 1):
    if s % EVERY == 0:
        for name, arm in arms.items():
            w, ex = wer(arm, name == "compressed")
            arm["curve"].append((s, round(w, 3)))
            print(f"step {s} {name}: held-out WER {w:.3f}  e.g. {ex[:90]!r}", flush=True)
    if s == STEPS:
        break
    batch = [train[i] for i in order[(s * BS) % len(order) :][:BS]]
    scale = min(1.0, (s + 1) / 3)
    for name, arm in arms.items():
        step(arm, batch, name == "compressed", scale)
    if s % 5 == 4:
        print(
            f"step {s + 1}: "
            + "  ".join(
                f"{n} loss {a['losses'][-1]:.3f} ({sum(a['secs'][-5:]) / 5:.1f} s/step, {a['tokens'][-1]:.0f} audio "
                f"tok)"
                for n, a in arms.items()
            ),
            flush=True,
        )
ratio = sum(arms["full"]["secs"]) / sum(arms["compressed"]["secs"]) if len(arms) == 2 else float("nan")
print(
    json.dumps(
        {
            n: {
                "curve": a["curve"],
                "loss_first": a["losses"][0],
                "loss_last5": sum(a["losses"][-5:]) / len(a["losses"][-5:]),
                "sec_per_step": sum(a["secs"]) / len(a["secs"]),
                "audio_tokens": sum(a["tokens"]) / len(a["tokens"]),
            }
            for n, a in arms.items()
        }
    ),
    "\nstep time ratio full/compressed",
    round(ratio, 2),
)
