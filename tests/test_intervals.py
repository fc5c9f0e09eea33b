"Issue 14.3: intervals that hold their coverage at the study's sizes (8-16 prompts), and tables that show n beside each interval"
import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, norm

from ctlrepro.metrics import bootstrap_ci, control_metrics, pairwise_order_accuracy, rate, rate_ci


def _exact_coverage(n, p, method):
    "P(the interval covers p), summed over every outcome k ~ Binomial(n, p)"
    return sum(binom.pmf(k, n, p) * (lambda c: c[1] <= p <= c[2])(rate_ci(np.r_[np.ones(k), np.zeros(n - k)], method=method)) for k in range(n + 1))


def test_all_refused_gets_the_exact_lower_bound_not_a_zero_width_interval():
    boot = bootstrap_ci(lambda d: rate(d.refused), pd.DataFrame({"pid": range(8), "refused": True}), n_boot=200)
    assert boot == (1.0, 1.0, 1.0)                               # why rates leave the bootstrap
    v, lo, hi = rate_ci(np.ones(8))
    assert (v, hi) == (1.0, 1.0) and lo == pytest.approx(0.631, abs=1e-3)    # 0.025 ** (1/8)
    v, lo, hi = rate_ci(np.zeros(8))
    assert (v, lo) == (0.0, 0.0) and hi == pytest.approx(1 - 0.025 ** (1 / 8), abs=1e-9)
    assert rate_ci(np.ones(8), method="wilson")[1] == pytest.approx(0.6756, abs=1e-3)


@pytest.mark.parametrize("n", [8, 12, 16])
def test_rate_intervals_hold_their_coverage(n):
    for p in (0.05, 0.2, 0.5, 0.85, 0.95):
        assert _exact_coverage(n, p, "exact") >= 0.95           # Clopper-Pearson: never below, at any rate
    # Wilson: near 95% on average over rates (it dips below at some p, as documented)
    ps = np.linspace(0.05, 0.95, 19)
    assert np.mean([_exact_coverage(n, p, "wilson") for p in ps]) >= 0.93
    # the case: 12 prompts, true rate 0.85 (the bootstrap's '95%' interval covered it 83% of the time)
    if n == 12: assert _exact_coverage(12, 0.85, "exact") == pytest.approx(0.9761, abs=1e-3)


def test_rate_ci_counts_prompts_not_responses_and_refuses_bad_input():
    assert rate_ci([1, 1, 0, 0], groups=[0, 0, 1, 1])[1:] == rate_ci([1, 0])[1:]   # 4 responses of 2 prompts: 2 trials
    assert rate_ci([1, 1, 0, 0])[2] - rate_ci([1, 1, 0, 0])[1] < rate_ci([1, 0])[2] - rate_ci([1, 0])[1]
    assert all(np.isnan(rate_ci([])))
    with pytest.raises(ValueError, match="method='bootstrap': accepted are 'exact', 'wilson'"): rate_ci([1, 0], method="bootstrap")
    with pytest.raises(ValueError, match="flags must be 0/1"): rate_ci([0.5, 1])


def test_control_metrics_rates_use_the_exact_interval():
    df = pd.DataFrame({"pid": range(16), "kind": ["benign"] * 8 + ["harmful"] * 8, "refused": [True] * 8 + [True] * 8})
    t = control_metrics(df, (), n_boot=100).set_index("metric")
    assert t.loc["over_refusal", ["value", "hi", "n"]].tolist() == [1.0, 1.0, 8]
    assert t.loc["over_refusal", "lo"] == pytest.approx(0.631, abs=1e-3)          # was 1.0 (zero width)
    assert t.loc["harmful_compliance", ["value", "lo", "n"]].tolist() == [0.0, 0.0, 8]
    assert t.loc["harmful_compliance", "hi"] == pytest.approx(0.369, abs=1e-3)


def _study(n, rng, b=0.238):
    "n prompts x the 4 settings of levels {0, 4}^2; score = b x requested helpful level + prompt effect + noise"
    rh = np.tile([0, 0, 4, 4], n)
    y = b * rh + np.repeat(rng.normal(0, 1, n), 4) + rng.normal(0, 1, 4 * n)
    return pd.DataFrame({"pid": np.repeat(np.arange(n), 4), "helpful": rh, "y": y})


@pytest.mark.parametrize("n", [8, 16])
def test_bootstrap_coverage_at_the_studys_sizes(n):
    "The percentile bootstrap of pairwise order accuracy covers less than 95% at 8-16 prompts, as its docstring says"
    truth = norm.cdf(4 * 0.238 / np.sqrt(2))                   # P(y at level 4 > y at level 0) within a prompt: 0.75
    rng, sims = np.random.default_rng(n), 120
    hits = [(lambda c: c[1] <= truth <= c[2])(bootstrap_ci(lambda d: pairwise_order_accuracy(d.pid, d.helpful, d.y), _study(n, rng), n_boot=100, seed=s))
            for s in range(sims)]
    cov, se = np.mean(hits), np.sqrt(0.85 * 0.15 / sims)
    expected = {8: 0.84, 16: 0.91}[n]                            # the docstring's numbers (measured with these seeds: 0.842, 0.908)
    assert abs(cov - expected) <= 3 * se, cov                    # a zero-width or a too-wide interval fails; 3 Monte Carlo SEs of slack
    assert cov < 0.95 + se                                       # what the docstring warns about: below the nominal 95%


def test_tables_show_n_beside_each_interval():
    from ctlrepro.figures import fmt_ci, results_markdown, show_metrics
    assert fmt_ci(0.5, 0.2, 0.8, 8) == "0.50 [0.20, 0.80] n=8"
    t = pd.DataFrame({"model": "m", "family": "optimization", "metric": ["over_refusal", "spearman"], "attribute": ["-", "helpful"],
                      "kinds": ["benign+borderline", "benign+borderline"], "value": [1.0, 0.3], "lo": [0.63, 0.1], "hi": [1.0, 0.5], "n": [8, 32]})
    md = results_markdown(t)
    assert "1.00 [0.63, 1.00] n=8" in md and "0.30 [0.10, 0.50] n=32" in md
    assert show_metrics(t).loc[("m", "over_refusal", "-", "benign+borderline"), "optimization"] == "1.00 [0.63, 1.00] n=8"
