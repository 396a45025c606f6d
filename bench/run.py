#!/usr/bin/env python3
"""fastbp benchmark harness: training throughput of fastbp vs PyTorch eager,
scikit-learn and plain NumPy on the workloads W1-W4 and W1's variants with dropout
(W1D) and batch norm (W1B), with the machine's sgemm roofline and each workload's
GEMM-only bound.  See bench/README.md.

    python bench/run.py                      # full run: W1-W4, W1D, W1B, threads 1,2, all systems
    python bench/run.py --quick              # smoke test (~1-2 min), results in bench/results/quick/
    python bench/run.py --workloads W1,W3 --threads 1,2,4,8,16 --systems fastbp,torch
    python bench/run.py --report-only bench/results/training.json   # re-render md/png

Every (system, workload, threads) cell runs in a fresh subprocess
(``bench/cell.py``) with OMP_NUM_THREADS / OPENBLAS_NUM_THREADS /
MKL_NUM_THREADS set before Python starts.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from workloads import INFERENCE_WORKLOADS, WORKLOADS, parse_list  # noqa: E402
import report  # noqa: E402

SYSTEMS = ("fastbp", "torch", "sklearn", "numpy")
# bfloat16 mixed precision, by --systems only (fastbp Trainer(precision="bf16"), torch autocast)
BF16_SYSTEMS = ("fastbp_bf16", "torch_bf16")
INFER_SYSTEMS = ("fastbp", "torch", "numpy") + BF16_SYSTEMS
MARK = "@@RESULT "


def thread_env(threads: int) -> dict:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    # OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE etc. are deliberately left untouched.
    return env


_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_busy_s():
    """Machine-wide busy CPU seconds from /proc/stat (all processes, all
    containers on this kernel, plus hypervisor steal); None if unavailable."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...
        return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / _CLK
    except (OSError, ValueError, IndexError):
        return None


def _children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def other_load(window: float = 0.5):
    """Cores kept busy by other processes over a short window."""
    b0 = _cpu_busy_s()
    if b0 is None:
        return None
    time.sleep(window)
    return (_cpu_busy_s() - b0) / window


def wait_quiet(max_wait: float, threshold: float = 0.25) -> float | None:
    """Wait (up to max_wait s) until other processes use < threshold cores."""
    t0 = time.perf_counter()
    load = other_load()
    while load is not None and load > threshold and time.perf_counter() - t0 < max_wait:
        load = other_load()
    return load


REPO = os.path.dirname(HERE)


