from ctlrepro.align import AlignConfig, make_aligned, refusal_target
from ctlrepro.testing import tiny_llama

import pytest


def test_refusal_targets_drop_a_turn_to_compliance():
    p = "I cannot assist with this request."
    assert refusal_target(p, " It could hurt people. Then ...") == p + " It could hurt people."
    assert refusal_target(p, " Here's how instead: mix") == p
    assert refusal_target(p, " But I can certainly help with that.") == p      # no reason, and a turn (docs/findings.md)
    assert refusal_target(p, "") == p


def test_make_aligned_on_the_tiny_model(tmp_path):
    model, tok = tiny_llama()
    cfg = AlignConfig(benign_per_kind=3, max_new_tokens=4, steps=3, batch_size=2, borderline_refusal_share=1.0)
    aligned, data, log = make_aligned(model, tok, cfg, out=tmp_path, progress=False)
    assert set(data[data.kind != "benign"].target) == {"refusal"} and set(data[data.kind == "benign"].target) == {"own answer"}
    assert (tmp_path / "model" / "config.json").exists() and (tmp_path / "align.json").exists()
    with pytest.raises(ValueError, match="borderline_refusal_share"):
        AlignConfig(borderline_refusal_share=1.5)


def test_align_config_names_its_own_learning_rate():
    from ctlrepro.align import AlignConfig
    for bad in (-1, 0):
        with pytest.raises(ValueError, match=f"lr={bad}: give a finite learning rate > 0"):   # not TrainConfig's message about tau and lam
            AlignConfig(lr=bad)


def test_align_config_wrong_types_are_type_errors():
    from ctlrepro.align import AlignConfig
    for field, bad in (("lr", "1e-4"), ("lr", True), ("borderline_refusal_share", "half")):
        with pytest.raises(TypeError, match=f"{field}={bad!r} is .*; give a float"):   # as TrainConfig says for its own fields
            AlignConfig(**{field: bad})


def test_align_config_takes_numpy_numbers_as_floats():
    import numpy as np
    from ctlrepro.align import AlignConfig
    c = AlignConfig(lr=np.float32(1e-4), borderline_refusal_share=np.int64(1))
    assert type(c.lr) is float and type(c.borderline_refusal_share) is float and c.borderline_refusal_share == 1.0
    assert AlignConfig(lr=1) == AlignConfig(lr=1.0)
