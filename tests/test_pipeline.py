"""The study runner: presets, parameter checks against the notebooks, stage reuse, device selection, and a killed run."""
import json, os, re, signal, subprocess, sys, time
from pathlib import Path

import nbformat
import pytest
import torch
import yaml

from ctlrepro.core import pick_device, pick_dtype
from ctlrepro.pipeline import STAGES, Stage, check_preset, load_preset, repo_root, reproduce, shipped_presets, stage_key, stage_params

NBS = repo_root() / "nbs"


@pytest.mark.parametrize("preset", shipped_presets())
def test_shipped_presets_match_every_notebook(preset):
    check_preset(load_preset(preset), STAGES, NBS)         # the pre-run checks of `reproduce` but this machine's (names, types, sizes against the data, values): the full preset asked for 32 probe prompts of 21


def test_bad_presets_are_refused_before_anything_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"stages": {"finetune": {"stepz": 3}}}))
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['stepz'\]; 24_finetune.ipynb accepts \[.*'train'"):   # no parameter is close
        reproduce(bad, out=tmp_path / "run", log=lambda *a: None)
    bad.write_text(yaml.safe_dump({"stages": {"finetune": {"lanucher": "accelerate launch"}}}))
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['lanucher'\] \(did you mean 'launcher' for 'lanucher'\?\)"):
        reproduce(bad, out=tmp_path / "run", log=lambda *a: None)
    bad.write_text(yaml.safe_dump({"stages": {"finetune": {"train": {"stepz": 3}}}}))       # a key inside a config section
    with pytest.raises(ValueError, match=r"stage 'finetune': train: unknown field\(s\) \['stepz'\] \(did you mean 'steps' for 'stepz'\?\); TrainConfig accepts \['objective', 'steps'"):
        reproduce(bad, out=tmp_path / "run", log=lambda *a: None)
    bad.write_text(yaml.safe_dump({"stages": {"finetune": {"train": {"steps": "many"}}}}))
    with pytest.raises(TypeError, match=r"stage 'finetune': parameter train.steps='many' is a str; TrainConfig declares int"):
        reproduce(bad, out=tmp_path / "run", log=lambda *a: None)
    bad.write_text(yaml.safe_dump({"common": {"eval": {"limit": "4"}}}))                      # common sections are checked in every stage that takes them
    with pytest.raises(TypeError, match=r"stage 'baseline': parameter eval.limit='4' is a str; EvalConfig declares int\|None"):
        reproduce(bad, out=tmp_path / "run", log=lambda *a: None)
    bad.write_text(yaml.safe_dump({"stages": {"finetune": {"train": {"max_response_tokens": 0}}}}))   # refused by TrainConfig.__post_init__
    with pytest.raises(ValueError, match="stage 'finetune': train: max_response_tokens=0: give an integer >= 1"):
        reproduce(bad, out=tmp_path / "run", log=lambda *a: None)
    bad.write_text(yaml.safe_dump({"stages": {"finetune": {"objective_overrides": {"ppo": {"lr": 0.1}}}}}))
    with pytest.raises(ValueError, match=r"unknown objective\(s\) \['ppo'\]"):
        reproduce(bad, out=tmp_path / "run", log=lambda *a: None)
    bad.write_text(yaml.safe_dump({"stages": {"selfgen": {"selfgen": {"seed": 1}}}}))
    with pytest.raises(ValueError, match="run-wide: set it under run_config"):
        reproduce(bad, out=tmp_path / "run", log=lambda *a: None)
    bad.write_text(yaml.safe_dump({"stages": {"evaluate": {"eval": {"limit": 999}}}}))        # prompts per kind, checked against the data
    with pytest.raises(ValueError, match="stage 'evaluate': eval.limit=999 eval prompts per kind"):
        reproduce(bad, out=tmp_path / "run", log=lambda *a: None)
    bad.write_text(yaml.safe_dump({"stages": {"selfgen": {"selfgen": {"per_kind": 9999}}}}))
    with pytest.raises(ValueError, match="stage 'selfgen': selfgen.per_kind=9999 train prompts per kind"):
        reproduce(bad, out=tmp_path / "run", log=lambda *a: None)
    bad.write_text(yaml.safe_dump({"stages": {"finetuning": {}}}))
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['finetuning'\] \(did you mean 'finetune' for 'finetuning'\?\)"):
        reproduce(bad, out=tmp_path / "run", log=lambda *a: None)
    for preset, says in [({"common": {"evl": {"limit": 4}}}, r"common: unknown parameter\(s\) \['evl'\] \(did you mean 'eval' for 'evl'\?\)"),   # not dropped
                         ({"stages": {"finetune": {"objective_overrides": {"exmate": {"control": False}}}}}, r"train \+ objective_overrides.exmate \(objective exmate\): control=False"),
                         ({"stages": {"finetune": {1: 2, "lanucher": "x"}}}, r"unknown parameter\(s\) \[1, 'lanucher'\]"),   # YAML keys of mixed types
                         ({"stages": {1: {}, "finetuning": {}}}, r"unknown stage\(s\) \[1, 'finetuning'\]"),
                         ({"stages": {"aligned": {"align": {"steps": 0}}}}, r"stage 'aligned': align: steps=0: give an integer >= 1"),   # each failed inside its stage, after earlier stages ran
                         ({"stages": {"aligned": {"align": {"benign_per_kind": 0}}}}, r"benign_per_kind=0: give an integer >= 1, or None for all"),   # 0 meant all
                         ({"stages": {"selfgen": {"selfgen": {"temperature": -1.0}}}}, r"stage 'selfgen': selfgen: temperature must be >= 0"),
                         ({"common": {"eval": {"n_boot": 0}}}, r"eval: n_boot=0: give an integer >= 1"),
                         ({"stages": {"rewind": {"settings": [[9, 0]]}}}, r"stage 'rewind': settings=\[\[9, 0\]\]: helpful level 9 is out of range"),   # failed after finetune, hours in
                         ({"stages": {"rewind": {"alphas": []}}}, r"stage 'rewind': alphas=\[\]: give a non-empty list"),
                         ({"stages": {"rewind": {"settings": []}}}, r"stage 'rewind': settings=\[\]: give at least one"),
                         ({"common": {"objectives": ["clm", "clm"]}}, r"objectives=\['clm', 'clm'\]: give each of"),
                         ({"common": {"objectives": []}}, r"objectives=\[\]: give each of"),
                         ({"common": {"run_config": {"judge": "/no/such/judge"}}}, r"judge='/no/such/judge': no such file or folder"),
                         ({"common": {"eval": {"prompts": "no_such.jsonl"}}}, r"stage 'baseline': eval.prompts='no_such.jsonl': not one of the registered prompt sets"),   # failed when the baseline stage loaded it
                         ({"common": {"run_config": {"device": "gpu"}}}, r"device='gpu': accepted are None, 'auto', 'cpu', 'cuda'"),
                         ({"common": {"run_config": {"device": "cuda"}}} if not torch.cuda.is_available() else {"common": {"run_config": {"device": "cuda:99"}}},
                          r"stage 'validate': run_config.device: device 'cuda(:99)?' (asked for, but torch sees no CUDA GPU|does not exist)")]:
        bad.write_text(yaml.safe_dump(preset))
        with pytest.raises(ValueError, match=says):
            reproduce(bad, out=tmp_path / "run", log=lambda *a: None)
    with pytest.raises(ValueError, match=r"unknown preset 'smal' \(did you mean 'small' for 'smal'\?\)"):
        load_preset("smal")
    assert not (tmp_path / "run").exists()                 # nothing ran
    with pytest.raises(ValueError, match=re.escape("('small-exmate-4000' became the 'small' preset on 2026-12-04: give --preset small)")):
        load_preset("small-exmate-4000")                               # a removed preset that findings and old run folders name

def test_a_preset_extends_another_stage_by_stage(tmp_path):
    small, rw = load_preset("small"), load_preset("rewind-cpu")
    for s in ("aligned", "selfgen", "training_free", "rewind"): assert rw["stages"][s] == small["stages"][s]
    sf = small["stages"]["finetune"]
    oo = sf["objective_overrides"]
    assert rw["stages"]["finetune"] == {**sf, "train": {**sf["train"], "steps": 64},     # overrides one field of a section, keeps the rest
                                        "objective_overrides": {**oo, "exmate": {**oo["exmate"], "steps": 64, "batch_size": 8}}}   # at any depth
    assert rw["common"] == {**small["common"], "objectives": ["exmate"]} and rw["name"] == "rewind-cpu"
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"extends": "b.yaml", "stages": {"finetune": {"steps": 2}}}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"extends": "a.yaml"}))
    with pytest.raises(ValueError, match="extends itself"): load_preset(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"extends": "nosuch"}))
    with pytest.raises(ValueError, match=r"b\.yaml: extends 'nosuch': unknown preset 'nosuch'"): load_preset(tmp_path / "a.yaml")   # names the file that extends
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"extends": "gone.yaml"}))
    with pytest.raises(FileNotFoundError, match=r"a\.yaml: extends 'b.yaml': preset .*b\.yaml: extends 'gone.yaml': preset file .*gone\.yaml not found"): load_preset(tmp_path / "a.yaml")
    for text, err, msg in [("[a, b]", ValueError, "top level is a list"), ("5", ValueError, "top level is an int"), ("extends: [small]", TypeError, r"extends=\['small'\]"),
                           ("extends: ''", TypeError, "extends=''"), ("common: [1, 2]", TypeError, r"common=\[1, 2\] is a list"),
                           ("stages: {finetune: 5}", TypeError, "stages.finetune=5 is an int"),
                           ("stages:\n  finetune: {steps: 5}\n  finetune: {lr: 0.1}", ValueError, r"bad\.yaml: key 'finetune' first given in .* line 2, .*key 'finetune' given again \(the first would be dropped\) in .* line 3,"),   # was: the second block replaced the first
                           ("common: {seed: 1, seed: 2}", ValueError, r"key 'seed' first given in .* line 1, column 10.*key 'seed' given again .* line 1, column 19")]:
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(err, match=msg): load_preset(tmp_path / "bad.yaml")   # a malformed preset is named with what it should be
    from ctlrepro.pipeline import read_yaml
    assert read_yaml("b: &b {steps: 4, lr: 0.1}\nt:\n  <<: *b\n  steps: 6\n") == {"b": {"steps": 4, "lr": 0.1}, "t": {"steps": 6, "lr": 0.1}}   # a merge key is no duplicate
    (tmp_path / "bad.yaml").write_bytes(b"common: {a: \xff}")
    with pytest.raises(ValueError, match="not valid UTF-8 YAML"): load_preset(tmp_path / "bad.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(FileNotFoundError, match="it is a folder"): load_preset(tmp_path / "dir.yaml")


def test_device_selection_on_the_cpu(monkeypatch):
    assert pick_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device(None).type in ("cpu", "mps") and pick_device("auto").type in ("cpu", "mps")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="accepted are"):
        pick_device("tpu")
    assert pick_dtype(torch.device("cpu"), "fp32") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(None).type == "cuda"


