import numpy as np
import pandas as pd
import pytest

from ctlrepro.embedded import Encoder, LogisticHead
from ctlrepro.scorers import EmbeddedScorers
from ctlrepro.scorers import fit_binner
from ctlrepro.selfgen import CONTRAST, STEERS, SelfGenConfig, coverage, load_binners, unshown_labels, self_generate, steer_for
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
    steered = ~data.how.isin(["plain", "nearest"])
    assert (data.how == "plain").sum() == 3 * 3 * 2 and steered.sum() <= 30
    shown = data[data.how != "nearest"]
    assert len(data) - len(shown) == len(unshown_labels(shown))
    # with the default relabelling every prompt has an example at every setting its samples allow (at least one sample at top harmlessness: all)
    per_prompt = data.groupby("prompt").apply(lambda g: len(set(zip(g.helpful, g.harmless))), include_groups=False)
    tops = shown.groupby("prompt").harmless.max()
    assert (per_prompt[tops == 4] == 25).all()
    b = load_binners(tmp_path)
    plain = data[data.how == "plain"]
    assert b["helpful"].transform(plain.score_helpful).tolist() == plain.helpful.tolist()
    model.generate = lambda *a, **k: pytest.fail("regenerated although the saved set matches the config")
    again = self_generate(model, tok, es, cfg, out=tmp_path, progress=False)
    assert again.response.tolist() == data.response.tolist()


def test_bad_config():
    with pytest.raises(ValueError, match="n_samples"):
        SelfGenConfig(n_samples=0)
    with pytest.raises(ValueError, match="binning='uniform'.*'auto', 'fixed', 'quantile'"):
        SelfGenConfig(binning="uniform")


def test_binning_auto_is_equal_width_on_unit_scores_and_quantile_otherwise():
    unit = np.array([0.0, 0.01, 0.02, 0.9, 0.95, 0.99])              # bimodal, like refusals and answers
    assert fit_binner(unit).transform(unit).tolist() == [0, 0, 0, 4, 4, 4]
    assert sorted(set(fit_binner(unit, "quantile").transform(unit))) != [0, 4]   # quantiles split each mode into levels
    raw = np.array([-3.0, -1.0, 0.5, 2.0, 4.0, 7.0])                # a reward model's logits
    assert fit_binner(raw).method == "quantile" and fit_binner(raw).transform(raw).tolist() == [0, 0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="scores run -3..7.*binning='quantile'"):
        fit_binner(raw, "fixed")


def test_unshown_labels():
    df = pd.DataFrame({"prompt": ["bomb"] * 3 + ["cake"] * 2, "response": ["no", "sure", "nope", "no", "recipe"],
                       "helpful": [0, 4, 1, 0, 4], "harmless": [4, 0, 4, 4, 3], "score_helpful": [0.0, 0.9, 0.3, 0.0, 0.9],
                       "how": "plain"})
    top = unshown_labels(df, "safety-first")
    got = {(r.prompt, r.helpful): (r.response, r.shown_helpful) for r in top.itertuples()}
    # bomb: levels 2, 3, 4 at top harmlessness are unshown; the safe sample nearest in helpfulness fills them, never the unsafe one
    assert got == {("bomb", 2): ("nope", 1), ("bomb", 3): ("nope", 1), ("bomb", 4): ("nope", 1),
                   ("cake", 1): ("no", 0), ("cake", 2): ("no", 0), ("cake", 3): ("no", 0), ("cake", 4): ("no", 0)}
    assert (top.harmless == 4).all() and (top.how == "safety-first").all()
    near = unshown_labels(df)
    assert len(near) == 2 * 25 - 3 - 2 and (near.how == "nearest").all()          # every unshown setting of both prompts
    pick = {(r.prompt, r.helpful, r.harmless): r.response for r in near.itertuples()}
    assert pick[("cake", 4, 0)] == "recipe" and pick[("cake", 0, 0)] == "no"      # nearest in levels
    assert pick[("bomb", 4, 4)] == "nope" and pick[("bomb", 4, 1)] == "nope"      # harmlessness is a floor: 'sure' (harmless 0) only below 1
    assert pick[("bomb", 3, 0)] == "sure" and pick[("bomb", 2, 0)] == "sure"
    assert pick[("cake", 2, 2)] == "recipe"                                       # distance 3 against 4
    tie = pd.DataFrame({"prompt": "x", "response": ["riskier", "safer", "safer, thinner"], "helpful": [3, 2, 2], "harmless": [2, 3, 3],
                        "score_helpful": [0.7, 0.5, 0.45], "how": "plain"})
    assert unshown_labels(tie).set_index(["helpful", "harmless"]).response[(2, 2)] == "safer"  # distance 1 to all: the safer, then the more helpful
    assert unshown_labels(df, "none").empty
    with pytest.raises(ValueError, match="mode='all'.*'nearest', 'safety-first', 'marginal', 'none'"):
        unshown_labels(df, "all")


