"""Training throughput of the objectives on the real policy, every precision/truncation/checkpointing setting in one run.

For each objective and setting: optimizer steps per second, examples/s and tokens/s (real, unpadded tokens through the
forward pass: ExMATE runs 1 + m_negatives sequences per example), measured after `--warmup` steps, and the mean training loss
over the timed steps. Settings with the same truncation draw the same batches (same seed), so their losses are comparable
(the loss parity check of bf16 against fp32); a truncated setting's loss is over its first T response tokens only.

DPO and RL run through TRL's trainers, which log no per-step time: their s/step is the whole `train` call over
warmup + timed steps (setup included). DPO trains on the first T response tokens as CLM and ExMATE do
(`objectives.first_tokens_collator`); RL samples its completions (T does not apply).

Usage: python bench/train.py [--data runs/small/selfgen/selfgen.parquet] [--steps 8] [--warmup 2] [--batch-size 8]
                             [--settings no:16:full no:16 no:all bf16:all no:all:ac] [--objectives clm exmate dpo rl]
A setting is PRECISION:T[:ac][:full][:drop][:sdpa][:rebuild] with PRECISION one of no/bf16/fp16 (accelerate's mixed_precision), T 'all'
or a token count >= 1, ':ac' for activation (gradient) checkpointing (`TrainConfig.activation_checkpointing`), ':full' for
the vocabulary projection at every position (the loop before `objectives.label_logps` kept logits at the response tokens
only; CLM and ExMATE), ':drop' for LoRA dropout 0.05 (the default before 2026-12-03; now 0) and ':sdpa' for the SDPA
attention kernel while training (`TrainConfig.attn_implementation`; the default 'auto' trains with 'eager' on a CPU) and
':rebuild' for peft building the control-token rows at every forward of GRPO's rollouts, as before
`models.token_rows_once` (2026-12-04; RL only: the other objectives generate nothing while training, and a setting
that differs from an earlier one only in a flag that does not apply is run once). The speed-up column is against each objective's first setting.
Needs a self-generated data set (`ctlrepro reproduce --only aligned selfgen`, or any parquet with prompt, response, helpful,
harmless). Run it on a quiet machine: the figures are only comparable within one run.
"""
import argparse, contextlib, copy, platform, time
from pathlib import Path

import pandas as pd
import torch

from ctlrepro.models import load_policy, token_rows_once
from ctlrepro import objectives
from ctlrepro.objectives import TrainConfig, label_logps, level_reward, train, training_kernel
from ctlrepro.scorers import default_scorers
from ctlrepro.selfgen import load_binners


FLAGS = ("ac", "full", "drop", "sdpa", "rebuild")


def parse_setting(text):
    prec, t, *flags = text.split(":") if ":" in text else (text, "")
    if prec not in ("no", "bf16", "fp16") or not (t == "all" or (t.isdigit() and int(t) >= 1)) or not set(flags) <= set(FLAGS) or len(set(flags)) < len(flags):
        raise argparse.ArgumentTypeError(f"setting {text!r}: expected PRECISION:T[:ac][:full][:drop][:sdpa][:rebuild], PRECISION in no/bf16/fp16, T 'all' or an integer >= 1")
    return prec, None if t == "all" else int(t), *(f in flags for f in FLAGS)


def full_logits_logps(model, input_ids, attention_mask, labels):
    "label_logps as the loop computed it before: logits at every position, then the labelled ones summed"
    keep = labels[:, 1:] != objectives.IGNORE
    return objectives.sequence_logps(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels), keep.sum(-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="runs/small/selfgen/selfgen.parquet")
    ap.add_argument("--model", default=None, help="policy id or path (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--objectives", nargs="+", default=["clm", "exmate"], choices=["clm", "exmate", "dpo", "rl"])
    ap.add_argument("--settings", nargs="+", type=parse_setting, default=[parse_setting(s) for s in ("no:16:full", "no:16", "no:all:full", "no:all")])
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
    reward_fn = level_reward(default_scorers(), load_binners(Path(a.data).parent)) if "rl" in a.objectives else None
    rows = []
    for obj in a.objectives:
        done = set()
        for prec, t, ac, full, drop, sdpa, rebuild in a.settings:
            trl = obj in ("dpo", "rl")
            if obj == "rl": t = None                                      # T applies to DPO's responses, not to RL's sampled completions
            else: rebuild = False                                         # the rows matter only where training generates: GRPO's rollouts
            key = (prec, t, ac, drop, sdpa, rebuild, None if trl else full) # ':full' does not apply to TRL's trainers: one run per remaining setting
            if key in done: continue
            done.add(key)
            cfg = TrainConfig(objective=obj, steps=a.warmup + a.steps, batch_size=a.batch_size, m_negatives=a.m_negatives, lr=1e-3,
                              mixed_precision=prec, max_response_tokens=t, activation_checkpointing=ac,
                              lora_dropout=0.05 if drop else 0.0, attn_implementation="sdpa" if sdpa else "auto")
            t0 = time.perf_counter()
            objectives.label_logps = full_logits_logps if full else label_logps
            objectives.token_rows_once = contextlib.nullcontext if rebuild else token_rows_once
            try: _, log = train(copy.deepcopy(base), copy.deepcopy(tok), data, cfg, progress=False, reward_fn=reward_fn)
            finally: objectives.label_logps, objectives.token_rows_once = label_logps, token_rows_once
            wall, n = time.perf_counter() - t0, a.warmup + a.steps
            if trl: dt, steps, tokens = wall, n, float("nan")              # TRL logs no per-step time: the whole call
            else:
                dt = float(log.seconds.iloc[-1] - log.seconds.iloc[a.warmup - 1]) if a.warmup else float(log.seconds.iloc[-1])
                steps, tokens = a.steps, log.iloc[a.warmup:].tokens.sum() / dt
            rows.append({"objective": obj, "precision": prec, "T": "all" if t is None else t, "checkpointing": ac, "lora_dropout": 0.05 if drop else 0.0, "attention": training_kernel(base, cfg.attn_implementation), "token rows": "n/a" if obj != "rl" else "per forward" if rebuild else "once", "logits": "n/a" if trl else "all" if full else "response", "s/step": dt / steps,
                         "examples/s": a.batch_size * steps / dt, "tokens/s": tokens, "loss": log.iloc[a.warmup:].loss.mean()})
            print(pd.DataFrame(rows[-1:]).round(3).to_string(index=False, header=len(rows) == 1), flush=True)
    df = pd.DataFrame(rows)
    ref = df.groupby("objective")["examples/s"].first()
    df["speed-up"] = df["examples/s"] / df.objective.map(ref)
    print("\n" + df.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
