"""pytest configuration for the doctests of README.md (``pytest --doctest-glob=README.md
README.md``; the test suite's own configuration is tests/conftest.py).

The README's examples run as one doctest in a scratch folder that holds what its
``fastbp.models.load_model("model.fbp")`` example reads: a model trained by
``fastbp train`` on the shipped digits, written as a CSV with a ``label`` column.
"""
import os

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _readme_folder(request):
    if not str(getattr(request.node, "fspath", "")).endswith("README.md"):
        yield
        return
    from fastbp.cli import main
    from fastbp.datasets import load_digits

    folder = request.getfixturevalue("tmp_path")
    X, y = load_digits()
    header = ",".join([f"pixel{i}" for i in range(X.shape[1])] + ["label"])
    np.savetxt(folder / "digits.csv", np.column_stack([X, y]), delimiter=",",
               header=header, comments="", fmt="%.6g")
    old = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["train", "digits.csv", "--target", "label", "--epochs", "3",
                     "-o", "model.fbp"]) == 0
        yield
    finally:
        os.chdir(old)