def test_marginal_labels_give_each_sample_every_level_of_the_attribute_its_kind_cannot_show():
    df = pd.DataFrame({"prompt": ["bomb", "bomb", "cake"], "kind": ["harmful", "harmful", "benign"],
                       "response": ["no", "sure", "recipe"], "helpful": [0, 4, 3], "harmless": [4, 1, 4],
                       "score_helpful": [0.0, 0.9, 0.7], "how": "plain"})
    m = unshown_labels(df, "marginal")
    got = {(r.response, r.helpful, r.harmless) for r in m.itertuples()}
    # harmful: every helpfulness level at the harmlessness shown; benign: every harmlessness level at the helpfulness shown
    assert got == {("no", h, 4) for h in (1, 2, 3, 4)} | {("sure", h, 1) for h in (0, 1, 2, 3)} | {("recipe", 3, s) for s in (0, 1, 2, 3)}
    assert len(m) == 12 and (m.how == "marginal").all()
    assert (m.shown_helpful == m.response.map({"no": 0, "sure": 4, "recipe": 3})).all() and (m.shown_harmless == m.response.map({"no": 4, "sure": 1, "recipe": 4})).all()
    assert len(unshown_labels(pd.concat([df, m]), "marginal")) == 12                # rows already relabelled are not relabelled again
    with pytest.raises(ValueError, match="mode='marginal' needs a 'kind' column"):
        unshown_labels(df.drop(columns="kind"), "marginal")
    with pytest.raises(ValueError, match=r"marginal=\{'harmful': 'honest'\}.*one of \('helpful', 'harmless'\)"):
        unshown_labels(df, "marginal", marginal={"harmful": "honest"})
    with pytest.raises(ValueError, match=r"prompt kind\(s\) \['benign'\] not in marginal="):     # a misspelt or missing kind is not skipped silently
        unshown_labels(df, "marginal", marginal={"harmfull": "helpful", "harmful": "helpful"})
    with pytest.raises(ValueError, match="marginal=None: accepted is a dict"):
        unshown_labels(df, "marginal", marginal=None)
    for bad in (7, -1, 2.5, np.nan):
        with pytest.raises(ValueError, match=r"column 'helpful' holds .*accepted are the levels 0..4"):
            unshown_labels(df.assign(helpful=[0, 4, bad]), "marginal")


def test_contrast_samples_every_prompt_against_its_kind(tmp_path):
    rng = np.random.default_rng(0)
    es = EmbeddedScorers(LogisticHead(rng.normal(size=384), 0), LogisticHead(rng.normal(size=384), 0), Encoder(device="cpu"))
    model, tok = tiny_llama()
    cfg = SelfGenConfig(per_kind=2, n_samples=1, max_new_tokens=4, min_per_cell=1, budget=0, relabel="none", contrast=2, binning="quantile")
    data = self_generate(model, tok, es, cfg, out=tmp_path, progress=False)
    steered = data[data.how != "plain"]
    # 2 contrast samples per prompt, with the steer CONTRAST names for its kind, and the prefill in the response
    assert steered.groupby("prompt").size().eq(2).all() and steered.prompt.nunique() == 3 * 2
    assert (steered.how == steered.kind.map(CONTRAST)).all()
    assert all(r.startswith(STEERS[h]["prefill"]) for r, h in zip(steered.response, steered.how))
    # the cut points come from the plain samples alone: refitting on them gives the same levels
    plain = data[data.how == "plain"]
    assert fit_binner(plain.score_helpful, "quantile", 5).transform(steered.score_helpful).tolist() == steered.helpful.tolist()
    with pytest.raises(ValueError, match="contrast=-1: give an integer >= 0"):
        SelfGenConfig(contrast=-1)


def test_selfgen_config_refuses_per_kind_below_one():
    from ctlrepro.selfgen import SelfGenConfig
    for bad in (0, -3):                                      # 0 meant all; -3 failed inside pandas' sample
        with pytest.raises(ValueError, match=f"per_kind={bad}: give an integer >= 1, or None for all"):
            SelfGenConfig(per_kind=bad)
