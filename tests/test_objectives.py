import json
import math
import re
from dataclasses import asdict
import random

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from ctlrepro.objectives import (IGNORE, TrainConfig, clm_loss, dpo_pairs, encode_example, exmate_contrastive, exmate_loss,
                                 level_match_reward, response_logps, sequence_logps, train, wrong_settings)
from ctlrepro.testing import tiny_llama
from ctlrepro.tokens import SPEC


def test_clm_matches_cross_entropy_on_random_tensors():
    torch.manual_seed(1)
    logits, labels = torch.randn(4, 9, 13), torch.randint(0, 13, (4, 9))
    labels[:, :4] = IGNORE
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 13), labels[:, 1:].reshape(-1), ignore_index=IGNORE)
    assert clm_loss(logits, labels).item() == pytest.approx(ref.item(), abs=1e-5)
    # a sequence's log-probability is the sum of its tokens'
    lp = F.log_softmax(logits[0, :-1], -1)
    manual = sum(lp[t, labels[0, t + 1]] for t in range(3, 8))
    assert sequence_logps(logits, labels)[0].item() == pytest.approx(manual.item(), abs=1e-5)


def test_contrastive_term_properties_on_random_tensors():
    torch.manual_seed(2)
    s = torch.randn(5, 4)
    # shifting all settings by the same amount changes nothing; tau sharpens
    assert exmate_contrastive(s).item() == pytest.approx(exmate_contrastive(s + 3.0).item(), abs=1e-5)
    assert exmate_contrastive(torch.zeros(5, 4)).item() == pytest.approx(math.log(4), abs=1e-6)
    better = s.clone(); better[:, 0] += 1.0
    assert exmate_contrastive(better) < exmate_contrastive(s)
    clm = torch.tensor(2.0)
    assert exmate_loss(clm, s, lam=0.0).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="tau"):
        exmate_contrastive(s, tau=0)
    # a -inf column (an absent negative) counts as if it were not there; a row with no negative costs nothing
    masked = s.clone(); masked[:, 3] = float("-inf")
    assert exmate_contrastive(masked).item() == pytest.approx(exmate_contrastive(s[:, :3]).item(), abs=1e-6)
    masked[:, 1:] = float("-inf")
    assert exmate_contrastive(masked).item() == pytest.approx(0.0, abs=1e-7)


def test_level_match_reward_and_wrong_settings():
    assert level_match_reward([[4, 0]], [[4, 0]]).tolist() == [0.0]
    assert level_match_reward([[0, 4]], [[4, 0]]).tolist() == [-8.0]
    rng = random.Random(0)
    w = wrong_settings({"helpful": 1, "harmless": 2}, 6, rng)
    assert len(w) == 6 and {"helpful": 1, "harmless": 2} not in w and len({tuple(x.values()) for x in w}) == 6
    with pytest.raises(ValueError, match="only 24 exist"):
        wrong_settings({"helpful": 1, "harmless": 2}, 25, rng)
    # settings the same (prompt, response) is also labelled with are never drawn as negatives
    also = {(h, 4) for h in range(5)}
    for _ in range(20):
        w = wrong_settings({"helpful": 0, "harmless": 4}, 20, rng, also_true=also)
        assert all(x["harmless"] != 4 for x in w)
    with pytest.raises(ValueError, match="only 20 exist"):
        wrong_settings({"helpful": 0, "harmless": 4}, 21, rng, also_true=also)
    assert len(wrong_settings({"helpful": 0, "harmless": 4}, 21, rng, also_true=also, at_most=True)) == 20


def test_examples_put_the_loss_on_the_response_only():
    _, tok = tiny_llama()
    ids, labels = encode_example(tok, "Hi", "Hello!", (4, 0))
    n_ctx = sum(l == IGNORE for l in labels)
    assert tok.decode(ids[n_ctx:]) == "Hello!" + tok.eos_token
    assert "[helpful=4][harmless=0]" in tok.decode(ids[:n_ctx])


def _adapter_moved_base_kept(pm, before):
    assert any(p.abs().sum() > 0 for n, p in pm.named_parameters() if "lora_B" in n)
    assert list(pm.peft_config) == ["default"]            # TRL's frozen reference adapter is gone
    for n, p in pm.named_parameters():
        key = n.replace("base_model.model.", "").replace(".base_layer", "")
        if key in before and "lora_" not in n and before[key].shape == p.shape:
            assert torch.equal(before[key], p), key


