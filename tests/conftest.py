import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))   # tests/reference.py

import fastbp  # noqa: E402

if os.environ.get("FASTBP_REQUIRE_INSTALLED") == "1":
    here = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src"))
    assert not os.path.abspath(fastbp.__file__).startswith(here), (
        f"tests imported fastbp from the source tree ({fastbp.__file__}), not the installed wheel")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def bf16_mode():
    """Restore the process-wide bf16 implementation after a test that changes it."""
    from fastbp import _bf16
    old = _bf16.bf16_capability()
    yield _bf16.set_bf16_mode
    _bf16.set_bf16_mode("native" if old == "avx512_bf16" else "emulate")
