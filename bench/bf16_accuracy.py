#!/usr/bin/env python3
"""Test accuracy of bfloat16 mixed-precision training against float32, same seeds.

    python bench/bf16_accuracy.py            # ~2 minutes; writes bench/results/bf16_accuracy.md
    python bench/bf16_accuracy.py --seeds 5

Two tasks, each trained from the same initial weights and batch order in float32 and with
``Trainer(precision="bf16")``, for each seed:

* digits (scikit-learn's 8x8 UCI digits, 1797 x 64, 10 classes, standardized, stratified
  75/25 split per seed): 64-256-256-10 ReLU, softmax-CE, Adam lr 1e-3, batch 32, 40 epochs;
* W1-shaped synthetic (``make_classification``: 20,000 x 784, 60 informative features,
  10 classes, 5% label noise; 80/20 split): W1's 784-512-512-10 ReLU, SGD momentum 0.9,
  lr 0.01, batch 128, 8 epochs.

Reports each seed's test accuracy, the mean over seeds and the difference bf16 - float32 in
percentage points.
"""
import argparse
import os
import platform
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def digits(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    sc = StandardScaler().fit(Xtr)
    return (sc.transform(Xtr).astype(np.float32), ytr, sc.transform(Xte).astype(np.float32),
            yte)


def synthetic(seed):
    from sklearn.datasets import make_classification
    X, y = make_classification(n_samples=20000, n_features=784, n_informative=60,
                               n_redundant=20, n_classes=10, n_clusters_per_class=2,
                               flip_y=0.05, class_sep=1.5, random_state=seed)
    X = X.astype(np.float32)
    return X[:16000], y[:16000], X[16000:], y[16000:]


TASKS = {
    "digits": dict(data=digits, sizes=[64, 256, 256, 10], optimizer="adam", lr=1e-3,
                   batch_size=32, epochs=40, label="digits 64-256-256-10, Adam, 40 epochs"),
    "W1-synthetic": dict(data=synthetic, sizes=[784, 512, 512, 10], optimizer="sgd", lr=0.01,
                         momentum=0.9, batch_size=128, epochs=8,
                         label="W1-shaped synthetic 784-512-512-10, SGD momentum, 8 epochs"),
}


def train(task, seed, precision, threads):
    import fastbp
    t = TASKS[task]
    Xtr, ytr, Xte, yte = t["data"](seed)
    net = fastbp.Network(t["sizes"], activation="relu", output="softmax", seed=seed)
    kw = {"momentum": t["momentum"]} if "momentum" in t else {}
    tr = fastbp.Trainer(net, optimizer=t["optimizer"], lr=t["lr"], batch_size=t["batch_size"],
                        n_threads=threads, seed=seed, precision=precision, **kw)
    t0 = time.perf_counter()
    tr.fit(Xtr, ytr, epochs=t["epochs"])
    return float(np.mean(net.predict(Xte).argmax(axis=1) == yte)), time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=os.path.join(HERE, "results", "bf16_accuracy.md"))
    a = p.parse_args()
    import fastbp
    from fastbp import _bf16
    lines = ["# bfloat16 training: test accuracy against float32", "",
             f"`python bench/bf16_accuracy.py --seeds {a.seeds}` on {platform.machine()} "
             f"({os.cpu_count()} logical CPUs), fastbp {fastbp.__version__}, bf16 products: "
             f"`{_bf16.bf16_capability()}`, {a.threads} threads. Same initial weights and "
             "batch order for both precisions in each seed.", "",
             "| task | seed | float32 test accuracy | bf16 test accuracy | bf16 - float32 (pp) "
             "| float32 fit s | bf16 fit s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    summary = []
    for task in TASKS:
        accs = {"float32": [], "bf16": []}
        for seed in range(a.seeds):
            row = {}
            for prec in ("float32", "bf16"):
                acc, secs = train(task, seed, prec, a.threads)
                accs[prec].append(acc)
                row[prec] = (acc, secs)
            lines.append(f"| {task} | {seed} | {100 * row['float32'][0]:.2f}% | "
                         f"{100 * row['bf16'][0]:.2f}% | "
                         f"{100 * (row['bf16'][0] - row['float32'][0]):+.2f} | "
                         f"{row['float32'][1]:.1f} | {row['bf16'][1]:.1f} |")
            print(lines[-1], flush=True)
        m32, m16 = np.mean(accs["float32"]), np.mean(accs["bf16"])
        summary.append(f"| {TASKS[task]['label']} | {100 * m32:.2f}% | {100 * m16:.2f}% | "
                       f"{100 * (m16 - m32):+.2f} |")
    lines += ["", f"Means over {a.seeds} seeds:", "",
              "| task | float32 | bf16 | bf16 - float32 (pp) |", "|---|---:|---:|---:|"]
    lines += summary
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[-len(summary) - 2:]))
    print("wrote", a.out)


if __name__ == "__main__":
    main()