@pytest.mark.parametrize("objective", ["clm", "exmate", "dpo"])
def test_training_smoke(objective):
    model, tok = tiny_llama()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = pd.DataFrame([{"prompt": q, "response": ["no", "yes yes"][h % 2], "helpful": h, "harmless": 4 - h} for q in ("Q", "R") for h in range(5)])
    pm, log = train(model, tok, data, TrainConfig(objective=objective, steps=30, batch_size=4, lr=3e-3, m_negatives=2), progress=False)
    assert np.isfinite(log.loss).all() and log.loss[-5:].mean() < log.loss[:5].mean()
    _adapter_moved_base_kept(pm, before)


def test_exmate_trains_on_a_response_labelled_with_every_setting():
    model, tok = tiny_llama()
    every = pd.DataFrame([{"prompt": "Q", "response": "no", **g} for g in SPEC.grid()])           # e.g. a prompt whose samples are all one refusal
    data = pd.concat([every, pd.DataFrame([{"prompt": "R", "response": "yes yes", "helpful": 4, "harmless": 0}])], ignore_index=True)
    pm, log = train(model, tok, data, TrainConfig(objective="exmate", steps=6, batch_size=4, lr=3e-3, m_negatives=2), progress=False)
    assert np.isfinite(log.loss).all() and np.isfinite(log.contrastive).all()


def test_gradients_are_clipped():
    data = pd.DataFrame([{"prompt": "Q", "response": "yes yes", "helpful": 4, "harmless": 0}])
    moved = {}
    for norm in (1e-12, 1.0):                              # AdamW's eps (1e-8) dwarfs gradients clipped to 1e-12: the step all but vanishes
        model, tok = tiny_llama()
        pm, log = train(model, tok, data, TrainConfig(objective="clm", steps=1, batch_size=1, lr=1e-2, max_grad_norm=norm), progress=False)
        assert log.grad_norm.iloc[0] > 1e-3                  # the norm before clipping is logged
        moved[norm] = sum(p.abs().sum().item() for n, p in pm.named_parameters() if "lora_B" in n)
    assert moved[1e-12] < 0.01 * moved[1.0]
    with pytest.raises(ValueError, match="max_grad_norm=0"):
        TrainConfig(max_grad_norm=0)


def test_rl_smoke_passes_the_request_to_the_reward():
    model, tok = tiny_llama()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = pd.DataFrame({"prompt": ["How do I kill a Python process?", "Write a haiku."], "response": ["x", "y"], "helpful": [0, 1], "harmless": [1, 0]})
    seen = []
    def reward(prompts, responses, requested):
        seen.append((list(prompts), np.asarray(requested)))
        return np.array([len(r) / 10 for r in responses])
    pm, log = train(model, tok, data, TrainConfig(objective="rl", steps=4, batch_size=4, num_generations=2, lr=1e-2, max_completion_length=6, kl_beta=0.05),
                    progress=False, reward_fn=reward)
    assert len(log) == 4 and np.isfinite(log.loss).all() and np.isfinite(log.kl).all() and (log.kl.iloc[1:] >= 0).all()
    prompts, req = seen[0]
    assert set(prompts) <= set(data.prompt) and req.shape == (4, 2) and ((req >= 0) & (req < SPEC.k)).all()
    assert (req[0::2] == req[1::2]).all()                 # the num_generations completions of a group share the request
    _adapter_moved_base_kept(pm, before)
    with pytest.raises(ValueError, match="needs reward_fn"):
        train(*tiny_llama(), data, TrainConfig(objective="rl", batch_size=4, num_generations=2), progress=False)
    with pytest.raises(ValueError, match="must be >= 2 and divide"):
        TrainConfig(objective="rl", batch_size=6, num_generations=4)


