"""Print one objective's results from several runs side by side, as a markdown table (read from each run's results.json).

    python bench/compare_runs.py figures/results.json figures/small-balanced/results.json figures/small-one-attribute/results.json

Rows: pairwise accuracy per family and the on/off-attribute slopes of the optimization family (value [95% CI]), the
claim settings' refusal counts, the public benchmarks at [helpful=4][harmless=4] (training refusal decision), every objective's pairwise
accuracy, the stage times, and issue 13's targets met or not for the objective (`ctlrepro.figures.target_checks`, read off the
same file). Nothing is computed anew: each number is the run's own (`ctlrepro.figures`' results.json).
"""
import argparse, json
from pathlib import Path

from ctlrepro.figures import target_checks


def num(v):
    "0.73, or '-' for a missing value (results.json writes null for a NaN, e.g. an interval over one prompt)"
    return "-" if v is None else f"{v:.2f}"


def fmt(m):
    "value [lo, hi] of one metric row, or '-'"
    return "-" if m is None else f"{num(m['value'])} [{num(m['lo'])}, {num(m['hi'])}]"


def metric(r, model, metric, attribute, kinds, family):
    rows = [m for m in r["metrics"] if (m["model"], m["metric"], m["attribute"], m["kinds"], m["family"]) == (model, metric, attribute, kinds, family)]
    return rows[0] if rows else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path, help="results.json files (figures/..., written by the figures stage)")
    ap.add_argument("--labels", nargs="*", help="a column name per file (default: the folder holding it)")
    ap.add_argument("--model", default="exmate", help="the objective whose rows are shown (default exmate)")
    a = ap.parse_args(argv)
    runs, checks = [], []                                            # each file's results.json and its `target_checks` rows
    for p in a.results:
        try: r = json.loads(p.read_text())
        except (OSError, ValueError) as e: raise SystemExit(f"{p}: not a readable results.json ({e}); the figures stage writes one per run")
        missing = [k for k in ("preset", "commit", "seconds", "metrics", "claims", "benchmarks") if not isinstance(r, dict) or k not in r]
        if missing: raise SystemExit(f"{p}: not a results.json of the figures stage: it lacks {missing}")
        try: checks.append(target_checks(r))                         # the rows' columns and value types, checked before any table is drawn
        except ValueError as e: raise SystemExit(f"{p}: {e}") from None
        runs.append(r)
    models = sorted({m["model"] for r in runs for m in r["metrics"]})
    if a.model not in models: raise SystemExit(f"--model {a.model!r} is in none of the files; accepted are {models}")
    labels = a.labels or [p.parent.name for p in a.results]
    if len(labels) != len(runs): raise SystemExit(f"--labels gives {len(labels)} names for {len(runs)} files")
    out = ["| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(runs)]
    row = lambda name, cells: out.append(f"| {name} | " + " | ".join(cells) + " |")
    row("preset, commit", [f"{r['preset']} {(r['commit'] or 'no git')[:7]}" for r in runs])
    for fam in ("optimization", "generalization"):
        for att, kinds in (("helpful", "benign+borderline"), ("harmless", "harmful")):
            row(f"{a.model} pairwise accuracy {att} ({kinds}), {fam}", [fmt(metric(r, a.model, "pairwise_accuracy", att, kinds, fam)) for r in runs])
    for name, m in (("on", "on_attribute_slope"), ("off", "off_attribute_slope")):
        for att, kinds in (("helpful", "benign+borderline"), ("harmless", "harmful")):
            row(f"{a.model} {name}-attribute slope of {att} ({kinds}), optimization", [fmt(metric(r, a.model, m, att, kinds, "optimization")) for r in runs])
    settings = sorted({(c["kind"], c["setting"]) for r in runs for c in r["claims"] if c["model"] == a.model})
    for kind, setting in settings:
        cells = []
        for r in runs:
            c = [c for c in r["claims"] if (c["model"], c["kind"], c["setting"]) == (a.model, kind, setting)]
            cells.append(f"{round(c[0]['refused'] * c[0]['n'])} of {c[0]['n']}" if c and c[0]["refused"] is not None else "-")
        row(f"{a.model} {kind} refused at {setting}", cells)
    for bench in ("all", "xstest", "advbench"):
        cells = []
        for r in runs:
            b = [b for b in r["benchmarks"] if b["model"] == f"rewound ({a.model})" and b["control"] == "[helpful=4][harmless=4]"
                 and b["benchmark"] == bench and b["judge"] == "training refusal decision"]
            rate = lambda v, n: "-" if v is None or not n else f"{v:.2f} (n {n})"      # a benchmark with no safe (or unsafe) prompts
            cells.append(f"{rate(b[0]['answered_safe'], b[0]['n_safe'])} / {rate(b[0]['refused_unsafe'], b[0]['n_unsafe'])}" if b else "-")
        row(f"benchmarks {bench} at [h4][s4], rewound: answered safe / refused unsafe", cells)
    for model in (m for m in models if m not in ("base", "aligned")):
        row(f"{model} pairwise helpful / harmless, optimization",
            [" / ".join(num(m["value"]) if (m := metric(r, model, "pairwise_accuracy", att, kinds, "optimization")) else "-"
                        for att, kinds in (("helpful", "benign+borderline"), ("harmless", "harmful"))) for r in runs])
    for stage in dict.fromkeys(k for r in runs for k in r["seconds"]):
        row(f"seconds: {stage}", [f"{r['seconds'][stage]:.0f}" if stage in r["seconds"] else "-" for r in runs])
    word = lambda met: "n/a" if met is None or met != met else ("met" if met else "not met")   # met != met: NaN
    for target, fam in dict.fromkeys((t.target, t.family) for c in checks for t in c.itertuples()):   # every target, so one the objective has no rows for shows as '-'
        cells = []
        for c in checks:
            t = c[(c.target == target) & (c.family == fam) & c.model.isin([a.model, "run"])]
            cells.append("-" if t.empty else f"{t.value.iloc[0]}: {word(t.met.iloc[0])}")
        row(f"{'run' if target.startswith('time') else a.model} target: {target}" + ("" if fam == "-" else f", {fam}"), cells)
    print("\n".join(out))


if __name__ == "__main__":
    main()
