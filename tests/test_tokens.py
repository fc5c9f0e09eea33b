import numpy as np
import pytest
import torch

from ctlrepro.tokens import SPEC, ControlSpec, LevelBinner, add_control_tokens, with_control
from ctlrepro.testing import tiny_llama


def test_every_control_token_is_one_id_and_round_trips(tiny):
    model, tok = tiny
    ids = add_control_tokens(tok, model)
    assert len(set(ids.values())) == SPEC.k * len(SPEC.attributes)
    for t, i in ids.items():
        assert tok.encode(t, add_special_tokens=False) == [i]
    for setting in SPEC.grid():
        text = SPEC.format(setting) + " How do I kill a Python process?"
        enc = tok.encode(text, add_special_tokens=False)
        assert enc[:2] == [ids[SPEC.token(a, l)] for a, l in setting.items()]
        assert tok.decode(enc) == text
        assert SPEC.parse(tok.decode(enc)) == setting


@pytest.mark.parametrize("tie", [True, False])
def test_new_rows_come_from_descriptive_words_not_random(tie):
    model, tok = tiny_llama(tie=tie)
    before = model.get_input_embeddings().weight.detach().clone()
    ids = add_control_tokens(tok, model)
    E = model.get_input_embeddings().weight.detach()
    assert torch.equal(E[: before.shape[0]], before)  # old rows untouched
    def word(*ws):  # the distinct token ids of some words, with and without a leading space
        return sorted({i for w in ws for v in (w, " " + w) for i in tok.encode(v, add_special_tokens=False)})
    want = 0.5 * E[word("helpful", "useful")].mean(0) + 0.5 * E[word("extremely")].mean(0)
    assert torch.allclose(E[ids["[helpful=4]"]], want, atol=1e-6)
    if not tie:
        O = model.get_output_embeddings().weight.detach()
        want_o = 0.5 * O[word("harmless", "safe")].mean(0) + 0.5 * O[word("not")].mean(0)
        assert torch.allclose(O[ids["[harmless=0]"]], want_o, atol=1e-6)
    # the model still runs on the enlarged vocabulary
    logits = model(**tok(SPEC.format(4, 0) + " hi", return_tensors="pt")).logits
    assert logits.shape[-1] == len(tok) and torch.isfinite(logits).all()


@pytest.mark.parametrize("bad", [5, -1, 10])
def test_out_of_range_levels_name_the_accepted_range(bad):
    with pytest.raises(ValueError, match=r"accepted levels are 0\.\.4"):
        SPEC.format(helpful=bad, harmless=0)
    with pytest.raises(ValueError, match=r"accepted levels are 0\.\.4"):
        with_control("Hi", {"helpful": 0, "harmless": bad})


def test_non_integer_and_unknown_attribute_levels_fail():
    with pytest.raises(ValueError, match="must be an integer"):
        SPEC.format(helpful="4", harmless=0)
    with pytest.raises(ValueError, match="unknown attribute"):
        SPEC.check("honest", 1)


def test_configurable_attributes_and_k():
    spec = ControlSpec(("helpful", "harmless", "honest"), k=3)
    assert spec.tokens[-1] == "[honest=2]" and len(spec.grid()) == 27
    model, tok = tiny_llama()
    ids = add_control_tokens(tok, model, spec=spec)
    assert all(tok.encode(t, add_special_tokens=False) == [i] for t, i in ids.items())
    with pytest.raises(ValueError, match=r"0\.\.2"):
        spec.format(3, 0, 0)


def test_strip_and_parse_are_inverse_of_format():
    for s in SPEC.grid():
        text = SPEC.format(s) + " Tell me a joke."
        assert SPEC.parse(text) == s and SPEC.strip(text) == "Tell me a joke."


def test_binner_quantile_fixed_and_json(tmp_path):
    rng = np.random.default_rng(1)
    pool = rng.normal(size=500)
    b = LevelBinner(k=5).fit(pool)
    lv = b.transform(pool)
    assert lv.min() == 0 and lv.max() == 4 and np.all(np.bincount(lv) == 100)
    assert np.all(np.diff(b.transform(np.sort(pool))) >= 0)  # monotone in the score
    b.save(tmp_path / "b.json")
    assert LevelBinner.load(tmp_path / "b.json").transform(pool).tolist() == lv.tolist()
    fixed = LevelBinner(k=4, method="fixed").fit([0.0])
    assert fixed.transform([0.0, 0.24, 0.25, 0.5, 0.99]).tolist() == [0, 0, 1, 2, 3]
    (tmp_path / "bad.json").write_text("{broken")
    with pytest.raises(ValueError, match="corrupt"):
        LevelBinner.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        LevelBinner.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="not fitted"):
        LevelBinner().transform([0.5])


def test_quantile_levels_keep_a_mass_of_tied_scores_in_the_lowest_level():
    # refusals give many helpfulness scores of exactly 0: they must fill level 0, not leave it empty
    pool = np.r_[np.zeros(25), np.linspace(0.01, 1, 75)]
    lv = LevelBinner(k=5).fit_transform(pool)
    assert (lv[:25] == 0).all() and set(lv[25:]) == {1, 2, 3, 4}