def test_dpo_pairs_prefer_the_sample_showing_the_setting():
    data = pd.DataFrame({"prompt": ["Q"] * 3 + ["same"] * 2, "response": ["a", "b", "c", "d", "e"],
                         "helpful": [0, 2, 4, 1, 1], "harmless": [4, 2, 0, 1, 1]})
    pairs = dpo_pairs(data, per_prompt=None)
    assert set(pairs.prompt) == {"Q"}                     # identical levels give no preference
    lv = dict(zip(data.response, zip(data.helpful, data.harmless)))
    for _, r in pairs.iterrows():
        assert lv[r.chosen] == (r.helpful, r.harmless)    # the request is what the chosen response shows
        assert r.distance == sum(abs(a - b) for a, b in zip(lv[r.rejected], lv[r.chosen])) > 0
    assert pairs.set_index("chosen").rejected.to_dict() == {"a": "c", "b": pairs.set_index("chosen").rejected["b"], "c": "a"}
    assert len(dpo_pairs(data, per_prompt=1)) == 1
    # a response relabelled with a second setting is never its own rejected response
    twice = pd.DataFrame({"prompt": ["Q"] * 3, "response": ["no", "no", "yes"], "helpful": [0, 4, 4], "harmless": [4, 4, 0]})
    pairs = dpo_pairs(twice, per_prompt=None)
    assert len(pairs) == 3 and (pairs.chosen != pairs.rejected).all()
    # marginal labels (selfgen 'marginal'): two refusals labelled at every helpfulness level are no rivals of each other,
    # and the answer is rejected at each refusal setting, at its distance from the answer's nearest label
    rows = [("no1", h, 4) for h in range(5)] + [("no2", h, 4) for h in range(5)] + [("yes", h, 0) for h in range(5)]
    marg = pd.DataFrame([{"prompt": "bomb", "response": r, "helpful": h, "harmless": s} for r, h, s in rows])
    pairs = dpo_pairs(marg, per_prompt=None)
    assert len(pairs) == 15 and (pairs[pairs.chosen.str.startswith("no")].rejected == "yes").all()
    assert (pairs[pairs.chosen == "yes"].rejected != "yes").all() and (pairs.distance == 4).all()
    assert dpo_pairs(marg[marg.response != "yes"], per_prompt=None).empty


def test_bad_training_config_and_data():
    with pytest.raises(ValueError, match="accepted are 'clm', 'exmate', 'dpo', 'rl'"):
        TrainConfig(objective="ppo")
    model, tok = tiny_llama()
    with pytest.raises(ValueError, match="lacks column"):
        train(model, tok, pd.DataFrame({"prompt": ["a"], "response": ["b"]}), progress=False)


def test_training_config_refuses_a_value_of_the_wrong_type():
    for kw, says in [({"steps": "ten"}, "steps='ten' is a str; give an int"), ({"lr": "5e-4"}, "lr='5e-4' is a str; give a float (a number given as a string: write 5.0e-4 or 0.0005, unquoted; YAML reads 5e-4 as a string even unquoted)"),   # YAML reads 5e-4 (no dot) as a string
                     ({"max_response_tokens": 2.5}, "give an int or None"), ({"control": "yes"}, "give a bool"), ({"batch_size": True}, "give an int")]:
        with pytest.raises(TypeError, match=re.escape(says)): TrainConfig(**kw)
    cfg = TrainConfig(steps=np.int64(3), lr=np.float32(1e-3), lam=1, control=np.bool_(True), max_response_tokens=None, kind_weights={"harmful": np.float64(2)})
    assert json.loads(json.dumps(asdict(cfg)))["steps"] == 3 and type(cfg.steps) is int and type(cfg.kind_weights["harmful"]) is float   # numpy values become plain ones
    for kw, says in [({"target_modules": "q_proj"}, "give a list or tuple"), ({"target_modules": []}, "non-empty list of module names"),
                     ({"lam": math.nan}, "lam >= 0 and finite"), ({"lr": math.inf}, "lr and tau must be finite"), ({"lora_dropout": 1.0}, "lora_dropout=1.0: accepted are [0, 1)"),
                     ({"temperature": 0.0}, "temperature=0.0: accepted are (0, inf)"), ({"seed": -1}, "seed=-1"), ({"max_length": 0}, "max_length=0: give an integer >= 1")]:
        with pytest.raises((TypeError, ValueError), match=re.escape(says)): TrainConfig(**kw)
    assert TrainConfig(target_modules=["q_proj"]).target_modules == ("q_proj",) and TrainConfig(max_grad_norm=math.inf).max_grad_norm == math.inf


def test_plain_sft_without_control_tokens():
    model, tok = tiny_llama()
    n = len(tok)
    data = pd.DataFrame({"prompt": ["How do I make a bomb?", "Hi"], "response": ["I'm sorry, I can't.", "Hello!"]})
    pm, log = train(model, tok, data, TrainConfig(control=False, steps=20, batch_size=2, lr=3e-3), progress=False)
    assert len(tok) == n  # no control tokens were added
    assert log.loss[-3:].mean() < log.loss[:3].mean()
    with pytest.raises(ValueError, match="only objective='clm'"):
        train(model, tok, data, TrainConfig(control=False, objective="exmate"), progress=False)


def test_level_reward_prefers_the_setting_a_response_shows():
    from ctlrepro.objectives import level_reward
    from ctlrepro.scorers import default_scorers
    from ctlrepro.tokens import LevelBinner
    binners = {a: LevelBinner(k=5, method="fixed").fit([0.5]) for a in SPEC.attributes}
    reward = level_reward(default_scorers(), binners)
    p, r = ["How do I build a pipe bomb?"] * 2, ["I'm sorry, but I can't help with that."] * 2
    refuse_req, comply_req = reward(p, r, np.array([[0, 4], [4, 0]]))
    assert refuse_req > comply_req and refuse_req <= 0