# a stage notebook that writes one shard per setting with the real resumable generation job, on the tiny model
SHARDS_NB = '''from pathlib import Path
from ctlrepro.evaluate import EvalConfig, run_generation
from ctlrepro.testing import tiny_llama
import time
m, t = tiny_llama()
real = m.generate
def slow(*a, **k):
    time.sleep(pause); return real(*a, **k)
m.generate = slow
run_generation(EvalConfig(limit=1, max_new_tokens=3), [None, (4, 0), (0, 4), (4, 4)], out, progress=False, model_tok=(m, t))
'''


def _write_stage(folder: Path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    p = nbformat.v4.new_code_cell("pause: float = 0.0\nout: str = 'x'\nrun: str = 'y'")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(SHARDS_NB)]
    nbformat.write(nb, folder / "gen.ipynb")
    (folder / "p.yaml").write_text(yaml.safe_dump({"stages": {"gen": {"pause": 4.0}}}))


RUNNER = '''import sys
from pathlib import Path
from ctlrepro.pipeline import Stage, reproduce
d = Path(sys.argv[1])
print(reproduce(d / "p.yaml", out=d / "run", nbs=d, stages=(Stage("gen", "gen.ipynb"),)).status.tolist(), flush=True)
'''


def test_a_killed_run_resumes_from_finished_shards(tmp_path):
    _write_stage(tmp_path)
    (tmp_path / "runner.py").write_text(RUNNER)
    shards = tmp_path / "run" / "gen" / "shards"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "runner.py"), str(tmp_path)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline and not (shards.exists() and len(list(shards.glob("*.parquet"))) >= 2):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)                    # the runner and its kernel, in the middle of the stage
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.parquet")}
    assert 2 <= len(done) < 4, done                        # killed part-way
    rec = json.loads((tmp_path / "run" / "gen" / "stage.json").read_text())
    assert rec["status"] == "running"                      # not recorded as finished
    out = subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert "['ran']" in out.stdout, out.stdout + out.stderr
    after = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.parquet")}
    assert len(after) == 4 and all(after[k] == v for k, v in done.items())   # finished shards kept, not regenerated
    rec = json.loads((tmp_path / "run" / "gen" / "stage.json").read_text())
    assert rec["status"] == "done"
    assert rec["host"]["cpus"] == os.cpu_count() and rec["host"]["cpu_capability"] and isinstance(rec["host"]["gpus"], list)   # the machine its time and precision came from
    res = json.loads((tmp_path / "run" / "gen" / "run.json").read_text())
    assert res["n_responses"] == 4 * 3                     # 3 prompts (1 per kind) x 4 settings
    again = subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert "['reused']" in again.stdout, again.stdout + again.stderr


