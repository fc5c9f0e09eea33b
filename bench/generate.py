"""Tokens per second of generation at several batch sizes, same prompts, same model, one run: the measurement that
chooses `GenConfig.batch_size` (the default every generation stage uses).

Usage: python bench/generate.py [--n 64] [--batch-sizes 1 8 16 32 64] [--max-new-tokens 48] [--device cpu] [--dtype fp32 bf16]
Batch size 1 runs on the first --n-single prompts only (one at a time is slow); every other size on all --n prompts.
Prints one line per batch size and the fastest; the fastest at the largest tokens/s is what the default should be.
`--model` may be a fine-tuned folder (`models.save_controllable`): then each batch size runs twice in one run, with the
LoRA adapter on top of the base model and with the adapter merged into it (`load_controllable(merge=True)`, what the
evaluate, rewind-claims and benchmarks stages generate with), under the control setting --levels, rendered where it was trained.
"""
import argparse, platform, time

import pandas as pd
import torch

from ctlrepro.data import load_prompts
from ctlrepro.generate import GenConfig, generate

from ctlrepro.models import is_controllable, load_controllable, load_policy, trained_where
from ctlrepro.tokens import SPEC
from ctlrepro.core import pick_dtype


def run(model, tok, prompts, batch_size, max_new_tokens, levels=None, where="system", temperature=0.7):
    t = time.perf_counter()
    df = generate(model, tok, prompts, levels=levels, batch_size=batch_size, max_new_tokens=max_new_tokens, temperature=temperature, seed=0, progress=False, where=where)
    return int(df.n_tokens.sum()), time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model id or path (default: embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--n", type=int, default=64, help="prompts for the batched sizes")
    ap.add_argument("--n-single", type=int, default=12, help="prompts for batch size 1")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16, 32, 64])
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (0: greedy, the same tokens in every dtype up to rounding)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", nargs="+", default=[None], help="bf16, fp16, fp32, one or more, each timed in the same run (default: load_policy's choice for this machine)")
    ap.add_argument("--levels", type=int, nargs=2, default=None, metavar=("H", "S"), help="control setting for a fine-tuned --model (default: 4 4); refused for a model without control tokens")
    a = ap.parse_args()
    if a.n < 1 or a.n_single < 1 or min(a.batch_sizes) < 1: ap.error("--n, --n-single and every --batch-sizes value must be >= 1")
    for dt in a.dtype:                                # every dtype before any is timed
        try: pick_dtype(torch.device(a.device or "cpu"), dt)
        except ValueError as e: ap.error(f"--dtype {dt}: {e}")
    levels, where = None, "system"
    if is_controllable(a.model):                      # a fine-tuned model generates under a control setting, rendered as it was trained
        models = {f"{dt or 'auto'} adapter {m}": (lambda m=m, dt=dt: load_controllable(a.model, device=a.device, dtype=dt, merge=m == "merged")) for dt in a.dtype for m in ("unmerged", "merged")}
        try: where = trained_where(a.model) or "system"
        except ValueError as e: ap.error(f"--model {a.model}: {e}")
        try: levels = SPEC.levels(*(a.levels or (4, 4)))
        except ValueError as e: ap.error(f"--levels {' '.join(map(str, a.levels or (4, 4)))}: {e}")
    else:
        if a.levels is not None: ap.error(f"--levels {' '.join(map(str, a.levels))}: only a fine-tuned --model (a folder with controllable.json) reads control tokens")
        models = {dt or "auto": (lambda dt=dt: load_policy(a.model, device=a.device, dtype=dt)) for dt in a.dtype}
    prompts = load_prompts(split="eval").sample(frac=1, random_state=0).prompt.tolist()
    if len(prompts) < a.n: ap.error(f"--n {a.n}: the eval split holds {len(prompts)} prompts")
    table = {}
    for label, load in models.items():
        model, tok = load()
        print(f"{label + ': ' if label else ''}model={a.model or model.config.name_or_path}{' control=' + SPEC.format(levels) + ' in ' + where if levels else ''} device={model.device} dtype={model.dtype} threads={torch.get_num_threads()} "
              f"cpu={platform.processor() or platform.machine()} max_new_tokens={a.max_new_tokens} GenConfig.batch_size={GenConfig().batch_size}")
        run(model, tok, prompts[:2], 2, 4)  # warm-up
        rates = {}
        for bs in a.batch_sizes:
            ps = prompts[:a.n_single] if bs == 1 else prompts[:a.n]
            ntok, dt = run(model, tok, ps, bs, a.max_new_tokens, levels, where, a.temperature)
            rates[bs] = ntok / dt
            print(f"batch {bs:3d}: {len(ps):3d} prompts, {ntok:6d} tokens in {dt:7.1f} s = {rates[bs]:7.1f} tokens/s", flush=True)
        best = max(rates, key=rates.get)
        base = rates.get(1)
        print(f"fastest: batch {best} at {rates[best]:.1f} tokens/s" + (f" ({rates[best] / base:.1f}x one at a time)" if base else ""))
        table[f"{label} ({model.dtype})"] = rates
        del model
    if len(table) > 1: print("\ntokens/s by batch size, side by side:\n" + pd.DataFrame(table).T.round(1).to_string())


if __name__ == "__main__":
    main()
