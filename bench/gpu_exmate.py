"""The full preset's ExMATE fine-tuning and evaluation on one GPU in bf16 (issue 13, section 6), from a small run's aligned model and data.

A GPU machine that cannot download anything and takes 64 MiB per call gets the study in three steps:

  pack  (here)     the run's aligned model as a rank-r delta over the embedded GGUF base (the aligned stage merges a LoRA
                   of rank `align.lora_r`, so the delta is that rank; its error after fp16 storage is printed), the GGUF file
                   split in two carry-sized parts, and the run's self-generated data:
                     python bench/gpu_exmate.py pack --run runs/small
  run   (GPU)      rebuilds the aligned model, trains ExMATE with the full preset's `TrainConfig` (`train_or_reuse`, as the
                   finetune stage does; no learning-curve probe: the scorers stay here) and generates the full preset's eval
                   grid with it (`generate_grid`, as the evaluate stage does) and the aligned model's uncontrolled responses;
                   writes the responses, the training log and the times to --out:
                     python bench/gpu_exmate.py run --out $OUT
  score (here)     scores those responses with the run's training scorers and binners and the keyword judges
                   (`evaluate.score_responses`, `evaluate.metrics_table`) and prints the headline metrics with 95% CIs and
                   the rewinding claims on the same responses, and writes them beside the responses (metrics_<objective>.csv,
                   claims_<objective>.txt); --levels 0 4 adds the metrics on the small preset's grid:
                     python bench/gpu_exmate.py score --run runs/small --responses <folder of run's files> --levels 0 4

  summary (here)   one markdown row per scored folder (training settings, times, the headline metrics on grid (0, 4), claims):
                     python bench/gpu_exmate.py summary docs/full-gpu-exmate docs/full-gpu-exmate-seeds/*
  endings (here)   how the responses end (mean new tokens, share at the token cap, share looping), per response file:
                     python bench/gpu_exmate.py endings docs/full-gpu-exmate/responses_*.parquet docs/full-gpu-exmate-seeds/*/responses_*.parquet

`run --seed N` changes only the training seed; `run --train '{"m_negatives": 2}'` sets TrainConfig fields on top of the
preset's (not `objective`: --objective names it). Two `run` processes at once on one H200 did not slow each other down
(each trained in 178-201 s; one alone took 242 s on another machine of the same kind; GPU busy 76% on average while they
trained); give each its own --work and --out. The device tool returns at most 8 files per
call: copy each finished --out to /tmp as well and fetch what was left out with a second call.

With the `device` tool (docs/findings.md, "The full preset's ExMATE on one H200, end to end"): a first call carries .gpu_a
and .whl (the gguf and peft wheels; the machine's own transformers serves), installs the wheels into /tmp/site and copies
.gpu_a to /tmp (a carried folder that the next call does not name is gone there); the second call, made within the 30 s
the machine stays warm (send both in one batch of tool calls), carries .gpu_b, copies part A back and runs
`run --sweep 64 1024`. Measured that way: rebuild 30 s, training 242 s, the full eval grid 63 s at batch 1024.
"""
from __future__ import annotations
import argparse, dataclasses, hashlib, json, os, shutil, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

PART_A, PART_B = Path(".gpu_a"), Path(".gpu_b")   # git-ignored folders, one per device call (each under the 64 MiB carry limit)
SPLIT_AT = 50 * 2**20                              # bytes of the GGUF file in the first part: with the gguf and peft wheels (1 MiB)
                                                   # and the 8.5 MiB working tree (2026-12-04) the first call carries 59.4 MiB, the
                                                   # second (the rest, the aligned delta's 9.4 MiB, the data) 61.7 MiB, both under 64 MiB
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def sha256(path:Path)->str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""): h.update(chunk)
    return h.hexdigest()


