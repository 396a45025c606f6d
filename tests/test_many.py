"""train_many: K networks side by side, one thread each, each exactly as trained alone."""
import numpy as np
import pytest

import fastbp


def data(n=400, d=16, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, k, n)


def test_each_network_gets_the_parameters_it_gets_alone():
    X, y = data()
    configs = [{"layer_sizes": [16, h, 4], "activation": act, "output": "softmax", "seed": s,
                "optimizer": opt, "lr": lr, "batch_size": 16, "dtype": dt}
               for s, (h, act, opt, lr, dt) in enumerate([
                   (32, "relu", "sgd", 0.05, "float32"), (8, "tanh", "adam", 0.01, "float64"),
                   (24, "gelu", "adamw", 0.01, "float32"), (16, "relu", "rmsprop", 0.001,
                                                           "float32")])]
    configs[0]["momentum"] = 0.9
    configs[2]["dropout"] = 0.2
    configs[3]["batch_norm"] = True
    results = fastbp.train_many(configs, X, y, epochs=3, n_threads=2)
    assert len(results) == 4
    for cfg, (net, hist) in zip(configs, results):
        alone = fastbp.Network(cfg["layer_sizes"], activation=cfg["activation"],
                               output="softmax", seed=cfg["seed"], dtype=cfg["dtype"],
                               dropout=cfg.get("dropout", 0.0),
                               batch_norm=cfg.get("batch_norm", False))
        tr = fastbp.Trainer(alone, optimizer=cfg["optimizer"], lr=cfg["lr"], batch_size=16,
                            seed=cfg["seed"], n_threads=1, momentum=cfg.get("momentum", 0.0))
        h = tr.fit(X, y, epochs=3)
        np.testing.assert_array_equal(net.parameters, alone.parameters)
        np.testing.assert_array_equal(net.running_stats, alone.running_stats)
        assert hist.loss == h.loss


def test_fit_arguments_per_config_and_errors():
    X, y = data(n=100)
    res = fastbp.train_many([{"layer_sizes": [16, 4], "output": "softmax", "epochs": 2},
                             {"layer_sizes": [16, 4], "output": "softmax"}], X, y, epochs=1,
                            validation_data=(X[:20], y[:20]))
    assert [len(h) for _, h in res] == [2, 1] and len(res[0][1].val_loss) == 2
    with pytest.raises(ValueError, match="unknown key"):
        fastbp.train_many([{"layer_sizes": [16, 4], "hidden": 3}], X, y)
    with pytest.raises(ValueError, match="layer_sizes"):
        fastbp.train_many([{"seed": 1}], X, y)
    with pytest.raises(RuntimeError, match=r"configs\[1\] failed"):
        fastbp.train_many([{"layer_sizes": [16, 4], "output": "softmax"},
                           {"layer_sizes": [16, 4], "output": "softmax", "lr": -1.0}], X, y)
    assert fastbp.train_many([], X, y) == []
