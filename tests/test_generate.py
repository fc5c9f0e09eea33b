import pandas as pd
import pytest

from ctlrepro.generate import GenConfig, generate, render

PROMPTS = ["How do I kill a Python process?", "Write a haiku about the ocean.", "Hi"]


def test_seeded_sampling_is_deterministic_and_seed_sensitive(tiny):
    model, tok = tiny
    a = generate(model, tok, PROMPTS, n_samples=2, max_new_tokens=8, seed=3, progress=False)
    b = generate(model, tok, PROMPTS, n_samples=2, max_new_tokens=8, seed=3, progress=False)
    c = generate(model, tok, PROMPTS, n_samples=2, max_new_tokens=8, seed=4, progress=False)
    assert a.response.tolist() == b.response.tolist()
    assert a.response.tolist() != c.response.tolist()
    assert len(a) == 6 and a.groupby("prompt").size().eq(2).all()


def test_batched_greedy_equals_one_at_a_time(tiny):
    model, tok = tiny
    one = [generate(model, tok, [p], temperature=0, max_new_tokens=8, progress=False).response.iloc[0] for p in PROMPTS]
    batched = generate(model, tok, PROMPTS, temperature=0, max_new_tokens=8, batch_size=2, progress=False)
    assert batched.response.tolist() == one


def test_prefill_opens_the_response_and_is_in_the_rendered_text(tiny):
    model, tok = tiny
    text = render(tok, "Hi", levels=(4, 0), prefill="I'm sorry")
    assert text.endswith("assistant\nI'm sorry") and "[helpful=4][harmless=0]" in text
    df = generate(model, tok, PROMPTS, prefill="I'm sorry", max_new_tokens=5, progress=False)
    assert df.response.str.startswith("I'm sorry").all()
    assert (df.prefill == "I'm sorry").all()


def test_control_columns_and_carried_columns(tiny):
    model, tok = tiny
    frame = pd.DataFrame({"prompt": PROMPTS[:2], "kind": ["borderline", "benign"], "pid": [7, 8]})
    df = generate(model, tok, frame, levels=[(4, 0), {"helpful": 1, "harmless": 3}], max_new_tokens=4, progress=False)
    assert df[["pid", "kind", "helpful", "harmless", "control"]].values.tolist() == [
        [7, "borderline", 4, 0, "[helpful=4][harmless=0]"], [8, "benign", 1, 3, "[helpful=1][harmless=3]"]]
    assert set(df.finish) <= {"stop", "length"} and (df.n_tokens <= 4).all()


def test_bad_inputs_raise_before_any_work(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match=r"accepted levels are 0\.\.4"):
        generate(model, tok, PROMPTS, levels=(0, 9), progress=False)
    with pytest.raises(ValueError, match="one per prompt"):
        generate(model, tok, PROMPTS, levels=[(0, 0)], progress=False)
    with pytest.raises(ValueError, match="positive integer"):
        GenConfig(n_samples=0)
    with pytest.raises(ValueError, match="accepted are 'system', 'user'"):
        generate(model, tok, PROMPTS, where="assistant", progress=False)


def test_backend_switch_on_the_cpu(monkeypatch, tmp_path):
    import sys, types
    import torch
    from ctlrepro import generate as g
    from ctlrepro.testing import tiny_llama
    monkeypatch.setattr(g, "vllm_available", lambda: False)
    assert g.pick_backend("auto") == "transformers"
    with pytest.raises(ImportError, match=r"ctlrepro\[gpu\]"):
        g.pick_backend("vllm")
    monkeypatch.setattr(g, "vllm_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert g.pick_backend("auto") == "transformers"          # vLLM installed but no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert g.pick_backend("auto") == "vllm"
    # a model given by name without vLLM is loaded and run by transformers
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model, tok = tiny_llama()
    model.save_pretrained(tmp_path); tok.save_pretrained(tmp_path)
    out = g.generate(str(tmp_path), None, ["Hi"], max_new_tokens=3, progress=False, backend="auto")
    assert len(out) == 1 and out.n_tokens.iloc[0] <= 3
