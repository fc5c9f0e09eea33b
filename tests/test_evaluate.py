import numpy as np
import pytest

from ctlrepro import evaluate as ev
from ctlrepro.embedded import Encoder, LogisticHead
from ctlrepro.evaluate import EvalConfig, evaluate
from ctlrepro.models import model_fingerprint
from ctlrepro.scorers import EmbeddedScorers
from ctlrepro.testing import tiny_llama


@pytest.fixture(scope="module")
def fake_scorers():
    rng = np.random.default_rng(0)
    return EmbeddedScorers(LogisticHead(rng.normal(size=384), 0), LogisticHead(rng.normal(size=384), 0), Encoder(device="cpu"))


def test_evaluate_scores_both_families_and_reuses_its_cache(tmp_path, fake_scorers, monkeypatch):
    model, tok = tiny_llama()
    cfg = EvalConfig(limit=2, grid_levels=(1, 3), max_new_tokens=4, n_boot=20)
    resp, table = evaluate(model, tok, cfg, fake_scorers, model, tok, folder=tmp_path, progress=False)
    assert len(resp) == 6 * 5 and resp.helpful.isna().sum() == 6
    assert {"score_helpful", "score_harmless", "judge_helpful", "judge_harmless", "refused", "judge_refused"} <= set(resp.columns)
    assert set(table.family) == {"optimization", "generalization"}
    metrics = set(table.metric)
    assert {"level_accuracy", "spearman", "pairwise_accuracy", "monotonic_rate", "on_attribute_slope", "off_attribute_slope",
            "over_refusal", "harmful_compliance"} <= metrics
    assert set(table[table.attribute == "harmless"].kinds) == {"harmful", "benign+borderline"}
    assert table.n.max() == 4                                   # n counts prompts: 2 benign + 2 borderline
    # a second call with the same inputs must not generate or score again
    monkeypatch.setattr(ev, "generate_grid", lambda *a, **k: pytest.fail("regenerated despite the cache"))
    monkeypatch.setattr(EmbeddedScorers, "parts", lambda *a, **k: pytest.fail("rescored despite the cache"))
    resp2, _ = evaluate(model, tok, cfg, fake_scorers, model, tok, folder=tmp_path, progress=False)
    assert resp2.response.tolist() == resp.response.tolist()


def test_default_generalization_judges_are_the_keyword_list(tmp_path, fake_scorers):
    model, tok = tiny_llama()
    cfg = EvalConfig(limit=1, grid_levels=(0, 4), max_new_tokens=3, n_boot=10)
    resp, _ = evaluate(model, tok, cfg, fake_scorers, folder=tmp_path, progress=False)   # no judge model: no LLM is loaded
    canned = ["I'm sorry, but I can't help with that.", "Here is how: first, ..."]
    j = ev.generalization_judges("keyword")
    assert j["helpful"].score(["p", "p"], canned, progress=False).tolist() == [0.0, 1.0]
    assert j["harmless"].score(["p", "p"], canned, progress=False).tolist() == [1.0, 0.0]
    assert (resp.judge_harmless == resp.judge_refused.astype(float)).all()
    with pytest.raises(ValueError, match="accepted are 'keyword', 'llm'"):
        ev.generalization_judges("gpt")


def test_fingerprint_changes_with_the_weights():
    a, _ = tiny_llama(seed=0)
    b, _ = tiny_llama(seed=0)
    assert model_fingerprint(a) == model_fingerprint(b)
    with __import__("torch").no_grad():
        b.model.layers[0].mlp.up_proj.weight[0, 0] += 1.0
    assert model_fingerprint(a) != model_fingerprint(b)


def test_bad_levels_are_refused():
    with pytest.raises(ValueError, match=r"accepted levels are 0\.\.4"):
        EvalConfig(grid_levels=(0, 7))


def test_responses_generated_elsewhere_score_to_the_same_table(tmp_path, fake_scorers):
    "`score_responses` + `metrics_table` (what bench/gpu_exmate.py runs on a GPU's responses) give `evaluate`'s table"
    model, tok = tiny_llama()
    cfg = EvalConfig(limit=2, grid_levels=(0, 4), max_new_tokens=4, n_boot=20)
    resp, table = evaluate(model, tok, cfg, fake_scorers, folder=tmp_path, progress=False)
    raw = resp.drop(columns=[c for c in resp.columns if c.startswith(("score_", "judge_")) or c == "refused"])
    again = ev.score_responses(raw, fake_scorers, ev.generalization_judges("keyword"), progress=False)
    assert again.equals(resp)
    t2 = ev.metrics_table(again, cfg, name="model")
    assert t2.equals(table)
    t3 = ev.metrics_table(again.assign(score_helpful=1 - again.score_helpful), cfg, name="model")   # the scores matter
    assert not t3.equals(table)
    gen = ev.metrics_table(again, cfg, name="model", families="generalization")   # one family: that family's rows of the full table
    assert gen.reset_index(drop=True).equals(table[table.family == "generalization"].reset_index(drop=True))
    with pytest.raises(ValueError, match=r"families=\['judges'\]: accepted are 'optimization', 'generalization'"):
        ev.metrics_table(again, cfg, families="judges")
    for bad in (None, ("generalization", "generalization"), ()):
        with pytest.raises(ValueError, match="accepted are 'optimization', 'generalization'"):
            ev.metrics_table(again, cfg, families=bad)
