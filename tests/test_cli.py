"""End-to-end tests of the command line: ``fastbp train``, ``predict``, ``demo``, ``info``."""
import csv
import io
import json
import os

import numpy as np
import pytest

import fastbp
from fastbp.cli import main
from fastbp.datasets import load_digits

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
FAST = ["--epochs", "3", "--hidden", "16", "--quiet"]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def read_csv(text):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(scale=False)
    return X[:600].astype(np.int64), y[:600]


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory, digits):
    X, y = digits
    path = tmp_path_factory.mktemp("data") / "digits.csv"
    header = [f"px{i}" for i in range(64)] + ["digit"]
    return write_csv(path, header, [[*map(int, x), NAMES[c]] for x, c in zip(X, y)])


@pytest.fixture(scope="module")
def trained_digits(tmp_path_factory, digits_csv):
    model = str(tmp_path_factory.mktemp("model") / "digits.fbp")
    assert main(["train", digits_csv, "--target", "digit", "--epochs", "15", "--hidden", "32",
                 "--quiet", "--output", model]) == 0
    return model


def regression_data(seed=0, n=300, k=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1, 10, 0.1, 3] + [0, 50, 0, -2]
    w = rng.normal(size=(4, k))
    Y = 100 + 20 * np.tanh((X - [0, 50, 0, -2]) / [1, 10, 0.1, 3] @ w)
    return X, (Y[:, 0] if k == 1 else Y)


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ---- train + predict round trips ---------------------------------------------------------

def test_train_classification_csv_string_labels(trained_digits, digits_csv, digits, capsys):
    meta = json.load(open(trained_digits + ".json"))
    assert meta["task"] == "classification"
    assert meta["classes"] == sorted(NAMES)
    assert meta["target"] == "digit"
    assert meta["feature_names"] == [f"px{i}" for i in range(64)]
    assert len(meta["feature_mean"]) == len(meta["feature_std"]) == 64
    net = fastbp.Network.load(trained_digits)
    assert net.layer_sizes == (64, 32, 10) and net.activations[-1] == "softmax"
    # only the model and its metadata in the folder: no temporary files left behind
    assert sorted(os.listdir(os.path.dirname(trained_digits))) == ["digits.fbp",
                                                                   "digits.fbp.json"]

    rc, out, err = run(capsys, "predict", trained_digits, digits_csv)
    assert rc == 0, err
    header, rows = read_csv(out)
    assert header == ["prediction"] and len(rows) == 600
    X, y = digits
    pred = np.array([r[0] for r in rows])
    assert set(pred) <= set(NAMES)
    assert (pred == np.array(NAMES)[y]).mean() > 0.8


def test_predict_proba_equals_loaded_network(trained_digits, digits_csv, digits, capsys):
    rc, out, err = run(capsys, "predict", trained_digits, digits_csv, "--proba")
    assert rc == 0, err
    header, rows = read_csv(out)
    assert header == sorted(NAMES)
    P = np.array(rows, dtype=np.float64).astype(np.float32)
    meta = json.load(open(trained_digits + ".json"))
    net = fastbp.Network.load(trained_digits)
    X = digits[0].astype(np.float64)
    Xs = ((X - np.array(meta["feature_mean"])) / np.array(meta["feature_std"])).astype(np.float32)
    np.testing.assert_array_equal(P, net.predict(Xs))   # printed values round-trip exactly
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-5)

    # labels = class names of the most probable class
    rc, out, _ = run(capsys, "predict", trained_digits, digits_csv)
    labels = [r[0] for r in read_csv(out)[1]]
    assert labels == [header[i] for i in P.argmax(axis=1)]


def test_predict_csv_reordered_columns_without_target(trained_digits, digits_csv, digits,
                                                      tmp_path, capsys):
    X, y = digits
    cols = [f"px{i}" for i in range(64)][::-1]
    other = write_csv(tmp_path / "shuffled.csv", cols, [list(map(int, x[::-1])) for x in X])
    out_csv = tmp_path / "preds.csv"
    rc, out, err = run(capsys, "predict", trained_digits, other, "--output", out_csv)
    assert rc == 0 and out == "" and "600 predictions" in err
    rc, ref, _ = run(capsys, "predict", trained_digits, digits_csv)
    assert out_csv.read_text() == ref
    assert sorted(os.listdir(tmp_path)) == ["preds.csv", "shuffled.csv"]


