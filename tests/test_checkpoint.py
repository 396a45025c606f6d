"""Checkpoint and resume: bit-exact continuation in a new process for every optimizer,
ModelCheckpoint's files, a SIGKILLed run resumed, pickled trainers, corrupt files."""
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastbp
from fastbp import optimizers as O, schedules as S

OPTIMIZERS = {
    "sgd": lambda: O.SGD(lr=0.05),
    "sgd-momentum": lambda: O.SGD(lr=0.05, momentum=0.9, weight_decay=1e-3),
    "nesterov": lambda: O.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "classic": lambda: O.SGD(lr=0.05, momentum=0.9, classic_momentum=True),
    "adam": lambda: O.Adam(lr=1e-2),
    "rmsprop": lambda: O.RMSprop(lr=1e-3, momentum=0.5),
    "rprop": lambda: O.Rprop(lr=0.01, plus=True),
    "quickprop": lambda: O.Quickprop(lr=0.01),
}


def problem(dtype="float32"):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(96, 6)).astype(dtype)
    y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(np.int64) + (X[:, 2] > 1)
    return X, y


def make_trainer(opt_id, dtype="float32", n_threads=1):
    net = fastbp.Network([6, 16, 3], activation="tanh", output="softmax", dtype=dtype, seed=1)
    full = opt_id in ("rprop", "quickprop")
    return fastbp.Trainer(net, optimizer=OPTIMIZERS[opt_id](), batch_size=None if full else 16,
                          n_threads=n_threads, seed=7, lr_schedule=S.CosineLR(8, restart=True),
                          l2=0.0 if full else 1e-3)


RESUME = textwrap.dedent("""
    import sys, numpy as np, fastbp
    X, y = np.load(sys.argv[1])["X"], np.load(sys.argv[1])["y"]
    tr = fastbp.Trainer.load_checkpoint(sys.argv[2])
    tr.fit(X, y, epochs=int(sys.argv[4]))
    np.savez(sys.argv[3], params=tr.net.parameters, loss=np.array(tr.history.loss),
             epochs=np.array(tr.history.epochs))
""")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt_id", list(OPTIMIZERS))
def test_four_epochs_checkpoint_and_six_in_a_new_process_equal_ten(tmp_path, opt_id, dtype):
    X, y = problem(dtype)
    whole = make_trainer(opt_id, dtype)
    whole.fit(X, y, epochs=10)
    first = make_trainer(opt_id, dtype)
    first.fit(X, y, epochs=4)
    first.save_checkpoint(tmp_path / "ck.fbpc")
    np.savez(tmp_path / "data.npz", X=X, y=y)
    (tmp_path / "resume.py").write_text(RESUME)
    subprocess.run([sys.executable, str(tmp_path / "resume.py"), str(tmp_path / "data.npz"),
                    str(tmp_path / "ck.fbpc"), str(tmp_path / "out.npz"), "6"], check=True)
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(out["params"], whole.net.parameters)
    np.testing.assert_array_equal(out["loss"], whole.history.loss)
    assert list(out["epochs"]) == list(range(10))


def test_checkpoint_keeps_settings_state_and_history(tmp_path):
    X, y = problem()
    tr = make_trainer("adam")
    tr.fit(X, y, epochs=3, validation_data=(X[:20], y[:20]))
    tr.save_checkpoint(tmp_path / "a.fbpc")
    back = fastbp.Trainer.load_checkpoint(tmp_path / "a.fbpc")
    assert back.epoch == 3 and back.loss == "cross_entropy" and back.batch_size == 16
    assert back.optimizer.get_params() == tr.optimizer.get_params()
    assert back.optimizer.t == tr.optimizer.t == 3 * 6
    for name in tr.optimizer.state.names:
        np.testing.assert_array_equal(back.optimizer.state[name], tr.optimizer.state[name])
    assert back.history.history == tr.history.history and len(back.history.val_loss) == 3
    assert isinstance(back._schedule, S.CosineLR) and back._schedule.restart
    assert back._rng_state[0] == tr._rng_state[0]
    np.testing.assert_array_equal(back.net.parameters, tr.net.parameters)


