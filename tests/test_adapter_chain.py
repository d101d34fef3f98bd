"""families.load of adapters trained on adapters (dpo on kd on sft on a base), as the recipe makes them."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def save_adapter(model, family, base_dir: Path, processor_dir: Path, out: Path, seed: int):
    """A random LoRA on ``model`` saved to ``out`` with ``base_dir`` as its base; returns the merged model."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(
        model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(out)
    config_file = out / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = str(base_dir)
    config_file.write_text(json.dumps(config))
    family.load_processor(str(processor_dir)).save_pretrained(out)
    return peft_model.merge_and_unload()


def test_a_chain_of_three_adapters_loads_with_every_adapter_merged(tiny_models, tmp_path):
    from speechsum_cli.families import get_family, load

    base = tiny_models("qwen2_audio")
    family = get_family("qwen2_audio")
    model = family.load_model(str(base), dtype=torch.float32, device="cpu")
    parent = base
    for i, name in enumerate(("sft", "kd", "dpo")):
        model = save_adapter(model, family, parent, base, tmp_path / name, seed=i)
        parent = tmp_path / name
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    loaded = load(str(tmp_path / "dpo"), device="cpu", dtype="float32").model.state_dict()
    assert set(loaded) == set(expected)
    changed = [k for k in expected if "q_proj" in k]
    assert changed
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, msg=key)
    base_state = family.load_model(str(base), dtype=torch.float32, device="cpu").state_dict()
    assert any(not torch.equal(base_state[k], loaded[k]) for k in changed)  # the adapters did something