def pack(run:Path):
    "Write .gpu_a (first GGUF part) and .gpu_b (second part, the aligned delta, the self-generated data)"
    from safetensors.torch import save_file
    from ctlrepro.models import load_policy, smollm2_gguf
    align = json.loads((run / "aligned" / "align.json").read_text())
    torch.set_num_threads(1)                                       # 210 small SVDs: more threads only fight over the cores
    rank = align["config"]["lora_r"]
    base, _ = load_policy(None, device="cpu", dtype="fp32")
    aligned, _ = load_policy(str(run / "aligned" / "model"), device="cpu", dtype="fp32")
    bp, ap = dict(base.named_parameters()), dict(aligned.named_parameters())
    if set(bp) != set(ap): raise ValueError(f"{run}/aligned/model is not the embedded base's architecture")
    tensors, worst = {}, 0.0
    for name, w in ap.items():
        d = (w.detach() - bp[name].detach()).double()
        if not d.abs().max() > 0: continue
        if d.ndim != 2: raise ValueError(f"{name} changed but is not a matrix: the aligned model is not base + LoRA")
        u, s, vh = torch.linalg.svd(d, full_matrices=False)
        b, a = (u[:, :rank] * s[:rank]).half().contiguous(), vh[:rank].half().contiguous()   # fp16 on the wire
        worst = max(worst, float((b.double() @ a.double() - d).norm() / d.norm()))              # measured after the fp16 round trip
        tensors[f"{name}.B"], tensors[f"{name}.A"] = b, a
    if worst > 1e-3: raise ValueError(f"the aligned delta is not rank {rank} (relative error {worst:.2e})")
    for p in (PART_A, PART_B): shutil.rmtree(p, ignore_errors=True); p.mkdir()
    save_file(tensors, PART_B / "aligned_delta.safetensors", metadata={"align": json.dumps(align), "run": str(run)})
    gguf = smollm2_gguf()
    raw = gguf.read_bytes()
    (PART_A / "gguf.part0").write_bytes(raw[:SPLIT_AT]); (PART_B / "gguf.part1").write_bytes(raw[SPLIT_AT:])
    (PART_B / "gguf.json").write_text(json.dumps({"name": GGUF, "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}))
    shutil.copy(run / "selfgen" / "selfgen.parquet", PART_B / "selfgen.parquet")
    print(f"aligned delta: {len(tensors) // 2} matrices at rank {rank}, worst relative reconstruction error {worst:.2e}")
    import subprocess                                              # each device call carries the working tree as well (tracked files)
    tree = sum(os.path.getsize(f) for f in subprocess.run(["git", "ls-files", "-z"], capture_output=True, text=True, check=True).stdout.split("\0") if f and os.path.isfile(f))
    wheels = sum(f.stat().st_size for f in Path(".whl").glob("*.whl"))
    for p, extra in ((PART_A, wheels), (PART_B, 0)):
        mib = (sum(f.stat().st_size for f in p.iterdir()) + extra + tree) / 2**20
        print(f"{p}: {mib:.1f} MiB with the {tree / 2**20:.1f} MiB working tree" + (f" and the {wheels / 2**20:.1f} MiB of wheels in .whl" if extra else ""))
        if mib > 63.5: raise SystemExit(f"pack: the call that carries {p} would take {mib:.1f} MiB, over the device tool's 64 MiB: move SPLIT_AT ({SPLIT_AT / 2**20:.0f} MiB) or make the tree smaller")


def rebuild_aligned(folder:Path)->str:
    "The GGUF base plus the packed delta, saved as a model folder (the aligned model of the packed run)"
    from safetensors import safe_open
    from ctlrepro.models import load_policy
    missing = [str(p) for p in (PART_A / "gguf.part0", PART_B / "gguf.part1", PART_B / "gguf.json", PART_B / "aligned_delta.safetensors") if not p.exists()]
    if missing: raise SystemExit(f"run: {', '.join(missing)} missing: run `pack` here first, carry .gpu_a and .gpu_b (or copy them back from /tmp)")
    meta = json.loads((PART_B / "gguf.json").read_text())
    gdir = folder.parent / "gguf"; gdir.mkdir(parents=True, exist_ok=True)
    gguf = gdir / meta["name"]
    with open(gguf, "wb") as f: f.write((PART_A / "gguf.part0").read_bytes() + (PART_B / "gguf.part1").read_bytes())
    if sha256(gguf) != meta["sha256"]: raise ValueError(f"{gguf}: the two parts do not make the packed GGUF file (sha256 differs)")
    model, tok = load_policy(str(gguf), device="cpu", dtype="fp32")
    params = dict(model.named_parameters())
    with safe_open(str(PART_B / "aligned_delta.safetensors"), "pt") as f, torch.no_grad():
        names = {k.rsplit(".", 1)[0] for k in f.keys()}
        for n in names: params[n].add_((f.get_tensor(f"{n}.B").double() @ f.get_tensor(f"{n}.A").double()).float())
    model.save_pretrained(folder); tok.save_pretrained(folder)
    return str(folder)


def run_gpu(out:Path, preset:str, objective:str, work:Path, eval_batch:int|None=None, sweep:list|None=None, seed:int|None=None, train:dict|None=None):
    "Rebuild the aligned model, train `objective` with the preset's TrainConfig, generate the preset's eval grid"
    from ctlrepro.pipeline import load_preset
    from ctlrepro.stage import RunConfig, build_config, train_configs
    from ctlrepro.evaluate import EvalConfig, generate_grid
    from ctlrepro.objectives import train_or_reuse
    from ctlrepro.models import load_controllable, load_policy
    from ctlrepro.tokens import SPEC
    from ctlrepro.core import versions
    p = load_preset(preset)
    rc = RunConfig(**p["common"]["run_config"])
    cuda = str(rc.device).startswith("cuda")
    ft = p["stages"]["finetune"]
    if train is not None and not isinstance(train, dict): raise SystemExit(f"run: --train {json.dumps(train)}: give a JSON object of TrainConfig fields, e.g. '{{\"m_negatives\": 2}}'")
    if train and "objective" in train: raise SystemExit(f"run: --train sets objective={train['objective']!r}: name the objective with --objective (the output files are named after it)")
    cfg = train_configs(rc, ft["train"], ft.get("objective_overrides", {}), [objective])[objective]
    cfg = dataclasses.replace(cfg, probe_every=0)                 # the probe needs the training scorers, which stay on the CPU machine
    for flag, fields in (("--train", train or {}), ("--seed", {} if seed is None else {"seed": seed})):   # --seed: only the training seed (LoRA start,
        try: cfg = dataclasses.replace(cfg, **fields)                                                       # batch draws, negatives); the eval grid's sampling seed stays
        except (TypeError, ValueError) as e: raise SystemExit(f"run: {flag} {fields}: {e} (fields of ctlrepro.objectives.TrainConfig)")
    ecfg = build_config(EvalConfig, p["common"]["eval"], rc, "eval")
    for flag, sizes in (("--eval-batch", [] if eval_batch is None else [eval_batch]), ("--sweep", sweep or [])):   # checked before any work
        for b in sizes:
            try: dataclasses.replace(ecfg, batch_size=b)
            except ValueError as e: raise SystemExit(f"run: {flag} {b}: {e}")
    if eval_batch is not None: ecfg = dataclasses.replace(ecfg, batch_size=eval_batch)
    if cuda and not torch.cuda.is_available(): raise SystemExit(f"run: preset {preset!r} asks for device {rc.device!r}, and there is no CUDA device here (the arguments were checked)")
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    t = time.time()
    delta = PART_B / "aligned_delta.safetensors"
    stamp = {"delta_sha256": sha256(delta)} if delta.exists() else None
    marker = work / "aligned" / "packed.json"
    if marker.exists() and (stamp is None or json.loads(marker.read_text()) == stamp):   # a second call on the same machine: the same pack
        src = str(work / "aligned"); print(f"reusing the aligned model rebuilt in {src}")
    else: src = rebuild_aligned(work / "aligned"); marker.write_text(json.dumps(stamp))
    times["rebuild_aligned_s"] = round(time.time() - t, 1)
    data = pd.read_parquet(PART_B / "selfgen.parquet") if (PART_B / "selfgen.parquet").exists() else pd.read_parquet(work / "selfgen.parquet")
    data.to_parquet(work / "selfgen.parquet", index=False)
    torch.cuda.reset_peak_memory_stats() if cuda else None
    t = time.time(); log = train_or_reuse(src, data, cfg, work / objective, None, {}, device=rc.device); times["train_s"] = round(time.time() - t, 1)
    times["train_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None
    log.to_csv(out / "train_log.csv", index=False); print(f"trained: {times}", flush=True)   # kept even if generation runs out of time
    pm, tok = load_controllable(work / objective, device=rc.device, dtype=rc.dtype)
    t = time.time(); resp = generate_grid(pm, tok, ecfg, progress=False); (torch.cuda.synchronize() if cuda else None); times["generate_grid_s"] = round(time.time() - t, 1)
    am, at = load_policy(src, device=rc.device, dtype=rc.dtype)
    t = time.time(); aresp = generate_grid(am, at, ecfg, progress=False, settings=[None]); (torch.cuda.synchronize() if cuda else None); times["generate_aligned_s"] = round(time.time() - t, 1)
    resp.to_parquet(out / f"responses_{objective}.parquet", index=False); aresp.to_parquet(out / "responses_aligned.parquet", index=False)
    n_tok = int(resp.n_tokens.sum())                              # new tokens as generate_grid counted them (EOS excluded)
    rec = {"device": torch.cuda.get_device_name() if cuda else "cpu", "versions": versions(("torch", "transformers", "peft", "accelerate", "gguf")), "preset": preset, "objective": objective,
           "train_config": dataclasses.asdict(cfg), "eval_config": dataclasses.asdict(ecfg), "n_train_rows": len(data),
           "train_steps_per_s": round(cfg.steps / log.seconds.iloc[-1], 2),
           "train_examples_per_s": round(cfg.steps * cfg.batch_size / log.seconds.iloc[-1], 1),
           "train_tokens_per_s": round(log.tokens.sum() / log.seconds.iloc[-1]),
           "loss_first5": round(log.loss.head(5).mean(), 3), "loss_last5": round(log.loss.tail(5).mean(), 3),
           "n_responses": len(resp), "generated_tokens": n_tok, "generate_tokens_per_s": round(n_tok / times["generate_grid_s"]), **times}
    (out / "gpu_check.json").write_text(json.dumps(rec, indent=1, default=str))
    print(json.dumps({k: v for k, v in rec.items() if not k.endswith("_config")}, indent=1), flush=True)
    if sweep:                                                     # the same requests (4 settings x every eval prompt) at each batch size
        few = ecfg.settings(SPEC)[:4]
        rec["batch_sweep"] = []
        for b in sorted(set(sweep)):
            t = time.time(); r = generate_grid(pm, tok, dataclasses.replace(ecfg, batch_size=b), progress=False, settings=few); (torch.cuda.synchronize() if cuda else None)
            s = time.time() - t; n = int(r.n_tokens.sum())
            rec["batch_sweep"].append({"batch_size": b, "sequences": len(r), "seconds": round(s, 1), "generated_tokens": n, "tokens_per_s": round(n / s)})
            print(rec["batch_sweep"][-1], flush=True)
            (out / "gpu_check.json").write_text(json.dumps(rec, indent=1, default=str))


def score(run:Path, responses:Path, objective:str, run_preset:str, levels:list|None=None):
    "Score the GPU responses here and print pairwise accuracy and the claims, with 95% CIs"
    from ctlrepro.stage import RunConfig
    from ctlrepro.evaluate import EvalConfig, generalization_judges, metrics_table, score_responses
    from ctlrepro.selfgen import load_binners
    from ctlrepro.metrics import rate_ci
    from ctlrepro.rewind import CLAIMS
    from ctlrepro.tokens import SPEC
    rec = json.loads((responses / "gpu_check.json").read_text())
    ecfg = EvalConfig(**{k: (tuple(v) if k == "grid_levels" else v) for k, v in rec["eval_config"].items()})
    levels = sorted(set(levels)) if levels else None
    if levels and not set(levels) <= set(ecfg.grid_levels): raise SystemExit(f"score: --levels {levels} are not all on the run's grid {list(ecfg.grid_levels)}")
    if levels and len(levels) < 2: raise SystemExit(f"score: --levels {levels}: a sub-grid needs at least two levels (pairwise accuracy compares requests)")
    missing = [str(f) for f in (responses / f"responses_{objective}.parquet", responses / "responses_aligned.parquet", run / "selfgen") if not f.exists()]
    if missing: raise SystemExit(f"score: {', '.join(missing)} not found: --responses is the folder `run` wrote for --objective {objective!r}; --run the run folder whose selfgen stage made the data")
    from ctlrepro.pipeline import load_preset
    rc = RunConfig(**load_preset(run_preset)["common"].get("run_config", {}))      # the run's reward models (training scorers)
    scorers, jud = rc.scorers(), generalization_judges("keyword")
    binners = load_binners(run / "selfgen")
    df = score_responses(pd.read_parquet(responses / f"responses_{objective}.parquet"), scorers, jud, progress=False)
    al = score_responses(pd.read_parquet(responses / "responses_aligned.parquet"), scorers, jud, progress=False)
    name = f"{objective} (GPU, {rec['preset']} preset)"
    tables = [metrics_table(df, ecfg, binners, name).assign(grid=str(list(ecfg.grid_levels)))]
    if levels:                                                     # the same responses on a sub-grid, e.g. the small preset's levels (0, 4)
        keep = lambda d: d[(d.helpful.isna() | d.helpful.isin(levels)) & (d.harmless.isna() | d.harmless.isin(levels))]
        sub_cfg = dataclasses.replace(ecfg, grid_levels=tuple(levels))
        tables.append(metrics_table(keep(df), sub_cfg, binners, name).assign(grid=str(list(sub_cfg.grid_levels))))
    table = pd.concat(tables, ignore_index=True)
    lines = []
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(table[table.metric.isin(["pairwise_accuracy", "on_attribute_slope", "off_attribute_slope", "leakage"])].round(3).to_string(index=False))
    if al.pid.duplicated().any(): raise ValueError("score: the aligned responses hold several samples per prompt; the claims compare one each")
    refused_before = al.set_index("pid").refused
    lines.append("claims on the sampled eval-grid responses (temperature and length of the eval config), not the rewind stage's greedy protocol:")
    for kind, lv in CLAIMS:
        ls = dict(zip(SPEC.attributes, lv))
        o = df[(df.kind == kind) & (df.helpful == ls["helpful"]) & (df.harmless == ls["harmless"])]
        v, lo, hi = rate_ci(o.refused.values)
        was = refused_before.loc[o.pid].values
        a, alo, ahi = rate_ci(~o.refused.values[was]) if was.any() else (np.nan,) * 3
        lines.append(f"{kind:10s} {SPEC.format(lv)}: refused {o.refused.sum()}/{len(o)} = {v:.2f} [{lo:.2f}, {hi:.2f}]; "
                     f"answers {(~o.refused.values[was]).sum()}/{was.sum()} of the aligned model's refusals = {a:.2f} [{alo:.2f}, {ahi:.2f}]")
    for kind in ("benign", "borderline", "harmful"):
        r = al[al.kind == kind].refused
        lines.append(f"aligned, {kind}: refused {r.sum()}/{len(r)}")
    print("\n".join(lines))
    if os.access(responses, os.W_OK):                             # beside the responses they were computed from
        table.to_csv(responses / f"metrics_{objective}.csv", index=False); (responses / f"claims_{objective}.txt").write_text("\n".join(lines) + "\n")
        print(f"wrote {responses / f'metrics_{objective}.csv'} and {responses / f'claims_{objective}.txt'}")


def loops(response:str, times:int=3)->bool:
    "A degenerate ending: one non-blank line occurs `times` or more times in the response"
    from collections import Counter
    return any(n >= times for n in Counter(l.strip() for l in response.split("\n") if l.strip()).values())


def endings(files:list):
    "How responses end, per response file (`generate_grid`'s parquet): mean new tokens, share stopped at the token cap, share looping"
    frames = []
    for f in files:                                               # all read and checked before the table starts
        if not f.is_file() or f.suffix != ".parquet": raise SystemExit(f"endings: {f} {'does not exist' if not f.exists() else 'is not a .parquet file'}: give response files written by generate_grid (responses_*.parquet)")
        try: d = pd.read_parquet(f)
        except (ValueError, OSError) as e: raise SystemExit(f"endings: {f} could not be read as parquet ({e})")
        missing = sorted({"response", "n_tokens", "finish"} - set(d.columns))
        if missing: raise SystemExit(f"endings: {f} lacks column(s) {missing}: give response files written by generate_grid")
        frames.append((f, d))
    print("| responses | n | mean new tokens | stopped at the cap | looping (a line 3+ times) |\n|---|---|---|---|---|")
    for f, d in frames:
        print(f"| {f} | {len(d)} | {d.n_tokens.mean():.1f} | {(d.finish == 'length').mean():.1%} | {d.response.map(loops).mean():.1%} |")


def summary(folders:list, objective:str, grid:str="[0, 4]"):
    "One markdown row per scored `run` folder: its training settings and times, the headline metrics on `grid` and the claims"
    import re
    rows = []
    for f in folders:
        if not f.is_dir(): raise SystemExit(f"summary: {f} {'is a file' if f.exists() else 'does not exist'}: give folders that `run` wrote and `score` scored")
        missing = [str(x) for x in (f / "gpu_check.json", f / f"metrics_{objective}.csv", f / f"claims_{objective}.txt") if not x.exists()]
        if missing: raise SystemExit(f"summary: {', '.join(missing)} not found: run `score` on {f} first")
        rec, m = json.loads((f / "gpu_check.json").read_text()), pd.read_csv(f / f"metrics_{objective}.csv")
        m = m[m.grid == grid]
        if m.empty: raise SystemExit(f"summary: {f / f'metrics_{objective}.csv'} has no rows on grid {grid} (score it with --levels 0 4)")
        def val(family, metric, attribute, kinds, ci=True):
            r = m[(m.family == family) & (m.metric == metric) & (m.attribute == attribute) & (m.kinds == kinds)].iloc[0]
            d = 2 if metric == "pairwise_accuracy" else 3
            return f"{r.value:.{d}f} [{r.lo:.{d}f}, {r.hi:.{d}f}]" if ci else f"{r.value:.{d}f}"
        claims = (f / f"claims_{objective}.txt").read_text()
        def claim(kind, setting, answered=False):
            line = next((l for l in claims.splitlines() if l.startswith(kind) and setting in l), "")
            got = re.search(r"answers (\d+/\d+)" if answered else r"refused (\d+/\d+)", line)
            return got.group(1) if got else "(not in the claims)"
        tc = rec["train_config"]
        rows.append({"folder": str(f), "seed": tc["seed"], "m_negatives": tc["m_negatives"], "lam": tc["lam"], "response tokens": tc["max_response_tokens"] or "all",
                     "train s": rec["train_s"] or "(reused)", "loss last 5": rec["loss_last5"],
                     "helpful pa opt / gen": f"{val('optimization', 'pairwise_accuracy', 'helpful', 'benign+borderline')} / {val('generalization', 'pairwise_accuracy', 'helpful', 'benign+borderline')}",
                     "harmless pa opt / gen": f"{val('optimization', 'pairwise_accuracy', 'harmless', 'harmful')} / {val('generalization', 'pairwise_accuracy', 'harmless', 'harmful')}",
                     "helpful slope on / off, opt": f"{val('optimization', 'on_attribute_slope', 'helpful', 'benign+borderline', False)} / {val('optimization', 'off_attribute_slope', 'helpful', 'benign+borderline')}",
                     "harmless slope on / off, opt": f"{val('optimization', 'on_attribute_slope', 'harmless', 'harmful', False)} / {val('optimization', 'off_attribute_slope', 'harmless', 'harmful')}",
                     "harmful refused [h4][s4]": claim("harmful", "[helpful=4][harmless=4]"),
                     "borderline: aligned refusals answered at [h4][s0]": claim("borderline", "[helpful=4][harmless=0]", answered=True)})
    t = pd.DataFrame(rows)
    print("| " + " | ".join(t.columns) + " |\n|" + "---|" * len(t.columns))
    for r in t.itertuples(index=False): print("| " + " | ".join(map(str, r)) + " |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=["pack", "run", "score", "summary", "endings"])
    ap.add_argument("folders", type=Path, nargs="*", help="summary: scored `run` folders, one table row each; endings: response files (parquet)")
    ap.add_argument("--run", type=Path, default=Path("runs/small"), help="pack, score: the run folder of the aligned model and data")
    ap.add_argument("--out", type=Path, default=Path("gpu_out"), help="run: where the responses, log and times go")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gpu_exmate"), help="run: scratch folder for the models")
    ap.add_argument("--responses", type=Path, help="score: the folder `run` wrote")
    ap.add_argument("--preset", default="full", help="run: the preset whose finetune and eval sections are used")
    ap.add_argument("--run-preset", default="small", help="score: the preset of --run (its run_config names the training scorers)")
    ap.add_argument("--objective", default="exmate")
    ap.add_argument("--eval-batch", type=int, help="run: sequences per generation batch (default: the preset's eval batch_size)")
    ap.add_argument("--levels", type=int, nargs="+", help="score: also report the metrics on this sub-grid of requested levels (e.g. 0 4, the small preset's grid)")
    ap.add_argument("--seed", type=int, help="run: the training seed (default: the preset's); processes with different seeds on one GPU need different --work folders")
    ap.add_argument("--train", type=json.loads, help='run: TrainConfig fields on top of the preset\'s, as JSON, e.g. \'{"m_negatives": 2, "lam": 1.0, "max_response_tokens": 16}\' (the small preset\'s ExMATE settings)')
    ap.add_argument("--sweep", type=int, nargs="+", metavar="BATCH", help="run: afterwards, time the same 4 settings' requests at each of these batch sizes (e.g. 64 1024)")
    a = ap.parse_args()
    if a.step not in ("summary", "endings") and a.folders: ap.error(f"folders {[str(f) for f in a.folders]} are for `summary` and `endings` only")
    if a.step == "pack": pack(a.run)
    elif a.step == "summary":
        if not a.folders: ap.error("summary needs the scored `run` folders, e.g. docs/full-gpu-exmate docs/full-gpu-exmate-seeds/*")
        summary(a.folders, a.objective)
    elif a.step == "endings":
        if not a.folders: ap.error("endings needs response files, e.g. docs/full-gpu-exmate-seeds/*/responses_*.parquet")
        endings(a.folders)
    elif a.step == "run": run_gpu(a.out, a.preset, a.objective, a.work, a.eval_batch, a.sweep, a.seed, a.train)
    else:
        if a.responses is None or not (a.responses / "gpu_check.json").is_file():
            ap.error(f"score needs --responses: the folder `run` wrote (gpu_check.json and the response files); got {a.responses}")
        score(a.run, a.responses, a.objective, a.run_preset, a.levels)
