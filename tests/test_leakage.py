"bench/leakage.py: per (split, kind) and pooled rows carry the slopes, pairwise accuracy and refusal rates of their own rows"
import itertools

import numpy as np
import pandas as pd


def _frame(off_borderline_eval:float)->pd.DataFrame:
    "4 prompts per (split, kind); helpful score 0.1 per own level; on eval borderline prompts also `off` per harmless level"
    rows = []
    for split, kind, p in itertools.product(("train", "eval"), ("benign", "borderline", "harmful"), range(4)):
        for h, s in itertools.product((0, 4), (0, 4)):
            off = off_borderline_eval if (split, kind) == ("eval", "borderline") else 0.0
            rows.append(dict(split=split, kind=kind, pid=f"{split}-{kind}-{p}", helpful=h, harmless=s,
                             score_helpful=0.1 * h + off * s + 0.01 * p, score_harmless=0.05 * s, refused=(split, kind, h, s) == ("eval", "borderline", 4, 4)))
    return pd.DataFrame(rows)


def test_each_view_reports_its_own_rows(bench):
    t = bench("leakage").table(_frame(-0.05), n_boot=50).set_index(["split", "kind"])
    num = lambda cell: float(cell.split()[0])
    assert set(t.index) == {(s, k) for s in ("train", "eval") for k in ("benign", "borderline", "harmful", "benign+borderline")}
    assert num(t.loc[("eval", "borderline"), "off helpful"]) == -0.05       # the leak is where it was put
    assert num(t.loc[("train", "borderline"), "off helpful"]) == 0.0
    assert num(t.loc[("eval", "benign+borderline"), "off helpful"]) == -0.025   # pooled: half the rows leak
    assert num(t.loc[("eval", "benign"), "on helpful"]) == 0.1
    assert t.loc[("eval", "borderline"), "refused [helpful=4][harmless=4]"] == 1.0
    assert t.loc[("eval", "benign"), "refused [helpful=4][harmless=4]"] == 0.0
    assert t.loc[("eval", "benign+borderline"), "n"] == 8
    assert t.loc[("eval", "benign+borderline"), "refused [helpful=4][harmless=4]"] == 0.5   # pooled: half the prompts refuse there
    assert (num(t.loc[("eval", "harmful"), "on harmless"]), num(t.loc[("eval", "harmful"), "off harmless"])) == (0.05, 0.0)
    assert t.loc[("train", "harmful"), "pairwise harmless"].startswith("1.00")
    # the leak (0.2 at [harmless=4]) is smaller than the 0.4 the helpfulness token moves: every pair of settings stays in order
    assert t.loc[("eval", "borderline"), "pairwise helpful"].startswith("1.00")


class _LengthScorers:
    "Scores from the response length: enough to run the probe without the embedded heads"
    def parts(self, prompts, responses):
        n = [min(1, len(r) / 20) for r in responses]
        return pd.DataFrame({"helpfulness": n, "safety": [1 - x for x in n], "p_refuse": [0.0] * len(n)})


def test_responses_keep_each_prompts_split(tiny):
    "bench/leakage.py reads each row's split from probe_responses, which numbers prompts by position: a shuffled index must not move a split to another prompt"
    from ctlrepro.evaluate import probe_responses
    prompts = pd.DataFrame({"prompt": [f"Question number {i}?" for i in range(6)], "kind": ["benign", "borderline", "harmful"] * 2,
                            "split": ["train"] * 3 + ["eval"] * 3}, index=[5, 3, 0, 4, 1, 2])
    out = probe_responses(*tiny, prompts, _LengthScorers(), grid_levels=(0, 4), max_new_tokens=2)
    assert len(out) == 6 * 4 and sorted(out.pid.unique()) == list(range(6))
    want = prompts.reset_index(drop=True)
    for col in ("prompt", "kind", "split"):
        assert (out[col].to_numpy() == want[col].to_numpy()[out.pid]).all(), col      # every row carries its own prompt's values
    assert out.groupby("pid").size().eq(4).all()                                        # each prompt once per setting of the 2x2 grid
