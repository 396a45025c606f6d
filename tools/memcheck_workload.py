"""A small workload that drives every compiled kernel, for running under valgrind/ASan.

Used by tools/memcheck.sh; it checks nothing itself (the memory checker does).
"""
import numpy as np

import fastbp

rng = np.random.default_rng(0)
acts = ["identity", "sigmoid", "tanh", "lecun_tanh", "relu", "leaky_relu", "elu", "softplus",
        "softsign", "silu", "gelu"]
for dtype in ["float32", "float64"]:
    for i, act in enumerate(acts):
        sizes = [5 + i, 7, 3 + i % 3, 4]
        for out, loss, y in [("softmax", "cross_entropy", rng.integers(0, 4, 13)),
                             ("sigmoid", "binary_cross_entropy", rng.uniform(size=(13, 4))),
                             ("identity", "mse", rng.normal(size=(13, 4)))]:
            net = fastbp.Network(sizes, activation=act, output=out, dtype=dtype, seed=i)
            X = rng.normal(size=(13, sizes[0]))
            net.predict(X, chunk_size=5)
            net.loss_and_gradients(X, y, loss=loss, chunk_size=4)
            net.loss_and_gradients(X, y, loss=loss, inputs=False, sample_weight=np.ones(13), l2=0.1)
    for opt in ["sgd", "adam", "rmsprop", "rprop", "quickprop"]:
        net = fastbp.Network([6, 40, 30, 3], activation="tanh", output="softmax", dtype=dtype, seed=1)
        X = rng.normal(size=(57, 6))
        y = rng.integers(0, 3, 57)
        for bs in [None, 8, 57, 100]:
            fastbp.Trainer(net, optimizer=opt, batch_size=bs, seed=0).fit(
                X, y, epochs=2, shuffle=bs != 57, validation_data=(X, y))
    big = fastbp.Network([300, 400, 10], activation="relu", output="softmax", dtype=dtype, seed=2)
    Xb = rng.normal(size=(256, 300))
    with fastbp.num_threads(2):
        big.predict(Xb)
        big.loss_and_gradients(Xb, rng.integers(0, 10, 256), loss="cross_entropy")
        fastbp.Trainer(big, batch_size=128, n_threads=2).fit(Xb, rng.integers(0, 10, 256), epochs=1)
print("workload done")
