#!/usr/bin/env python3
"""train_many against training the same networks one after another.

    python bench/many.py                        # writes bench/results/many.md
    python bench/many.py --networks 8 --threads 2 --rounds 5

K W2-shaped networks (64-H-10 tanh, softmax, batch 32; H, seed and optimizer vary per
network) on one shared data set: once one after another (each ``Trainer(n_threads=1)``),
once by ``fastbp.train_many(..., n_threads=threads)``; the two alternate in rounds, the
speed-up is the median of the rounds' own ratios. Every round also checks that each
network got the same parameters both ways.
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def configs(k):
    opts = [("sgd", 0.05), ("adam", 0.002), ("rmsprop", 0.001), ("sgd", 0.1)]
    return [{"layer_sizes": [64, (64, 48, 80, 64)[i % 4], 10], "activation": "tanh",
             "output": "softmax", "seed": i, "optimizer": opts[i % 4][0], "lr": opts[i % 4][1],
             "batch_size": 32, **({"momentum": 0.9} if opts[i % 4][0] == "sgd" else {})}
            for i in range(k)]


def sequential(cfgs, X, y, epochs):
    import fastbp
    from fastbp.many import NETWORK_KEYS
    out = []
    for c in cfgs:
        net = fastbp.Network(**{k: v for k, v in c.items() if k in NETWORK_KEYS})
        tr = fastbp.Trainer(net, n_threads=1, **{k: v for k, v in c.items()
                                                  if k not in NETWORK_KEYS or k == "seed"})
        tr.fit(X, y, epochs=epochs)
        out.append(net.parameters)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=32768)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "many.md"))
    args = ap.parse_args()
    import fastbp
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.samples, 64), dtype=np.float32)
    y = rng.integers(0, 10, args.samples)
    cfgs = configs(args.networks)
    total = args.networks * args.samples * args.epochs
    seq, many, same = [], [], True
    for r in range(args.rounds + 1):                           # round 0: warm-up
        t0 = time.perf_counter()
        a = sequential(cfgs, X, y, args.epochs)
        t1 = time.perf_counter()
        b = [net.parameters for net, _ in fastbp.train_many(cfgs, X, y, epochs=args.epochs,
                                                             n_threads=args.threads)]
        t2 = time.perf_counter()
        same &= all(np.array_equal(p, q) for p, q in zip(a, b))
        if r:
            seq.append(total / (t1 - t0))
            many.append(total / (t2 - t1))
    ratio = np.array(many) / np.array(seq)
    lines = ["# Many small networks on one machine", "",
             f"`python bench/many.py {' '.join(sys.argv[1:])}`".replace(" `", "`") +
             f" on {platform.machine()} ({os.cpu_count()} logical CPUs), fastbp "
             f"{fastbp.__version__}. {args.networks} networks 64-H-10 tanh (H 48-80), "
             f"SGD momentum / Adam / RMSprop, batch 32, {args.samples:,} samples, "
             f"{args.epochs} epochs each; {args.rounds} rounds after a warm-up round.", "",
             "| way | samples/s, all networks (median) | per round |", "|---|---:|---|",
             f"| one after another, 1 thread each | {np.median(seq):,.0f} | "
             + ", ".join(f"{v:,.0f}" for v in seq) + " |",
             f"| `train_many(n_threads={args.threads})` | {np.median(many):,.0f} | "
             + ", ".join(f"{v:,.0f}" for v in many) + " |", "",
             f"Speed-up (median of the rounds' ratios): **{np.median(ratio):.2f}x** "
             f"(rounds: {', '.join(f'{v:.2f}' for v in ratio)}). Same parameters both ways, "
             f"bit for bit, in every round: **{'yes' if same else 'NO'}**."]
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
