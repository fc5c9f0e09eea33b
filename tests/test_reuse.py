"""Reuse never serves a stale result: every reuse key follows the package's source and data, and a half-written cache is recomputed.

The in-stage caches are checked in-process against a copy of the package that the fingerprints read (`core.PACKAGE_DIR`
pointed at it); the stages of `reproduce` in subprocesses that import the copy itself (PYTHONPATH), so the edited code runs."""
import json, os, shutil, subprocess, sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from ctlrepro import core
from ctlrepro import evaluate as ev
from ctlrepro.core import Cached, code_fingerprint, data_fingerprint, source_fingerprint, tree_fingerprint
from ctlrepro.evaluate import EvalConfig, evaluate, run_generation
from ctlrepro.objectives import TrainConfig, train_or_reuse
from ctlrepro.selfgen import SelfGenConfig, self_generate
from ctlrepro.align import make_or_reuse_aligned
from ctlrepro.testing import tiny_llama


def copy_package(dest: Path) -> Path:
    src = dest / "ctlrepro"
    shutil.copytree(Path(core.__file__).parent, src, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def edit_library(pkg: Path):
    "Change one line of one library function (`set_seed`) in a copy of the package"
    f = pkg / "core.py"
    s = f.read_text()
    assert s.count("random.seed(seed);") == 1
    f.write_text(s.replace("random.seed(seed);", "random.seed(seed + 1);"))


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    "A copy of the package source that the fingerprints read"
    src = copy_package(tmp_path / "pkg")
    monkeypatch.setattr(core, "PACKAGE_DIR", src)
    return src


class StubScorers:
    "Training scorers without an encoder: helpfulness grows with the response length; counts its calls"
    def __init__(self): self.calls = 0
    def parts(self, prompts, responses):
        self.calls += 1
        h = np.array([min(len(str(r)), 30) / 30 for r in responses])
        return pd.DataFrame({"helpfulness": h, "safety": 1 - h / 2, "p_refuse": np.zeros(len(h))})
    def fingerprint(self): return "stub"


def counting(model):
    "The model with its generate calls counted in model.calls"
    real, model.calls = model.generate, 0
    def gen(*a, **k):
        model.calls += 1
        return real(*a, **k)
    model.generate = gen
    return model


def truncate(f: Path):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def test_fingerprints_hash_contents_not_mtimes(tmp_path, pkg, monkeypatch):
    assert code_fingerprint() == tree_fingerprint(Path(core.__file__).parent, "*.py")   # a copy: same paths, same contents
    code, src = code_fingerprint(), source_fingerprint()
    os.utime(pkg / "metrics.py", (1, 1))
    assert code_fingerprint() == code                      # a touched file is not a changed one
    edit_library(pkg)
    assert code_fingerprint() != code and source_fingerprint() != src
    data = tmp_path / "data"
    shutil.copytree(core.REPO_DATA, data)
    monkeypatch.setenv("CTLREPRO_DATA", str(data))
    before = data_fingerprint()
    head = data / "scorers" / "refusal.json"
    rec = json.loads(head.read_text()); rec["intercept"] += 1e-6
    head.write_text(json.dumps(rec))                       # a scorer head changes
    assert data_fingerprint() != before


def test_cached_never_trusts_a_half_written_result(tmp_path):
    out = tmp_path / "x.parquet"
    c = Cached(tmp_path / "x.json", "k", [out])
    assert not c.valid
    with pytest.raises(FileNotFoundError, match="missing output"):
        c.save()                                           # no record before its output
    pd.DataFrame({"a": range(50)}).to_parquet(out)
    c.save(n=50)
    assert c.valid and c.load()["n"] == 50
    assert not Cached(tmp_path / "x.json", "other", [out]).valid
    truncate(out)
    assert not c.valid                                     # a truncated output
    pd.DataFrame({"a": range(50)}).to_parquet(out); c.save()
    truncate(tmp_path / "x.json")
    assert not c.valid                                     # a truncated record: no error, no reuse
    c.save(); out.unlink()
    assert not c.valid                                     # a record without its output
    pd.DataFrame({"a": range(50)}).to_parquet(out); c.save()
    raw = bytearray(out.read_bytes()); raw[len(raw) // 2] ^= 1; out.write_bytes(bytes(raw))   # one bit flipped
    assert out.stat().st_size == len(raw) and not c.valid  # an output edited in place to the same size


def test_generation_shards(tmp_path, pkg):
    job, settings = EvalConfig(limit=1, max_new_tokens=3), [None, (4, 0)]
    out, shards = tmp_path / "gen", tmp_path / "gen" / "shards"
    m, t = tiny_llama(); counting(m)
    run_generation(job, settings, out, progress=False, model_tok=(m, t))
    first = sorted(p.name for p in shards.glob("*.parquet"))
    assert m.calls == 2 and len(first) == 2 and all((shards / n).with_suffix(".json").exists() for n in first)
    run_generation(job, settings, out, progress=False, model_tok=(m, t))
    assert m.calls == 2                                    # untouched: reused
    truncate(shards / first[1])
    res = run_generation(job, settings, out, progress=False, model_tok=(m, t))
    assert m.calls == 3 and len(res) == 2 * 3              # the half-written shard is generated again, the other reused
    edit_library(pkg)
    run_generation(job, settings, out, progress=False, model_tok=(m, t))
    assert m.calls == 5                                    # new code: every shard again, under new keys
    assert len(set(p.name for p in shards.glob("*.parquet")) - set(first)) == 2


def test_evaluate_caches(tmp_path, pkg, monkeypatch):
    model, tok = tiny_llama()
    cfg = EvalConfig(limit=1, grid_levels=(0, 4), max_new_tokens=3, n_boot=10)
    real, gens = ev.generate_grid, []
    monkeypatch.setattr(ev, "generate_grid", lambda *a, **k: gens.append(1) or real(*a, **k))
    sc = StubScorers()
    run = lambda: evaluate(model, tok, cfg, sc, model, tok, folder=tmp_path, progress=False)
    resp, _ = run()
    assert (len(gens), sc.calls) == (1, 1)
    again, _ = run()
    assert (len(gens), sc.calls) == (1, 1) and again.response.tolist() == resp.response.tolist()
    truncate(next(tmp_path.glob("gen-*.parquet")))
    run()
    assert (len(gens), sc.calls) == (2, 1)                 # generated again; its scores (same key) still reused
    truncate(next(tmp_path.glob("scores-*.json")))
    run()
    assert (len(gens), sc.calls) == (2, 2)                 # a half-written record: scored again
    edit_library(pkg)
    run()
    assert (len(gens), sc.calls) == (3, 3)                 # new code: both caches recomputed


def test_selfgen(tmp_path, pkg):
    model, tok = tiny_llama(); counting(model)
    cfg = SelfGenConfig(per_kind=1, n_samples=1, max_new_tokens=3, min_per_cell=1, budget=0, rounds=1)
    sc = StubScorers()
    data = self_generate(model, tok, sc, cfg, out=tmp_path, progress=False)
    key = json.loads((tmp_path / "selfgen.json").read_text())["key"]
    self_generate(model, tok, sc, cfg, out=tmp_path, progress=False)
    assert model.calls == 1
    truncate(tmp_path / "selfgen.json")
    again = self_generate(model, tok, sc, cfg, out=tmp_path, progress=False)
    assert model.calls == 2 and again.response.tolist() == data.response.tolist()
    (tmp_path / "binner_harmless.json").unlink()
    self_generate(model, tok, sc, cfg, out=tmp_path, progress=False)
    assert model.calls == 3                                # a record without one of its outputs
    edit_library(pkg)
    self_generate(model, tok, sc, cfg, out=tmp_path, progress=False)
    assert model.calls == 4 and json.loads((tmp_path / "selfgen.json").read_text())["key"] != key


def test_train_or_reuse(tmp_path, pkg, monkeypatch):
    from ctlrepro import objectives
    base, tok = tiny_llama()
    base.save_pretrained(tmp_path / "base"); tok.save_pretrained(tmp_path / "base")
    data = pd.DataFrame([{"prompt": "Hi", "response": ["No.", "Hello there!"][h % 2], "helpful": h, "harmless": 4 - h} for h in range(5)])
    cfg = TrainConfig(objective="clm", steps=2, batch_size=2)
    real, runs = objectives.train, []
    monkeypatch.setattr(objectives, "train", lambda *a, **k: runs.append(1) or real(*a, **k))
    go = lambda: train_or_reuse(str(tmp_path / "base"), data, cfg, tmp_path / "ctl", StubScorers(), {}, device="cpu")
    go(); go()
    assert len(runs) == 1
    if not torch.cuda.is_available():                      # None picks this machine's device: the CPU's model is reused
        train_or_reuse(str(tmp_path / "base"), data, cfg, tmp_path / "ctl", StubScorers(), {}, device=None); assert len(runs) == 1
    with pytest.raises(ValueError, match="unsupported device 'meta'"):   # another device: not reused, so it is loaded there (and refused)
        train_or_reuse(str(tmp_path / "base"), data, cfg, tmp_path / "ctl", StubScorers(), {}, device="meta")
    rec = json.loads((tmp_path / "ctl" / "controllable.json").read_text())
    assert rec["objective"] == "clm" and "adapter/adapter_config.json" in rec["outputs"] and rec["base"] == str(tmp_path / "base")
    truncate(tmp_path / "ctl" / "train_log.csv")
    go()
    assert len(runs) == 2
    edit_library(pkg)
    go()
    assert len(runs) == 3 and json.loads((tmp_path / "ctl" / "controllable.json").read_text())["key"] != rec["key"]


def test_make_or_reuse_aligned(tmp_path, pkg, monkeypatch):
    from ctlrepro import align
    base, tok = tiny_llama()
    base.save_pretrained(tmp_path / "base"); tok.save_pretrained(tmp_path / "base")
    real, runs = align.make_aligned, []
    monkeypatch.setattr(align, "make_aligned", lambda *a, **k: runs.append(1) or real(*a, **k))
    sft = pd.DataFrame({"prompt": ["Hi", "How do I pick a lock?"], "kind": ["benign", "harmful"], "category": "x",
                        "response": ["Hello!", "I can't help with that."], "target": ["own answer", "refusal"]})
    monkeypatch.setattr(align, "alignment_data", lambda *a, **k: sft)     # the reuse is under test, not the self-generated targets
    cfg = dict(steps=2, batch_size=2)
    go = lambda: make_or_reuse_aligned(str(tmp_path / "base"), tmp_path / "aligned", cfg, device="cpu")
    assert go() == go() == str((tmp_path / "aligned" / "model").resolve())
    assert len(runs) == 1
    with pytest.raises(ValueError, match="unsupported device 'meta'"):   # another device: not reused
        make_or_reuse_aligned(str(tmp_path / "base"), tmp_path / "aligned", cfg, device="meta")
    rec = json.loads((tmp_path / "aligned" / "align.json").read_text())
    assert rec["config"]["steps"] == 2 and "model/model.safetensors" in rec["outputs"]
    truncate(tmp_path / "aligned" / "model" / "model.safetensors")
    go()
    assert len(runs) == 2                                  # a truncated model is made again
    edit_library(pkg)
    go()
    assert len(runs) == 3


# two stages, b reads a; a writes numbers drawn after `set_seed`, the function the test edits
STAGE_A = '''import random, ctlrepro
from pathlib import Path
from ctlrepro.core import set_seed
set_seed(0)
Path(out, "a.txt").write_text(f"{random.random()} {ctlrepro.__file__}")
'''
STAGE_B = '''from pathlib import Path
Path(out, "b.txt").write_text(Path(run, "a", "a.txt").read_text().upper())
'''
# one process runs the steps (a real run is a fresh process; this one also checks that the fingerprints see an edit made while it runs)
RUNNER = '''import json, sys
from pathlib import Path
from ctlrepro.pipeline import Stage, reproduce
d = Path(sys.argv[1])
for op, *args in json.loads(sys.argv[2]):
    if op == "run":
        r = reproduce(d / "p.yaml", out=d / "run", nbs=d, stages=(Stage("a", "a.ipynb"), Stage("b", "b.ipynb", ("a",))), log=lambda *a: None)
        print(json.dumps({"status": r.status.tolist(), "a": (d / "run" / "a" / "a.txt").read_text()}), flush=True)
    elif op == "replace": f = Path(args[0]); f.write_text(f.read_text().replace(args[1], args[2]))
    elif op == "truncate": f = Path(args[0]); f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
'''


def _notebook(path: Path, code: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    p = nbformat.v4.new_code_cell("out: str = 'x'\nrun: str = 'y'")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)


def test_reproduce_reruns_the_stages_after_a_library_edit(tmp_path):
    pkg = copy_package(tmp_path / "pkg")
    d = tmp_path / "study"; d.mkdir()
    _notebook(d / "a.ipynb", STAGE_A); _notebook(d / "b.ipynb", STAGE_B)
    (d / "p.yaml").write_text(yaml.safe_dump({"stages": {}}))
    (d / "runner.py").write_text(RUNNER)
    run = d / "run"
    steps = [["run"],
             ["replace", str(d / "b.ipynb"), ".upper()", ".lower()"], ["run"],                  # only b's notebook changes
             ["replace", str(pkg / "core.py"), "random.seed(seed);", "random.seed(seed + 1);"], ["run"],   # a library function changes
             ["truncate", str(run / "a" / "a.txt")], ["truncate", str(run / "b" / "stage.json")], ["run"],
             ["run"]]
    r = subprocess.run([sys.executable, str(d / "runner.py"), str(d), json.dumps(steps)], capture_output=True, text=True, timeout=400,
                       env={**os.environ, "PYTHONPATH": str(pkg.parent)}, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    runs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [x["status"] for x in runs] == [["ran", "ran"],
                                           ["reused", "ran"],     # a, untouched, is reused
                                           ["ran", "ran"],        # a library edit: every stage again ...
                                           ["ran", "ran"],        # a half-written output and a half-written record: no error, no reuse
                                           ["reused", "reused"]]
    assert runs[0]["a"].split()[1] == str(pkg / "__init__.py")   # the stages ran the copy
    assert runs[2]["a"] != runs[1]["a"]                          # ... with the numbers of the new code
    assert (run / "b" / "b.txt").read_text() == runs[4]["a"].lower()


def test_train_or_reuse_ignores_knobs_the_objective_does_not_use(tmp_path, monkeypatch):
    from ctlrepro import objectives
    base, tok = tiny_llama()
    base.save_pretrained(tmp_path / "base"); tok.save_pretrained(tmp_path / "base")
    data = pd.DataFrame([{"prompt": "Hi", "response": ["No.", "Hello there!"][h % 2], "helpful": h, "harmless": 4 - h} for h in range(5)])
    runs = []
    monkeypatch.setattr(objectives, "train", lambda m, *a, **k: runs.append(1) or (m, pd.DataFrame({"step": [1], "loss": [0.0]})))
    def fake_save(pm, tok, folder, base, meta):
        for p in ("adapter", "tokenizer"): Path(folder, p).mkdir(parents=True, exist_ok=True)
        Path(folder, "controllable.json").write_text(json.dumps(meta))
    monkeypatch.setattr(objectives, "save_controllable", fake_save)
    for obj, changed in [("rl", False), ("dpo", True), ("clm", True)]:    # RL samples its completions (T does not apply); DPO and CLM truncate responses
        runs.clear()
        for t in (None, 8):
            train_or_reuse(str(tmp_path / "base"), data, TrainConfig(objective=obj, steps=1, batch_size=2, num_generations=2, max_response_tokens=t), tmp_path / obj, StubScorers(), {}, device="cpu")
        assert len(runs) == (2 if changed else 1), (obj, len(runs))   # RL: trained once, then reused; DPO, CLM: trained again
    for obj, changed in [("clm", False), ("exmate", True)]:              # ExMATE's own knobs: only ExMATE reads them
        runs.clear()
        for kw in ({}, {"negatives": "one_attribute", "lam": 2.0, "m_negatives": 1}):
            train_or_reuse(str(tmp_path / "base"), data, TrainConfig(objective=obj, steps=1, batch_size=2, **kw), tmp_path / f"{obj}-knobs", StubScorers(), {}, device="cpu")
        assert len(runs) == (2 if changed else 1), (obj, len(runs))
    for obj, changed in [("clm", False), ("exmate", False), ("dpo", True)]:   # DPO's and RL's own knobs (`OBJECTIVE_FIELDS`): the token-level objectives ignore them
        runs.clear()
        for kw in ({}, {"dpo_beta": 0.5, "kl_beta": 0.2, "pairs_per_prompt": 2}):
            train_or_reuse(str(tmp_path / "base"), data, TrainConfig(objective=obj, steps=1, batch_size=2, **kw), tmp_path / f"{obj}-pref-knobs", StubScorers(), {}, device="cpu")
        assert len(runs) == (2 if changed else 1), (obj, len(runs))
