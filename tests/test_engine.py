"""The boundary between Python and the compiled loop: Plan, Workspace, Samples,
OptimizerConfig/OptimizerState and TrainState check what they are given and keep their
own invariants."""
import pickle

import numpy as np
import pytest

import fastbp
from fastbp import _engine, _kernels, _optim, optimizers as O


def layers(*sizes, act=_kernels.Act.TANH):
    return [{"n_in": a, "n_out": b, "activation": int(act)} for a, b in zip(sizes[:-1], sizes[1:])]


def test_plan_reads_named_layer_options_and_rejects_unknown_ones():
    plan = _engine.Plan(layers(3, 5, 2))
    assert plan.layer_sizes == (3, 5, 2) and plan.n_params == 3 * 5 + 5 + 5 * 2 + 2
    bad = layers(3, 5, 2)
    bad[1]["spectral_norm"] = True
    with pytest.raises(ValueError, match="layer 1: unknown option.*spectral_norm"):
        _engine.Plan(bad)
    with pytest.raises(ValueError, match="layer 1: n_in 4"):
        _engine.Plan(layers(3, 5) + layers(4, 2))
    with pytest.raises(ValueError, match="at least one layer"):
        _engine.Plan([])


def test_samples_take_targets_or_labels_and_check_their_shapes():
    X = np.zeros((4, 3))
    with pytest.raises(ValueError, match="either targets or labels"):
        _engine.Samples(X)
    with pytest.raises(ValueError, match="either targets or labels"):
        _engine.Samples(X, targets=np.zeros((4, 2)), labels=np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="targets"):
        _engine.Samples(X, targets=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="targets"):
        _engine.Samples(X, targets=np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="labels"):
        _engine.Samples(X, labels=np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="sample_weight"):
        _engine.Samples(X, labels=np.zeros(4, np.int64), sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="X must be"):
        _engine.Samples(np.zeros((4, 3), order="F")[:, :2], labels=np.zeros(4, np.int64))
    s = _engine.Samples(X, labels=np.zeros(4, np.int64))
    assert s.targets is None and s.sample_weight is None and s.input_bound == -1


def test_optimizer_config_takes_named_settings_only():
    cfg = _optim.OptimizerConfig(kind=int(_optim.Opt.SGD), lr=0.1, momentum=0.9)
    assert cfg.kind == _optim.Opt.SGD and cfg.lr == 0.1 and cfg.accumulates_momentum
    with pytest.raises(TypeError):
        _optim.OptimizerConfig(kind=0, lr=0.1, momentun=0.9)      # a typo is an error
    assert not O.SGD(momentum=0.9, nesterov=True).config().accumulates_momentum


def test_optimizer_state_has_named_buffers_and_pickles():
    opt = O.Adam()
    opt.reset(7, np.float32)
    assert opt.state.names == ("exp_avg", "exp_avg_sq") and opt.t == 0
    opt.state["exp_avg"][:] = np.arange(7)
    opt.t = 5
    back = pickle.loads(pickle.dumps(opt))
    assert back.t == 5 and back.state.dtype == np.float32
    np.testing.assert_array_equal(back.state["exp_avg"], np.arange(7))
    back.state.reset()
    assert back.t == 0 and not back.state["exp_avg"].any() and opt.state["exp_avg"].any()
    with pytest.raises(ValueError, match="unknown optimizer buffer"):
        _optim.OptimizerState(["velocity"], 3, np.float64)
    # settings that need other buffers give a fresh state
    sgd = O.SGD(momentum=0.0)
    sgd.ensure_state(7, np.float64)
    assert sgd.state.names == ()
    sgd.momentum = 0.9
    sgd.ensure_state(7, np.float64)
    assert sgd.state.names == ("momentum_buffer",)


def _state(net, opt, bs=4, **kw):
    ws = _engine.Workspace(net.plan, bs, net.dtype, "train")
    opt.ensure_state(net.plan.n_params, net.dtype)
    return _engine.TrainState(net.plan, net.parameters, ws, opt.config(), opt.state, 0,
                              batch_size=bs, **kw)


