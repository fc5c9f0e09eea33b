"""The CPU speed switches of training (issue 13): truncated responses, bf16 autocast, the probe callback."""
import pandas as pd
import pytest
import torch

from ctlrepro.objectives import IGNORE, TrainConfig, encode_example, train
from ctlrepro.testing import tiny_llama


def _data():
    return pd.DataFrame({"prompt": [f"Question {i}?" for i in range(6)],
                         "response": ["A fairly long answer with many words in it to truncate " * 2] * 3 + ["No."] * 3,
                         "helpful": [4, 4, 4, 0, 0, 0], "harmless": [4, 4, 4, 4, 4, 4]})


def test_truncation_keeps_the_first_t_response_tokens():
    _, tok = tiny_llama()
    full_ids, full_lab = encode_example(tok, "Hi", "one two three four five six seven", (4, 0))
    ids, lab = encode_example(tok, "Hi", "one two three four five six seven", (4, 0), max_response_tokens=3)
    n_ctx = sum(l == IGNORE for l in full_lab)
    assert ids == full_ids[:n_ctx + 3] and lab == full_lab[:n_ctx + 3]       # prompt whole, then the first T response tokens
    assert sum(l != IGNORE for l in lab) == 3 and tok.eos_token_id not in ids[n_ctx:]
    short_ids, _ = encode_example(tok, "Hi", "ok", (4, 0), max_response_tokens=50)
    assert short_ids[-1] == tok.eos_token_id                                 # a response shorter than T keeps its EOS
    with pytest.raises(ValueError, match="max_response_tokens"):
        TrainConfig(max_response_tokens=0)


def test_truncated_training_sees_fewer_tokens():
    logs = {}
    for t in (None, 4):
        m, tok = tiny_llama()
        _, logs[t] = train(m, tok, _data(), TrainConfig(steps=2, batch_size=4, max_response_tokens=t), progress=False)
    assert (logs[4].tokens < logs[None].tokens).all()
    assert {"seconds", "tokens"} <= set(logs[4].columns) and logs[4].seconds.is_monotonic_increasing


@pytest.mark.parametrize("objective", ["clm", "exmate"])
def test_bf16_autocast_matches_fp32_loss_and_precision_switches_in_one_process(objective):
    logs = {}
    for prec in ("no", "bf16", "no"):                  # switching back and forth in one process is allowed (accelerate's state is reset)
        m, tok = tiny_llama()
        _, logs[prec] = train(m, tok, _data(), TrainConfig(objective=objective, steps=3, batch_size=4, m_negatives=2, mixed_precision=prec), progress=False)
    # same seed, same batches: bf16 autocast changes the loss only by rounding (bf16 has 8 bits of mantissa: about 0.4% relative)
    assert logs["bf16"].loss.values == pytest.approx(logs["no"].loss.values, rel=0.02)


def test_probe_callback_runs_every_n_updates_in_eval_mode():
    seen = []
    def on_step(model, updates):
        seen.append((updates, model.training, torch.is_grad_enabled()))
    m, tok = tiny_llama()
    train(m, tok, _data(), TrainConfig(steps=6, batch_size=2, probe_every=2), progress=False, on_step=on_step)
    assert seen == [(2, False, False), (4, False, False), (6, False, False)]
    with pytest.raises(ValueError, match="probe_every"):
        TrainConfig(probe_every=-1)


def test_bf16_is_the_default_only_where_the_cpu_computes_it_natively(monkeypatch):
    from ctlrepro import core, objectives
    assert core.cpu_native_bf16("flags\t: fpu avx512f avx512bw avx512_vnni\n") is False     # AVX512 alone: oneDNN emulates bf16, about 3x slower
    assert core.cpu_native_bf16("flags\t: fpu avx512f avx512_bf16\nflags\t: fpu avx512f avx512_bf16\n") is True
    assert core.cpu_native_bf16("flags\t: amx_bf16 amx_tile\n") is True
    monkeypatch.setattr(core, "cpu_native_bf16", lambda cpuinfo=None: False)
    assert core.pick_dtype(torch.device("cpu")) == torch.float32 and objectives.resolve_precision("auto") in ("no", "bf16")
    if not torch.cuda.is_available(): assert objectives.resolve_precision("auto") == "no"
    monkeypatch.setattr(core, "cpu_native_bf16", lambda cpuinfo=None: True)
    assert core.pick_dtype(torch.device("cpu")) == torch.bfloat16
    if not torch.cuda.is_available(): assert objectives.resolve_precision("auto") == "bf16"
    assert objectives.resolve_precision("no") == "no"
    with pytest.raises(ValueError, match="accepted are 'no', 'bf16', 'fp16', 'auto'"):
        TrainConfig(mixed_precision="fp8")


def test_a_probe_that_generates_does_not_change_the_training_it_measures():
    from ctlrepro.data import load_prompts
    from ctlrepro.evaluate import control_probe
    ps = load_prompts("ctlrepro", split="eval", limit=1)
    logs = {}
    for every in (0, 2):
        m, tok = tiny_llama()
        probe = lambda model, updates: control_probe(model, tok, ps, _FakeScorers(), max_new_tokens=3)
        _, logs[every] = train(m, tok, _data(), TrainConfig(steps=4, batch_size=2, probe_every=every), progress=False, on_step=probe)
    assert logs[2].loss.tolist() == logs[0].loss.tolist()          # dropout masks and batches as without the probe


def test_control_probe_refuses_prompts_outside_the_schema():
    from ctlrepro.evaluate import control_probe
    m, tok = tiny_llama()
    with pytest.raises(ValueError, match=r"lack column\(s\) \['kind'\]"):
        control_probe(m, tok, pd.DataFrame({"prompt": ["hi"]}), _FakeScorers())
    with pytest.raises(ValueError, match="no prompts"):
        control_probe(m, tok, pd.DataFrame({"prompt": [], "kind": []}), _FakeScorers())


class _FakeScorers:
    "Scores from the response length: enough to exercise the probe without the embedded heads"
    def parts(self, prompts, responses):
        n = [len(r) for r in responses]
        return pd.DataFrame({"helpfulness": [min(1, x / 20) for x in n], "safety": [1 - min(1, x / 20) for x in n],
                             "p_refuse": [float(x < 5) for x in n]})
