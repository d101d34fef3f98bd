"""The frozen-encoder feature cache: exact, never stale, bounded, safe under kill -9 and processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.families import Prompt, load
from speechsum_cli.inference import feature_cache as fc
from tests.conftest import espeak

runner = CliRunner()
CACHED_FAMILIES = ["voxtral", "qwen2_audio"]


def clips(seed: int, seconds=(2.0, 3.5, 1.5)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(16_000 * s))).astype(np.float32) for s in seconds]


def logits(lm, audios, answer="ok"):
    batch = lm.to_model(lm.encode([Prompt(query="q", audio=a, answer=answer) for a in audios]).inputs)
    with torch.no_grad():
        return lm.model(**batch).logits


@pytest.fixture
def frozen(tiny_models, request):
    lm = load(str(tiny_models(request.param)), device="cpu", dtype="float32")
    lm.model.requires_grad_(False)
    return lm


@pytest.mark.parametrize("frozen", CACHED_FAMILIES, indirect=True)
def test_cached_forward_equals_the_encoder_and_reuses_every_window(frozen, tmp_path):
    reference = logits(frozen, clips(0))
    cache = fc.FeatureCache(tmp_path / "cache")
    fc.attach(frozen.model, frozen.family, cache)
    first = logits(frozen, clips(0))
    assert (cache.stats.misses, cache.stats.writes) == (3, 3)
    # Another batch order and composition: the same windows come from disk.
    again = logits(frozen, clips(0)[::-1])
    assert cache.stats.hits == 3 and cache.stats.misses == 3
    assert torch.equal(first, reference)
    assert torch.equal(again, logits_detached(frozen, clips(0)[::-1]))


def logits_detached(lm, audios):
    forward = fc.encoder_module(lm.model, lm.family).forward
    forward.detach()
    try:
        return logits(lm, audios)
    finally:
        fc.encoder_module(lm.model, lm.family).forward = forward


@pytest.mark.parametrize("frozen", ["voxtral"], indirect=True)
def test_a_changed_encoder_audio_or_feature_setting_never_reads_a_stale_entry(frozen, tmp_path):
    cache = fc.FeatureCache(tmp_path / "cache")
    handle = fc.attach(frozen.model, frozen.family, cache)
    audio = clips(1, (2.0,))
    logits(frozen, audio)
    assert cache.stats.writes == 1

    # Changed encoder weights: a new fingerprint, so a miss, and the output follows the new weights.
    encoder = fc.encoder_module(frozen.model, frozen.family)
    with torch.no_grad():
        next(encoder.parameters()).add_(0.5)
    handle = fc.attach(frozen.model, frozen.family, cache)
    changed = logits(frozen, audio)
    assert cache.stats.misses == 2 and cache.stats.hits == 0
    handle.detach()
    assert torch.equal(changed, logits(frozen, audio))

    # Changed audio (one sample) and changed feature settings (another padding value): misses.
    handle = fc.attach(frozen.model, frozen.family, cache)
    nudged = audio[0].copy()
    nudged[100] += 1e-3
    logits(frozen, [nudged])
    assert cache.stats.misses == 3
    fe = frozen.processor.feature_extractor
    fe.padding_value = 0.25
    try:
        logits(frozen, audio)
    finally:
        fe.padding_value = 0.0
    assert cache.stats.misses == 4 and cache.stats.hits == 0


def test_an_unreadable_entry_is_a_miss_and_a_killed_writers_file_is_removed(tmp_path):
    cache = fc.FeatureCache(tmp_path / "cache")
    key = "ab" + "0" * 38
    cache.put(key, np.arange(10, dtype=np.float32))
    cache.path(key).write_bytes(cache.path(key).read_bytes()[:40])  # half a file
    assert cache.get(key) is None and not cache.path(key).exists()
    stale = cache.path(key).parent / ".tmp-123-abc"
    stale.write_bytes(b"partial")
    old = time.time() - 2 * fc.STALE_TMP_SECONDS
    os.utime(stale, (old, old))
    fc.FeatureCache(tmp_path / "cache")
    assert not stale.exists()


WRITER = """
import sys, numpy as np
from speechsum_cli.inference.feature_cache import FeatureCache
cache = FeatureCache(sys.argv[1])
worker = int(sys.argv[2])
for i in range(100000):
    key = f"{i % 400:040x}"
    cache.put(key, np.full(20000, i % 400, dtype=np.float32))
    if i == 50:
        print("writing", flush=True)
"""


def test_kill_9_and_concurrent_writers_leave_only_whole_entries(tmp_path):
    directory = tmp_path / "cache"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(directory), str(w)], stdout=subprocess.PIPE, text=True)
        for w in range(2)
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "writing"
    time.sleep(1.0)
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    cache = fc.FeatureCache(directory)
    entries = list(directory.glob("??/*.npy"))
    assert entries
    for path in entries:
        value = cache.get(path.stem)
        assert value is not None and value.shape == (20000,)
        assert np.all(value == int(path.stem, 16))  # the entry's own bytes, whole


def test_the_cache_stays_under_its_bound_dropping_least_recently_used(tmp_path):
    entry = np.zeros(25_000, dtype=np.float32)  # ~100 kB on disk
    cache = fc.FeatureCache(tmp_path / "cache", max_bytes=500_000)
    for i in range(4):
        cache.put(f"{i:040x}", entry)
        time.sleep(0.01)
    os.utime(cache.path(f"{0:040x}"), (time.time() + 5, time.time() + 5))  # 0 was just read
    for i in range(4, 8):
        cache.put(f"{i:040x}", entry)
    total = sum(p.stat().st_size for p in (tmp_path / "cache").glob("??/*.npy"))
    assert total <= 500_000 and cache.stats.evicted >= 3
    assert cache.get(f"{0:040x}") is not None  # recently used: kept
    assert cache.get(f"{1:040x}") is None  # the oldest unused: gone


def test_sft_encodes_each_window_once_across_epochs_and_records_it(tiny_models, tmp_path):
    wav = espeak("The budget moved to March.", tmp_path / "short.wav")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "audio": str(wav), "query": f"Summarize {i}.", "summary": "A short summary."})
            + "\n"
            for i in range(4)
        )
    )
    out = tmp_path / "runs" / "sft"
    result = runner.invoke(
        app,
        [
            "sft",
            "--data",
            str(rows),
            "--model",
            str(tiny_models("voxtral")),
            "--out",
            str(out),
            "--epochs",
            "3",
            "--batch-size",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "speechsum.json").read_text())["feature_cache"]
    # one distinct clip: computed once (the first call), then read for every other row and epoch
    assert recorded["misses"] == 1 and recorded["writes"] == 1
    assert recorded["hits"] == 4 * 3 - 1
    assert Path(recorded["directory"]) == (tmp_path / "runs" / fc.CACHE_DIRNAME).resolve()

    off = tmp_path / "runs" / "sft-off"
    result = runner.invoke(
        app,
        [
            "sft",
            "--data",
            str(rows),
            "--model",
            str(tiny_models("voxtral")),
            "--out",
            str(off),
            "--epochs",
            "3",
            "--batch-size",
            "2",
            "--no-feature-cache",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((off / "speechsum.json").read_text())
    assert "feature_cache" not in manifest
    # the same training with and without the cache
    on_metrics = json.loads((out / "speechsum.json").read_text())["metrics"]
    assert manifest["metrics"]["train_loss_mean"] == pytest.approx(on_metrics["train_loss_mean"], abs=1e-5)
