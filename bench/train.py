"""Training throughput of the CLM and ExMATE objectives on the real policy, every precision/truncation setting in one run.

For each objective and setting: optimizer steps per second, examples/s and tokens/s (real, unpadded tokens through the
forward pass: ExMATE runs 1 + m_negatives sequences per example), measured after `--warmup` steps, and the mean training loss
over the timed steps. Settings with the same truncation draw the same batches (same seed), so their losses are comparable
(the loss parity check of bf16 against fp32); a truncated setting's loss is over its first T response tokens only.

Usage: python bench/train.py [--data runs/small/selfgen/selfgen.parquet] [--steps 8] [--warmup 2] [--batch-size 8]
                             [--settings no:all bf16:all no:32 no:16] [--objectives clm exmate]
A setting is PRECISION:T with PRECISION one of no/bf16/fp16 (accelerate's mixed_precision) and T 'all' or a token count >= 1.
Needs a self-generated data set (`ctlrepro reproduce --only aligned selfgen`, or any parquet with prompt, response, helpful,
harmless). Run it on a quiet machine: the figures are only comparable within one run.
"""
import argparse, copy, platform
from pathlib import Path

import pandas as pd
import torch

from ctlrepro.models import load_policy
from ctlrepro.objectives import TrainConfig, train


def parse_setting(text):
    prec, _, t = text.partition(":")
    if prec not in ("no", "bf16", "fp16") or not (t == "all" or (t.isdigit() and int(t) >= 1)):
        raise argparse.ArgumentTypeError(f"setting {text!r}: expected PRECISION:T, PRECISION in no/bf16/fp16, T 'all' or an integer")
    return prec, None if t == "all" else int(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="runs/small/selfgen/selfgen.parquet")
    ap.add_argument("--model", default=None, help="policy id or path (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--objectives", nargs="+", default=["clm", "exmate"], choices=["clm", "exmate"])
    ap.add_argument("--settings", nargs="+", type=parse_setting, default=[("no", None), ("bf16", None), ("no", 32), ("no", 16)])
    ap.add_argument("--steps", type=int, default=8, help="timed steps per setting")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--m-negatives", type=int, default=2)
    a = ap.parse_args()
    if a.steps < 1 or a.warmup < 0: ap.error(f"--steps must be >= 1 and --warmup >= 0, got {a.steps} and {a.warmup}")
    if not Path(a.data).exists(): raise SystemExit(f"{a.data} not found: run `ctlrepro reproduce --only aligned selfgen` or pass --data")
    data = pd.read_parquet(a.data)
    base, tok = load_policy(a.model, device="cpu" if not torch.cuda.is_available() else None, dtype="fp32")
    print(f"model={base.config.name_or_path} device={base.device} threads={torch.get_num_threads()} cpu={platform.processor() or platform.machine()} "
          f"torch={torch.__version__} examples={len(data)} batch={a.batch_size} m_negatives={a.m_negatives} steps={a.warmup}+{a.steps}")
    rows = []
    for obj in a.objectives:
        for prec, t in a.settings:
            cfg = TrainConfig(objective=obj, steps=a.warmup + a.steps, batch_size=a.batch_size, m_negatives=a.m_negatives, lr=1e-3,
                              mixed_precision=prec, max_response_tokens=t)
            _, log = train(copy.deepcopy(base), copy.deepcopy(tok), data, cfg, progress=False)
            timed = log.iloc[a.warmup:]
            dt = float(log.seconds.iloc[-1] - log.seconds.iloc[a.warmup - 1]) if a.warmup else float(log.seconds.iloc[-1])
            rows.append({"objective": obj, "precision": prec, "T": t or "all", "s/step": dt / a.steps,
                         "examples/s": a.batch_size * a.steps / dt, "tokens/s": timed.tokens.sum() / dt, "loss": timed.loss.mean()})
            print(pd.DataFrame(rows[-1:]).round(3).to_string(index=False, header=len(rows) == 1), flush=True)
    df = pd.DataFrame(rows)
    ref = df[(df.precision == "no") & (df["T"] == "all")].set_index("objective")["examples/s"]
    df["speed-up"] = df["examples/s"] / df.objective.map(ref)
    print("\n" + df.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