def test_train_regression_npz_and_predict(tmp_path, capsys):
    X, y = regression_data()
    data = tmp_path / "reg.npz"
    np.savez(data, X=X, y=y)
    model = tmp_path / "reg.fbp"
    rc, out, err = run(capsys, "train", data, "--epochs", "40", "--hidden", "32", "--quiet",
                       "--output", model)
    assert rc == 0, err
    assert "regression" in out and "validation RMSE" in out and "samples/s" in out
    assert f"saved model to {model}" in out
    meta = json.load(open(f"{model}.json"))
    assert meta["task"] == "regression" and "classes" not in meta
    assert meta["feature_names"] is None and meta["n_features"] == 4

    rc, out, err = run(capsys, "predict", model, data)
    assert rc == 0, err
    header, rows = read_csv(out)
    assert header == ["prediction"]
    pred = np.array(rows, dtype=np.float64)[:, 0]
    # the saved model reproduces: standardize X, run the network, undo the target scaling
    net = fastbp.Network.load(model)
    Xs = ((X - meta["feature_mean"]) / np.array(meta["feature_std"])).astype(np.float32)
    expect = net.predict(Xs).astype(np.float64) * meta["target_std"] + meta["target_mean"]
    np.testing.assert_array_equal(pred, expect[:, 0])
    rmse = np.sqrt(np.mean((pred - y) ** 2))
    assert rmse < 0.5 * y.std()          # learned something in the target's own units

    rc, _, err = run(capsys, "predict", model, data, "--proba")
    assert rc == 2 and "--proba" in err and "regression" in err


def test_regression_multi_output_and_csv(tmp_path, capsys):
    X, Y = regression_data(seed=1, n=200, k=2)
    np.savez(tmp_path / "multi.npz", X=X, y=Y)
    rc, out, err = run(capsys, "train", tmp_path / "multi.npz", *FAST, "-o", tmp_path / "m.fbp")
    assert rc == 0, err
    assert "2 outputs" in out
    rc, out, _ = run(capsys, "predict", tmp_path / "m.fbp", tmp_path / "multi.npz")
    header, rows = read_csv(out)
    assert header == ["y_0", "y_1"] and len(rows) == 200 and len(rows[0]) == 2

    # CSV with a numeric target: --task auto picks regression for a continuous target
    path = write_csv(tmp_path / "r.csv", ["a", "b", "c", "d", "target"],
                     [[*x, t] for x, t in zip(X, Y[:, 0])])
    rc, out, err = run(capsys, "train", path, *FAST, "--dtype", "float64",
                       "-o", tmp_path / "r.fbp")
    assert rc == 0, err
    assert "regression" in out and "RMSE" in out
    model = fastbp.Network.load(tmp_path / "r.fbp")
    assert model.dtype == np.float64 and model.layer_sizes == (4, 16, 1)


def test_integer_labels_auto_classification_and_override(tmp_path, capsys):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)        # labels 0..3
    path = write_csv(tmp_path / "int.csv", ["label", "u", "v", "w"],
                     [[c, *x] for c, x in zip(y, X)])
    rc, out, err = run(capsys, "train", path, "--target", "0", *FAST, "-o", tmp_path / "c.fbp")
    assert rc == 0, err
    assert "classification, 4 classes" in out and "validation accuracy" in out
    meta = json.load(open(tmp_path / "c.fbp.json"))
    assert meta["classes"] == [0, 1, 2, 3] and meta["target"] == "label"
    assert meta["feature_names"] == ["u", "v", "w"]
    rc, out, _ = run(capsys, "predict", tmp_path / "c.fbp", path)
    assert {r[0] for r in read_csv(out)[1]} <= {"0", "1", "2", "3"}

    rc, out, err = run(capsys, "train", path, "--target", "label", "--task", "regression",
                       "--validation-split", "0", "--no-standardize", *FAST,
                       "-o", tmp_path / "r.fbp")
    assert rc == 0, err
    assert "regression" in out and "training RMSE" in out
    meta = json.load(open(tmp_path / "r.fbp.json"))
    assert meta["feature_mean"] is None and meta["target_mean"] is None


