"""Penalties and constraints for every optimizer, step for step against tests/reference.py
(and torch.optim / torch.nn.utils where torch is installed): weight decay on the weights
only or on everything, AdamW, L1, clipping by value and by global norm, max-norm."""
import numpy as np
import pytest

import fastbp
from fastbp import optimizers as O
import reference as ref
from test_trainer import problem, ref_batches, ref_grad, unflatten

STEPS = {   # id: (fastbp optimizer, reference step(p, g, state, E) with weight decay wd)
    "sgd": (lambda wd: O.SGD(lr=0.1, weight_decay=wd),
            lambda p, g, s, E, wd: ref.sgd_step(p, g, s, lr=0.1, weight_decay=wd)),
    "sgd-momentum": (lambda wd: O.SGD(lr=0.05, momentum=0.9, weight_decay=wd),
                     lambda p, g, s, E, wd: ref.sgd_step(p, g, s, lr=0.05, momentum=0.9,
                                                         weight_decay=wd)),
    "nesterov": (lambda wd: O.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=wd),
                 lambda p, g, s, E, wd: ref.sgd_step(p, g, s, lr=0.05, momentum=0.9,
                                                     nesterov=True, weight_decay=wd)),
    "adam": (lambda wd: O.Adam(lr=0.01, weight_decay=wd),
             lambda p, g, s, E, wd: ref.adam_step(p, g, s, lr=0.01, weight_decay=wd)),
    "adamw": (lambda wd: O.AdamW(lr=0.01, weight_decay=wd),
              lambda p, g, s, E, wd: ref.adamw_step(p, g, s, lr=0.01, weight_decay=wd)),
    "rmsprop": (lambda wd: O.RMSprop(lr=0.005, momentum=0.5, weight_decay=wd),
                lambda p, g, s, E, wd: ref.rmsprop_step(p, g, s, lr=0.005, momentum=0.5,
                                                        weight_decay=wd)),
    "rprop": (lambda wd: O.Rprop(lr=0.05, weight_decay=wd),
              lambda p, g, s, E, wd: ref.rprop_step(p, g, s, lr=0.05, weight_decay=wd)),
    "quickprop": (lambda wd: O.Quickprop(lr=0.05, weight_decay=wd),
                  lambda p, g, s, E, wd: ref.quickprop_step(p, g, s, lr=0.05, weight_decay=wd)),
}


def simulate(net, X, Y, loss, step, epochs, batch_size, wd, l1=0.0, l1_mask=1.0,
             clip_value=None, clip_norm=None, max_norm=None):
    """The reference run: gradient + l1*sign(p), clipped by value then by norm, the
    optimizer's step (with its decay), then max-norm on each W."""
    p = net.parameters.astype(np.float64).copy()
    state = {}
    for _ in range(epochs):
        for idx in ref_batches(X.shape[0], batch_size):
            E, g = ref_grad(p, net, X[idx], Y[idx], loss)
            g = g + l1 * l1_mask * np.sign(p)
            if clip_value is not None:
                g = ref.clip_value(g, clip_value)
            if clip_norm is not None:
                g = ref.clip_norm(g, clip_norm)
            step(p, g, state, E, wd)
            if max_norm is not None:
                for W in unflatten(p, net.layer_sizes)[0]:
                    W[...] = ref.max_norm(W, max_norm)
    return p


def run(net, X, Y, loss, opt, epochs, batch_size, n_threads=1, **kw):
    tr = fastbp.Trainer(net, loss=loss, optimizer=opt, batch_size=batch_size,
                        n_threads=n_threads, **kw)
    tr.fit(X, Y, epochs=epochs, shuffle=False)
    return tr


def batch_of(opt_id):
    return None if opt_id in ("rprop", "quickprop") else 6


