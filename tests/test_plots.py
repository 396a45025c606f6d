"""Figures: each function writes a non-empty PNG; matplotlib stays optional."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastbp
from fastbp.datasets import load_digits, train_test_split
from fastbp import cli, plots
from fastbp.diagnostics import GradientNormRecorder

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def mpl():
    return pytest.importorskip("matplotlib")


def is_png(path):
    with open(path, "rb") as f:
        head = f.read(8)
    return head == PNG and os.path.getsize(path) > 1000


@pytest.fixture(scope="module")
def trained():
    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, seed=0)
    net = fastbp.Network([64, 16, 16, 10], output="softmax", seed=0)
    rec = GradientNormRecorder(X_train[:100], y_train[:100])
    history = fastbp.Trainer(net, loss="cross_entropy", lr=0.1, n_threads=1, seed=0).fit(
        X_train, y_train, epochs=3, validation_data=(X_test, y_test), callbacks=[rec])
    return net, history, rec, X_test, y_test


def test_plot_activations(mpl, tmp_path):
    path = plots.plot_activations(tmp_path / "new" / "folder" / "act.png")
    assert path == str(tmp_path / "new" / "folder" / "act.png") and is_png(path)


def test_plot_history(mpl, tmp_path, trained):
    _, history, _, _, _ = trained
    assert is_png(plots.plot_history(history, tmp_path / "h.png"))
    assert is_png(plots.plot_history({"loss": [1.0, 0.5, 0.2]}, tmp_path / "d.png"))
    with pytest.raises(ValueError, match="loss"):
        plots.plot_history({"loss": []}, tmp_path / "e.png")


def test_plot_gradient_norms(mpl, tmp_path, trained):
    _, _, rec, _, _ = trained
    assert is_png(plots.plot_gradient_norms(rec, tmp_path / "rec.png"))
    # vanished (0.0) norms, a single record, many records
    assert is_png(plots.plot_gradient_norms([[0.0, 1e-30, 1e-3, 0.1]], tmp_path / "one.png"))
    many = np.exp(np.random.default_rng(0).normal(size=(30, 14))).tolist()
    assert is_png(plots.plot_gradient_norms(many, tmp_path / "many.png", title="t"))
    with pytest.raises(ValueError):
        plots.plot_gradient_norms([], tmp_path / "none.png")


def test_demo_figures(mpl, tmp_path, trained):
    net, history, _, X_test, y_test = trained
    out = tmp_path / "figs"
    paths = plots.demo_figures(net, history, X_test, y_test, out)
    names = {os.path.basename(p) for p in paths}
    assert {"training_curves.png", "confusion_matrix.png", "layers.png",
            "first_layer_weights.png", "activations.png"} <= names
    assert all(is_png(p) and os.path.dirname(p) == str(out) for p in paths)
    # a regression network: no confusion matrix, the rest still works
    reg = fastbp.Network([64, 8, 1], seed=0)
    paths = plots.demo_figures(reg, {"loss": [0.3, 0.2]}, X_test[:50],
                               y_test[:50, None].astype(float), tmp_path / "reg")
    assert "confusion_matrix.png" not in {os.path.basename(p) for p in paths}
    assert all(is_png(p) for p in paths)


def test_cli_demo_plots(mpl, tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--epochs", "1", "--hidden", "16", "--threads", "1",
                     "--plots", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert all(is_png(out / f) for f in os.listdir(out)) and len(os.listdir(out)) >= 4


def test_missing_matplotlib_gives_an_install_hint(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends",
                 "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install fastbp\[plot\]"):
        plots.plot_activations(tmp_path / "a.png")
    with pytest.raises(ImportError, match=r"pip install fastbp\[plot\]"):
        plots.demo_figures(None, None, None, None, tmp_path)


def test_importing_plots_does_not_import_matplotlib():
    code = "import sys, fastbp, fastbp.plots; print('matplotlib' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
