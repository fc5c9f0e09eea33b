import numpy as np
import pytest

from ctlrepro.embedded import Encoder, LogisticHead


def test_head_round_trips_through_json_and_rejects_bad_input(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)); y = (X[:, 0] - X[:, 1] > 0).astype(int)
    h = LogisticHead().fit(X, y)
    assert ((h.predict_proba(X) > 0.5) == y).mean() > 0.95
    h.save(tmp_path / "h.json")
    assert np.allclose(LogisticHead.load(tmp_path / "h.json").predict_proba(X), h.predict_proba(X))
    with pytest.raises(ValueError, match="both 0 and 1"):
        LogisticHead().fit(X, np.zeros(200))
    (tmp_path / "bad.json").write_text('{"coef": [1]}')
    with pytest.raises(ValueError, match="corrupt"):
        LogisticHead.load(tmp_path / "bad.json")


def test_encoder_is_real_and_normalised():
    enc = Encoder(device="cpu")
    E = enc.encode(["How do I kill a Python process?", "How can I stop a running Python program?", "Tell me about the Roman Empire."])
    assert E.shape == (3, 384) and np.allclose(np.linalg.norm(E, axis=1), 1, atol=1e-4)
    assert E[0] @ E[1] > E[0] @ E[2] + 0.2
