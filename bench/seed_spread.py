"""Seed-to-seed spread of learned control: train one objective several times from a run's aligned model on the same
self-generated data, changing only the training seed (LoRA initialisation, batch draws, ExMATE's negatives), and print
the learning curve of each (greedy control on held-out eval prompts, `ctlrepro.evaluate.control_probe`) side by side.

The question it answers (docs/findings.md, "The small preset at deb54fd"): two fresh-clone runs of the small preset
gave harmlessness pairwise accuracy 0.84 and 0.48; is the token that governs refusal on harmful prompts a matter of the
training seed, with the data fixed?

Usage: python bench/seed_spread.py [--run runs/spread] [--preset small] [--objective exmate|clm|dpo|rl] [--seeds 0 1 2]
                                   [--probe-every 48] [--limit 16] [--train '{"kind_weights": {"harmful": 2}}' --tag harmful2]
Needs the run's 'aligned' and 'selfgen' stages (`ctlrepro reproduce --only aligned selfgen --out runs/spread`). Each
seed's model and learning curve go to <run>/seed_spread/<objective>-seed<N> and are reused when the config, data and code
are unchanged, so an interrupted run resumes at the next seed. Seed 0 is the preset's own finetune run (the probe does
not change the training it measures). Training settings: the preset's finetune stage for the objective
(`control_probe.finetune_settings`), with `--train` fields on top and `seed` and `probe_every` replaced; a variant
(`--train`) goes to <run>/seed_spread/<objective>-<tag>-seed<N>.
"""
import argparse, dataclasses, json, re, sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from control_probe import finetune_settings                 # the preset's TrainConfig, built as the runner builds it
from ctlrepro.align import aligned_source
from ctlrepro.core import stable_hash
from ctlrepro.data import load_prompts
from ctlrepro.objectives import OBJECTIVES, train_or_reuse
from ctlrepro.selfgen import load_binners
from ctlrepro.stage import RunConfig


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/spread", help="run folder with finished 'aligned' and 'selfgen' stages")
    ap.add_argument("--preset", default="small", help="the preset whose finetune stage gives the training settings")
    ap.add_argument("--objective", default="exmate", choices=list(OBJECTIVES), help="conditional DPO and RL probe through a TRL callback at the same updates")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--probe-every", type=int, default=48, help="updates between probes (and a probe at step 0)")
    ap.add_argument("--limit", type=int, default=16, help="held-out eval prompts per kind in each probe")
    ap.add_argument("--probe-tokens", type=int, default=None, help="greedy response length of the probe (default: the preset's)")
    ap.add_argument("--train", type=json.loads, default={}, help="TrainConfig fields as JSON on top of the preset's, e.g. '{\"kind_weights\": {\"harmful\": 2}}'")
    ap.add_argument("--tag", default=None, help="name of the --train variant in the model folders (default: a hash of --train)")
    a = ap.parse_args()
    if not isinstance(a.train, dict): raise SystemExit(f"seed_spread: --train {json.dumps(a.train)}: give a JSON object of TrainConfig fields")
    if a.tag is not None and not re.fullmatch(r"[A-Za-z0-9_.=+-]+", a.tag): raise SystemExit(f"seed_spread: --tag {a.tag!r}: use letters, digits and _ . = + - only (it names folders)")
    tag = a.tag or (stable_hash(a.train)[:8] if a.train else None)
    for flag, v in (("--probe-every", a.probe_every), ("--limit", a.limit), ("--probe-tokens", a.probe_tokens or 1)):
        if v < 1: raise SystemExit(f"seed_spread: {flag} {v}: give a whole number >= 1")
    if len(set(a.seeds)) < len(a.seeds): raise SystemExit(f"seed_spread: --seeds {' '.join(map(str, a.seeds))}: a seed given twice would count one model twice")
    try: cfg0, _, probe_tokens = finetune_settings(a.preset, a.objective, a.train)
    except (ValueError, TypeError, FileNotFoundError) as e: raise SystemExit(f"seed_spread: --preset {a.preset!r}{' --train ' + json.dumps(a.train) if a.train else ''}: {e}")
    if a.probe_every > cfg0.steps: raise SystemExit(f"seed_spread: --probe-every {a.probe_every} is more than the {cfg0.steps} steps {a.objective} trains: only the untrained model would be probed; give at most {cfg0.steps} (or more steps in --train)")
    run = Path(a.run)
    data_file = run / "selfgen" / "selfgen.parquet"
    if not data_file.exists(): raise SystemExit(f"seed_spread: {data_file} not found; run `ctlrepro reproduce --only aligned selfgen --out {run}` first")
    data, binners, scorers = pd.read_parquet(data_file), load_binners(run / "selfgen"), RunConfig().scorers()
    prompts = load_prompts("ctlrepro", split="eval", limit=a.limit)          # held out: never in the training data
    print(f"{a.objective}{' ' + json.dumps(a.train) if a.train else ''}: {cfg0.steps} steps of {cfg0.batch_size} at lr {cfg0.lr}, {len(data)} rows; "
          f"probe every {a.probe_every} updates on {a.limit} eval prompts per kind; seeds {a.seeds}", flush=True)
    rows, src = [], aligned_source(run)
    for seed in a.seeds:
        cfg = dataclasses.replace(cfg0, seed=seed, probe_every=a.probe_every)
        folder = run / "seed_spread" / f"{a.objective}{'-' + tag if tag else ''}-seed{seed}"
        train_or_reuse(src, data, cfg, folder, scorers, binners, probe_prompts=prompts,
                       probe_tokens=a.probe_tokens or probe_tokens)
        rows.append(pd.read_csv(folder / "probe.csv").assign(seed=seed))
    df = pd.concat(rows, ignore_index=True)
    df.to_csv(run / "seed_spread" / f"{a.objective}{'-' + tag if tag else ''}-probes.csv", index=False)
    n = a.limit
    cols = {"pairwise_accuracy/helpful": "pa helpful", "pairwise_accuracy/harmless": "pa harmless"}
    order = {"harmful": 0, "borderline": 1, "benign": 2}
    refused = sorted((c for c in df if c.startswith("refused/")), key=lambda c: (order.get(c.split("/")[1], 3), c))   # the probe's grid, as it recorded it
    cols |= {c: f"{c.split('_')[0]} {c.split('/')[1][:4]}" for c in df if "_attribute_slope/" in c}   # on/off-attribute slopes (probes of this version on)
    counts = {c: c.split("/")[1][:4] + " " + ",".join(re.findall(r"=(\d+)\]", c.split("/")[2])) for c in refused}   # refused/harmful/[helpful=0][harmless=4] -> harm 0,4
    t = df[["seed", "step", *cols, *counts]].rename(columns=cols | counts)
    for c in counts.values(): t[c] = (t[c] * n).round().astype(int)           # refusal rates as counts out of n prompts
    print(f"\npairwise accuracy (greedy), on-/off-attribute slopes (score units per requested level, `metrics.slopes`) and refusals out of {n} prompts per kind at each setting (levels in the order of the control string), per seed and step")
    print(t.round({c: 3 if c.startswith(('on ', 'off ')) else 2 for c in t.columns}).to_string(index=False))   # slopes: a leak of 0.004 per level is not 0
    last = t[t.step == t.step.max()]
    print(f"\nat step {t.step.max()} over {len(last)} seeds: " + "; ".join(
        f"{c} mean {last[c].mean():.2f} [min {last[c].min():.2f}, max {last[c].max():.2f}]" for c in ("pa helpful", "pa harmless")))


if __name__ == "__main__":
    main()