def test_progress_and_per_epoch_metrics(tmp_path, capsys):
    X, y = regression_data(n=100)
    np.savez(tmp_path / "d.npz", X=X, y=y > 100)                 # boolean labels
    rc, out, err = run(capsys, "train", tmp_path / "d.npz", "--epochs", "2", "--hidden", "8",
                       "-o", tmp_path / "m.fbp")
    assert rc == 0, err
    assert "epoch 2" in err and "val_accuracy" in err          # the progress bar, per epoch
    assert "final validation accuracy" in out
    assert json.load(open(tmp_path / "m.fbp.json"))["classes"] == [False, True]


def test_diverged_training_saves_nothing(tmp_path, capsys):
    X, y = regression_data(n=100)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    rc, _, err = run(capsys, "train", tmp_path / "d.npz", "--optimizer", "sgd", "--lr", "1e6",
                     *FAST, "-o", tmp_path / "m.fbp")
    assert rc == 1 and "diverged" in err
    assert not (tmp_path / "m.fbp").exists() and not (tmp_path / "m.fbp.json").exists()


# ---- row-index columns (pandas' to_csv writes its index as an unnamed first column) ------

def sorted_by_class(n=80, seed=0):
    """Features and labels sorted by class, as in wine: the row number gives the label away."""
    rng = np.random.default_rng(seed)
    y = np.sort(rng.integers(0, 2, n))
    X = rng.normal(size=(n, 2)) + y[:, None]
    return X, y


def indexed_csv(path, X, y=None, index=None, name=""):
    index = range(len(X)) if index is None else index
    header = [name, "a", "b"] + (["label"] if y is not None else [])
    rows = [[i, *x] + ([int(c)] if y is not None else [])
            for i, x, c in zip(index, X.tolist(), y if y is not None else [None] * len(X))]
    return write_csv(path, header, rows)


@pytest.mark.parametrize("name", ["", "Unnamed: 0"])
def test_unnamed_row_index_column_is_dropped_with_a_notice(tmp_path, capsys, name):
    X, y = sorted_by_class()
    data = indexed_csv(tmp_path / "d.csv", X, y, name=name)
    assert open(data).readline().startswith(f"{name},a,b,label")
    model = str(tmp_path / "m.fbp")
    rc, out, err = run(capsys, "train", data, *FAST, "-o", model)
    assert rc == 0, err
    notice = [line for line in err.splitlines() if "dropped" in line]
    assert len(notice) == 1 and f"column 1 ({name!r})" in notice[0] and "0..79" in notice[0]
    assert "2 features" in out
    meta = json.load(open(model + ".json"))
    assert meta["feature_names"] == ["a", "b"] and meta["index_columns"] == [name]
    assert fastbp.Network.load(model).n_inputs == 2
    want = read_csv(run(capsys, "predict", model, data)[1])
    # the same rows without the index, or with a test split's index (no longer 0..n-1):
    # the same predictions, no notice (the model knows the column)
    plain = write_csv(tmp_path / "plain.csv", ["a", "b"], X.tolist())
    split = indexed_csv(tmp_path / "split.csv", X, index=range(100, 20, -1), name=name)
    for path in (plain, split):
        rc, out, err = run(capsys, "predict", model, path)
        assert rc == 0 and err == "" and read_csv(out) == want, err


def test_row_index_detection_is_strict(tmp_path, capsys):
    X, y = sorted_by_class(n=30)
    model = str(tmp_path / "m.fbp")
    # unnamed but not 0..n-1: an ordinary feature, as before
    data = indexed_csv(tmp_path / "d.csv", X, y, index=range(1, 31))
    rc, _, err = run(capsys, "train", data, *FAST, "-o", model)
    assert rc == 0 and "dropped" not in err
    assert json.load(open(model + ".json"))["feature_names"] == ["", "a", "b"]
    # named 0..n-1: a feature too (only unnamed columns are taken for an index)
    data = indexed_csv(tmp_path / "d.csv", X, y, name="step")
    rc, _, err = run(capsys, "train", data, *FAST, "-o", model)
    assert rc == 0 and "dropped" not in err
    assert json.load(open(model + ".json"))["feature_names"] == ["step", "a", "b"]
    # an --ignore'd index column: ignored, no notice
    data = indexed_csv(tmp_path / "d.csv", X, y)
    rc, _, err = run(capsys, "train", data, *FAST, "--ignore", "0", "-o", model)
    assert rc == 0 and "dropped" not in err
    assert json.load(open(model + ".json"))["feature_names"] == ["a", "b"]


