#!/usr/bin/env python3
"""Inference beside the serving anchors: fastbp's ``net.predict`` against onnxruntime on
the exported model (``fastbp.export.to_onnx``) and against PyTorch (``net.to_torch()``,
``torch.no_grad()``), batch 1, 32 and 1024, W1 and W2 shapes, all in one run.

    python bench/serving.py                       # 1 thread; writes bench/results/serving.md
    python bench/serving.py --threads 1,2 --out /tmp/serving.md

Each system is warmed up, then timed call by call; batch 1 reports the latency
percentiles p50 and p99 of single calls, every batch size the throughput (samples/s) of
the median call. The systems alternate in rounds, so drifts of a shared machine spread
over all of them. Each (threads) setting runs in its own process, with the thread limits
set before the libraries load (OMP/MKL/OPENBLAS variables, torch.set_num_threads,
onnxruntime's intra-op threads).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = {"W1": [784, 512, 512, 10], "W2": [64, 64, 10]}
ACTS = {"W1": "relu", "W2": "tanh"}
BATCHES = (1, 32, 1024)


def measure(threads, rounds, calls):
    import fastbp
    import onnxruntime as ort
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    fastbp.set_num_threads(threads)
    results = {}
    rng = np.random.default_rng(0)
    for wl, sizes in SHAPES.items():
        net = fastbp.Network(sizes, activation=ACTS[wl], output="softmax", seed=0)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(fastbp.export.to_onnx(net).SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        module = net.to_torch() if torch is not None else None
        for b in BATCHES:
            X = rng.standard_normal((b, sizes[0])).astype(np.float32)
            Xt = torch.from_numpy(X) if torch is not None else None
            systems = {"fastbp": lambda: net.predict(X),
                       "onnxruntime": lambda: sess.run(["Y"], {"X": X})}
            if module is not None:
                def run_torch():
                    with torch.no_grad():
                        return module(Xt)
                systems["torch"] = run_torch
            ref = net.predict(X)
            assert np.allclose(sess.run(["Y"], {"X": X})[0], ref, atol=1e-5)
            n = max(20, calls // b)
            times = {s: [] for s in systems}
            for r in range(rounds):
                order = list(systems)[r % len(systems):] + list(systems)[:r % len(systems)]
                for s in order:
                    f = systems[s]
                    for _ in range(max(5, n // 10)):
                        f()
                    for _ in range(n):
                        t = time.perf_counter()
                        f()
                        times[s].append(time.perf_counter() - t)
            for s, ts in times.items():
                ts = np.array(ts)
                results[f"{wl}|{b}|{s}"] = dict(p50_us=float(np.median(ts) * 1e6),
                                                 p99_us=float(np.percentile(ts, 99) * 1e6),
                                                 samples_per_s=float(b / np.median(ts)))
    return results


def child(threads, rounds, calls):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    out = subprocess.run([sys.executable, __file__, "--child", str(threads), "--rounds",
                          str(rounds), "--calls", str(calls)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(all_results, args, seconds):
    import fastbp
    lines = ["# Inference beside the serving anchors", "",
             f"`python bench/serving.py --threads {args.threads} --rounds {args.rounds}` "
             f"on {platform.machine()} ({os.cpu_count()} logical CPUs), fastbp "
             f"{fastbp.__version__}, {seconds:.0f} s. Networks as W1 / W2 (random weights, "
             "softmax output), float32; onnxruntime runs `fastbp.export.to_onnx(net)`, "
             "PyTorch `net.to_torch()` under `torch.no_grad()`.", ""]
    for threads, res in all_results.items():
        lines += [f"## {threads} thread(s)", "",
                  "| workload | batch | system | p50 latency (us) | p99 latency (us) | "
                  "samples/s | fastbp latency / this |", "|---|---:|---|---:|---:|---:|---:|"]
        for key, r in res.items():
            wl, b, s = key.split("|")
            fb = res[f"{wl}|{b}|fastbp"]["p50_us"]
            lines.append(f"| {wl} | {b} | {s} | {r['p50_us']:,.1f} | {r['p99_us']:,.1f} | "
                         f"{r['samples_per_s']:,.0f} | {fb / r['p50_us']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=4000, help="rows per system and round")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "serving.md"))
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.rounds, args.calls)))
        return
    t0 = time.perf_counter()
    res = {int(t): child(int(t), args.rounds, args.calls) for t in args.threads.split(",")}
    text = report(res, args, time.perf_counter() - t0)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(res, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
