import numpy as np
import pandas as pd
import pytest

from ctlrepro.metrics import (bootstrap_ci, control_metrics, leakage, level_accuracy, monotonic_rate, off_attribute_slope,
                              on_attribute_slope, pairwise_order_accuracy, rate, spearman)


@pytest.fixture
def grid():
    rng = np.random.default_rng(7)
    g = pd.DataFrame([(p, h, s) for p in range(30) for h in range(5) for s in range(5)], columns=["pid", "helpful", "harmless"])
    return g, rng


def test_reversing_scores_mirrors_pairwise_accuracy(grid):
    g, rng = grid
    y = rng.normal(size=len(g))
    acc = pairwise_order_accuracy(g.pid, g.helpful, y)
    assert acc == pytest.approx(1 - pairwise_order_accuracy(g.pid, g.helpful, -y))
    assert 0.4 < acc < 0.6


def test_pairs_are_only_compared_within_a_prompt():
    # across prompts the order is perfect, within each prompt it is reversed
    pid, req, y = [0, 0, 1, 1], [0, 1, 0, 1], [1.0, 0.0, 3.0, 2.0]
    assert pairwise_order_accuracy(pid, req, y) == 0.0
    assert monotonic_rate(pid, req, y) == 0.0
    assert spearman(req, y) < 0.5


def test_leakage_recovers_the_slope_ratio(grid):
    g, rng = grid
    for own, other in [(1.0, 0.0), (1.0, 0.5), (0.5, -1.0)]:
        y = own * g.helpful + other * g.harmless + rng.normal(0, 0.05, len(g))
        assert leakage(y, g.helpful, g.harmless) == pytest.approx(other / own, abs=0.02)
    assert np.isnan(leakage(g.helpful, g.helpful, g.helpful))  # collinear design: undefined, not a number


def test_level_accuracy_and_rates():
    assert level_accuracy([0, 1, 2, 3], [0, 1, 0, 0]) == 0.5
    assert rate([True, False, False, False]) == 0.25
    assert np.isnan(rate([]))


def test_bootstrap_is_seeded_and_covers_truth(grid):
    g, rng = grid
    df = pd.DataFrame({"pid": np.arange(500), "x": rng.uniform(size=500) < 0.4})
    a = bootstrap_ci(lambda d: rate(d.x), df, n_boot=300, seed=1)
    assert a == bootstrap_ci(lambda d: rate(d.x), df, n_boot=300, seed=1)
    assert a[1] < 0.4 < a[2] and a[2] - a[1] < 0.12


def test_control_metrics_table(grid):
    g, rng = grid
    score = (g.helpful + rng.uniform(0.1, 0.9, len(g))) / 5
    df = g.assign(score_helpful=score, level_helpful=np.floor(score * 5), score_harmless=rng.uniform(size=len(g)),
                  kind=np.where(g.pid < 10, "harmful", "borderline"), refused=g.harmless >= 3)
    t = control_metrics(df, n_boot=50).set_index(["metric", "attribute", "kinds"])
    assert t.loc[("level_accuracy", "helpful", "benign+borderline"), "value"] == 1.0
    assert t.loc[("level_accuracy", "helpful", "harmful"), "value"] == 1.0          # the other kinds are reported apart
    assert t.loc[("pairwise_accuracy", "harmless", "harmful"), "value"] < 0.65
    assert t.loc[("over_refusal", "-", "benign+borderline"), "value"] == pytest.approx(0.4)
    assert t.loc[("harmful_compliance", "-", "harmful"), "value"] == pytest.approx(0.6)
    assert t.loc[("pairwise_accuracy", "helpful", "benign+borderline"), "n"] == 20    # n counts prompts, the CI's unit
    assert (t.lo <= t.hi).all()


def test_off_attribute_slope_is_reported_and_the_ratio_only_where_it_is_defined(grid):
    g, rng = grid
    kinds = np.where(g.pid < 15, "harmful", "benign")
    # helpfulness follows its own token and leaks 0.1 per level of the harmlessness token; harmlessness follows nothing
    df = g.assign(kind=kinds, score_helpful=0.15 * g.helpful + 0.1 * g.harmless + rng.normal(0, 0.05, len(g)),
                  score_harmless=rng.uniform(size=len(g)))
    t = control_metrics(df, n_boot=200).set_index(["metric", "attribute", "kinds"])
    off = t.loc[("off_attribute_slope", "helpful", "benign+borderline")]
    assert off.value == pytest.approx(0.1, abs=0.02) and off.lo < 0.1 < off.hi
    assert t.loc[("leakage", "helpful", "benign+borderline"), "value"] == pytest.approx(0.1 / 0.15, abs=0.1)
    on = t.loc[("on_attribute_slope", "harmless", "harmful")]
    assert on.lo < 0 < on.hi                                    # no harmlessness control ...
    assert ("leakage", "harmless", "harmful") not in t.index    # ... so no ratio that could explode


@pytest.mark.parametrize("seed", range(4))
def test_every_point_estimate_lies_inside_its_ci_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n_prompts = 12
    g = pd.DataFrame([(p, h, s) for p in range(n_prompts) for h in (0, 4) for s in (0, 4)], columns=["pid", "helpful", "harmless"])
    df = g.assign(kind=np.array(["benign", "borderline", "harmful"])[g.pid % 3], score_helpful=rng.uniform(size=len(g)),
                  score_harmless=rng.uniform(size=len(g)), level_helpful=rng.integers(0, 5, len(g)), level_harmless=rng.integers(0, 5, len(g)),
                  refused=rng.uniform(size=len(g)) < 0.5)
    t = control_metrics(df, n_boot=300, seed=seed).dropna(subset=["lo", "hi"])
    assert len(t) > 20
    bad = t[(t.value < t.lo - 1e-9) | (t.value > t.hi + 1e-9)]
    assert bad.empty, bad


def test_on_and_off_attribute_slopes(grid):
    g, rng = grid
    y = 0.3 * g.helpful - 0.2 * g.harmless + rng.normal(0, 0.01, len(g))
    assert on_attribute_slope(y, g.helpful, g.harmless) == pytest.approx(0.3, abs=0.01)
    assert off_attribute_slope(y, g.helpful, g.harmless) == pytest.approx(-0.2, abs=0.01)
    assert np.isnan(off_attribute_slope(y, g.helpful, g.helpful))
