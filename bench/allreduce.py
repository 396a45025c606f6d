#!/usr/bin/env python3
"""The allreduce share of a data-parallel step, measured at 2 ranks, and a projection.

    python bench/allreduce.py            # launches itself with mpiexec -n 2
    python bench/allreduce.py --ranks 2 --threads 1 --out bench/results/allreduce.md

1. ``DataParallelTrainer`` trains W1 (784-512-512-10, global batch 128) and W3
   (1024-2048-2048-1024, global batch 256) on 2 ranks of one thread each; per epoch the time
   in the gradient's ``Allreduce`` (``History.extra["reduce_seconds"]``) over the epoch's.
2. The Allreduce itself, message sizes 8 B .. 64 MiB: latency alpha and inverse bandwidth
   beta of ``T(n) = alpha + n beta`` fitted to the measured times (these are this machine's
   shared-memory transport, not a network's).
3. A projection to 8-64 nodes with the ring allreduce model
   ``T(p, n) = 2 (p - 1) alpha + 2 (p - 1) / p * n * beta`` for stated networks, the compute
   of a step taken from the measurement (each node one local batch), no overlap of
   communication with compute (fastbp reduces after the backward pass).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = {"W1": ([784, 512, 512, 10], "relu", "softmax", 128, 16384),
             "W3": ([1024, 2048, 2048, 1024], "relu", "identity", 256, 2048)}
# the networks of the projection: (name, alpha seconds, bytes per second)
NETWORKS = [("10 GbE, TCP", 30e-6, 1.1e9), ("100 Gb/s InfiniBand/RoCE", 2e-6, 11e9)]


def ranked(args):
    """The part run on every rank (under mpiexec)."""
    from mpi4py import MPI
    import fastbp
    from fastbp.distributed import DataParallelTrainer
    comm = MPI.COMM_WORLD
    rank, world = comm.Get_rank(), comm.Get_size()
    out = {"world": world, "workloads": {}, "sweep": []}
    for name, (sizes, act, outp, batch, n) in WORKLOADS.items():
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, sizes[0]), dtype=np.float32)
        y = (rng.integers(0, sizes[-1], n) if outp == "softmax"
             else rng.standard_normal((n, sizes[-1]), dtype=np.float32))
        net = fastbp.Network(sizes, activation=act, output=outp, seed=0)
        tr = DataParallelTrainer(net, optimizer="sgd", lr=0.01, momentum=0.9, batch_size=batch,
                                 seed=0, n_threads=args.threads,
                                 loss="cross_entropy" if outp == "softmax" else "mse")
        h = tr.fit(X, y, epochs=args.epochs + 1)               # epoch 0: warm-up
        epoch_s = [n / r for r in h.samples_per_second[1:]]
        reduce_s = h.extra["reduce_seconds"][1:]
        steps = -(-n // batch)
        out["workloads"][name] = {
            "batch": batch, "local_batch": batch // world, "samples": n, "steps": steps,
            "grad_bytes": int(net.parameters.nbytes), "epoch_s": epoch_s,
            "reduce_s": reduce_s,
            "share": float(np.median(np.array(reduce_s) / np.array(epoch_s))),
            "step_s": float(np.median(epoch_s)) / steps,
            "reduce_step_s": float(np.median(reduce_s)) / steps,
            "samples_per_second": float(np.median(h.samples_per_second[1:]))}
    size = 8
    while size <= args.max_mb * 2**20:
        buf = np.ones(size // 4, dtype=np.float32)
        reps = max(5, min(200, int(2e8 // size)))
        times = []
        for _ in range(reps):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - t0)
        out["sweep"].append({"bytes": size, "median_s": float(np.median(times))})
        size *= 4
    if rank == 0:
        with open(args.json, "w") as f:
            json.dump(out, f)


def fit_alpha_beta(sweep):
    n = np.array([s["bytes"] for s in sweep], float)
    t = np.array([s["median_s"] for s in sweep])
    big = n >= 2**20
    beta = np.polyfit(n[big], t[big], 1)[0] if big.sum() >= 2 else t[-1] / n[-1]
    alpha = float(np.median(t[n <= 1024]))
    return alpha, float(beta)


def report(res, args, wall):
    import fastbp
    world = res["world"]
    alpha, beta = fit_alpha_beta(res["sweep"])
    lines = ["# Data-parallel training: the allreduce share, and a projection", "",
             f"`python bench/allreduce.py {' '.join(a for a in sys.argv[1:] if a != '--ranked')}`"
             f" on {os.cpu_count()} logical CPUs, fastbp {fastbp.__version__}, mpi4py + MPICH "
             f"(pip wheels), {world} ranks of {args.threads} thread(s) each, {wall:.0f} s.", "",
             f"## Measured: {world} ranks on this machine", "",
             "Per epoch: the time in the gradient's `Allreduce` (one call per step, in place, "
             "float32) over the epoch's wall time; medians of "
             f"{args.epochs} epochs after a warm-up epoch.", "",
             "| workload | global batch (per rank) | gradient | step (ms) | allreduce per step (ms) "
             "| allreduce share | samples/s (all ranks) |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, w in res["workloads"].items():
        lines.append(f"| {name} | {w['batch']} ({w['local_batch']}) | "
                     f"{w['grad_bytes'] / 2**20:.2f} MiB | {w['step_s'] * 1e3:.2f} | "
                     f"{w['reduce_step_s'] * 1e3:.3f} | **{w['share'] * 100:.1f}%** | "
                     f"{w['samples_per_second']:,.0f} |")
    lines += ["", "The Allreduce alone (same ranks, same machine: MPICH's shared-memory "
              "transport):", "", "| message | median time (µs) | GB/s (bytes / time) |",
              "|---:|---:|---:|"]
    for s in res["sweep"]:
        b = s["bytes"]
        label = f"{b / 2**20:.0f} MiB" if b >= 2**20 else (f"{b / 1024:.0f} KiB" if b >= 1024
                                                           else f"{b} B")
        lines.append(f"| {label} | {s['median_s'] * 1e6:,.1f} | {b / s['median_s'] / 1e9:.2f} |")
    lines += ["", f"Fitted here: alpha = {alpha * 1e6:.1f} µs, 1/beta = {1 / beta / 1e9:.2f} GB/s.",
              "", "## Projection to 8-64 nodes", "",
              "Model (ring allreduce, as MPI libraries and NCCL use for large messages): "
              "`T(p, n) = 2 (p-1) alpha + 2 (p-1)/p * n * beta` for n gradient bytes on p "
              "nodes. Each node computes one local batch per step in the time measured above "
              "for one rank (compute = step time - allreduce time), nothing overlaps, so a "
              "step takes compute + T(p, n), and the speed-up over one node is "
              "p * compute / (compute + T(p, n)) (weak scaling: the global batch grows with "
              "p). The networks are assumptions, not measurements: "
              + "; ".join(f"{nm}: alpha {a * 1e6:.0f} µs, {bw / 1e9:.1f} GB/s"
                          for nm, a, bw in NETWORKS) + ".", ""]
    header = "| workload | network | " + " | ".join(f"p={p}" for p in (2, 8, 16, 32, 64)) + " |"
    lines += [header, "|---|---|" + "---:|" * 5]
    for name, w in res["workloads"].items():
        compute = w["step_s"] - w["reduce_step_s"]
        for nm, a, bw in NETWORKS:
            cells = []
            for p in (2, 8, 16, 32, 64):
                t = 2 * (p - 1) * a + 2 * (p - 1) / p * w["grad_bytes"] / bw
                eff = compute / (compute + t)
                cells.append(f"{p * eff:.1f}x ({eff * 100:.0f}%)")
            lines.append(f"| {name} | {nm} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: projected speed-up over one node (parallel efficiency). The "
              "bandwidth term approaches 2 n beta as p grows, so the efficiency falls to a "
              "floor set by the gradient size over the compute of one local batch; the "
              "latency term grows with p and matters only for small networks. Larger local "
              "batches, local SGD (`average_every=k` divides the communication by k) or "
              "several threads per node change the compute side of the ratio."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-mb", type=int, default=64)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "allreduce.md"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--ranked", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.json = args.json or os.path.splitext(args.out)[0] + ".json"
    if args.ranked:
        ranked(args)
        return
    mpiexec = (shutil.which("mpiexec", path=os.path.dirname(sys.executable))
               or shutil.which("mpiexec"))
    if mpiexec is None:
        raise SystemExit("no mpiexec: pip install mpi4py mpich")
    t0 = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    subprocess.run([mpiexec, "-n", str(args.ranks), sys.executable, os.path.abspath(__file__),
                    "--ranked"] + [a for a in sys.argv[1:]], check=True, env=env)
    with open(args.json) as f:
        res = json.load(f)
    text = report(res, args, time.perf_counter() - t0)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