def test_train_state_checks_what_it_is_given():
    net = fastbp.Network([3, 4, 2], dtype="float64", seed=0)
    with pytest.raises(ValueError, match="lacks the buffer"):
        sgd = O.SGD(momentum=0.9)
        sgd.ensure_state(net.plan.n_params, net.dtype)
        adam = O.Adam()
        ws = _engine.Workspace(net.plan, 4, net.dtype, "train")
        _engine.TrainState(net.plan, net.parameters, ws, adam.config(), sgd.state, 0,
                           batch_size=4)
    with pytest.raises(ValueError, match="kind 'train'"):
        ws = _engine.Workspace(net.plan, 4, net.dtype, "gradients")
        _engine.TrainState(net.plan, net.parameters, ws, O.SGD().config(), O.SGD().state
                           or _optim.OptimizerState((), net.plan.n_params, net.dtype), 0,
                           batch_size=4)
    with pytest.raises(ValueError, match="batch_size"):
        _state(net, O.SGD(), bs=4).__class__(
            net.plan, net.parameters, _engine.Workspace(net.plan, 4, net.dtype, "train"),
            O.SGD().config(), _optim.OptimizerState((), net.plan.n_params, net.dtype), 0,
            batch_size=5)
    with pytest.raises(ValueError, match="another plan"):
        other = fastbp.Network([3, 4, 2], dtype="float64", seed=0)
        ws = _engine.Workspace(other.plan, 4, net.dtype, "train")
        _engine.TrainState(net.plan, net.parameters, ws, O.SGD().config(),
                           _optim.OptimizerState((), net.plan.n_params, net.dtype), 0,
                           batch_size=4)
    state = _state(net, O.SGD())
    data32 = _engine.Samples(np.zeros((8, 3), np.float32), targets=np.zeros((8, 2), np.float32))
    with pytest.raises(ValueError, match="float32"):
        _engine.train_batches(state, data32, 0, 1)
    data = _engine.Samples(np.zeros((8, 3)), targets=np.zeros((8, 2)))
    state.begin_epoch(data, 0.1, shuffle=True)
    with pytest.raises(ValueError, match="other samples"):
        _engine.train_batches(state, _engine.Samples(np.zeros((9, 3)),
                                                     targets=np.zeros((9, 2))), 0, 1)


def test_train_batches_keeps_the_epoch_sums_and_the_step_count():
    rng = np.random.default_rng(0)
    net = fastbp.Network([3, 4, 2], dtype="float64", seed=0)
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    opt = O.SGD(lr=0.01)
    state = _state(net, opt, bs=4)
    data = _engine.Samples(X, targets=Y)
    state.begin_epoch(data, 0.01, shuffle=False)
    first = _engine.train_batches(state, data, 0, 2)
    assert (first.steps, first.samples, first.status, first.failed_batch) == (2, 8, 0, -1)
    rest = _engine.train_batches(state, data, 2, 5)      # batches past the end: none
    assert (rest.steps, rest.samples) == (1, 2)
    assert state.samples == 10 and state.weight_sum == 10 and opt.t == 3
    state.begin_epoch(data, 0.01, shuffle=False)
    assert state.samples == 0 and state.loss_sum == 0


def test_a_fit_on_one_thread_leaves_no_thread_cap_behind():
    """run_threads caps only the calls of its TrainState: after a fit whose thread policy
    chose one thread, this Python thread's parallel regions may use every thread again."""
    if not _engine.openmp_enabled():
        pytest.skip("serial build")
    default = _kernels.thread_cap_now()
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(400, 20)), rng.integers(0, 3, 400)
    net = fastbp.Network([20, 64, 3], output="softmax", seed=1)
    tr = fastbp.Trainer(net, batch_size=8, n_threads=2, seed=0)
    tr._threads_policy.count, tr._threads_policy.best = 2, 1   # chunks after the first: 1 thread
    seen = []
    real = _engine.train_batches

    def spy(state, data, first, last):
        seen.append(state.run_threads)
        return real(state, data, first, last)

    _engine.train_batches = spy
    try:
        tr.fit(X, y, epochs=2)
    finally:
        _engine.train_batches = real
    assert 1 in seen and _kernels.thread_cap_now() == default >= 2