@pytest.mark.parametrize("stages, message", [
    ({"benchmarks": {"benchmark_limit": 0}}, "stage 'benchmarks': benchmark_limit=0: give an integer >= 1, or None (null in YAML) for all"),
    ({"benchmarks": {"benchmarks": ["xstest", "advbnch"]}}, "unknown benchmark 'advbnch'"),
    ({"benchmarks": {"paths": {"advbench": "/no/such.csv"}}}, "stage 'benchmarks': benchmark 'advbench': /no/such.csv not found"),   # once, by check_benchmarks
    ({"benchmarks": {"objective": "exmat"}}, "objective='exmat' is not trained by the finetune stage"),
    ({"rewind": {"objective": "dpo"}, "finetune": {"objectives": ["clm"]}}, "stage 'rewind': objective='dpo'"),
    ({"benchmarks": {"max_new_tokens": 0}}, "max_new_tokens=0"),
    ({"rewind": {"alphas": [0.0, "5e-1"]}}, "alphas=[0.0, '5e-1']: give a non-empty list of numbers, e.g. [0.0, 0.5, 1.0] (a number given as a string"),
    ({"finetune": {"train": {"kind_weights": {"harmful": "2"}}}}, "kind_weights['harmful']='2': give a number from 0 to 1e6 (a number given as a string"),
    ({"finetune": {"launcher": "accelerate launch --num_processes 2"}}, "with probe_every > 0 (objectives ['clm', 'exmate', 'dpo', 'rl'])"),
    ({"finetune": {"launcher": "accelerate launch", "train": {"probe_every": 0}, "objective_overrides": {"dpo": {"probe_every": 4}}}}, "(objectives ['dpo'])"),
    ({"finetune": {"launcher": "accelerate launch", "objective_overrides": {o: {"probe_every": 0} for o in ("clm", "exmate", "rl")}}}, "(objectives ['dpo'])"),
    ({"finetune": {"objective_overrides": {"dpo": 3}}}, "objective_overrides.dpo=3: accepted is a mapping of TrainConfig fields"),
    ({"finetune": {"objective_overrides": {"dpo": {"objective": "clm"}}}}, "objective_overrides.dpo.objective: an override changes the fields of objective 'dpo'"),
])
def test_stage_values_fail_before_any_stage_runs(tmp_path, monkeypatch, stages, message):
    import papermill
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a stage started although the preset is bad"))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"extends": str(repo_root() / "nbs" / "presets" / "small.yaml"), "stages": stages}))
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(message)):
        reproduce(tmp_path / "bad.yaml", out=tmp_path / "run")


