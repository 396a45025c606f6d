"""fastbp.models: the model files written by ``fastbp train``, read and written from Python."""
import csv
import io
import json
import os

import numpy as np
import pytest

import fastbp
from fastbp.cli import main
from fastbp.datasets import load_digits
from fastbp.models import TrainedModel, load_model

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def csv_rows(text):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def sidecar_outputs(path, X):
    """Network outputs computed by hand from the network file and its JSON metadata."""
    meta = json.load(open(f"{path}.json"))
    net = fastbp.Network.load(path)
    if meta["feature_mean"] is not None:
        X = (X - np.array(meta["feature_mean"])) / np.array(meta["feature_std"])
    out = net.predict(np.ascontiguousarray(X, dtype=net.dtype))
    if meta["task"] == "regression" and meta["target_mean"] is not None:
        out = out.astype(np.float64) * meta["target_std"] + meta["target_mean"]
    return out


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(CSV path, features, labels, model path) for a classifier trained by the CLI."""
    X, y = load_digits(scale=False)
    X, y = X[:300].astype(np.float64), y[:300]
    folder = tmp_path_factory.mktemp("digits")
    data = folder / "digits.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"px{i}" for i in range(64)] + ["digit"])
        w.writerows([*map(int, x), NAMES[c]] for x, c in zip(X, y))
    model = folder / "digits.fbp"
    assert main(["train", str(data), "--epochs", "5", "--hidden", "16", "--quiet",
                 "-o", str(model)]) == 0
    return str(data), X, y, str(model)


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    """(npz path, X, Y, model path): a two-output regression trained by the CLI."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)) * [1, 10, 100]
    Y = np.c_[X @ [1.0, 0.1, 0.01], 50 - X[:, 0]]
    folder = tmp_path_factory.mktemp("regression")
    np.savez(folder / "r.npz", X=X, y=Y)
    model = folder / "r.fbp"
    assert main(["train", str(folder / "r.npz"), "--epochs", "5", "--quiet",
                 "-o", str(model)]) == 0
    return str(folder / "r.npz"), X, Y, str(model)


def test_exported():
    assert "models" in fastbp.__all__ and fastbp.models.load_model is load_model


def test_classifier_matches_cli_and_sidecar(digits, capsys):
    data, X, y, path = digits
    model = load_model(path)
    assert isinstance(model, TrainedModel) and model.path == path
    assert model.task == "classification" and model.classes == sorted(NAMES)
    assert model.feature_names == [f"px{i}" for i in range(64)] and model.n_features == 64

    P = model.predict_proba(X)
    assert P.dtype == np.float32 and P.shape == (300, 10)
    np.testing.assert_array_equal(P, sidecar_outputs(path, X))
    np.testing.assert_array_equal(model.outputs(X), P)
    header, rows = csv_rows(cli(capsys, "predict", path, data, "--proba"))
    assert header == model.classes
    np.testing.assert_array_equal(np.array(rows, dtype=np.float64).astype(np.float32), P)

    labels = model.predict(X)
    assert labels.shape == (300,) and labels.dtype == object
    _, rows = csv_rows(cli(capsys, "predict", path, data))
    assert labels.tolist() == [r[0] for r in rows]
    assert labels.tolist() == [model.classes[i] for i in P.argmax(axis=1)]

    Xs = model.transform(X)
    assert Xs.dtype == np.float32 and Xs.flags.c_contiguous
    np.testing.assert_array_equal(model.net.predict(Xs), P)


def test_regression_matches_cli_and_sidecar(regression, capsys):
    data, X, Y, path = regression
    model = load_model(path)
    assert model.task == "regression" and model.classes is None and model.feature_names is None
    pred = model.predict(X)
    assert pred.dtype == np.float64 and pred.shape == (200, 2)
    np.testing.assert_array_equal(pred, sidecar_outputs(path, X))
    header, rows = csv_rows(cli(capsys, "predict", path, data))
    assert header == ["y_0", "y_1"]
    np.testing.assert_array_equal(np.array(rows, dtype=np.float64), pred)
    with pytest.raises(ValueError, match="regression model"):
        model.predict_proba(X)


def test_single_output_regression_predicts_1d(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 2))
    np.savez(tmp_path / "d.npz", X=X, y=X[:, 0] * 3.5 - X[:, 1])
    cli(capsys, "train", tmp_path / "d.npz", "--epochs", "2", "--quiet", "--no-standardize",
        "-o", tmp_path / "m.fbp")
    model = load_model(tmp_path / "m.fbp")
    pred = model.predict(X)
    assert pred.shape == (80,)
    # without standardization the network sees the raw features and predicts raw values
    np.testing.assert_array_equal(model.transform(X), X.astype(np.float32))
    np.testing.assert_array_equal(pred, model.net.predict(X.astype(np.float32))[:, 0])


def test_save_round_trip_is_byte_identical(digits, tmp_path):
    _, X, _, path = digits
    model = load_model(path)
    copy = str(tmp_path / "copy.fbp")
    model.save(copy)
    assert model.path == copy
    for suffix in ("", ".json"):
        assert open(path + suffix, "rb").read() == open(copy + suffix, "rb").read()
    np.testing.assert_array_equal(load_model(copy).predict_proba(X), model.predict_proba(X))
    assert sorted(os.listdir(tmp_path)) == ["copy.fbp", "copy.fbp.json"]


