#!/usr/bin/env python3
"""Data larger than memory, measured.

1. Out of memory: a W1-shaped data set (784 float32 features, 10 classes) written as
   ``.npy`` chunk files totalling ``--factor`` times the address space a training process
   may use (``RLIMIT_AS``, as ``ulimit -v``), trained one epoch from
   ``ChunkedDataset.from_npy`` in a process held to that limit; the same process first
   shows that loading the data whole fails there. Reports the peak RSS beside the bound.
2. Throughput: W1 trained from an in-memory array, from a page-cached ``np.memmap`` of the
   same ``.npy`` file (given to ``fit`` whole) and from a ``ChunkedDataset`` over chunk files,
   epochs alternating between the three, medians; the ratios to in-memory.

    python bench/streaming.py                  # writes bench/results/streaming.md
    python bench/streaming.py --limit-mb 1024 --factor 4.5 --threads 2
"""
import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
D, K = 784, 10
SIZES = [D, 512, 512, K]


def write_chunks(folder, n_rows, chunk_rows, seed=0):
    """n_rows of a learnable 10-class problem, as X_i.npy / y_i.npy chunk files."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(K, D)).astype(np.float32)
    xs, ys, done, i = [], [], 0, 0
    while done < n_rows:
        m = min(chunk_rows, n_rows - done)
        y = rng.integers(0, K, m)
        X = centers[y] * 0.1 + rng.standard_normal((m, D), dtype=np.float32)
        xp, yp = os.path.join(folder, f"X_{i:05d}.npy"), os.path.join(folder, f"y_{i:05d}.npy")
        np.save(xp, X)
        np.save(yp, y)
        xs.append(xp)
        ys.append(yp)
        done, i = done + m, i + 1
    return xs, ys


LIMITED = r"""
import json, resource, sys, time, numpy as np
limit = int(sys.argv[1]); threads = int(sys.argv[2]); shuffle_buffer = int(sys.argv[3])
xs, ys = json.load(open(sys.argv[4]))
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import fastbp
from fastbp.data import ChunkedDataset
if sys.argv[5] == "whole":                                 # the data set in memory
    try:
        X = np.concatenate([np.load(p) for p in xs])
        print(json.dumps(f"loaded {X.nbytes / 2**20:.0f} MiB (the limit did not hold)"))
    except MemoryError:
        print(json.dumps("MemoryError"))
    sys.exit()
ds = ChunkedDataset.from_npy(xs, ys)
net = fastbp.Network([784, 512, 512, 10], activation="relu", output="softmax", seed=0)
tr = fastbp.Trainer(net, optimizer="sgd", lr=0.05, momentum=0.9, batch_size=128, seed=0,
                    n_threads=threads)
t0 = time.perf_counter()
h = tr.fit(ds, epochs=1, shuffle_buffer=shuffle_buffer, verbose=1)
wall = time.perf_counter() - t0
status = {l.split(":")[0]: int(l.split()[1]) for l in open("/proc/self/status")
          if l.startswith(("VmPeak", "VmHWM"))}
print(json.dumps({"samples": ds.n_samples, "wall_s": wall,
                  "samples_per_second": ds.n_samples / wall, "loss": h.loss[0],
                  "accuracy": h.accuracy[0],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "vm_peak_mb": status["VmPeak"] / 1024}))