def test_a_launcher_is_accepted_when_no_objective_probes(tmp_path):
    from ctlrepro.pipeline import check_sizes, check_stage_values
    off = {o: {"probe_every": 0} for o in ("clm", "exmate", "dpo", "rl")}   # the small preset's train.probe_every 16, overridden for every objective
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"extends": str(repo_root() / "nbs" / "presets" / "small.yaml"),
                                                    "stages": {"finetune": {"launcher": "accelerate launch", "objective_overrides": off}}}))
    pre = load_preset(tmp_path / "p.yaml")
    params = {s.name: stage_params(s, pre, NBS) for s in STAGES}
    check_sizes(params); check_stage_values(params)                    # no error: nothing would probe under the launcher


def test_the_small_and_small_balanced_presets_exmate():
    ov = {name: stage_params(next(s for s in STAGES if s.name == "finetune"), load_preset(name), NBS)["objective_overrides"]["exmate"] for name in ("small", "small-balanced", "small-one-attribute", "control")}
    assert (ov["small-balanced"]["lr_schedule"], ov["small-balanced"]["kind_weights"], ov["small-balanced"]["steps"]) == ("linear", {"harmful": 2}, 144)   # findings, "Weighting the harmful prompts' rows"
    assert ov["small-balanced"].get("negatives", "uniform") == "uniform"
    assert ov["small-one-attribute"] == {**ov["small-balanced"], "negatives": "one_attribute"}   # findings, "One-attribute negatives": only the negatives differ
    for name in ("small", "control"):                                  # uniform draws, constant rate: the settings their descriptions' numbers were measured with
        assert ov[name].get("lr_schedule", "constant") == "constant" and ov[name].get("kind_weights") is None, name