def test_save_a_model_built_in_python(tmp_path):
    net = fastbp.Network([2, 3], output="softmax", seed=0)
    meta = {"task": "classification", "n_features": 2, "feature_names": ["a", "b"],
            "feature_mean": [1.0, 2.0], "feature_std": [2.0, 4.0], "classes": ["x", "y", "z"]}
    TrainedModel(net, meta).save(tmp_path / "m.fbp")
    saved = json.load(open(tmp_path / "m.fbp.json"))
    assert list(saved)[:2] == ["format", "version"] and "network_sha256" in saved
    model = load_model(tmp_path / "m.fbp")
    X = np.array([[1.0, 2.0], [3.0, -2.0]])
    np.testing.assert_array_equal(model.predict_proba(X),
                                  net.predict(((X - [1, 2]) / [2, 4]).astype(np.float32)))
    assert model.predict(X).tolist() == [meta["classes"][i]
                                         for i in model.predict_proba(X).argmax(axis=1)]


@pytest.mark.parametrize("change, message", [
    ({"classes": ["x", "y"]}, "2 classes != network outputs 3"),
    ({"feature_std": [1.0]}, "feature_std has the wrong length"),
    ({"task": "ranking"}, "unknown task"),
    ({"feature_mean": np.zeros(2)}, "not JSON serializable"),
    ({"n_features": None}, "n_features None != network inputs 2"),
])
def test_save_rejects_bad_metadata_before_writing(tmp_path, change, message):
    net = fastbp.Network([2, 3], output="softmax", seed=0)
    meta = {"task": "classification", "n_features": 2, "feature_names": None,
            "feature_mean": None, "feature_std": None, "classes": ["x", "y", "z"], **change}
    with pytest.raises(ValueError, match=message):
        TrainedModel(net, meta).save(tmp_path / "m.fbp")
    assert os.listdir(tmp_path) == []


def test_save_names_a_missing_key(tmp_path):
    net = fastbp.Network([2, 1], seed=0)
    with pytest.raises(ValueError, match="no 'target_names' key"):
        TrainedModel(net, {"task": "regression", "n_features": 2, "feature_names": None,
                           "feature_mean": None, "feature_std": None}).save(tmp_path / "m.fbp")


def test_load_errors(digits, tmp_path):
    _, _, _, path = digits
    with pytest.raises(FileNotFoundError, match="no such model file"):
        load_model(tmp_path / "none.fbp")
    lone = tmp_path / "lone.fbp"
    lone.write_bytes(open(path, "rb").read())
    with pytest.raises(FileNotFoundError, match="metadata file is missing"):
        load_model(lone)
    with pytest.raises(ValueError, match="give the network file"):
        load_model(path + ".json")
    foreign = tmp_path / "foreign.fbp"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="foreign.fbp: not a fastbp model file"):
        load_model(foreign)     # said before looking for foreign.fbp.json
    (tmp_path / "foreign.fbp.json").write_text(open(path + ".json").read())
    with pytest.raises(ValueError, match="foreign.fbp: not a fastbp model file"):
        load_model(foreign)

    meta = json.load(open(path + ".json"))
    (tmp_path / "lone.fbp.json").write_text(json.dumps(dict(meta, version=2)))
    with pytest.raises(ValueError, match="metadata version 2 is not supported"):
        load_model(lone)
    (tmp_path / "lone.fbp.json").write_text(json.dumps(dict(meta, network_sha256="0" * 64)))
    with pytest.raises(ValueError, match="does not match its metadata"):
        load_model(lone)
    (tmp_path / "lone.fbp.json").write_text(json.dumps(dict(meta, n_features=63)))
    with pytest.raises(ValueError, match="corrupt model metadata"):
        load_model(lone)


def test_cli_predicts_with_a_model_saved_from_python(tmp_path, capsys):
    net = fastbp.Network([2, 4, 1], seed=0)
    meta = {"task": "regression", "n_features": 2, "feature_names": ["a", "b"],
            "feature_mean": None, "feature_std": None, "target_names": ["price"]}
    TrainedModel(net, meta).save(tmp_path / "m.fbp")
    X = np.array([[0.5, -1.0], [2.0, 3.0]])
    with open(tmp_path / "x.csv", "w") as f:
        f.write("b,a\n" + "".join(f"{b!r},{a!r}\n" for a, b in X.tolist()))
    header, rows = csv_rows(cli(capsys, "predict", tmp_path / "m.fbp", tmp_path / "x.csv"))
    assert header == ["prediction"]
    np.testing.assert_array_equal(np.array(rows, dtype=np.float64)[:, 0].astype(np.float32),
                                  net.predict(X.astype(np.float32))[:, 0])
    with open(tmp_path / "extra.csv", "w") as f:
        f.write("a,b,c\n1,2,3\n")
    assert main(["predict", str(tmp_path / "m.fbp"), str(tmp_path / "extra.csv")]) == 2
    err = capsys.readouterr().err
    assert "expects its 2 feature columns; unexpected column(s) 'c'" in err
