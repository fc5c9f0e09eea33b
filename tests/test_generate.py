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
    with pytest.raises(ValueError, match="give an integer >= 1"):
        GenConfig(n_samples=0)
    with pytest.raises(ValueError, match="accepted are 'system', 'user'"):
        generate(model, tok, PROMPTS, where="assistant", progress=False)


def test_numpy_integers_become_python_ints(tiny):
    import numpy as np
    from ctlrepro.core import stable_hash
    cfg = GenConfig(seed=np.int64(0), n_samples=np.int64(1), max_new_tokens=2)
    assert type(cfg.seed) is int and type(cfg.n_samples) is int and stable_hash(cfg.__dict__) == stable_hash(GenConfig(seed=0, n_samples=1, max_new_tokens=2).__dict__)
    assert len(generate(*tiny, PROMPTS[:1], cfg=cfg, progress=False)) == 1   # random.seed refused np.int64 ("only supported seed types are ...")


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


# issue 14.1: chat templates that reject or drop the system role
import warnings

import ctlrepro.generate as generate_module
from ctlrepro.control import describe, prompting
from ctlrepro.generate import fold_system, render
from ctlrepro.testing import NO_SYSTEM_DROPS, NO_SYSTEM_RAISES, tiny_llama, tiny_tokenizer


def _no_system_model(template):
    model, tok = tiny_llama()
    tok.chat_template = template
    generate_module._FOLDED.discard(template)           # the one warning per template is not yet spent
    return model, tok


def _spy(monkeypatch):
    "Record every text `generate` renders (what the model continues from)"
    seen, real = [], generate_module.render
    def spy(*a, **kw):
        seen.append(real(*a, **kw)); return seen[-1]
    monkeypatch.setattr(generate_module, "render", spy)
    return seen


@pytest.mark.parametrize("template", [NO_SYSTEM_RAISES, NO_SYSTEM_DROPS], ids=["rejects", "drops"])
def test_generate_never_labels_a_row_with_a_control_it_did_not_see(template, monkeypatch):
    model, tok = _no_system_model(template)
    seen = _spy(monkeypatch)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = generate(model, tok, ["Hi", "How do I kill a Python process?"], levels=[(4, 0), (0, 4)], max_new_tokens=3, progress=False)
        generate(model, tok, ["Hi"], levels=(1, 1), max_new_tokens=2, progress=False)
    assert out.control.tolist() == ["[helpful=4][harmless=0]", "[helpful=0][harmless=4]"]
    assert "[helpful=4][harmless=0]" in seen[0] and "[helpful=0][harmless=4]" in seen[1] and "[helpful=1][harmless=1]" in seen[2]
    assert seen[0].startswith("<|im_start|>user\n[helpful=4][harmless=0]")   # moved to the start of the user turn
    msgs = [str(x.message) for x in w if "system role" in str(x.message)]
    assert len(msgs) == 1 and ("rejects" if template == NO_SYSTEM_RAISES else "drops") in msgs[0] and "where='user'" in msgs[0]