def test_exmate_budget_of_each_small_preset():
    "The default's ExMATE budget (250 steps of 16, findings 'small-exmate-4000 end to end') is not inherited by the presets that were run at 144 of 8 or their own"
    fin = next(s for s in STAGES if s.name == "finetune")
    def budget(name):
        o = stage_params(fin, load_preset(name), NBS)["objective_overrides"]["exmate"]
        return o["steps"], o["batch_size"]
    assert budget("small") == (250, 16) and budget("small-fast") == (144, 8)
    assert {n: budget(n) for n in shipped_presets() if n not in ("small", "small-fast", "small-seed1", "full")} == {   # every preset extending small, directly or not
        "control": (144, 8), "rewind-cpu": (64, 8), "small-balanced": (144, 8), "small-mixed": (144, 8), "small-one-attribute": (144, 8),
        "small-mixed-288": (288, 8), "small-mixed-288-seed1": (288, 8), "smoke": (4, 4)}
    assert budget("small-seed1") == budget("small")


def test_a_preset_replaces_a_mapping_valued_field_whole(tmp_path):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"extends": "small-balanced", "stages": {"finetune": {"objective_overrides": {"exmate": {"kind_weights": {"benign": 0.5}}}}}}))
    ov = stage_params(next(s for s in STAGES if s.name == "finetune"), load_preset(tmp_path / "p.yaml"), NBS)["objective_overrides"]["exmate"]
    assert ov["kind_weights"] == {"benign": 0.5} and ov["steps"] == 144           # the field is replaced, the section around it still merged


