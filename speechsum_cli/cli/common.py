"""Small helpers shared by the CLI commands."""

from __future__ import annotations

import os


def quiet_libraries() -> None:
    """Silence transformers/datasets info logs and bars: our own progress goes to stderr."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