@pytest.mark.parametrize("decay_biases", [False, True])
@pytest.mark.parametrize("opt_id", list(STEPS))
def test_weight_decay_on_the_weights_only_or_on_everything(opt_id, decay_biases):
    make, step = STEPS[opt_id]
    net, X, Y, loss = problem("ce")
    mask = 1.0 if decay_biases else ref.weight_mask(net.layer_sizes)
    expected = simulate(net, X, Y, loss, step, 3, batch_of(opt_id), 0.05 * mask)
    run(net, X, Y, loss, make(0.05), 3, batch_of(opt_id), decay_biases=decay_biases)
    np.testing.assert_allclose(net.parameters, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opt_id", list(STEPS))
def test_l1_clip_value_clip_norm_and_max_norm_together(opt_id):
    make, step = STEPS[opt_id]
    net, X, Y, loss = problem("mse")
    mask = ref.weight_mask(net.layer_sizes)
    kw = dict(l1=0.01, clip_value=0.2, clip_norm=0.5, max_norm=0.9)
    expected = simulate(net, X, Y, loss, step, 3, batch_of(opt_id), 0.01 * mask,
                        l1_mask=mask, **kw)
    run(net, X, Y, loss, make(0.01), 3, batch_of(opt_id), **kw)
    np.testing.assert_allclose(net.parameters, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("what", [dict(l1=0.02), dict(clip_value=0.05), dict(clip_norm=0.1),
                                  dict(max_norm=0.8), dict(l1=0.01, decay_biases=True)])
def test_each_option_alone_with_sgd_momentum(what):
    """Each on its own (the heavy-ball SGD path that adds gradients into the momentum
    buffer keeps max_norm and the decay split, and leaves it for the others)."""
    make, step = STEPS["sgd-momentum"]
    net, X, Y, loss = problem("ce")
    mask = 1.0 if what.get("decay_biases") else ref.weight_mask(net.layer_sizes)
    kw = {k: v for k, v in what.items() if k != "decay_biases"}
    expected = simulate(net, X, Y, loss, step, 3, 6, 0.02 * mask, l1_mask=mask, **kw)
    run(net, X, Y, loss, make(0.02), 3, 6, **what)
    np.testing.assert_allclose(net.parameters, expected, rtol=1e-10, atol=1e-12)


def test_the_options_really_act():
    """Each option changes the result, and max_norm holds every column to its bound."""
    net0, X, Y, loss = problem("ce")
    base = net0.copy()
    run(base, X, Y, loss, O.SGD(lr=0.5, momentum=0.9), 4, 6)
    for kw in [dict(l1=0.05), dict(clip_value=0.01), dict(clip_norm=0.01), dict(max_norm=0.3)]:
        net = net0.copy()
        run(net, X, Y, loss, O.SGD(lr=0.5, momentum=0.9), 4, 6, **kw)
        assert np.abs(net.parameters - base.parameters).max() > 1e-3, kw
        if "max_norm" in kw:
            for W in net.weights:
                assert (np.sqrt((W * W).sum(axis=0)) <= 0.3 + 1e-12).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_and_shards_agree_with_one_thread(dtype):
    """Sharded batches (small layers at 2 threads) and split updates give one thread's
    result to rounding."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 100)).astype(dtype)
    y = rng.integers(0, 10, 512)
    assert fastbp._engine.batch_shards(fastbp.Network([100, 64, 64, 10]).plan, 128, 2) == 2
    ends = []
    for nt in (1, 2):
        net = fastbp.Network([100, 64, 64, 10], activation="tanh", output="softmax",
                             dtype=dtype, seed=1)
        fastbp.Trainer(net, optimizer="adamw", lr=0.01, batch_size=128, n_threads=nt, seed=0,
                       l1=1e-4, clip_norm=1.0, clip_value=0.5, max_norm=2.0).fit(X, y, epochs=2)
        ends.append(net.parameters.copy())
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(ends[1], ends[0], rtol=0, atol=tol)


def test_adamw_defaults_and_trainer_names():
    assert O.AdamW().weight_decay == 0.01 and O.get("adamw").kind == O.AdamW.kind
    net = fastbp.Network([3, 4, 2], output="softmax", seed=0)
    assert fastbp.Trainer(net, optimizer="adamw").optimizer.weight_decay == 0.01
    assert fastbp.Trainer(net, optimizer="adamw", weight_decay=0.1).optimizer.weight_decay == 0.1
    assert fastbp.Trainer(net, optimizer="adam").optimizer.weight_decay == 0.0


@pytest.mark.parametrize("kw, match", [
    (dict(l1=-1.0), "l1"), (dict(clip_norm=0.0), "clip_norm"), (dict(clip_value=-1), "clip_value"),
    (dict(max_norm=float("nan")), "max_norm"), (dict(clip_norm="big"), "clip_norm")])
def test_bad_options_name_the_argument(kw, match):
    net = fastbp.Network([3, 4, 2], output="softmax", seed=0)
    with pytest.raises((ValueError, TypeError), match=match):
        fastbp.Trainer(net, **kw)


def test_against_torch_adamw_and_clip_grad_norm():
    """AdamW with weight decay, clip_grad_norm_ and clip_grad_value_ as torch does them,
    step for step on the same float64 network and batches."""
    torch = pytest.importorskip("torch")
    net, X, Y, loss = problem("ce", n=24)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 5),
                                torch.nn.Sigmoid(), torch.nn.Linear(5, 3)).double()
    with torch.no_grad():
        for lin, W, b in zip([model[0], model[2], model[4]], net.weights, net.biases):
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
    opt = torch.optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.1)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(Y)
    for _ in range(3):
        for idx in ref_batches(24, 6):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx]).backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), 0.3)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.4)
            opt.step()
    run(net, X, Y, loss, O.AdamW(lr=0.02, weight_decay=0.1), 3, 6, decay_biases=True,
        clip_value=0.3, clip_norm=0.4)
    for lin, W, b in zip([model[0], model[2], model[4]], net.weights, net.biases):
        np.testing.assert_allclose(W, lin.weight.detach().numpy().T, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b, lin.bias.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_checkpoints_keep_the_options(tmp_path):
    net, X, Y, loss = problem("ce")
    tr = fastbp.Trainer(net, loss=loss, optimizer="adamw", l1=0.01, clip_norm=1.0,
                        clip_value=0.5, max_norm=3.0, decay_biases=True, batch_size=6)
    tr.fit(X, Y, epochs=1)
    tr.save_checkpoint(tmp_path / "c.fbpc")
    back = fastbp.Trainer.load_checkpoint(tmp_path / "c.fbpc")
    assert (back.l1, back.clip_norm, back.clip_value, back.max_norm, back.decay_biases) == \
        (0.01, 1.0, 0.5, 3.0, True)
    assert isinstance(back.optimizer, O.AdamW) and back.optimizer.weight_decay == 0.01


def test_class_weight_is_a_per_sample_weight_of_the_class():
    net0, X, Y, loss = problem("ce")        # labels 0..2
    runs = {}
    for key, kw in [("dict", dict(class_weight={0: 2.0, 2: 0.5})),
                    ("sw", dict(sample_weight=np.array([2.0, 1.0, 0.5])[Y])),
                    ("both", dict(class_weight={0: 2.0, 2: 0.5}, sample_weight=np.full(23, 3.0))),
                    ("sw3", dict(sample_weight=3 * np.array([2.0, 1.0, 0.5])[Y])),
                    ("onehot", dict(class_weight={0: 2.0, 2: 0.5}))]:
        net = net0.copy()
        tr = fastbp.Trainer(net, loss=loss, batch_size=5, seed=0, n_threads=1)
        tr.fit(X, np.eye(3)[Y] if key == "onehot" else Y, epochs=2, **kw)
        runs[key] = net.parameters
    np.testing.assert_array_equal(runs["dict"], runs["sw"])
    np.testing.assert_array_equal(runs["both"], runs["sw3"])
    np.testing.assert_allclose(runs["onehot"], runs["dict"], rtol=1e-12)


def test_balanced_class_weight_as_scikit_learn():
    sk = pytest.importorskip("sklearn.utils.class_weight")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = np.repeat([0, 1, 2], [40, 15, 5])
    w = sk.compute_class_weight("balanced", classes=np.arange(3), y=y)
    a = fastbp.Network([4, 3], output="softmax", dtype="float64", seed=0)
    b = a.copy()
    fastbp.Trainer(a, batch_size=8, seed=0).fit(X, y, epochs=2, class_weight="balanced")
    fastbp.Trainer(b, batch_size=8, seed=0).fit(X, y, epochs=2, sample_weight=w[y])
    np.testing.assert_allclose(a.parameters, b.parameters, rtol=1e-13)
    bce = fastbp.Network([4, 1], output="sigmoid", dtype="float64", seed=0)
    yb = (y == 2).astype(float)
    wb = sk.compute_class_weight("balanced", classes=np.arange(2), y=yb.astype(int))
    c = bce.copy()
    fastbp.Trainer(bce, batch_size=8, seed=0).fit(X, yb, epochs=2, class_weight="balanced")
    fastbp.Trainer(c, batch_size=8, seed=0).fit(X, yb, epochs=2, sample_weight=wb[yb.astype(int)])
    np.testing.assert_allclose(bce.parameters, c.parameters, rtol=1e-13)


@pytest.mark.parametrize("cw, err, match", [
    ({3: 1.0}, ValueError, "class_weight names class 3"), ({-1: 1.0}, ValueError, "class_weight"),
    ({0: -2.0}, ValueError, r"class_weight\[0\]"), ("even", ValueError, "class_weight"),
    ([1, 2, 3], TypeError, "class_weight")])
def test_bad_class_weights_name_the_argument(cw, err, match):
    net, X, Y, loss = problem("ce")
    with pytest.raises(err, match=match):
        fastbp.Trainer(net, loss=loss).fit(X, Y, epochs=1, class_weight=cw)
    net, X, Y, loss = problem("mse")
    with pytest.raises(ValueError, match="class_weight needs a classification loss"):
        fastbp.Trainer(net, loss=loss).fit(X, Y, epochs=1, class_weight="balanced")


def test_hidden_activations_are_the_forward_pass_up_to_a_layer():
    net = fastbp.Network([4, 6, 5, 3], activation=["tanh", "relu"], output="softmax",
                         dtype="float64", seed=0, batch_norm=[False, True], dropout=0.3)
    net.running_means[1][...] = 0.1
    X = np.random.default_rng(0).normal(size=(9, 4))
    h1 = np.tanh(X @ net.weights[0] + net.biases[0])
    a2 = h1 @ net.weights[1] + net.biases[1]
    h2 = np.maximum(net.gammas[1] * (a2 - 0.1) / np.sqrt(net.running_vars[1] + 1e-5)
                    + net.betas[1], 0)
    np.testing.assert_allclose(net.hidden_activations(X, 1), h1, rtol=1e-13)
    np.testing.assert_allclose(net.hidden_activations(X, -1), h2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(net.hidden_activations(X, 2, chunk_size=2), h2, rtol=1e-12,
                               atol=1e-15)
    for bad in (0, 3, -3, 1.5):
        with pytest.raises(ValueError, match="layer"):
            net.hidden_activations(X, bad)
