"""Where the off-attribute slope comes from: a run's fine-tuned model, greedy at the corners of the control grid, on the
prompts it was trained on and on unseen eval prompts, per prompt kind.

For each (split, kind), and per split on the pooled benign+borderline prompts, it prints the refusal rate (refusal detector, p_refuse >= 0.5) at every corner setting, each
attribute's pairwise accuracy (`ctlrepro.metrics.pairwise_order_accuracy`, as the evaluate stage and the probe), and the
on- and off-attribute slopes (`ctlrepro.metrics.slopes`: score ~ 1 + own requested level + other requested level, in
training-scorer units per level) of each attribute's score with a 95% percentile bootstrap CI over prompts. The issue-13
disentanglement target asks that each off-attribute slope's CI include 0 or its size be at most a quarter of the
on-attribute slope. If the off-attribute slope is small on the training prompts and large on the eval prompts, the model
learned what the token should not do on the prompts it saw but does not carry it over to new prompts (a generalization
gap, for which more distinct training prompts are the first thing to try); if it is large on both, look at the objective
or the labels.

Training prompts: the first `--limit` distinct prompts per kind of the run's self-generated data (selfgen.parquet).
Eval prompts: the first `--limit` per kind of the prompt set's eval split (the evaluate stage uses the first
`eval.limit` of these, so a larger --limit adds prompts it did not see; a kind with fewer gives all it has).

Usage: python bench/leakage.py [--run runs/small-mixed-288] [--objective exmate | --model FOLDER] [--limit 16] [--out F.parquet]
Needs the run's finished 'selfgen' stage, and its 'finetune' stage unless --model is given. On 2 cores: about 1.8 s
per prompt (4 settings, 32 tokens).
"""
import argparse, time
from pathlib import Path

import pandas as pd

from ctlrepro.data import load_prompts
from ctlrepro.evaluate import probe_responses
from ctlrepro.metrics import CONTROL_KINDS, bootstrap_ci, pairwise_order_accuracy, slopes
from ctlrepro.core import read_json
from ctlrepro.models import load_controllable
from ctlrepro.scorers import default_scorers
from ctlrepro.tokens import SPEC


def table(out:pd.DataFrame, n_boot:int)->pd.DataFrame:
    "Per (split, kind), and per split on the pooled benign+borderline prompts: refusal rate per setting, and each attribute's pairwise accuracy and on/off slope with a bootstrap CI"
    rows = []
    a, b = SPEC.attributes
    views = [(k, d) for k, d in out.groupby(["split", "kind"], sort=False)]
    views += [((split, "+".join(ks)), d[d.kind.isin(ks)]) for ks in {tuple(v) for v in CONTROL_KINDS.values() if len(v) > 1}
              for split, d in out.groupby("split", sort=False)]   # the pooled headline kinds the evaluate stage reports (benign+borderline)
    for (split, kind), d in views:
        if d.empty: continue
        r = {"split": split, "kind": kind, "n": d.pid.nunique()}
        for lv, g in d.groupby([a, b]): r[f"refused {SPEC.format(dict(zip((a, b), lv)))}"] = round(float(g.refused.mean()), 3)
        for own, other in ((a, b), (b, a)):
            v, lo, hi = bootstrap_ci(lambda f: pairwise_order_accuracy(f.pid, f[own], f[f"score_{own}"]), d, "pid", n_boot, 0)
            r[f"pairwise {own}"] = f"{v:.2f} [{lo:.2f}, {hi:.2f}]"
            for i, which in enumerate(("on", "off")):
                v, lo, hi = bootstrap_ci(lambda f: slopes(f[f"score_{own}"], f[own], f[other])[i], d, "pid", n_boot, 0)
                r[f"{which} {own}"] = f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        rows.append(r)
    return pd.DataFrame(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/small-mixed-288", help="run folder with a finished 'selfgen' stage (and 'finetune', unless --model is given)")
    ap.add_argument("--objective", default="exmate", help="a fine-tuned objective of the run (finetune/<objective>/)")
    ap.add_argument("--model", default=None, help="a controllable-model folder (controllable.json, adapter/) instead of <run>/finetune/<objective>, e.g. one of bench/seed_spread.py")
    ap.add_argument("--out", default=None, help="write the scored responses here (.parquet)")
    ap.add_argument("--limit", type=int, default=16, help="prompts per kind and split")
    ap.add_argument("--prompts", default="ctlrepro", help="prompt set (registered name or file) of the eval prompts")
    ap.add_argument("--levels", type=int, nargs="+", default=[0, 4], help="requested levels of each attribute (the grid is their product)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--n-boot", type=int, default=1000)
    a = ap.parse_args()
    if a.limit < 3: raise SystemExit(f"--limit {a.limit}: a slope needs at least 3 prompts per kind")
    bad = [lv for lv in a.levels if not 0 <= lv < SPEC.k]
    if bad or len(set(a.levels)) < 2 or len(set(a.levels)) < len(a.levels): raise SystemExit(f"--levels {a.levels}: give at least two distinct levels in 0..{SPEC.k - 1}, each once")
    for flag, v in (("--n-boot", a.n_boot), ("--max-new-tokens", a.max_new_tokens)):
        if v < 1: raise SystemExit(f"{flag} {v}: give a positive number")
    run = Path(a.run)
    if not run.is_dir(): raise SystemExit(f"--run {run}: no such folder; give a run folder (e.g. runs/small-mixed-288)")
    data_file = run / "selfgen" / "selfgen.parquet"
    if not data_file.exists(): raise SystemExit(f"{data_file} not found: run the 'selfgen' stage of {run} first")
    if a.model:
        folder = Path(a.model)
        if not (folder / "controllable.json").exists(): raise SystemExit(f"--model {folder}: not a controllable-model folder (it needs controllable.json and adapter/)")
    else:
        folder = run / "finetune" / a.objective
        if not (folder / "controllable.json").exists():
            have = sorted(p.parent.name for p in (run / "finetune").glob("*/controllable.json"))
            raise SystemExit(f"--objective {a.objective}: {folder} holds no fine-tuned model; " + (f"this run has {have}" if have else f"run the 'finetune' stage of {run} first"))
    seen = pd.read_parquet(data_file, columns=["prompt", "kind"]).drop_duplicates("prompt")
    train = seen.groupby("kind", sort=False).head(a.limit).assign(split="train")
    try: ev = load_prompts(a.prompts, split="eval", limit=a.limit)[["prompt", "kind"]].assign(split="eval")
    except (ValueError, FileNotFoundError) as e: raise SystemExit(f"--prompts {a.prompts}: {e}")
    overlap = set(train.prompt) & set(ev.prompt)
    if overlap: raise SystemExit(f"{len(overlap)} eval prompt(s) are in the run's training data, e.g. {sorted(overlap)[0]!r}")
    prompts = pd.concat([train, ev], ignore_index=True)   # probe_responses numbers them (pid) in this order
    where = read_json(folder / "controllable.json", "controllable model record").get("config", {}).get("where", "system")
    model, tok = load_controllable(folder)
    t = time.time()
    out = probe_responses(model, tok, prompts, default_scorers(), tuple(a.levels), a.max_new_tokens, where)   # the probe's rows, with each prompt's split carried
    if a.out: out.to_parquet(a.out)
    print(f"{folder} on {run}'s training prompts and {a.prompts} eval prompts: {prompts.groupby(['split', 'kind']).size().to_dict()} prompts, levels {a.levels}, "
          f"{a.max_new_tokens} tokens, greedy; {time.time() - t:.0f} s", flush=True)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table(out, a.n_boot).to_string(index=False))


if __name__ == "__main__":
    main()