def test_rl_reward_leaves_out_the_attribute_marginal_labels_set_free():
    from ctlrepro.objectives import free_attributes, level_reward
    from ctlrepro.scorers import default_scorers
    from ctlrepro.selfgen import unshown_labels
    from ctlrepro.tokens import LevelBinner
    bomb, kill = "How do I build a pipe bomb?", "How do I kill a Python process?"
    own = pd.DataFrame({"prompt": [bomb, kill], "kind": ["harmful", "borderline"], "response": ["No.", "Use kill."],
                        "helpful": [0, 4], "harmless": [4, 3], "score_helpful": [0.1, 0.9], "score_harmless": [0.9, 0.7]})
    data = pd.concat([own, unshown_labels(own, "marginal")], ignore_index=True)
    assert free_attributes(data) == {bomb: {"helpful"}, kill: {"harmless"}}
    twice = pd.concat([own, own.assign(kind=["benign", "harmful"])], ignore_index=True)   # one prompt text under two kinds frees both
    assert free_attributes(pd.concat([twice, unshown_labels(twice, "marginal")], ignore_index=True))[kill] == {"helpful", "harmless"}
    assert free_attributes(own) == {} and free_attributes(data.drop(columns="how")) == {}
    binners = {a: LevelBinner(k=5, method="fixed").fit([0.5]) for a in SPEC.attributes}
    plain, marginal = level_reward(default_scorers(), binners), level_reward(default_scorers(), binners, free=free_attributes(data))
    refusal = ["I'm sorry, but I can't help with that."] * 2
    asked = np.array([[4, 4], [0, 4]])                       # on the harmful prompt, asking for any helpfulness level
    got = marginal([bomb] * 2, refusal, asked)
    assert got[0] == got[1]                                  # ... earns the same: only the harmlessness term counts
    assert plain([bomb] * 2, refusal, asked)[0] < got[0]     # the paper's reward also charges the helpfulness gap
    with pytest.raises(ValueError, match="counted"): level_match_reward([[1, 2]], [[1, 2]], counted=[[True]])


def test_label_logps_projects_only_the_response_tokens_and_matches_the_full_logits():
    from ctlrepro.objectives import collate, label_logps, sequence_logps
    model, tok = tiny_llama()
    enc = collate([encode_example(tok, p, r, lv) for p, r, lv in [("Hi", "Hello there!", (4, 0)), ("How do I kill a process?", "Use kill.", (0, 4)),
                                                                 ("Tell me a long story about a dragon", "No.", (2, 2))]], tok.pad_token_id)
    full = sequence_logps(model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits, enc["labels"])
    seen = []
    head = model.get_output_embeddings()
    hook = head.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    sums, counts = label_logps(model, enc["input_ids"], enc["attention_mask"], enc["labels"])
    hook.remove()
    assert torch.allclose(sums, full, atol=1e-5)
    assert counts.tolist() == (enc["labels"][:, 1:] != IGNORE).sum(-1).tolist()
    assert seen == [(int(counts.sum()), head.in_features)]              # the LM head saw the response positions only
    class NoMask(torch.nn.Module):                                       # a model whose forward takes no logits_to_keep
        def __init__(self): super().__init__(); self.m = model
        def forward(self, input_ids, attention_mask): return self.m(input_ids=input_ids, attention_mask=attention_mask)
    assert torch.allclose(label_logps(NoMask(), enc["input_ids"], enc["attention_mask"], enc["labels"])[0], full, atol=1e-5)
    class AsIndices(NoMask):                                             # one that reads the mask as positions: (B, k, V) logits
        def forward(self, input_ids, attention_mask, logits_to_keep=0):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep.long() if torch.is_tensor(logits_to_keep) else logits_to_keep)
    assert torch.allclose(label_logps(AsIndices(), enc["input_ids"], enc["attention_mask"], enc["labels"])[0], full, atol=1e-5)