def portable(obj):
    """obj with the paths of this machine shortened: the checkout's relative to the
    repository, installed packages' relative to site-packages, other absolute paths
    (an --out folder, the interpreter) reduced to their last component."""
    if isinstance(obj, dict):
        return {k: portable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [portable(v) for v in obj]
    if not isinstance(obj, str) or os.sep not in obj:
        return obj
    out = []
    for word in obj.split(" "):
        if os.path.isabs(word):
            if word.startswith(REPO + os.sep):
                word = os.path.relpath(word, REPO)
            elif "site-packages" + os.sep in word:
                word = "site-packages" + os.sep + word.split("site-packages" + os.sep, 1)[1]
            else:
                word = os.path.join("...", os.path.basename(word.rstrip(os.sep)))
        out.append(word)
    return " ".join(out)


def run_cell(spec: dict, threads: int, timeout: float, python: str) -> dict:
    cmd = [python, os.path.join(HERE, "cell.py"), json.dumps(spec)]
    t0 = time.perf_counter()
    busy0, own0 = _cpu_busy_s(), _children_cpu_s()
    try:
        p = subprocess.run(cmd, env=thread_env(threads), capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "reason": f"cell exceeded {timeout:.0f} s",
                "process_wall_s": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    busy1, own1 = _cpu_busy_s(), _children_cpu_s()
    extra = {"process_wall_s": wall, "cell_cpu_s": own1 - own0,
             "loadavg_1min": os.getloadavg()[0]}
    if busy0 is not None and busy1 is not None and wall > 0:
        # CPU used by everything else on the machine while the cell ran, in cores
        extra["other_load_cores"] = max(0.0, (busy1 - busy0) - (own1 - own0)) / wall
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(MARK):
            out = json.loads(line[len(MARK):])
            out.update(extra)
            return out
    tail = (p.stderr or p.stdout or "").strip().splitlines()[-5:]
    return dict(extra, status="error", reason=f"cell exited with code {p.returncode}: "
                + " | ".join(tail)[-500:])


def _fmt_short(rec: dict) -> str:
    st = rec.get("status")
    if st != "ok":
        return f"{st}: {rec.get('reason', '')[:120]}"
    if "samples_per_second" in rec:
        s = f"{rec['samples_per_second']:,.0f} samples/s"
        if "epoch_s" in rec and rec.get("kind") == "train":
            s += f" ({len(rec['epoch_s'])} epochs, peak RSS {rec.get('peak_rss_mb', 0):.0f} MB)"
        return s
    if "scipy_sgemm" in rec:
        return (f"sgemm numpy {rec['numpy_sgemm']['gflops']:.1f}, scipy "
                f"{rec['scipy_sgemm']['gflops']:.1f}, dgemm {rec['numpy_dgemm']['gflops']:.1f} GFLOP/s")
    return "ok"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="fastbp training-throughput benchmark (see bench/README.md)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1/4 of the samples, 3 repeats, short budgets; "
                         "writes to bench/results/quick/ unless --out is given")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="comma list from " + ",".join(WORKLOADS) + " (default: all)")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts (default 1,2)")
    ap.add_argument("--systems", default=",".join(SYSTEMS),
                    help="comma list from fastbp,torch,sklearn,numpy (default: these four) "
                         "and fastbp_bf16,torch_bf16 (bfloat16 mixed precision)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed epochs per cell after the warm-up epoch (default 5, quick 3)")
    ap.add_argument("--min-repeats", type=int, default=None,
                    help="timed epochs a cell always gets even past its budget (default 3, quick 2)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of timed epochs per cell before it stops early "
                         "(default 6, quick 1.5)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the whole matrix this many times (interleaved in time); "
                         "a cell's figure is the median over rounds (default 1)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                    help="before each cell wait up to SECONDS until other processes leave the "
                         "cell's cores free (other load < idle cores + 0.25); default 0: do not "
                         "wait (the load is recorded anyway)")
    ap.add_argument("--no-inference", action="store_true", help="skip inference cells")
    ap.add_argument("--no-gemm", action="store_true",
                    help="skip the sgemm roofline and GEMM-only bound cells")
    ap.add_argument("--sgemm-n", type=int, default=2048, help="square sgemm size (default 2048)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds before a cell is killed (default 600, quick 120)")
    ap.add_argument("--out", default=None, help="output folder (default bench/results)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the cells")
    ap.add_argument("--report-only", metavar="JSON", default=None,
                    help="re-render the markdown/PNG from a raw JSON file and exit")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report_only:
        with open(args.report_only) as f:
            results = json.load(f)
        out = args.out or os.path.dirname(os.path.abspath(args.report_only))
        for p in report.write_report(results, out):
            print("wrote", p)
        return 0

    workloads = parse_list(args.workloads, WORKLOADS)
    systems = parse_list(args.systems, SYSTEMS + BF16_SYSTEMS)
    threads = [int(t) for t in parse_list(args.threads)]
    if not workloads or not systems or not threads or min(threads) < 1:
        raise SystemExit("need at least one workload, one system and thread counts >= 1")
    q = args.quick
    repeats = args.repeats or (3 if q else 5)
    min_rep = min(repeats, args.min_repeats or (2 if q else 3))
    budget = args.budget if args.budget is not None else (1.5 if q else 6.0)
    timeout = args.timeout or (120.0 if q else 600.0)
    out = args.out or os.path.join(HERE, "results", "quick" if q else "")
    os.makedirs(out, exist_ok=True)
    ncpu = os.cpu_count() or 1
    if max(threads) > ncpu:
        print(f"warning: {max(threads)} threads requested but only {ncpu} CPUs: "
              "those cells are oversubscribed", file=sys.stderr)

    t_start = time.perf_counter()
    results = {
        "meta": {
            "command": " ".join([os.path.relpath(sys.argv[0]) if argv is None else "bench/run.py"]
                                + (sys.argv[1:] if argv is None else list(argv))),
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "quick": q, "workloads": workloads, "systems": systems, "threads": threads,
            "repeats": repeats, "min_repeats": min_rep, "budget_s": budget,
            "rounds": args.rounds, "cpu_count": ncpu,
            "sgemm_n": args.sgemm_n, "loadavg_start": list(os.getloadavg()),
            "workload_defs": {k: dict(sizes=list(WORKLOADS[k].sizes),
                                      activation=WORKLOADS[k].activation,
                                      loss=WORKLOADS[k].loss,
                                      batch_size=WORKLOADS[k].batch_size,
                                      n_samples=WORKLOADS[k].samples(q),
                                      n_weights=WORKLOADS[k].n_weights,
                                      flops_per_sample=WORKLOADS[k].flops_per_sample,
                                      dropout=WORKLOADS[k].dropout,
                                      batch_norm=WORKLOADS[k].batch_norm,
                                      base=WORKLOADS[k].base,
                                      description=WORKLOADS[k].description)
                              for k in WORKLOADS},
        },
        "records": [],
    }
    json_path = os.path.join(out, "training.json")

    def save():
        with open(json_path + ".tmp", "w") as f:
            json.dump(portable(results), f, indent=1)
        os.replace(json_path + ".tmp", json_path)

    def do(spec, label):
        why = (WORKLOADS[spec["workload"]].unsupported(spec["system"])
               if spec.get("kind") == "train" else None)
        if why:  # no process to start: the system has no such layers
            rec = {"status": "n/a", "reason": why}
            rec.update({k: spec[k] for k in ("kind", "system", "workload", "threads")})
            rec["round"] = rnd
            results["records"].append(rec)
            print(f"[{time.perf_counter() - t_start:6.1f}s] {label:<34} n/a: {why}",
                  file=sys.stderr, flush=True)
            return rec
        if args.wait_quiet > 0:  # other processes may use the cores this cell leaves idle
            wait_quiet(args.wait_quiet, max(0.25, ncpu - spec.get("threads", 1) + 0.25))
        rec = run_cell(dict(spec, quick=q, repeats=repeats, budget=budget,
                            min_repeats=min_rep), spec.get("threads", 1), timeout, args.python)
        rec.update({k: spec[k] for k in ("kind", "system", "workload", "threads") if k in spec})
        rec["round"] = rnd
        results["records"].append(rec)
        save()
        ol = rec.get("other_load_cores")
        print(f"[{time.perf_counter() - t_start:6.1f}s] {label:<34} {_fmt_short(rec)}"
              + (f"  [other load {ol:.2f} cores]" if ol is not None and ol > 0.25 else ""),
              file=sys.stderr, flush=True)
        return rec

    info = run_cell({"kind": "info"}, max(threads), timeout, args.python)
    results["meta"]["machine"] = info.get("info", {"error": info.get("reason")})
    save()

    def _term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _term)
    try:
        for rnd in range(args.rounds):
            run_round(rnd, threads, workloads, systems, args, do)
    except KeyboardInterrupt:
        results["meta"]["interrupted"] = True
        print("interrupted: writing the report from the cells measured so far", file=sys.stderr)

    results["meta"]["loadavg_end"] = list(os.getloadavg())
    results["meta"]["total_wall_s"] = time.perf_counter() - t_start
    save()
    for p in report.write_report(results, out):
        print("wrote", p, file=sys.stderr)
    print(f"wrote {json_path}", file=sys.stderr)
    return 0


def run_round(rnd, threads, workloads, systems, args, do):
    for t in threads:
        if not args.no_gemm:
            do({"kind": "sgemm", "system": "sgemm", "threads": t, "n": args.sgemm_n},
               f"sgemm {args.sgemm_n} t={t}")
        gemm_done = set()
        for i, wname in enumerate(workloads):
            gw = WORKLOADS[wname].gemm_workload  # a variant (W1D, W1B) has its base's bound
            if not args.no_gemm and gw not in gemm_done:
                gemm_done.add(gw)
                do({"kind": "gemm", "system": "gemm", "workload": gw, "threads": t},
                   f"{gw} gemm-bound t={t}")
            # alternate the systems, rotating who goes first
            order = systems[i % len(systems):] + systems[:i % len(systems)]
            for s in order:
                do({"kind": "train", "system": s, "workload": wname, "threads": t},
                   f"{wname} train {s} t={t}")
        if not args.no_inference:
            for wname in [w for w in workloads if w in INFERENCE_WORKLOADS]:
                for s in [s for s in systems if s in INFER_SYSTEMS]:
                    do({"kind": "infer", "system": s, "workload": wname, "threads": t},
                       f"{wname} infer {s} t={t}")


if __name__ == "__main__":
    sys.exit(main())