"""


def out_of_memory(args, folder):
    limit = args.limit_mb * 2**20
    chunk_rows = args.chunk_rows
    n_rows = int(args.factor * limit / (D * 4))
    t0 = time.perf_counter()
    xs, ys = write_chunks(folder, n_rows, chunk_rows)
    write_s = time.perf_counter() - t0
    data_mb = sum(os.path.getsize(p) for p in xs + ys) / 2**20
    lists = os.path.join(folder, "files.json")
    with open(lists, "w") as f:
        json.dump([xs, ys], f)
    def limited(what):
        p = subprocess.run([sys.executable, "-c", LIMITED, str(limit), str(args.threads),
                            str(args.shuffle_buffer), lists, what], capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise SystemExit(f"the limited run ({what}) failed:\n{p.stderr[-3000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr
    whole, _ = limited("whole")
    r, err = limited("stream")
    r["whole"] = whole
    chunk_mb = chunk_rows * D * 4 / 2**20
    r.update(limit_mb=args.limit_mb, data_mb=data_mb, factor=data_mb / args.limit_mb,
             n_files=len(xs) * 2, chunk_mb=chunk_mb, write_s=write_s,
             shuffle_buffer=args.shuffle_buffer, threads=args.threads,
             progress_tail=err.strip().replace("\n", "\r").split("\r")[-1][:200])
    return r


def throughput(args, folder):
    import fastbp
    from fastbp.data import ChunkedDataset
    rng = np.random.default_rng(1)
    n = args.rows
    centers = rng.normal(size=(K, D)).astype(np.float32)
    y = rng.integers(0, K, n)
    X = centers[y] * 0.1 + rng.standard_normal((n, D), dtype=np.float32)
    np.save(os.path.join(folder, "tX.npy"), X)
    np.save(os.path.join(folder, "ty.npy"), y)
    cx, cy = [], []
    for i, a in enumerate(range(0, n, args.chunk_rows)):
        cx.append(os.path.join(folder, f"tX_{i}.npy"))
        cy.append(os.path.join(folder, f"ty_{i}.npy"))
        np.save(cx[-1], X[a:a + args.chunk_rows])
        np.save(cy[-1], y[a:a + args.chunk_rows])
    mm = np.load(os.path.join(folder, "tX.npy"), mmap_mode="r")
    float(np.asarray(mm).sum(dtype=np.float64))               # page-cached before timing
    for p in cx:
        np.load(p).sum()
    sources = {"in memory (ndarray)": (X, y), "np.memmap, page-cached": (mm, y),
               "ChunkedDataset.from_npy, page-cached": (ChunkedDataset.from_npy(cx, cy), None)}
    rates = {k: [] for k in sources}
    for r in range(args.rounds + 1):                          # round 0: warm-up
        for name, (Xs, ys) in sources.items():
            net = fastbp.Network(SIZES, activation="relu", output="softmax", seed=0)
            tr = fastbp.Trainer(net, optimizer="sgd", lr=0.05, momentum=0.9, batch_size=128,
                                seed=0, n_threads=args.threads)
            t0 = time.perf_counter()
            if ys is None:
                tr.fit(Xs, epochs=1, shuffle_buffer=args.shuffle_buffer)
            else:
                tr.fit(Xs, ys, epochs=1)
            if r:
                rates[name].append(n / (time.perf_counter() - t0))
    base = rates["in memory (ndarray)"]
    return {name: {"median": float(np.median(v)), "rounds": v,
                   "ratio": float(np.median(np.array(v) / np.array(base)))}
            for name, v in rates.items()}


def report(oom, thr, args, wall):
    import fastbp
    lines = ["# Data larger than memory", "",
             f"`python bench/streaming.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
             f"on {platform.machine()} ({os.cpu_count()} logical CPUs), fastbp "
             f"{fastbp.__version__}, {args.threads} thread(s), {wall:.0f} s in all. Network "
             f"W1 (784-512-512-10 ReLU, softmax, SGD momentum, batch 128).", "",
             "## 1. A data set 4x larger than the process may use", "",
             f"The training process runs under `RLIMIT_AS` = {oom['limit_mb']} MiB (as "
             f"`ulimit -v {oom['limit_mb'] * 1024}`): no more address space than that, so its "
             f"RSS cannot exceed it either. The data: {oom['samples']:,} samples in "
             f"{oom['n_files']} `.npy` files, {oom['data_mb']:,.0f} MiB "
             f"(**{oom['factor']:.1f}x the limit**), chunks of {args.chunk_rows:,} rows "
             f"({oom['chunk_mb']:.1f} MiB), shuffle buffer of {oom['shuffle_buffer']} chunks.", "",
             "| what | result |", "|---|---|",
             f"| loading the data whole in that process | {oom['whole']} |",
             f"| one epoch from `ChunkedDataset.from_npy` | completed: {oom['samples']:,} "
             f"samples in {oom['wall_s']:.1f} s ({oom['samples_per_second']:,.0f} samples/s), "
             f"loss {oom['loss']:.3f}, accuracy {oom['accuracy']:.3f} |",
             f"| peak RSS (ru_maxrss) | **{oom['peak_rss_mb']:.0f} MiB** (bound: the "
             f"{oom['limit_mb']} MiB limit; expected about imports + 2 buffers of "
             f"{oom['shuffle_buffer']} chunks + 1 chunk read ahead = ~"
             f"{100 + (2 * oom['shuffle_buffer'] + 1) * oom['chunk_mb']:.0f} MiB) |",
             f"| peak address space (VmPeak) | {oom['vm_peak_mb']:.0f} MiB |",
             f"| progress bar's last line | `{oom['progress_tail'].strip()}` |", "",
             "## 2. Throughput: memmap and chunks against in-memory", "",
             f"{args.rows:,} samples ({args.rows * D * 4 / 2**20:,.0f} MiB), the files in the "
             f"page cache; one epoch per system per round, the systems alternating, "
             f"{args.rounds} rounds after a warm-up round; ratio = median of the rounds' own "
             "ratios to in-memory.", "",
             "| source | samples/s (median) | / in-memory |", "|---|---:|---:|"]
    for name, r in thr.items():
        lines.append(f"| {name} | {r['median']:,.0f} | {r['ratio']:.3f} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit-mb", type=int, default=1024)
    ap.add_argument("--factor", type=float, default=4.5, help="data size / limit")
    ap.add_argument("--chunk-rows", type=int, default=8192)
    ap.add_argument("--shuffle-buffer", type=int, default=4)
    ap.add_argument("--rows", type=int, default=65536, help="rows of the throughput part")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "streaming.md"))
    args = ap.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="fastbp-stream-")
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    try:
        oom = out_of_memory(args, folder)
        print(json.dumps(oom, indent=1), flush=True)
        thr = throughput(args, folder)
        print(json.dumps(thr, indent=1), flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    text = report(oom, thr, args, time.perf_counter() - t0)
    with open(args.out, "w") as f:
        f.write(text)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"out_of_memory": oom, "throughput": thr}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
