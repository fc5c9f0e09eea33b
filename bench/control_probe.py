"""How fast an objective learns the control tokens: train from a run's aligned model on its self-generated data, and after
each chunk of steps print the graded and the greedy view of the rewinding claims.

Graded: the mean per-token log-probability of the aligned model's own refusals (on the borderline eval prompts it
refused) at [helpful=4][harmless=0] minus at [helpful=0][harmless=4]; negative means the helpfulness token moves the
model away from refusing. Greedy: refusal rates (refusal detector) on borderline and harmful eval prompts per setting.

Usage: python bench/control_probe.py [--run runs/small] [--objective exmate] [--chunks 16 16 32] [--lr 1e-3] [--lam 1.0]
Needs the run's 'aligned' and 'selfgen' stages (ctlrepro reproduce --only aligned selfgen). The optimizer restarts at
each chunk (the adapter carries on), so a chunked run is not step for step the same as one call with all the steps.
"""
import argparse, json, time
from pathlib import Path

import pandas as pd
import torch

from ctlrepro.align import aligned_source
from ctlrepro.evaluate import refusal_rates
from ctlrepro.models import load_policy
from ctlrepro.objectives import TrainConfig, lora_model, response_logps, train
from ctlrepro.rewind import CLAIMS, claim_prompts
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/small", help="run folder with finished 'aligned' and 'selfgen' stages")
    ap.add_argument("--objective", default="exmate", choices=["clm", "exmate"])
    ap.add_argument("--chunks", type=int, nargs="+", default=[16, 16, 32], help="steps per chunk; a probe follows each")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lam", type=float, default=1.0, help="ExMATE: weight of the contrastive term")
    ap.add_argument("--m-negatives", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--limit", type=int, default=12, help="borderline and harmful eval prompts each")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--device", default=None)
    a = ap.parse_args()
    run = Path(a.run)
    data_file = run / "selfgen" / "selfgen.parquet"
    if not data_file.exists(): raise SystemExit(f"{data_file} not found: run `ctlrepro reproduce --only aligned selfgen` first")
    data = pd.read_parquet(data_file)
    model, tok = load_policy(aligned_source(run), device=a.device, dtype="fp32")
    ps = claim_prompts(a.limit)
    ref = refusal_rates(model, tok, ps[ps.kind == "borderline"], progress=False, max_new_tokens=a.max_new_tokens)
    refusals = ref[ref.refused]
    if refusals.empty: raise SystemExit("the aligned model refuses none of the borderline prompts: nothing to rewind")
    cfg = TrainConfig(objective=a.objective, steps=a.chunks[0], batch_size=a.batch_size, lr=a.lr, lam=a.lam, m_negatives=a.m_negatives)
    pm = lora_model(model, tok, cfg)
    print(f"{a.objective}, lr {a.lr}" + (f", lambda {a.lam}, m {a.m_negatives}" if a.objective == "exmate" else "")
          + f", batch {a.batch_size}; {len(data)} examples; aligned refuses {len(refusals)}/{len(ref)} borderline prompts; "
          + f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    print(json.dumps({"steps": 0, **probe(pm, tok, refusals, ps, a.max_new_tokens)}), flush=True)
    done = 0
    for i, n in enumerate(a.chunks):
        cfg.steps, cfg.seed = n, i
        t = time.time()
        pm, log = train(pm, tok, data, cfg, progress=False)
        done += n
        print(json.dumps({"steps": done, "train_s": round(time.time() - t, 1), "loss": round(float(log.loss.tail(n // 2 or 1).mean()), 3),
                          **probe(pm, tok, refusals, ps, a.max_new_tokens)}), flush=True)


if __name__ == "__main__":
    main()