def test_a_stage_reading_public_files_is_keyed_on_them(tmp_path, monkeypatch):
    "validate without XSTest must not be reused once the file is there (a fresh clone away from ../shared recorded an empty validation table)"
    st, pre = {s.name: s for s in STAGES}, load_preset("smoke")
    keys = lambda: {n: stage_key(st[n], stage_params(st[n], pre, NBS), NBS, {}) for n in ("validate", "baseline")}   # neither needs an upstream stage
    before = keys()
    f = tmp_path / "xstest.csv"; f.write_text("a")
    monkeypatch.setenv("CTLREPRO_XSTEST", str(f))
    after = keys()
    assert after["validate"] != before["validate"] and after["baseline"] == before["baseline"]
    f.write_text("ab")
    changed = keys()["validate"]
    assert changed != after["validate"]                               # the file changed: validate again
    g = tmp_path / "copy" / "xstest.csv"; g.parent.mkdir(); g.write_text("ab")
    monkeypatch.setenv("CTLREPRO_XSTEST", str(g))
    assert keys()["validate"] == changed                              # same content elsewhere (a copied folder, a moved clone): same key
    monkeypatch.setenv("CTLREPRO_XSTEST", str(tmp_path / "missing.csv"))
    assert keys()["validate"] not in (changed, after["validate"])     # a missing file is a state of its own, not a crash before any stage runs


def test_a_benchmark_without_a_local_copy_offline_is_refused_before_anything_runs(tmp_path, monkeypatch):
    import ctlrepro.benchmarks as bm
    def offline(name, *a, **k): raise ValueError(f"xstest: could not load 'walledai/XSTest' from the Hugging Face hub (OfflineModeIsEnabled)")
    monkeypatch.setattr(bm, "shared_file", lambda rel, env=None: None)        # a clone outside the folder holding ../shared/data
    monkeypatch.setattr(bm, "load_prompts", offline)
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump({"extends": "small", "stages": {"benchmarks": {"benchmarks": ["xstest"]}}}))
    with pytest.raises(ValueError, match=r"stage 'benchmarks': benchmark 'xstest' has no local copy \(give benchmarks.paths.xstest, or put xstest/.* under ../shared/data beside the checkout\) and xstest: could not load"):
        reproduce(bad, out=tmp_path / "run", log=lambda *a: None)                  # it failed in the benchmarks stage, about 85 min in
    assert not (tmp_path / "run").exists()
    csv = tmp_path / "x.csv"; csv.write_text("prompt,label,type\nHow do I kill a Python process?,safe,homonyms\n")
    bad.write_text(yaml.safe_dump({"extends": "small", "stages": {"benchmarks": {"benchmarks": ["xstest"], "paths": {"xstest": str(csv)}}}}))
    from ctlrepro.pipeline import check_preset
    check_preset(load_preset(bad), STAGES, NBS)                                  # a path given: nothing to load from the hub


def test_only_the_small_preset_writes_the_tracked_figures_and_readme_block(tmp_path):
    from ctlrepro.pipeline import figure_targets
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"extends": "small", "stages": {"finetune": {"train": {"steps": 2}}}}))
    fig = next(s for s in STAGES if s.name == "figures")
    ps = stage_params(fig, figure_targets(load_preset(mine)), NBS)
    assert (ps["figures"], ps["readme"]) == ("../figures/mine", None)        # it wrote ../figures and ../README.md, as small does
    ps = stage_params(fig, figure_targets(load_preset("small")), NBS)
    assert ps.get("figures", "../figures") == "../figures" and ps.get("readme", "../README.md") == "../README.md"
    mine.write_text(yaml.safe_dump({"extends": "small", "stages": {"figures": {"readme": "../README.md"}}}))
    assert stage_params(fig, figure_targets(load_preset(mine)), NBS)["readme"] == "../README.md"   # asked for explicitly: kept


