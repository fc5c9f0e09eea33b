"""How fast an objective learns the control tokens: train from a run's aligned model on its self-generated data, and after
each chunk of steps print the graded and the greedy view of the rewinding claims.

Graded: the mean per-token log-probability of the aligned model's own refusals (on the borderline eval prompts it
refused) at [helpful=4][harmless=0] minus at [helpful=0][harmless=4]; negative means the helpfulness token moves the
model away from refusing. Greedy: refusal rates (refusal detector) on borderline and harmful eval prompts per setting.

Usage: python bench/control_probe.py [--run runs/small] [--preset small] [--objective exmate] [--chunks 16 16 32] [--train '{"lr": 0.002}']
Needs the run's 'aligned' and 'selfgen' stages (ctlrepro reproduce --only aligned selfgen). The optimizer restarts at
each chunk (the adapter carries on), so a chunked run is not step for step the same as one call with all the steps; a
decaying lr_schedule (the small-balanced preset's ExMATE: linear) would restart at every chunk, so chunks train at the constant
rate (printed): for a decaying schedule probed during one run, use bench/seed_spread.py.

The training settings are the preset's finetune stage (its `train` section and the objective's override, built by
`ctlrepro.stage.stage_configs` as the runner builds them); `--train` changes fields on top. The probe's prompts per kind
and response length are the stage's `probe_limit` and `probe_tokens`. The finetune stage's own learning curve
(`train.probe_every` > 0, `evaluate.control_probe`) measures greedy control during a run; this script adds the graded
view (log-probability of the aligned model's refusals) and chunked training.
"""
import argparse, ast, json, time
from pathlib import Path

import pandas as pd
import torch

from ctlrepro.align import aligned_source
from ctlrepro.evaluate import refusal_rates
from ctlrepro.models import load_policy
from ctlrepro.objectives import lora_model, response_logps, train
from ctlrepro.pipeline import STAGES, load_preset, notebook_params, repo_root, stage_params
from ctlrepro.rewind import CLAIMS, claim_prompts
from ctlrepro.stage import stage_configs
from ctlrepro.tokens import SPEC


def probe(pm, tok, refusals, ps, max_new_tokens):
    "The graded margin and the greedy refusal rate of every claim setting"
    r = {}
    answer, refuse = (lv for kind, lv in CLAIMS if kind == "borderline")     # the borderline claim: answer at the first, refuse at the second
    lp = {lv: response_logps(pm, tok, refusals.prompt.tolist(), refusals.response.tolist(), lv).mean() for lv in (answer, refuse)}
    r[f"borderline refusal logp {SPEC.format(answer)} - {SPEC.format(refuse)}"] = round(float(lp[answer] - lp[refuse]), 3)
    for kind, lv in CLAIMS:
        o = refusal_rates(pm, tok, ps[ps.kind == kind], progress=False, levels=lv, max_new_tokens=max_new_tokens)
        r[f"{kind} refused {SPEC.format(lv)}"] = round(float(o.refused.mean()), 3)
    return r


def finetune_settings(preset:str, objective:str, train:dict)->tuple:
    "(TrainConfig, probe_limit, probe_tokens) of the preset's finetune stage for `objective`, with `train` fields on top"
    stage = next(s for s in STAGES if s.name == "finetune")
    nbs = repo_root() / "nbs"
    p = {k: ast.literal_eval(d) for k, (_, d) in notebook_params(nbs / stage.notebook).items()}   # the notebook's defaults
    p.update(stage_params(stage, load_preset(preset), nbs))
    p["train"], p["objectives"] = {**p["train"], **train}, [objective]
    ov = p.get("objective_overrides") or {}                                      # `train` wins over the preset's per-objective override too
    if train: p["objective_overrides"] = {**ov, objective: {**(ov.get(objective) or {}), **train}}
    cfg = stage_configs(p, f"preset {preset!r}, finetune: ")["train"][objective]
    return cfg, p["probe_limit"], p["probe_tokens"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/small", help="run folder with finished 'aligned' and 'selfgen' stages")
    ap.add_argument("--objective", default="exmate", choices=["clm", "exmate"])
    ap.add_argument("--chunks", type=int, nargs="+", default=[16, 16, 32], help="steps per chunk; a probe follows each")
    ap.add_argument("--preset", default="small", help="the preset whose finetune stage gives the training and probe settings")
    ap.add_argument("--train", type=json.loads, default={}, help="TrainConfig fields as JSON on top of the preset's, e.g. '{\"lr\": 0.002, \"lam\": 1.0}'")
    ap.add_argument("--device", default=None)
    a = ap.parse_args()
    cfg, limit, max_new_tokens = finetune_settings(a.preset, a.objective, {**a.train, "steps": a.chunks[0]})
    if cfg.lr_schedule != "constant":   # the scheduler spans one train() call: a decay would restart at every chunk
        print(f"lr_schedule {cfg.lr_schedule!r} -> 'constant': chunks restart the optimizer (bench/seed_spread.py probes one run with the schedule)", flush=True)
        cfg.lr_schedule = "constant"
    run = Path(a.run)
    data_file = run / "selfgen" / "selfgen.parquet"
    if not data_file.exists(): raise SystemExit(f"{data_file} not found: run `ctlrepro reproduce --only aligned selfgen` first")
    data = pd.read_parquet(data_file)
    model, tok = load_policy(aligned_source(run), device=a.device, dtype="fp32")
    ps = claim_prompts(limit)
    ref = refusal_rates(model, tok, ps[ps.kind == "borderline"], progress=False, max_new_tokens=max_new_tokens)
    refusals = ref[ref.refused]
    if refusals.empty: raise SystemExit("the aligned model refuses none of the borderline prompts: nothing to rewind")
    pm = lora_model(model, tok, cfg)
    print(f"{a.objective}, lr {cfg.lr}" + (f", lambda {cfg.lam}, m {cfg.m_negatives}" if a.objective == "exmate" else "")
          + f", batch {cfg.batch_size}; {len(data)} examples; aligned refuses {len(refusals)}/{len(ref)} borderline prompts; "
          + f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    print(json.dumps({"steps": 0, **probe(pm, tok, refusals, ps, max_new_tokens)}), flush=True)
    done = 0
    for i, n in enumerate(a.chunks):
        cfg.steps, cfg.seed = n, i
        t = time.time()
        pm, log = train(pm, tok, data, cfg, progress=False)
        done += n
        print(json.dumps({"steps": done, "train_s": round(time.time() - t, 1), "loss": round(float(log.loss.tail(n // 2 or 1).mean()), 3),
                          **probe(pm, tok, refusals, ps, max_new_tokens)}), flush=True)


if __name__ == "__main__":
    main()
