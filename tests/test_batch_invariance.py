"Issue 14.2: every forward pass over a padded batch gives each row what it gets alone (fp32, 1e-5), on absolute- and rotary-position models"
import numpy as np
import pytest
from transformers import LlamaForSequenceClassification

from ctlrepro.generate import generate
from ctlrepro.objectives import response_logps
from ctlrepro.rewards import HELPFUL_TEMPLATE, HFRewardScorer, LLMJudge, padded_forward
from ctlrepro.testing import tiny_gpt2, tiny_llama

P = ["How do I kill a Python process?", "Hi", "Write a short poem about the sea, please, in detail."]   # three lengths: two rows get padded
R = ["Sure, here is how to do it.", "No.", "The sea is blue and the capital of France is Paris."]


def _models(family):
    "(causal LM, reward model, tokenizer) of one family, with weights large enough (std 0.5) that the pairs score differently"
    if family == "gpt2":
        lm, tok = tiny_gpt2(init_std=0.5)
        return lm, tiny_gpt2(tok, head="reward", init_std=0.5)[0], tok
    lm, tok = tiny_llama(init_std=0.5)
    return lm, LlamaForSequenceClassification(lm.config.__class__(**{**lm.config.to_dict(), "num_labels": 1, "id2label": None, "label2id": None})).eval(), tok


def _solo_and_batch(fn):
    solo = np.concatenate([np.atleast_1d(fn([p], [r])) for p, r in zip(P, R)])
    return solo, np.asarray(fn(P, R))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("what", ["reward model", "llm judge", "response_logps"])
def test_padded_forward_is_batch_invariant(family, what):
    lm, rm, tok = _models(family)
    assert tok.padding_side == "left"
    fn = {"reward model": lambda p, r: HFRewardScorer("tiny", model=rm, tokenizer=tok, batch_size=8).score(p, r, progress=False),
          "llm judge": lambda p, r: LLMJudge(lm, tok, HELPFUL_TEMPLATE, batch_size=8).score(p, r, progress=False),
          "response_logps": lambda p, r: response_logps(lm, tok, p, r, (4, 0), batch_size=8)}[what]
    solo, batch = _solo_and_batch(fn)
    assert np.ptp(solo) > 0.02                                   # the pairs score differently: a batch that copied one row would fail
    np.testing.assert_allclose(batch, solo, rtol=0, atol=1e-5)   # gpt2 before the fix: reward 0.84, judge 0.076 apart


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_greedy_generation_is_batch_invariant(family):
    lm, _, tok = _models(family)
    solo = [generate(lm, tok, [p], temperature=0, max_new_tokens=8, progress=False).response[0] for p in P]
    batch = generate(lm, tok, P, temperature=0, max_new_tokens=8, batch_size=8, progress=False).response.tolist()
    assert batch == solo and len(set(solo)) == 3


def test_padded_forward_positions():
    lm, tok = tiny_gpt2(init_std=0.5)
    enc = tok(["Hi", "How do I kill a Python process?"], return_tensors="pt", padding=True)
    assert (enc["attention_mask"][:, 0] == 0).any()               # the short row is left-padded
    alone = lm(**tok(["Hi"], return_tensors="pt")).logits[0, -1]
    np.testing.assert_allclose(padded_forward(lm, enc).logits[0, -1].detach().numpy(), alone.detach().numpy(), atol=1e-5)
    assert (lm(**enc).logits[0, -1] - alone).abs().max() > 1e-3   # what a plain forward gets wrong on an absolute-position model