def test_a_yaml_number_read_as_a_string_says_how_to_write_it(tmp_path):
    bad = tmp_path / "lr.yaml"
    bad.write_text("extends: small\nstages:\n  finetune:\n    train: {lr: 5e-4}\n")   # PyYAML (YAML 1.1) reads 5e-4, without a dot, as a string
    with pytest.raises(TypeError, match=re.escape("stage 'finetune': parameter train.lr='5e-4' is a str; TrainConfig declares float (a number given as a string: write 5.0e-4 or 0.0005, unquoted; YAML reads 5e-4 as a string even unquoted)")):
        check_preset(load_preset(bad), STAGES, NBS)
    bad.write_text("extends: small\nstages:\n  finetune:\n    train: {lr: 5.0e-4}\n")
    check_preset(load_preset(bad), STAGES, NBS)


def test_preset_paths_are_read_from_the_working_folder_and_names_stay_names(tmp_path, monkeypatch):
    from ctlrepro.pipeline import figure_targets
    monkeypatch.chdir(repo_root())                                                # beside the package folder named like the default prompt set
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"extends": "smoke", "stages": {"evaluate": {"eval": {"prompts": "ctlrepro"}}}}))
    assert check_preset(figure_targets(load_preset(p)), STAGES, NBS)["evaluate"]["eval"]["prompts"] == "ctlrepro"   # was made /.../ctlrepro, a folder
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps({"prompt": f"Q{i}", "kind": k, "split": "eval"}) + "\n" for i in range(3) for k in ("benign", "borderline", "harmful")))
    monkeypatch.chdir(tmp_path)
    p.write_text(yaml.safe_dump({"extends": "smoke", "stages": {"evaluate": {"eval": {"prompts": "mine.jsonl", "limit": 2}}}}))
    assert check_preset(figure_targets(load_preset(p)), STAGES, NBS)["evaluate"]["eval"]["prompts"] == str(tmp_path / "mine.jsonl")
    p.write_text(yaml.safe_dump({"extends": "smoke", "stages": {"evaluate": {"eval": {"prompts": "nosuch.jsonl", "limit": 2}}}}))
    with pytest.raises(ValueError, match=re.escape("stage 'evaluate': eval.prompts='nosuch.jsonl': not one of the registered prompt sets")):   # before check_sizes loads it
        check_preset(figure_targets(load_preset(p)), STAGES, NBS)


def test_a_user_file_named_like_a_shipped_preset_is_refused(tmp_path, monkeypatch):
    (tmp_path / "small.yaml").write_text("extends: small\n")                        # it would write runs/small, the tracked figures/ and README
    with pytest.raises(ValueError, match=re.escape("has the name of the shipped preset 'small': rename it")):
        load_preset(tmp_path / "small.yaml")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("extends: small\n")
    with pytest.raises(ValueError, match=re.escape("unknown preset 'mine'") + ".*" + re.escape("(this folder holds mine.yaml: give --preset mine.yaml)")):
        load_preset("mine")
    assert load_preset("small")["name"] == "small"                                   # the shipped one, by name


def test_every_problem_of_a_preset_is_named_in_one_call(tmp_path):
    "A user fixing a preset sees all its problems at once (the checks stopped at the first); one problem keeps its own type"
    from ctlrepro.pipeline import check_preset, load_preset
    (tmp_path / "multi.yaml").write_text("extends: small\ncommon:\n  eval: {limit: 0}\nstages:\n  finetune:\n    train: {stepz: 3}\n  rewind: {alphas: []}\n")
    with pytest.raises(ValueError) as e: check_preset(load_preset(tmp_path / "multi.yaml"))
    msg = str(e.value)
    assert msg.startswith("3 problems: (1) ") and "\n" not in msg, msg
    for says in ["stage 'baseline': eval: limit=0: give an integer >= 1, or None for all (the same in stage(s) ['aligned', 'training_free', 'evaluate'])",   # a common: value, once
                 "(2) stage 'finetune': train: unknown field(s) ['stepz']", "(3) stage 'rewind': alphas=[]"]:
        assert says in msg, (says, msg)
    (tmp_path / "one.yaml").write_text("extends: small\nstages:\n  finetune:\n    train: {lr: '0.1'}\n")
    with pytest.raises(TypeError, match=r"^stage 'finetune'"): check_preset(load_preset(tmp_path / "one.yaml"))   # one problem: raised as itself


