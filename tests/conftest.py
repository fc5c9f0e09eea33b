import importlib.util, os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ctlrepro.testing import tiny_llama  # noqa: E402


@pytest.fixture
def tiny():
    "A fresh tiny Llama and tokenizer, built in-process"
    return tiny_llama()


@pytest.fixture
def bench():
    "A loader of a bench/ script as a module (bench/ is not a package): bench('leakage')"
    def load(name:str):
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        return mod
    return load
