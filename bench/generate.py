"""Tokens per second of one-prompt-at-a-time generation vs the batched path, same prompts, same run.

Usage: python bench/generate.py [--n 32] [--batch-size 32] [--max-new-tokens 64] [--device cpu] [--dtype bf16]
Target (issue 2): batched at least 10x faster than one at a time at batch 32 on a 2-core CPU.
"""
import argparse, platform, time

import torch

from ctlrepro.data import load_prompts
from ctlrepro.generate import generate
from ctlrepro.models import load_policy


def run(model, tok, prompts, batch_size, max_new_tokens):
    t = time.perf_counter()
    df = generate(model, tok, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens, temperature=0.7, seed=0, progress=False)
    dt = time.perf_counter() - t
    return int(df.n_tokens.sum()), dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model id or path (default: embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--n", type=int, default=32, help="number of prompts")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    a = ap.parse_args()
    model, tok = load_policy(a.model, device=a.device, dtype=a.dtype)
    prompts = load_prompts(split="eval").sample(a.n, random_state=0).prompt.tolist()
    print(f"model={model.config.name_or_path} device={model.device} dtype={model.dtype} threads={torch.get_num_threads()} "
          f"cpu={platform.processor() or platform.machine()} prompts={a.n} max_new_tokens={a.max_new_tokens}")
    run(model, tok, prompts[:2], 2, 4)  # warm-up
    ntok1, t1 = run(model, tok, prompts, 1, a.max_new_tokens)
    ntokb, tb = run(model, tok, prompts, a.batch_size, a.max_new_tokens)
    s1, sb = ntok1 / t1, ntokb / tb
    print(f"one at a time : {ntok1:6d} tokens in {t1:7.1f} s = {s1:8.1f} tokens/s")
    print(f"batch of {a.batch_size:<5d}: {ntokb:6d} tokens in {tb:7.1f} s = {sb:8.1f} tokens/s")
    print(f"speed-up      : {sb / s1:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