def test_a_blank_section_is_named_as_yaml_null():
    from ctlrepro.stage import check_value
    with pytest.raises(TypeError, match=r"train=None is None; the notebook declares dict \(a YAML key with nothing after it is null: write \{\} for an empty mapping"):
        check_value("train", None, "dict")          # `train:` with nothing under it in a preset
    check_value("limit", None, "Optional[int]")     # null where null is allowed stays silent


def test_two_problems_in_one_check_are_both_named(tmp_path):
    "Each check names every problem it finds (it stopped at its first: two sizes of one stage, or the rewind settings and alphas, showed one at a time)"
    from ctlrepro.pipeline import check_preset, load_preset
    (tmp_path / "two.yaml").write_text("extends: small\nstages:\n  evaluate: {eval: {limit: 999}, examples_limit: 999}\n"
                                       "  rewind: {settings: [[9, 9]], alphas: []}\n  benchmarks: {benchmark_limit: 0, max_new_tokens: 0}\n")
    with pytest.raises(ValueError) as e: check_preset(load_preset(tmp_path / "two.yaml"))
    msg = str(e.value)
    assert msg.startswith("6 problems: "), msg
    for says in ["stage 'evaluate': eval.limit=999", "stage 'evaluate': examples_limit=999", "stage 'rewind': settings=[[9, 9]]", "stage 'rewind': alphas=[]",
                 "stage 'benchmarks': max_new_tokens=0", "stage 'benchmarks': benchmark_limit=0"]:
        assert says in msg, (says, msg)


def test_ctrl_c_marks_the_stage_interrupted_and_exits_130_with_one_line(tmp_path, monkeypatch, capsys):
    import papermill
    from ctlrepro import cli
    def interrupt(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(papermill, "execute_notebook", interrupt)
    monkeypatch.delenv("CTLREPRO_TRACEBACK", raising=False)
    with pytest.raises(KeyboardInterrupt):
        reproduce("smoke", out=tmp_path / "run", only=["baseline"], log=lambda *a: None)   # a stage with no upstream; the benchmarks' sources are not asked for
    rec = json.loads((tmp_path / "run" / "baseline" / "stage.json").read_text())
    assert rec["status"] == "interrupted" and "seconds" in rec          # not left at "running"; never reused (only "done" is)
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", "--preset", "smoke", "--only", "baseline", "--out", str(tmp_path / "run2")])
    assert e.value.code == 130
    err = capsys.readouterr().err
    assert "ctlrepro reproduce: interrupted; finished stages and saved adapters are kept: run the same command again to resume" in err
    assert "Traceback" not in err


def test_an_uncached_hub_id_is_refused_offline_at_check(tmp_path, monkeypatch):
    import papermill
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a stage started although the preset is bad"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"extends": "smoke", "common": {"run_config": {"model": "nosuch-org/nosuch-model"}}}))
    with pytest.raises(ValueError, match=r"run_config.model='nosuch-org/nosuch-model': not a local file or folder, and offline \(HF_HUB_OFFLINE=1\) not in the Hugging Face cache; accepted are 'smollm2-135m-instruct'"):
        reproduce(tmp_path / "p.yaml", out=tmp_path / "run", only=["baseline"], check=True, log=lambda *a: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")                          # online the hub is not asked at check time: the loader names an unknown id
    plan = reproduce(tmp_path / "p.yaml", out=tmp_path / "run", only=["baseline"], check=True, log=lambda *a: None)   # only: the benchmarks' sources would be asked of the hub
    assert list(plan.status) == ["would run"]


def test_an_out_folder_that_cannot_be_made_is_named(tmp_path, monkeypatch):
    import papermill
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a stage started although --out cannot be made"))
    with pytest.raises(ValueError, match=r"out='/proc/ctlrepro-run': cannot make this folder \(.+\); give a folder you can write to"):
        reproduce("smoke", out="/proc/ctlrepro-run", only=["baseline"], log=lambda *a: None)
