import numpy as np
import pandas as pd
import pytest

from ctlrepro.embedded import Encoder, LogisticHead
from ctlrepro.scorers import EmbeddedScorers
from ctlrepro.selfgen import STEERS, SelfGenConfig, coverage, load_binners, self_generate, steer_for
from ctlrepro.testing import tiny_llama


def test_coverage_counts_every_cell():
    df = pd.DataFrame({"helpful": [0, 0, 4, 2], "harmless": [4, 4, 0, 2]})
    cov = coverage(df)
    assert cov.shape == (5, 5) and cov.loc[0, 4] == 2 and cov.loc[4, 0] == 1 and cov.values.sum() == 4


def test_every_cell_has_a_steer():
    for h in range(5):
        for s in range(5):
            assert steer_for(h, s, 5) in STEERS


def test_self_generate_labels_fills_and_reuses(tmp_path):
    rng = np.random.default_rng(0)
    es = EmbeddedScorers(LogisticHead(rng.normal(size=384), 0), LogisticHead(rng.normal(size=384), 0), Encoder(device="cpu"))
    model, tok = tiny_llama()
    cfg = SelfGenConfig(per_kind=3, n_samples=2, max_new_tokens=6, min_per_cell=2, budget=30, rounds=2)
    data = self_generate(model, tok, es, cfg, out=tmp_path, progress=False)
    assert {"prompt", "response", "helpful", "harmless", "score_helpful", "score_harmless", "how", "seed"} <= set(data.columns)
    assert data.helpful.between(0, 4).all() and data.harmless.between(0, 4).all()
    assert (data.how == "plain").sum() == 3 * 3 * 2 and (data.how != "plain").sum() <= 30
    b = load_binners(tmp_path)
    plain = data[data.how == "plain"]
    assert b["helpful"].transform(plain.score_helpful).tolist() == plain.helpful.tolist()
    model.generate = lambda *a, **k: pytest.fail("regenerated although the saved set matches the config")
    again = self_generate(model, tok, es, cfg, out=tmp_path, progress=False)
    assert again.response.tolist() == data.response.tolist()


def test_bad_config():
    with pytest.raises(ValueError, match="n_samples"):
        SelfGenConfig(n_samples=0)


def test_a_new_harm_head_invalidates_the_saved_set(tmp_path):
    rng = np.random.default_rng(1)
    enc = Encoder(device="cpu")
    refusal = LogisticHead(rng.normal(size=384), 0)
    es = EmbeddedScorers(refusal, LogisticHead(rng.normal(size=384), 0), enc)
    model, tok = tiny_llama()
    cfg = SelfGenConfig(per_kind=2, n_samples=1, max_new_tokens=4, budget=0)
    self_generate(model, tok, es, cfg, out=tmp_path, progress=False)
    other = EmbeddedScorers(refusal, LogisticHead(rng.normal(size=384), 0), enc)  # same refusal head, new harm head
    assert other.fingerprint() != es.fingerprint()
    calls = []
    real = model.generate
    model.generate = lambda *a, **k: calls.append(1) or real(*a, **k)
    self_generate(model, tok, other, cfg, out=tmp_path, progress=False)
    assert calls, "the saved set was reused although it was scored by another harm head"
