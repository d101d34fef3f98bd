"""Offline summary metrics shared by eval and the offline pairs judge (one implementation each).

* :mod:`.rouge` — ROUGE-1/2/L F1 with Porter stemming (rouge-score).
* :mod:`.wer` — WER/CER with jiwer after one documented normalization.
* :mod:`.faithfulness` — unsupported content: numbers and names in a summary never said.
* :mod:`.repetition` — repeated n-grams and sentences.
* :mod:`.style` — compliance with the requested style preset and limits.
"""
