"""Atomic writes (``fastbp._files.atomic_write``): the permissions of the files fastbp saves."""
import os
import stat

import numpy as np
import pytest

import fastbp
from fastbp._files import atomic_write
from fastbp.cli import main
from fastbp.models import TrainedModel

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


@pytest.fixture
def umask():
    """Set the process umask for one test (tests run in one thread) and restore it."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, want", [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640),
                                        (0o002, 0o664)])
def test_new_file_gets_the_mode_open_would_give(tmp_path, umask, mask, want):
    umask(mask)
    atomic_write(tmp_path / "f.bin", b"data")
    with open(tmp_path / "plain.bin", "wb") as f:
        f.write(b"data")
    assert mode(tmp_path / "f.bin") == mode(tmp_path / "plain.bin") == want
    assert (tmp_path / "f.bin").read_bytes() == b"data"
    assert sorted(os.listdir(tmp_path)) == ["f.bin", "plain.bin"]


@pytest.mark.parametrize("mask", [0o022, 0o077])
@pytest.mark.parametrize("old_mode", [0o640, 0o604, 0o755])
def test_overwritten_file_keeps_its_mode(tmp_path, umask, mask, old_mode):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    os.chmod(path, old_mode)
    umask(mask)
    atomic_write(str(path), b"new")
    assert path.read_bytes() == b"new" and mode(path) == old_mode
    assert os.listdir(tmp_path) == ["f.bin"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write(path, "not bytes")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_network_and_model_save_use_the_umask(tmp_path, umask):
    net = fastbp.Network([2, 3, 1], seed=0)
    meta = {"task": "regression", "n_features": 2, "feature_names": ["a", "b"],
            "feature_mean": None, "feature_std": None, "target_names": ["y"]}
    for mask, want in [(0o022, 0o644), (0o077, 0o600)]:
        umask(mask)
        net.save(tmp_path / f"net{mask:03o}.fbp")
        TrainedModel(net, meta).save(tmp_path / f"model{mask:03o}.fbp")
        for name in (f"net{mask:03o}.fbp", f"model{mask:03o}.fbp", f"model{mask:03o}.fbp.json"):
            assert mode(tmp_path / name) == want, name
    os.chmod(tmp_path / "net022.fbp", 0o640)
    os.chmod(tmp_path / "model022.fbp.json", 0o640)
    net.save(tmp_path / "net022.fbp")
    TrainedModel(net, meta).save(tmp_path / "model022.fbp")
    assert mode(tmp_path / "net022.fbp") == mode(tmp_path / "model022.fbp.json") == 0o640


def test_cli_model_sidecar_and_predictions_use_the_umask(tmp_path, umask, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    with open(tmp_path / "d.csv", "w") as f:
        f.write("a,b,c,label\n" + "".join(f"{a!r},{b!r},{c!r},{int(a > 0)}\n"
                                          for a, b, c in X.tolist()))
    model, data, out = (str(tmp_path / n) for n in ("m.fbp", "d.csv", "p.csv"))
    umask(0o022)
    assert main(["train", data, "--epochs", "1", "--hidden", "4", "--quiet", "-o", model]) == 0
    assert main(["predict", model, data, "-o", out]) == 0
    assert mode(model) == mode(model + ".json") == mode(out) == 0o644
    os.chmod(out, 0o640)
    os.chmod(model + ".json", 0o600)
    umask(0o077)
    assert main(["predict", model, data, "-o", out]) == 0
    assert main(["train", data, "--epochs", "1", "--hidden", "4", "--quiet", "-o", model]) == 0
    assert mode(out) == 0o640 and mode(model + ".json") == 0o600 and mode(model) == 0o644
    capsys.readouterr()
    assert sorted(os.listdir(tmp_path)) == ["d.csv", "m.fbp", "m.fbp.json", "p.csv"]
