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
