#!/usr/bin/env python3
"""A/B of two fastbp builds: training throughput of each on W1-W4, W1D, W1B in the same run.

    python bench/ab.py --a ../base/src --b src --rounds 5          # two source trees, built in place
    python bench/ab.py --a ../base/src --b installed --workloads W1,W3 --threads 1

Each (workload, threads) cell runs ``bench/cell.py`` for fastbp in a fresh process, once
per build per round, the two builds alternating (which one goes first alternates too);
``--a``/``--b`` are a ``src`` folder put first on PYTHONPATH, or ``installed``. The report
gives each build's median samples/s and the median over rounds of each round's own
ratio b / a (the machine's speed drifts between rounds; the two cells of a round run
seconds apart), with the range of those ratios.
"""
import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import run_cell  # noqa: E402
from workloads import WORKLOADS, parse_list  # noqa: E402


def cell(build, workload, threads, repeats, budget, python):
    spec = {"kind": "train", "system": "fastbp", "workload": workload, "threads": threads,
            "quick": False, "repeats": repeats, "budget": budget, "min_repeats": 3}
    saved = os.environ.get("PYTHONPATH")
    if build != "installed":
        os.environ["PYTHONPATH"] = os.path.abspath(build) + (os.pathsep + saved if saved else "")
    try:
        rec = run_cell(spec, threads, 600, python)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    if rec.get("status") != "ok":
        raise RuntimeError(f"{build} {workload} t{threads}: {rec.get('reason')}")
    module = rec.get("module", "?")
    if build != "installed" and not os.path.abspath(module).startswith(os.path.abspath(build)):
        raise RuntimeError(f"asked for the build in {build}, the cell imported {module}")
    return rec["samples_per_second"], module


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python bench/ab.py", description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="baseline: a src folder, or 'installed'")
    ap.add_argument("--b", required=True, help="candidate: a src folder, or 'installed'")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="timed epochs per cell")
    ap.add_argument("--budget", type=float, default=6.0, help="seconds per cell at most")
    ap.add_argument("--json", default=None, help="write every measurement here")
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args(argv)
    workloads = parse_list(args.workloads, WORKLOADS)
    threads = [int(t) for t in args.threads.split(",")]
    runs = {}
    for r in range(args.rounds):
        for w in workloads:
            for t in threads:
                order = ("a", "b") if (r + len(runs)) % 2 == 0 else ("b", "a")
                for which in order:
                    sps, _ = cell(getattr(args, which), w, t, args.repeats, args.budget,
                                  args.python)
                    runs.setdefault((w, t), {"a": [], "b": []})[which].append(sps)
                rec = runs[(w, t)]
                print(f"round {r + 1} {w} t{t}: a {rec['a'][-1]:,.0f}  b {rec['b'][-1]:,.0f}  "
                      f"b/a {rec['b'][-1] / rec['a'][-1]:.3f}", flush=True)
    print("\n| workload | threads | a samples/s | b samples/s | b / a (median of rounds) "
          "| b / a range |\n|---|---|---:|---:|---:|---|")
    for (w, t), rec in runs.items():
        ratios = [b / a for a, b in zip(rec["a"], rec["b"])]
        print(f"| {w} | {t} | {statistics.median(rec['a']):,.0f} | "
              f"{statistics.median(rec['b']):,.0f} | {statistics.median(ratios):.3f} | "
              f"{min(ratios):.3f}-{max(ratios):.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"a": args.a, "b": args.b, "cells": [
                {"workload": w, "threads": t, **rec} for (w, t), rec in runs.items()]}, f,
                indent=1)


if __name__ == "__main__":
    main()
