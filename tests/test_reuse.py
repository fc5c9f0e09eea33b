"""Reuse never serves a stale result: every reuse key follows the package's source and data, and a half-written cache is recomputed.

The in-stage caches are checked in-process against a copy of the package that the fingerprints read (`core.PACKAGE_DIR`
pointed at it); the stages of `reproduce` in subprocesses that import the copy itself (PYTHONPATH), so the edited code runs."""
import json, os, shutil, subprocess, sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from ctlrepro import core
from ctlrepro import evaluate as ev
from ctlrepro.cli import GenerationJob, run_generation
from ctlrepro.core import Cached, code_fingerprint, data_fingerprint, source_fingerprint, tree_fingerprint
from ctlrepro.evaluate import EvalConfig, evaluate
from ctlrepro.objectives import TrainConfig
from ctlrepro.selfgen import SelfGenConfig, self_generate
from ctlrepro.study import make_or_reuse_aligned, train_or_reuse
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


