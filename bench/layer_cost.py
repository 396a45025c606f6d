#!/usr/bin/env python3
"""What dropout and batch norm cost over the bare network, measured interleaved.

    python bench/layer_cost.py                   # writes bench/results/layer_cost.md
    python bench/layer_cost.py --rounds 20 --threads 1 2

W1 (784-512-512-10 ReLU, softmax-CE, batch 128, SGD momentum), W1D (dropout 0.2 on both
hidden layers' outputs) and W1B (batch norm on both hidden layers) train in one process, one
epoch each in turn, round after round: a noisy neighbour slows all three alike, and the cost
is the median over rounds of each round's own time ratio to W1. bench/run.py measures the
same workloads one cell per process beside PyTorch; on this shared 2-core machine its
2-thread cells swing by 1.5x between processes, too much to read a 10% cost from.
"""
import argparse
import os
import platform
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = [("W1", {}), ("W1D", {"dropout": 0.2}), ("W1B", {"batch_norm": True})]


def measure(threads, rounds, n=16384):
    import fastbp
    rng = np.random.default_rng(0)
    X = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n)
    trainers = {}
    for name, extra in VARIANTS:
        net = fastbp.Network([784, 512, 512, 10], activation="relu", output="softmax",
                             seed=0, **extra)
        trainers[name] = fastbp.Trainer(net, loss="cross_entropy", optimizer="sgd", lr=0.01,
                                        momentum=0.9, batch_size=128, n_threads=threads,
                                        seed=0)
        trainers[name].fit(X, y, epochs=1)   # warm-up
    times = {name: [] for name in trainers}
    for _ in range(rounds):
        for name, tr in trainers.items():
            t0 = time.perf_counter()
            tr.fit(X, y, epochs=1)
            times[name].append(time.perf_counter() - t0)
    base = np.array(times["W1"])
    return {name: dict(samples_per_s=n / float(np.median(t)),
                       cost=float(np.median(np.array(t) / base)) - 1.0,
                       ratios=list(np.array(t) / base))
            for name, t in times.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", default=os.path.join(HERE, "results", "layer_cost.md"))
    a = p.parse_args()
    import fastbp
    lines = ["# What dropout and batch norm cost", "",
             f"`python bench/layer_cost.py --rounds {a.rounds}` on {platform.machine()} "
             f"({os.cpu_count()} logical CPUs), fastbp {fastbp.__version__}. One epoch of "
             "16,384 samples per variant per round, the variants interleaved; cost = median "
             "over rounds of (epoch time / W1's epoch time in the same round) - 1.", "",
             "| threads | variant | samples/s (median) | cost over W1 | rounds' ratios (min-max) |",
             "|---:|---|---:|---:|---|"]
    for nt in a.threads:
        res = measure(nt, a.rounds)
        for name, r in res.items():
            lo, hi = min(r["ratios"]), max(r["ratios"])
            lines.append(f"| {nt} | {name} | {r['samples_per_s']:,.0f} | "
                         f"{100 * r['cost']:+.1f}% | {lo:.3f}-{hi:.3f} |")
            print(lines[-1], flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