def test_index_col_option(tmp_path, capsys):
    X, y = sorted_by_class(n=40)
    data = indexed_csv(tmp_path / "d.csv", X, y, index=[f"row{i}" for i in range(40)],
                       name="id")
    model = str(tmp_path / "m.fbp")
    for col in ("id", "0"):
        rc, _, err = run(capsys, "train", data, *FAST, "--index-col", col, "-o", model)
        assert rc == 0 and "dropped" not in err, err
        meta = json.load(open(model + ".json"))
        assert meta["feature_names"] == ["a", "b"] and meta["index_columns"] == ["id"]
    rc, out, err = run(capsys, "predict", model, data)
    assert rc == 0 and len(read_csv(out)[1]) == 40, err
    # --index-col replaces the detection: the unnamed 0..n-1 column stays a feature
    pandas_like = indexed_csv(tmp_path / "p.csv", X, y)
    rc, _, err = run(capsys, "train", pandas_like, *FAST, "--index-col", "a", "-o", model)
    assert rc == 0 and "dropped" not in err
    assert json.load(open(model + ".json"))["feature_names"] == ["", "b"]

    rc, _, err = run(capsys, "train", data, "--index-col", "nope", "-o", model)
    assert rc == 2 and "--index-col: unknown column 'nope'" in err
    rc, _, err = run(capsys, "train", data, "--index-col", "label", "-o", model)
    assert rc == 2 and "--index-col 'label' is the target column" in err
    np.savez(tmp_path / "d.npz", X=X, y=y)
    rc, _, err = run(capsys, "train", tmp_path / "d.npz", "--index-col", "0", "-o", model)
    assert rc == 2 and "--index-col applies to CSV files" in err
    rc, _, err = run(capsys, "predict", model, pandas_like, "--index-col", "b")
    assert rc == 2 and "--index-col 'b' is one of the model's feature columns" in err


def test_predict_drops_a_row_index_for_a_model_trained_on_arrays(tmp_path, capsys):
    """A .npz-trained model takes the CSV's columns in order: the index must not shift them."""
    X, y = sorted_by_class(n=50)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    model = str(tmp_path / "m.fbp")
    assert run(capsys, "train", tmp_path / "d.npz", *FAST, "-o", model)[0] == 0
    rc, want, _ = run(capsys, "predict", model, write_csv(tmp_path / "x.csv", ["a", "b"],
                                                          X.tolist()))
    assert rc == 0
    rc, out, err = run(capsys, "predict", model, indexed_csv(tmp_path / "i.csv", X))
    assert rc == 0 and out == want and "dropped the unnamed column 1 ('')" in err
    rc, out, err = run(capsys, "predict", model,
                       indexed_csv(tmp_path / "j.csv", X, index=range(7, 57), name="id"),
                       "--index-col", "id")
    assert rc == 0 and out == want and err == ""


def test_pandas_written_csv(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    X, y = sorted_by_class(n=60)
    df = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "label": y})
    df.to_csv(tmp_path / "d.csv")                       # with its default index
    model = str(tmp_path / "m.fbp")
    rc, _, err = run(capsys, "train", tmp_path / "d.csv", *FAST, "-o", model)
    assert rc == 0 and "dropped the unnamed column 1 ('')" in err
    assert json.load(open(model + ".json"))["feature_names"] == ["a", "b"]
    df.sample(frac=0.5, random_state=0).drop(columns="label").to_csv(tmp_path / "t.csv")
    rc, out, err = run(capsys, "predict", model, tmp_path / "t.csv")
    assert rc == 0 and len(read_csv(out)[1]) == 30, err
    pd.read_csv(tmp_path / "d.csv").to_csv(tmp_path / "twice.csv")   # ,Unnamed: 0,a,...
    rc, _, err = run(capsys, "train", tmp_path / "twice.csv", *FAST, "-o", model)
    assert rc == 0 and "column 2 ('Unnamed: 0')" in err
    assert json.load(open(model + ".json"))["index_columns"] == ["", "Unnamed: 0"]


# ---- errors ------------------------------------------------------------------------------

