"""``speechsum dpo``: flags -> DpoConfig -> stages.dpo.run -> output path on stdout."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from speechsum_cli.cli.options import (
    Json,
    Split,
    model_option,
    out_option,
    train_options,
)
from speechsum_cli.cli.output import echo_result
from speechsum_cli.data.dataset import ColumnMap
from speechsum_cli.training.settings import TrainSettings

EPILOG = (
    "Examples:\n\n"
    "  speechsum dpo --model runs/kd --data runs/pairs --out runs/dpo\n\n"
    "  accelerate launch --num_processes 4 -m speechsum_cli dpo -m runs/kd -d runs/pairs -o runs/dpo\n\n"
    "The reference policy is --model itself (--ckpt is a synonym): a new LoRA trains on its "
    "(merged) weights and the reference is the same network with that LoRA disabled (--full: a "
    "frozen copy). 1 epoch, beta 0.1 by default, as in the paper. Interrupted? Run the same "
    "command again: it resumes from the last checkpoint."
)


class Loss(str, Enum):
    sigmoid = "sigmoid"
    ipo = "ipo"
    hinge = "hinge"


@train_options("dpo", columns=("id", "audio", "query"))
def dpo(
    model: Annotated[
        str, model_option("Starting checkpoint and DPO reference (the KD model; adapter dirs are merged).")
    ],
    out: Annotated[Path, out_option("Output directory (adapter + processor + speechsum.json).")],
    train: TrainSettings,
    columns: ColumnMap,
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help="Preference pairs: 'speechsum pairs' output (id, audio, query, chosen, rejected).",
            show_default=False,
        ),
    ],
    beta: Annotated[float, typer.Option(help="KL strength towards the reference.", min=0.0)] = 0.1,
    loss: Annotated[Loss, typer.Option(help="sigmoid (DPO), ipo or hinge.")] = Loss.sigmoid,
    rpo_alpha: Annotated[
        float, typer.Option(help="Weight of an NLL term on the chosen answers (0 = off).", min=0.0)
    ] = 0.0,
    split: Split = None,
    as_json: Json = False,
) -> None:
    """Direct preference optimization on judge-built pairs, reference = --model (stage 3)."""
    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.stages.dpo import DpoConfig, run

    quiet_libraries()
    config = DpoConfig(
        data=data,
        model=model,
        out=out,
        train=train,
        beta=beta,
        loss=loss.value,
        rpo_alpha=rpo_alpha,
        split=split,
        columns=columns,
    )
    echo_result(run(config), as_json)