def test_response_logps_is_the_per_token_likelihood_under_the_setting():
    model, tok = tiny_llama()
    prompts, responses = ["Hi", "How do I kill a process?", "Tell me more"], ["Hello!", "Use kill -9 with its PID.", "No."]
    got = response_logps(model, tok, prompts, responses, (4, 0), batch_size=2)      # batches of 2 and 1: padding must not matter
    for p, r, g in zip(prompts, responses, got):
        ids, labels = encode_example(tok, p, r, (4, 0))
        with torch.no_grad(): logits = model(input_ids=torch.tensor([ids])).logits
        assert g == pytest.approx(-clm_loss(logits, torch.tensor([labels])).item(), abs=1e-4)
    other = response_logps(model, tok, prompts, responses, (0, 4))
    assert np.abs(got - other).max() > 1e-6              # the setting is part of the context
    with pytest.raises(ValueError, match="2 prompts but 1 responses"): response_logps(model, tok, prompts[:2], responses[:1])


# issue 14.4: the reference model of DPO and GRPO is the start policy, control-token rows included
_TOY = pd.DataFrame([{"prompt": p, "response": ["No.", "Maybe.", "Sure, here it is.", "Sure, here it is in detail.", "Sure! Here is everything."][h],
                      "helpful": h, "harmless": s} for p in ["How do I kill a Python process?", "Write a haiku."] for h in range(5) for s in (0, 4)])


def _start(adapter):
    "A tiny Llama: plain (a fresh adapter is made by `train`) or with an adapter whose LoRA and control-token rows CLM has trained"
    model, tok = tiny_llama()
    if adapter == "fresh": return model, tok
    pm, _ = train(model, tok, _TOY, TrainConfig(objective="clm", steps=10, batch_size=4, lr=3e-2), progress=False)
    delta = [m for m in pm.modules() if hasattr(m, "trainable_tokens_delta")][0]
    moved = (delta.trainable_tokens_delta["default"] - delta.trainable_tokens_original["default"]).abs().max().item()
    assert moved > 1e-3                                    # the rows really were trained: a reference that misses them differs
    return pm, tok


@pytest.mark.parametrize("adapter", ["fresh", "trained"])
def test_dpo_reference_is_the_start_policy(adapter):
    model, tok = _start(adapter)
    pm, log = train(model, tok, _TOY, TrainConfig(objective="dpo", steps=1, batch_size=4, lr=1e-3), progress=False)
    assert log.reward_margin.iloc[0] == pytest.approx(0.0, abs=1e-6)   # was 0.0038 from a trained adapter (ref kept the initial rows)
    assert log.loss.iloc[0] == pytest.approx(math.log(2), abs=1e-6)
    assert list(pm.peft_config) == ["default"]


@pytest.mark.parametrize("adapter", ["fresh", "trained"])
def test_grpo_reference_is_the_start_policy(adapter):
    model, tok = _start(adapter)
    pm, log = train(model, tok, _TOY, TrainConfig(objective="rl", steps=1, batch_size=4, num_generations=2, max_completion_length=6, kl_beta=0.05),
                    progress=False, reward_fn=lambda p, r, req: np.array([len(x) / 10 for x in r]))
    assert log.kl.iloc[0] == pytest.approx(0.0, abs=1e-7)             # was 5.1e-4 from a trained adapter


def test_sync_reference_copies_the_token_rows():
    from ctlrepro.objectives import sync_reference
    pm, tok = _start("trained")
    pm.add_adapter("ref", pm.peft_config["default"])       # what TRL does; it then copies only names containing '.default.'
    delta = [m for m in pm.modules() if hasattr(m, "trainable_tokens_delta")][0].trainable_tokens_delta
    assert not torch.equal(delta["ref"], delta["default"])
    assert sync_reference(pm) > 0
    assert torch.equal(delta["ref"], delta["default"])
    x = tok("[helpful=4][harmless=0] Write a haiku.", return_tensors="pt")
    pm.eval()                                              # the new adapter's dropout modules start in training mode
    with torch.no_grad():
        pm.set_adapter("default"); a = pm(**x).logits
        pm.set_adapter("ref"); b = pm(**x).logits
    pm.set_adapter("default")
    assert torch.equal(a, b)


# issue 14.5: two trainings with different precision in one process
def test_train_twice_with_different_precision_in_one_process():
    for mp in ("no", "bf16", "no"):
        model, tok = tiny_llama()
        pm, log = train(model, tok, _TOY, TrainConfig(objective="clm", steps=2, batch_size=2, mixed_precision=mp), progress=False)
        assert len(log) == 2 and np.isfinite(log.loss).all()
        from accelerate.state import AcceleratorState
        assert AcceleratorState().mixed_precision == mp
    # and a TRL trainer after a bf16 run of ours
    model, tok = tiny_llama()
    train(model, tok, _TOY, TrainConfig(objective="clm", steps=1, batch_size=2, mixed_precision="bf16"), progress=False)
    pm, log = train(*tiny_llama(), _TOY, TrainConfig(objective="dpo", steps=1, batch_size=4), progress=False)
    assert np.isfinite(log.loss).all()
    with pytest.raises(ValueError, match="mixed_precision='fp32': accepted are 'no', 'bf16', 'fp16'"):
        TrainConfig(mixed_precision="fp32")


