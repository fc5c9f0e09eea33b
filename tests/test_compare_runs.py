"bench/compare_runs.py: the table shows each run's own numbers, in the column of its file"
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _results(pairwise, refused):
    m = lambda model, att, kinds, v: {"model": model, "family": "optimization", "metric": "pairwise_accuracy", "attribute": att, "kinds": kinds, "value": v, "lo": v - 0.05, "hi": v + 0.05, "n": 8}
    return {"preset": "p", "commit": "abcdef0123", "seconds": {"finetune": 10.0, "total": 12.0},
            "metrics": [m("exmate", "helpful", "benign+borderline", pairwise), m("exmate", "harmless", "harmful", 1 - pairwise)],
            "claims": [{"model": "exmate", "kind": "harmful", "setting": "[helpful=4][harmless=4]", "n": 8, "refused": refused, "answers_aligned_refusals": None}],
            "benchmarks": [{"model": "rewound (exmate)", "control": "[helpful=4][harmless=4]", "benchmark": "advbench", "judge": "training refusal decision",
                            "answered_safe": None, "n_safe": 0, "refused_unsafe": 0.5, "n_unsafe": 12}]}


def test_compare_runs_puts_each_runs_numbers_in_its_column(tmp_path, capsys, bench):
    for name, (p, r) in {"a": (0.9, 0.25), "b": (0.6, 1.0)}.items():
        (tmp_path / name).mkdir(); (tmp_path / name / "results.json").write_text(json.dumps(_results(p, r)))
    bench("compare_runs").main([str(tmp_path / "a" / "results.json"), str(tmp_path / "b" / "results.json")])
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in capsys.readouterr().out.splitlines()]
    rows = {c[0]: c[1:] for c in cells}
    assert rows[""] == ["a", "b"]
    assert rows["exmate pairwise accuracy helpful (benign+borderline), optimization"] == ["0.90 [0.85, 0.95]", "0.60 [0.55, 0.65]"]
    assert rows["exmate pairwise accuracy harmless (harmful), optimization"] == ["0.10 [0.05, 0.15]", "0.40 [0.35, 0.45]"]
    assert rows["exmate harmful refused at [helpful=4][harmless=4]"] == ["2 of 8", "8 of 8"]
    assert rows["benchmarks advbench at [h4][s4], rewound: answered safe / refused unsafe"] == ["- / 0.50 (n 12)"] * 2
    assert rows["exmate pairwise accuracy helpful (benign+borderline), generalization"] == ["-", "-"]   # not in the file: shown as missing
    assert rows["seconds: total"] == ["12", "12"]
    assert rows["exmate target: pairwise accuracy helpful (benign+borderline) >= 0.75, CI lower bound > 0.5, optimization"] == ["0.90 [0.85, 0.95]: met", "0.60 [0.55, 0.65]: not met"]
    assert rows["exmate target: rewinding: harmful prompts refused at [harmless=top], at each helpfulness level >= 0.90, optimization"] == ["2 of 8 at [helpful=4][harmless=4]: not met", "8 of 8 at [helpful=4][harmless=4]: met"]
    assert rows["exmate target: disentanglement helpful: off-attribute slope's CI covers 0, or its size is at most a quarter of the on-attribute slope, optimization"] == ["n/a: n/a"] * 2   # no slopes in these files
    assert rows["run target: time: stages at most 30 min"] == ["0.2 min: met"] * 2


def test_compare_runs_shows_a_missing_interval_and_commit_as_such(tmp_path, capsys, bench):
    r = _results(0.5, 0.5)
    r["commit"] = None                                               # written outside a git checkout
    r["metrics"][0].update(lo=None, hi=None)                         # a NaN interval (one prompt)
    (tmp_path / "results.json").write_text(json.dumps(r))
    bench("compare_runs").main([str(tmp_path / "results.json")])
    out = capsys.readouterr().out
    assert "| p no git |" in out and "| 0.50 [-, -] |" in out


def test_compare_runs_refuses_an_unreadable_file(tmp_path, bench):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SystemExit, match="bad.json: not a readable results.json"):
        bench("compare_runs").main([str(tmp_path / "bad.json")])
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"empty.json: not a results.json of the figures stage: it lacks \['preset'"):
        bench("compare_runs").main([str(tmp_path / "empty.json")])
    r = _results(0.5, 0.5); r["metrics"][0]["value"] = "0.5"                  # a number written as text
    (tmp_path / "text.json").write_text(json.dumps(r))
    with pytest.raises(SystemExit, match=r"text.json: target_checks: results\['metrics'\]\[0\]: value='0.5'; give a number or null"):
        bench("compare_runs").main([str(tmp_path / "text.json")])
    with pytest.raises(SystemExit, match=r"--model 'exmat' is in none of the files; accepted are \["):
        bench("compare_runs").main([str(ROOT / "figures" / "results.json"), "--model", "exmat"])
    with pytest.raises(SystemExit, match="--labels gives 2 names for 1 files"):
        bench("compare_runs").main([str(ROOT / "figures" / "results.json"), "--labels", "x", "y"])


def test_the_readme_results_block_is_the_committed_results_json():
    "The README's numbers come only from figures/results.json: its block is `readme_block` of that file, targets included"
    from ctlrepro.figures import README_END, README_START, readme_block
    s = (ROOT / "README.md").read_text()
    block = s[s.index(README_START) + len(README_START):s.index(README_END)].strip("\n")
    assert block == readme_block(json.loads((ROOT / "figures" / "results.json").read_text()))
