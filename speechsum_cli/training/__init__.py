"""What every training stage (sft, distill, dpo) shares.

* :mod:`.settings`: :class:`TrainSettings`, the shared fields, documented once;
* :mod:`.model`: LoRA on the language model, parameter groups and their table, merging;
* :mod:`.trainer`: :class:`SpeechTrainer`, a transformers ``Trainer`` for speech (logging on
  stderr, per-step statistics, the first-step gradient check, loss on answer tokens);
* :mod:`.run`: a run's setup and finish (work dir, resume plan, FSDP-safe save, merge,
  manifest, cleanup).

A training stage adds only its method on top: its loss, its collator and its row contract.
Nothing here imports a stage.
"""