# activation (gradient) checkpointing: a memory/speed switch that must not change what is learned
@pytest.mark.parametrize("objective", ["clm", "exmate"])
def test_activation_checkpointing_gives_the_same_losses(objective):
    logs = []
    for gc in (False, True):
        model, tok = tiny_llama()
        pm, log = train(model, tok, _TOY, TrainConfig(objective=objective, steps=3, batch_size=2, m_negatives=2, activation_checkpointing=gc), progress=False)
        assert pm.get_base_model().is_activation_checkpointing is gc
        logs.append(log.loss.to_numpy())
    np.testing.assert_allclose(logs[0], logs[1], rtol=1e-4, atol=1e-5)   # dropout masks are replayed by the recomputation


def test_trl_trainers_get_the_activation_checkpointing_switch(tmp_path):
    from ctlrepro.objectives import _trl_args
    from trl import DPOConfig
    for gc in (False, True):
        args = DPOConfig(**_trl_args(TrainConfig(objective="dpo", activation_checkpointing=gc), str(tmp_path), False))
        assert args.activation_checkpointing is gc     # TRL's own default is True


def test_kind_weights_draw_rows_by_prompt_kind(monkeypatch):
    import ctlrepro.objectives as obj
    seen, encode = [], obj.encode_example
    def spy(tok, prompt, *a, **k): seen.append(prompt); return encode(tok, prompt, *a, **k)
    monkeypatch.setattr(obj, "encode_example", spy)
    rows = [{"prompt": f"{kind} {i}", "kind": kind, "response": "no", "helpful": i % 5, "harmless": 4 - i % 5}
            for kind in ("benign", "borderline", "harmful") for i in range(10)]
    data = pd.DataFrame(rows)
    model, tok = tiny_llama()
    train(model, tok, data, TrainConfig(objective="clm", steps=3, batch_size=4, kind_weights={"benign": 0, "borderline": 0.0}), progress=False)
    assert len(seen) == 12 and all(p.startswith("harmful") for p in seen)        # weight 0: never drawn
    seen.clear()
    model, tok = tiny_llama()
    train(model, tok, data, TrainConfig(objective="exmate", steps=25, batch_size=8, m_negatives=1, kind_weights={"harmful": 2}), progress=False)
    drawn = seen[::2]                                                              # each example is encoded at its true setting, then at 1 wrong one
    share = sum(p.startswith("harmful") for p in drawn) / len(drawn)               # expected 2 / (1 + 1 + 2) = 0.5 of 200 draws
    assert len(drawn) == 200 and 0.4 < share < 0.6, share                          # uniform draws would give 1/3 (outside by > 4 sd)


def test_kind_weights_are_checked():
    with pytest.raises(ValueError, match=r"unknown kind\(s\) 'toxic', 1; accepted are"):
        TrainConfig(kind_weights={"toxic": 1.0, 1: 2})
    for w in (-1, float("nan"), float("inf"), 1e308, "2", True):
        with pytest.raises(ValueError, match=r"kind_weights\['harmful'\]=.*: give a number from 0 to 1e6"):
            TrainConfig(kind_weights={"harmful": w})
    assert TrainConfig(kind_weights={"harmful": np.int64(2), "benign": np.float32(0.5)}).kind_weights["harmful"] == 2   # numpy numbers, as a YAML or pandas reader may give
    with pytest.raises(ValueError, match="at least one kind needs a weight > 0"):
        TrainConfig(kind_weights={"harmful": 0, "benign": 0, "borderline": 0})
    with pytest.raises(ValueError, match="applies to the clm and exmate objectives, not 'dpo'"):
        TrainConfig(objective="dpo", kind_weights={"harmful": 2})
    with pytest.raises(TypeError, match=r"kind_weights=\['harmful'\] is a list; give a mapping or None"):
        TrainConfig(kind_weights=["harmful"])
    with pytest.raises(TypeError, match="give a non-empty mapping"):
        TrainConfig(kind_weights={})
    model, tok = tiny_llama()
    data = pd.DataFrame([{"prompt": "Q", "response": "no", "helpful": 0, "harmless": 4}])
    with pytest.raises(ValueError, match="needs a `kind` column"):
        train(model, tok, data, TrainConfig(kind_weights={"harmful": 2}), progress=False)
    with pytest.raises(ValueError, match=r"gives every row of the training data \(kinds \['benign'\]\) weight 0"):
        train(model, tok, data.assign(kind="benign"), TrainConfig(kind_weights={"benign": 0}), progress=False)
    with pytest.raises(ValueError, match=r"the training data's `kind` column holds 'Harmful'; accepted are"):
        train(model, tok, data.assign(kind="Harmful"), TrainConfig(kind_weights={"harmful": 2}), progress=False)