def test_checkpoint_errors(tmp_path):
    X, y = problem()
    net = fastbp.Network([6, 4, 3], output="softmax", seed=0)
    tr = fastbp.Trainer(net, lr_schedule=lambda e: 0.01, seed=0)
    tr.fit(X, y, epochs=1)
    tr.save_checkpoint(tmp_path / "c.fbpc")
    with pytest.raises(ValueError, match="plain callable"):
        fastbp.Trainer.load_checkpoint(tmp_path / "c.fbpc")
    back = fastbp.Trainer.load_checkpoint(tmp_path / "c.fbpc", lr_schedule=lambda e: 0.01)
    assert back.epoch == 1
    data = (tmp_path / "c.fbpc").read_bytes()
    (tmp_path / "bad.fbpc").write_bytes(data[:-40] + bytes(8) + data[-32:])
    with pytest.raises(ValueError, match="checksum"):
        fastbp.Trainer.load_checkpoint(tmp_path / "bad.fbpc")
    net.save(tmp_path / "net.fbp")
    with pytest.raises(ValueError, match="not a fastbp checkpoint"):
        fastbp.Trainer.load_checkpoint(tmp_path / "net.fbp")

    class MySGD(O.SGD):
        pass

    with pytest.raises(TypeError, match="optimizers' classes"):
        fastbp.Trainer(net, optimizer=MySGD()).save_checkpoint(tmp_path / "d.fbpc")


def test_model_checkpoint_writes_every_k_keeps_the_last_n_and_the_best(tmp_path):
    X, y = problem()
    tr = make_trainer("sgd-momentum")
    cb = fastbp.ModelCheckpoint(tmp_path / "ck", every=2, keep=2, save_best=True,
                                monitor="val_accuracy")
    tr.fit(X, y, epochs=9, validation_data=(X[:30], y[:30]), callbacks=[cb])
    names = sorted(os.listdir(tmp_path / "ck"))
    assert names == ["checkpoint-00006.fbpc", "checkpoint-00008.fbpc", "checkpoint-best.fbpc"]
    assert fastbp.ModelCheckpoint.latest(tmp_path / "ck").endswith("checkpoint-00008.fbpc")
    best = fastbp.Trainer.load_checkpoint(tmp_path / "ck" / "checkpoint-best.fbpc")
    acc = tr.history.val_accuracy
    assert best.epoch == 1 + int(np.argmax(acc)) and best.history.val_accuracy[-1] == max(acc)
    with pytest.raises(ValueError, match="every"):
        fastbp.ModelCheckpoint(tmp_path, every=-1)
    with pytest.raises(ValueError, match="writes nothing"):
        fastbp.ModelCheckpoint(tmp_path, every=0)


def test_trainer_pickles_and_trains_on_identically(tmp_path):
    X, y = problem()
    a = make_trainer("sgd-momentum", n_threads=2)
    a.fit(X, y, epochs=2)
    b = pickle.loads(pickle.dumps(a))
    a.fit(X, y, epochs=3)
    b.fit(X, y, epochs=3)
    np.testing.assert_array_equal(a.net.parameters, b.net.parameters)
    assert b.history.loss == a.history.loss
    c = fastbp.Trainer(fastbp.Network([6, 3], output="softmax", seed=0))   # constant lr
    pickle.loads(pickle.dumps(c)).fit(X, y, epochs=1)


KILLED = textwrap.dedent("""
    import os, sys, time, numpy as np, fastbp
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 20)).astype(np.float32)
    y = rng.integers(0, 4, 4000)
    directory = sys.argv[1]
    path = fastbp.ModelCheckpoint.latest(directory)
    if path is None:
        net = fastbp.Network([20, 32, 4], activation="relu", output="softmax", seed=0)
        tr = fastbp.Trainer(net, lr=0.02, momentum=0.9, batch_size=16, seed=0, n_threads=1)
    else:
        tr = fastbp.Trainer.load_checkpoint(path)
    slow = (lambda e, logs: time.sleep(0.15)) if len(sys.argv) > 3 else (lambda e, logs: None)
    print("epoch", tr.epoch, flush=True)
    tr.fit(X, y, epochs=int(sys.argv[2]) - tr.epoch,
           callbacks=[fastbp.ModelCheckpoint(directory, every=1, keep=2), slow])
    np.save(os.path.join(directory, "final.npy"), tr.net.parameters)
""")


def test_a_run_killed_mid_epoch_resumes_from_its_last_checkpoint(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILLED)
    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run([sys.executable, str(script), str(ref), "12"], check=True,
                   capture_output=True)
    proc = subprocess.Popen([sys.executable, str(script), str(run), "12", "slow"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().split() == ["epoch", "0"]
    deadline = time.time() + 60
    while fastbp.ModelCheckpoint.latest(run) is None or \
            fastbp.ModelCheckpoint.latest(run).endswith("00001.fbpc"):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "final.npy").exists()
    done = fastbp.Trainer.load_checkpoint(fastbp.ModelCheckpoint.latest(run)).epoch
    assert 2 <= done < 12
    out = subprocess.run([sys.executable, str(script), str(run), "12"], check=True,
                         capture_output=True, text=True).stdout
    assert out.split()[:2] == ["epoch", str(done)]
    np.testing.assert_array_equal(np.load(run / "final.npy"), np.load(ref / "final.npy"))