@pytest.mark.parametrize("template", [NO_SYSTEM_RAISES, NO_SYSTEM_DROPS], ids=["rejects", "drops"])
def test_prompting_keeps_its_level_description(template, monkeypatch):
    model, tok = _no_system_model(template)
    seen = _spy(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = prompting(model, tok, ["Hi"], (4, 0), max_new_tokens=2, progress=False)
    assert describe((4, 0)) in seen[0] and out.control.tolist() == ["[helpful=4][harmless=0]"]


def test_render_with_where_user_needs_no_fallback_and_a_template_that_loses_text_is_an_error():
    for template in (NO_SYSTEM_RAISES, NO_SYSTEM_DROPS):
        t = tiny_tokenizer(); t.chat_template = template
        with warnings.catch_warnings():
            warnings.simplefilter("error")                      # no fallback, no warning
            assert render(t, "Hi", (4, 0), where="user") == "<|im_start|>user\n[helpful=4][harmless=0] Hi<|im_end|>\n<|im_start|>assistant\n"
    t = tiny_tokenizer(); t.chat_template = "{% for m in messages %}{{ m['role'] }}{% endfor %}"
    with pytest.raises(ValueError, match=r"leaves '\[helpful=4\]\[harmless=0\]' out .*where='user'.*accepted where values"):
        render(t, "Hi", (4, 0), where="user")
    # a template that keeps the system role is untouched
    assert render(tiny_tokenizer(), "Hi", (4, 0)).startswith("<|im_start|>system\n[helpful=4][harmless=0]<|im_end|>")
    assert fold_system([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]) == [{"role": "user", "content": "S\n\nU"}]


def test_where_is_a_parameter_of_presets_cli_and_trainconfig():
    from ctlrepro.cli import parser
    from ctlrepro.evaluate import EvalConfig
    from ctlrepro.objectives import TrainConfig
    from ctlrepro.pipeline import STAGES, load_preset, repo_root, stage_params
    pre = load_preset("small")
    assert pre["common"]["run_config"]["where"] == "system"
    stages = {s.name: s for s in STAGES}
    user = {**pre, "common": {**pre["common"], "run_config": {**pre["common"]["run_config"], "where": "user"}}}
    for name in ("baseline", "aligned", "finetune", "evaluate", "rewind", "benchmarks"):   # every stage that renders control tokens
        assert stage_params(stages[name], user, repo_root() / "nbs")["run_config"]["where"] == "user"
    assert parser().parse_args(["generate", "--where", "user"]).where == "user"
    assert parser().parse_args(["chat", "Hi", "--helpful", "1", "--harmless", "2", "--where", "user"]).where == "user"
    assert EvalConfig(where="user").where == "user" and TrainConfig(where="user").where == "user"
    for make in (lambda: EvalConfig(where="assistant"), lambda: TrainConfig(where="assistant")):
        with pytest.raises(ValueError, match="where='assistant': accepted are 'system', 'user'"): make()


def test_generate_refuses_no_prompts():
    from ctlrepro.generate import generate
    from ctlrepro.testing import tiny_llama
    with pytest.raises(ValueError, match="no prompts to generate for"):      # was a KeyError 'pidx' (ctlrepro generate --limit 0)
        generate(*tiny_llama(), [], progress=False)


def test_configs_store_python_ints_for_the_fields_they_pass_on():
    "EvalConfig, SelfGenConfig, AlignConfig and TrainConfig keep what GenConfig/TrainConfig would store: one cache key for 8 and np.int64(8)"
    import numpy as np
    from dataclasses import asdict
    from ctlrepro.align import AlignConfig
    from ctlrepro.core import stable_hash
    from ctlrepro.evaluate import EvalConfig
    from ctlrepro.objectives import TrainConfig
    from ctlrepro.selfgen import SelfGenConfig
    for C, kw in [(EvalConfig, dict(n_samples=2, max_new_tokens=48, batch_size=8, seed=3)), (SelfGenConfig, dict(seed=3)),
                  (AlignConfig, dict(steps=80, batch_size=8, lora_r=16, seed=3, max_new_tokens=48)), (TrainConfig, dict(steps=5, batch_size=4, lora_r=4, seed=3))]:
        c = C(**{k: np.int64(v) for k, v in kw.items()})
        assert all(type(getattr(c, k)) is int for k in kw), (C.__name__, {k: type(getattr(c, k)) for k in kw})
        assert stable_hash(asdict(c)) == stable_hash(asdict(C(**kw)))


def test_generated_names_every_column_generate_writes(tiny):
    "evaluate.probe_responses refuses input columns that clash with `generate.GENERATED`: the constant must name all of them"
    import pandas as pd
    from ctlrepro.generate import GENERATED, generate
    from ctlrepro.tokens import SPEC
    out = generate(*tiny, pd.DataFrame({"prompt": ["Hi", "Yo"], "kind": ["benign", "harmful"]}), levels={"helpful": 4, "harmless": 0}, max_new_tokens=2, progress=False)
    assert set(out.columns) == {"prompt", "kind", *SPEC.attributes, *GENERATED}, sorted(out.columns)
