import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ctlrepro.testing import tiny_llama  # noqa: E402


@pytest.fixture
def tiny():
    "A fresh tiny Llama and tokenizer, built in-process"
    return tiny_llama()