def test_train_or_reuse_checks_the_kinds_before_loading_anything(tmp_path):
    from ctlrepro.objectives import train_or_reuse
    data = pd.DataFrame([{"prompt": "Q", "response": "no", "helpful": 0, "harmless": 4}])
    with pytest.raises(ValueError, match="needs a `kind` column"):               # the model id does not exist: it would fail later if loaded
        train_or_reuse("no/such-model", data, TrainConfig(kind_weights={"harmful": 2}), tmp_path / "m", None, {})
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("schedule, factors", [("constant", [1, 1, 1, 1]), ("linear", [1, 0.75, 0.5, 0.25]), ("cosine", [1, 0.8536, 0.5, 0.1464])])
def test_lr_schedule_sets_each_steps_learning_rate(schedule, factors):
    model, tok = tiny_llama()
    data = pd.DataFrame([{"prompt": "Q", "response": "no", "helpful": 0, "harmless": 4}, {"prompt": "R", "response": "yes", "helpful": 4, "harmless": 0}])
    _, log = train(model, tok, data, TrainConfig(objective="exmate", steps=4, batch_size=2, lr=1e-3, m_negatives=1, lr_schedule=schedule), progress=False)
    assert np.allclose(log.lr, [1e-3 * f for f in factors], rtol=1e-3)


def test_lr_schedule_is_checked_and_reaches_the_trl_trainers(tmp_path):
    from ctlrepro.objectives import _trl_args
    with pytest.raises(ValueError, match="lr_schedule='step': accepted are 'constant', 'linear', 'cosine'"):
        TrainConfig(lr_schedule="step")
    assert _trl_args(TrainConfig(objective="dpo", lr_schedule="linear"), str(tmp_path), False)["lr_scheduler_type"] == "linear"


def test_dpo_log_records_the_scheduled_learning_rate():
    _, log = train(*tiny_llama(), _TOY, TrainConfig(objective="dpo", steps=3, batch_size=4, lr=1e-3, lr_schedule="linear"), progress=False)
    assert np.allclose(log.lr, [1e-3, 2e-3 / 3, 1e-3 / 3], rtol=1e-3)


def test_one_attribute_negatives_change_one_level_only(monkeypatch):
    rng = random.Random(0)
    true = {"helpful": 4, "harmless": 4}
    also = {(h, 4) for h in range(5)}                     # marginal labels of a refusal to a harmful prompt: every helpfulness level
    for _ in range(20):
        w = wrong_settings(true, 4, rng, also_true=also, negatives="one_attribute")
        assert sorted(x["harmless"] for x in w) == [0, 1, 2, 3] and all(x["helpful"] == 4 for x in w)   # only the harmlessness level moves
    with pytest.raises(ValueError, match="only 4 exist for K=5 differing in one attribute"):
        wrong_settings(true, 5, rng, also_true=also, negatives="one_attribute")
    with pytest.raises(ValueError, match="negatives='hard': accepted are 'uniform', 'one_attribute', 'mixed'"):
        TrainConfig(objective="exmate", negatives="hard")
    with pytest.raises(ValueError, match="negatives='hard': accepted are 'uniform', 'one_attribute', 'mixed'"):
        wrong_settings(true, 2, rng, negatives="hard")
    import ctlrepro.objectives as obj
    seen, encode = [], obj.encode_example
    def spy(tok, prompt, response, levels, *a, **k): seen.append((prompt, levels["helpful"], levels["harmless"])); return encode(tok, prompt, response, levels, *a, **k)
    monkeypatch.setattr(obj, "encode_example", spy)
    data = pd.DataFrame([{"prompt": "Q", "response": "no", "helpful": h, "harmless": 4} for h in range(5)]         # labelled with every helpfulness level
                        + [{"prompt": "R", "response": "yes", "helpful": 4, "harmless": s} for s in range(5)])   # with every harmlessness level
    _, log = train(*tiny_llama(), data, TrainConfig(objective="exmate", steps=5, batch_size=4, m_negatives=2, negatives="one_attribute"), progress=False)
    assert len(seen) == 5 * 4 * 3 and (log.negatives == 2).all()                  # each example: its true setting, then 2 negatives
    for i in range(0, len(seen), 3):
        (p, h, s), negs = seen[i], seen[i + 1:i + 3]
        if p == "Q": assert all(nh == h and ns != 4 for _, nh, ns in negs), (seen[i], negs)   # same helpfulness level, another harmlessness level
        else: assert all(ns == s and nh != 4 for _, nh, ns in negs), (seen[i], negs)


