import numpy as np
import pandas as pd
import pytest

from ctlrepro.metrics import (bootstrap_ci, control_metrics, leakage, level_accuracy, monotonic_rate,
                              pairwise_order_accuracy, rate, spearman)


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
    t = control_metrics(df, n_boot=50).set_index(["metric", "attribute"])
    assert t.loc[("level accuracy", "helpful"), "value"] == 1.0
    assert t.loc[("pairwise order accuracy", "harmless"), "value"] < 0.6
    assert t.loc[("over-refusal", "-"), "value"] == pytest.approx(0.4)
    assert t.loc[("harmful compliance", "-"), "value"] == pytest.approx(0.6)
    assert (t.lo <= t.hi).all()