def test_train_errors(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    rc, _, err = run(capsys, "train", missing)
    assert rc == 2 and "fastbp train: error:" in err and "nope.csv" in err and "no such" in err

    (tmp_path / "empty.csv").write_text("")
    rc, _, err = run(capsys, "train", tmp_path / "empty.csv")
    assert rc == 2 and "empty" in err

    (tmp_path / "header.csv").write_text("a,b,y\n")
    rc, _, err = run(capsys, "train", tmp_path / "header.csv")
    assert rc == 2 and "no data rows" in err

    bad = write_csv(tmp_path / "bad.csv", ["x1", "colour", "y"],
                    [[1, 2, 0], [2, 3, 1], [3, "red", 0], [4, "blue", 1]])
    rc, _, err = run(capsys, "train", bad)
    assert rc == 2 and "'colour'" in err and "line 4" in err and "'red'" in err

    rc, _, err = run(capsys, "train", bad, "--target", "label")
    assert rc == 2 and "'label'" in err and "'x1', 'colour', 'y'" in err

    rc, _, err = run(capsys, "train", bad, "--target", "5")
    assert rc == 2 and "out of range" in err

    gaps = write_csv(tmp_path / "gaps.csv", ["a", "b", "y"], [[1, 2, 0], [2, "", 1]])
    rc, _, err = run(capsys, "train", gaps)
    assert rc == 2 and "'b'" in err and "missing" in err and "line 3" in err

    (tmp_path / "ragged.csv").write_text("a,b,y\n1,2,0\n1,2\n")
    rc, _, err = run(capsys, "train", tmp_path / "ragged.csv")
    assert rc == 2 and "line 3 has 2 fields" in err

    (tmp_path / "nohead.csv").write_text("0.5,1.5,0\n0.25,2.5,1\n")
    rc, _, err = run(capsys, "train", tmp_path / "nohead.csv")
    assert rc == 2 and "header" in err

    np.savez(tmp_path / "nox.npz", data=np.zeros((4, 2)), labels=np.zeros(4))
    rc, _, err = run(capsys, "train", tmp_path / "nox.npz")
    assert rc == 2 and "'X'" in err and "'data', 'labels'" in err

    (tmp_path / "fake.npz").write_text("not a zip")
    rc, _, err = run(capsys, "train", tmp_path / "fake.npz")
    assert rc == 2 and "not a valid .npz" in err

    one = write_csv(tmp_path / "one.csv", ["a", "y"], [[1, "cat"], [2, "cat"]])
    rc, _, err = run(capsys, "train", one)
    assert rc == 2 and "single class" in err

    good = write_csv(tmp_path / "good.csv", ["a", "y"], [[1, 0], [2, 1]])
    rc, _, err = run(capsys, "train", good, "-o", tmp_path / "no" / "dir" / "m.fbp")
    assert rc == 2 and "does not exist" in err
    rc, _, err = run(capsys, "train", good, "--validation-split", "1.5")
    assert rc == 2 and "--validation-split" in err
    rc, _, err = run(capsys, "train", good, "--optimizer", "adam", "--momentum", "0.9",
                     "-o", tmp_path / "m.fbp")
    assert rc == 2 and "momentum" in err
    assert not (tmp_path / "m.fbp").exists()


def test_predict_errors(trained_digits, digits_csv, digits, tmp_path, capsys):
    rc, _, err = run(capsys, "predict", tmp_path / "none.fbp", digits_csv)
    assert rc == 2 and "fastbp predict: error:" in err and "none.fbp" in err

    rc, _, err = run(capsys, "predict", trained_digits, tmp_path / "none.csv")
    assert rc == 2 and "none.csv" in err

    X, _ = digits
    cols = [f"px{i}" for i in range(64) if i not in (5, 9)]
    few = write_csv(tmp_path / "few.csv", cols, [[int(v) for j, v in enumerate(x)
                                                  if j not in (5, 9)] for x in X[:5]])
    rc, _, err = run(capsys, "predict", trained_digits, few)
    assert rc == 2 and "'px5', 'px9'" in err and "missing" in err

    extra = write_csv(tmp_path / "extra.csv", [f"px{i}" for i in range(64)] + ["id"],
                      [[*map(int, x), i] for i, x in enumerate(X[:5])])
    rc, _, err = run(capsys, "predict", trained_digits, extra)
    assert rc == 2 and "'id'" in err
    rc, out, err = run(capsys, "predict", trained_digits, extra, "--ignore", "id")
    assert rc == 0 and len(read_csv(out)[1]) == 5

    np.savez(tmp_path / "narrow.npz", X=np.zeros((3, 5)))
    rc, _, err = run(capsys, "predict", trained_digits, tmp_path / "narrow.npz")
    assert rc == 2 and "5 columns" in err and "64" in err
    np.savez(tmp_path / "nox.npz", features=np.zeros((3, 64)))
    rc, _, err = run(capsys, "predict", trained_digits, tmp_path / "nox.npz")
    assert rc == 2 and "'X'" in err and "'features'" in err

    # corrupt / truncated network, missing or mismatched metadata
    data = open(trained_digits, "rb").read()
    broken = tmp_path / "broken.fbp"
    broken.write_bytes(data[:len(data) // 2])
    (tmp_path / "broken.fbp.json").write_bytes(open(trained_digits + ".json", "rb").read())
    rc, _, err = run(capsys, "predict", broken, digits_csv)
    assert rc == 2 and "broken.fbp" in err and ("corrupt" in err or "truncated" in err)

    lone = tmp_path / "lone.fbp"
    lone.write_bytes(data)
    rc, _, err = run(capsys, "predict", lone, digits_csv)
    assert rc == 2 and "lone.fbp.json" in err and "missing" in err

    other = tmp_path / "other.fbp"
    fastbp.Network([64, 32, 10], output="softmax", seed=1).save(other)
    (tmp_path / "other.fbp.json").write_bytes(open(trained_digits + ".json", "rb").read())
    rc, _, err = run(capsys, "predict", other, digits_csv)
    assert rc == 2 and "does not match" in err

    (tmp_path / "lone.fbp.json").write_text("{not json")
    rc, _, err = run(capsys, "predict", lone, digits_csv)
    assert rc == 2 and "corrupt" in err


# ---- the other commands ------------------------------------------------------------------

def test_demo_and_info(capsys):
    rc, out, _ = run(capsys, "demo", "--epochs", "2")
    assert rc == 0 and "test accuracy" in out
    rc, out, _ = run(capsys, "info")
    assert rc == 0 and "OpenMP" in out
    assert "usable cores (affinity " in out and "cgroup quota" in out


@pytest.mark.parametrize("option, value, message", [
    ("--epochs", "0", "--epochs must be >= 1, got 0"),
    ("--hidden", "0", "--hidden sizes must be >= 1, got 0"),
    ("--lr", "0", "--lr must be > 0"),
    ("--lr", "inf", "--lr must be a finite number"),
    ("--batch-size", "0", "--batch-size must be >= 1, got 0"),
    ("--threads", "0", "--threads must be >= 1, got 0"),
    ("--seed", "-1", "--seed must be >= 0"),
])
def test_demo_reports_bad_options_by_their_names(capsys, option, value, message):
    rc, out, err = run(capsys, "demo", option, value)
    assert rc == 2 and f"fastbp demo: error: {message}" in err, err
    assert out == ""          # checked before loading or training anything


def test_threads_above_the_usable_cores_warn_on_stderr(tmp_path, capsys, monkeypatch):
    from fastbp import _config
    monkeypatch.setattr(_config, "usable_cores", lambda: 1)
    monkeypatch.setattr(_config, "_warned", set())
    data = write_csv(tmp_path / "d.csv", ["a", "y"], [[i, i % 2] for i in range(20)])
    model = str(tmp_path / "m.fbp")
    try:
        rc, _, err = run(capsys, "train", data, *FAST, "--threads", "2", "-o", model)
        assert rc == 0, err
        assert err.count("fastbp train: warning: --threads=2 is more than the 1 core(s)") == 1
        rc, _, err = run(capsys, "predict", model, data, "--threads", "3")
        assert rc == 0 and "fastbp predict: warning: --threads=3" in err
        rc, _, err = run(capsys, "predict", model, data, "--threads", "0")
        assert rc == 2 and "--threads must be >= 1" in err
        rc, _, err = run(capsys, "train", data, *FAST, "--threads", "0", "-o", model)
        assert rc == 2 and "--threads must be >= 1" in err
    finally:
        fastbp.set_num_threads(None)


def test_broken_pipe_exits_quietly():
    """`fastbp info | head -1`: no "Broken pipe" error, no traceback at exit."""
    import subprocess
    import sys
    for argv in (["info"], ["--version"]):
        r, w = os.pipe()
        os.close(r)           # the reader is gone before fastbp writes anything
        try:
            proc = subprocess.run([sys.executable, "-m", "fastbp", *argv], stdout=w,
                                  stderr=subprocess.PIPE, timeout=120)
        finally:
            os.close(w)
        assert proc.stderr.decode() == "" and proc.returncode in (0, 1), proc.stderr


def test_predict_with_a_foreign_model_file(digits_csv, tmp_path, capsys):
    foreign = tmp_path / "model.pkl"
    foreign.write_bytes(b"\x80\x04K\x01.")
    rc, _, err = run(capsys, "predict", foreign, digits_csv)
    assert rc == 2 and f"{foreign}: not a fastbp model file" in err and "missing" not in err
    (tmp_path / "model.pkl.json").write_text("{}")
    rc, _, err = run(capsys, "predict", foreign, digits_csv)
    assert rc == 2 and f"{foreign}: not a fastbp model file" in err
    rc, _, err = run(capsys, "predict", digits_csv, digits_csv)
    assert rc == 2 and "not a fastbp model file" in err
    rc, _, err = run(capsys, "predict", tmp_path, digits_csv)
    assert rc == 2 and "is a directory" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"fastbp {fastbp.__version__}\n"


def test_train_checkpoint_and_resume_give_the_uninterrupted_model(tmp_path, digits_csv, capsys):
    """3 epochs with --checkpoint, then --resume to 6, save the network an uninterrupted
    6-epoch run saves, bit for bit; the model records all 6 epochs."""
    common = ["train", digits_csv, "--target", "digit", "--hidden", "16", "--quiet",
              "--optimizer", "sgd", "--momentum", "0.9"]
    assert main(common + ["--epochs", "6", "-o", str(tmp_path / "whole.fbp")]) == 0
    ck = tmp_path / "ck"
    assert main(common + ["--epochs", "3", "--checkpoint", str(ck),
                          "-o", str(tmp_path / "part.fbp")]) == 0
    assert sorted(os.listdir(ck)) == ["checkpoint-00002.fbpc", "checkpoint-00003.fbpc"]
    capsys.readouterr()
    assert main(common + ["--epochs", "6", "--checkpoint", str(ck), "--resume",
                          "-o", str(tmp_path / "resumed.fbp")]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert (tmp_path / "resumed.fbp").read_bytes() == (tmp_path / "whole.fbp").read_bytes()
    meta = json.loads((tmp_path / "resumed.fbp.json").read_text())
    assert meta["training"]["epochs"] == 6
    # a checkpoint for another network is refused; --resume needs --checkpoint
    assert main(["train", digits_csv, "--target", "digit", "--hidden", "8", "--quiet",
                 "--epochs", "6", "--checkpoint", str(ck), "--resume",
                 "-o", str(tmp_path / "x.fbp")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(common + ["--epochs", "6", "--resume", "-o", str(tmp_path / "y.fbp")]) == 2
    assert "--resume needs --checkpoint" in capsys.readouterr().err


def test_train_precision_bf16(tmp_path, capsys):
    """--precision bf16 trains with bfloat16 products (its float32 master weights are
    saved); with --dtype float64 it is refused, naming both options."""
    X, Y = regression_data(seed=2, n=200, k=1)
    np.savez(tmp_path / "d.npz", X=X, y=Y)
    rc, out, err = run(capsys, "train", tmp_path / "d.npz", *FAST, "--precision", "bf16",
                       "-o", tmp_path / "b.fbp")
    assert rc == 0, err
    rc32, _, err32 = run(capsys, "train", tmp_path / "d.npz", *FAST, "-o", tmp_path / "f.fbp")
    assert rc32 == 0, err32
    b, f = fastbp.Network.load(tmp_path / "b.fbp"), fastbp.Network.load(tmp_path / "f.fbp")
    assert b.dtype == np.float32
    assert not np.array_equal(b.parameters, f.parameters)
    np.testing.assert_allclose(b.parameters, f.parameters, atol=0.1)
    rc, _, err = run(capsys, "train", tmp_path / "d.npz", *FAST, "--precision", "bf16",
                     "--dtype", "float64", "-o", tmp_path / "x.fbp")
    assert rc == 2 and "--precision bf16 needs --dtype float32" in err