def test_examples_short_of_negatives_are_counted_and_warned():
    data = pd.DataFrame([{"prompt": "Q", "response": "no", "helpful": h, "harmless": s} for h in range(5) for s in range(5) if (h, s) != (0, 0)])   # 24 of 25 settings
    with pytest.warns(UserWarning, match=r"ExMATE: 6 of 6 examples had fewer than m_negatives=2 wrong settings"):
        _, log = train(*tiny_llama(), data, TrainConfig(objective="exmate", steps=3, batch_size=2, m_negatives=2), progress=False)
    assert (log.negatives == 1).all()                                              # only [helpful=0][harmless=0] is wrong for that response


def test_mixed_negatives_take_half_one_attribute_away_and_the_rest_from_all():
    rng = random.Random(0)
    true = {"helpful": 4, "harmless": 4}
    also = {(h, 4) for h in range(5)}                     # a refusal to a harmful prompt: labelled with every helpfulness level
    away = lambda g: sum(g[a] != true[a] for a in ("helpful", "harmless"))
    far_seen = 0
    for m in (1, 3, 4, 6):
        for _ in range(30):
            w = wrong_settings(true, m, rng, also_true=also, negatives="mixed")
            keys = [(g["helpful"], g["harmless"]) for g in w]
            assert len(w) == m and len(set(keys)) == m and not set(keys) & (also | {(4, 4)})
            assert all(away(g) == 1 for g in w[:-(-m // 2)])          # the first half (rounded up): only the harmlessness level moves
            far_seen += sum(away(g) == 2 for g in w[-(-m // 2):])     # the rest: from all wrong settings, mostly both levels moved (16 of 20)
    assert far_seen > 0
    assert len(wrong_settings(true, 99, rng, also_true=also, negatives="mixed", at_most=True)) == 20   # 25 - 5 labelled settings
    with pytest.raises(ValueError, match="only 20 exist for K=5"):
        wrong_settings(true, 21, rng, also_true=also, negatives="mixed")


def test_more_negatives_than_the_grid_holds_are_refused_before_training(tmp_path):
    import yaml
    from ctlrepro.pipeline import STAGES, check_stage_values, load_preset, repo_root, stage_params
    NBS = repo_root() / "nbs"
    data = pd.DataFrame([{"prompt": "Q", "response": "No.", "helpful": 0, "harmless": 4}])
    for kw, says in [({"negatives": "one_attribute", "m_negatives": 9}, "m_negatives=9: only 8 wrong settings exist one attribute away for K=5 and 2 attributes; give m_negatives <= 8"),
                     ({"m_negatives": 25}, "m_negatives=25: only 24 wrong settings exist for K=5")]:
        with pytest.raises(ValueError, match=re.escape(says)):
            train(*tiny_llama(), data, TrainConfig(objective="exmate", steps=1, batch_size=1, **kw), progress=False)
    train(*tiny_llama(), data, TrainConfig(objective="clm", steps=1, batch_size=1, m_negatives=25), progress=False)   # CLM draws no negatives
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"extends": "small-one-attribute", "stages": {"finetune": {"objective_overrides": {"exmate": {"m_negatives": 12}}}}}))
    with pytest.raises(ValueError, match=re.escape("stage 'finetune': train + objective_overrides.exmate (objective exmate): m_negatives=12: only 8 wrong settings exist one attribute away")):
        check_stage_values({s.name: stage_params(s, load_preset(tmp_path / "p.yaml"), NBS) for s in STAGES})   # the pre-run checks: before any stage runs


def test_lora_model_does_not_pass_on_peft_s_deprecation_warning():
    import warnings
    from ctlrepro.objectives import lora_model
    model, tok = tiny_llama()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        pm = lora_model(model, tok, TrainConfig(objective="clm"))
    assert not [w for w in seen if "is_gradient_checkpointing" in str(w.message)], [str(w.message) for w in seen]
    assert any(p.requires_grad for p in pm.parameters())                  # the adapters are there
    with warnings.catch_warnings(record=True) as seen:                     # the filter is local: a caller's warnings still show
        warnings.simplefilter("always"); warnings.warn("is_gradient_checkpointing elsewhere", FutureWarning)
    assert len(seen) == 1
