import pandas as pd
import pytest
import torch

from ctlrepro.objectives import TrainConfig, train
from ctlrepro.models import load_controllable, save_controllable
from ctlrepro.rewind import set_alpha
from ctlrepro.testing import tiny_llama


def _trained():
    base, tok = tiny_llama(tie=False)
    x = tok("Write a haiku.", return_tensors="pt")
    with torch.no_grad():
        before = base(**x).logits
    data = pd.DataFrame([{"prompt": "Write a haiku.", "response": "Waves fold on the shore.", "helpful": h, "harmless": 2} for h in range(5)])
    pm, _ = train(base, tok, data, TrainConfig(steps=10, batch_size=2, lr=5e-3), progress=False)
    return pm, tok, x, before


def test_alpha_zero_is_the_base_model_and_alpha_one_is_trained():
    pm, tok, x, before = _trained()
    with torch.no_grad():
        trained = pm(**x).logits
    set_alpha(pm, 0.0)
    with torch.no_grad():
        assert torch.equal(pm(**x).logits[..., : before.shape[-1]], before)
    set_alpha(pm, 1.0)
    with torch.no_grad():
        assert torch.allclose(pm(**x).logits, trained, atol=1e-6)
    with pytest.raises(ValueError, match="accepted are"):
        set_alpha(pm, 9)


def test_save_load_round_trip(tmp_path):
    pm, tok, x, _ = _trained()
    ctl = tok("[helpful=1][harmless=2] Write a haiku.", return_tensors="pt")
    with torch.no_grad():
        want = pm(**ctl).logits
    save_controllable(pm, tok, tmp_path, base="tiny")
    loaded, ltok = load_controllable(tmp_path, base_model=tiny_llama(tie=False)[0])
    with torch.no_grad():
        assert torch.allclose(loaded(**ctl).logits, want, atol=1e-5)
    (tmp_path / "controllable.json").write_text("{oops")
    with pytest.raises(ValueError, match="corrupt"):
        load_controllable(tmp_path, base_model=tiny_llama()[0])


def test_rewind_claims_and_alpha_curve_batch_every_setting_as_one_call_each_would(tmp_path):
    "The claims and the alpha curve generate all settings in one batched call: each row is what a call per setting gives"
    from ctlrepro.evaluate import refusal_rates
    from ctlrepro.rewind import CLAIMS, alpha_curve, claim_prompts, rewind_claims
    pm, tok, _, _ = _trained()
    base, _ = tiny_llama(tie=False, init_std=0.5)   # logits far apart: greedy ties that padding could flip are unlikely
    base.save_pretrained(tmp_path / "base"); tok.save_pretrained(tmp_path / "base")
    save_controllable(pm, tok, tmp_path / "run" / "finetune" / "clm", base=str(tmp_path / "base"))
    claims, ex = rewind_claims(tmp_path / "run", ["clm"], str(tmp_path / "base"), limit=3, device="cpu")
    ps = claim_prompts(3)
    assert ex.groupby("prompt").response.nunique().max() > 1      # the settings change the responses: a batch that mixed them up would fail
    merged, ltok = load_controllable(tmp_path / "run" / "finetune" / "clm", device="cpu", merge=True)   # what rewind_claims generates with
    for kind, lv in CLAIMS:
        one = refusal_rates(merged, ltok, ps[ps.kind == kind], progress=False, levels=lv)
        got = ex[(ex.kind == kind) & (ex.control == "[helpful={}][harmless={}]".format(*lv))]
        assert got.prompt.tolist() == one.prompt.tolist() and got.response.tolist() == one.response.tolist()
        row = claims[(claims.method == "clm") & (claims.kind == kind) & (claims.control == "[helpful={}][harmless={}]".format(*lv))]
        assert len(row) == 1 and row.n.item() == len(one) and row.refused.item() == pytest.approx(one.refused.mean(), abs=1e-3)
    settings = [(4, 0), (0, 4)]
    curve = alpha_curve(tmp_path / "run" / "finetune" / "clm", [0.0, 1.0], settings, limit=3, max_new_tokens=8, device="cpu")
    assert len(curve) == 2 * len(settings) * len(ps)
    loaded, ltok = load_controllable(tmp_path / "run" / "finetune" / "clm", device="cpu")   # the alpha curve rescales the adapter: unmerged
    set_alpha(loaded, 0.0)
    one = refusal_rates(loaded, ltok, ps, max_new_tokens=8, progress=False, levels=(0, 4))
    got = curve[(curve.alpha == 0.0) & (curve.helpful == 0) & (curve.harmless == 4)]
    assert got.response.tolist() == one.response.tolist()
