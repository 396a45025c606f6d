#!/usr/bin/env python3
"""bfloat16 products: the VDPBF16PS instruction's peak beside the float32 FMA's, and fastbp's
bf16 kernel on W1's and W3's product shapes beside scipy's sgemm and torch.mm on bf16, and
Network.predict in float32 vs precision="bf16".

    python bench/bf16_peak.py                  # writes bench/results/bf16.md
    python bench/bf16_peak.py --threads 2      # the products at 2 threads instead of 1
    python bench/bf16_peak.py --quick          # fewer repeats, shorter timings, no file

(a) Peak: ``fastbp._bf16.peak_loop`` runs a register-only loop of 16 independent zmm
    VDPBF16PS (64 flops each: 16 lanes x 2 bf16 products x multiply+add) or VFMADD231PS
    (32 flops each), nothing loaded or stored; the rate is flops over wall time.
(b) Products, for each layer of W1 (784-512-512-10, batch 128) and W3 (1024-2048-2048-1024,
    batch 256): the forward product z W (NN), the input gradient g W^T (NT) and the weight
    gradient z^T g (TN), counted as 2 m n k flops, all row-major float32 in memory:
    - fastbp bf16: ``fastbp._bf16.bf16_gemm`` from float32 operands (the bf16 rounding is
      inside the timing, fused into the kernel's packing), float32 output;
    - scipy sgemm: ``scipy.linalg.blas.sgemm`` on the same float32 arrays (transposed views,
      so nothing is copied), output written in place;
    - torch bf16: ``torch.mm`` on bf16 tensors converted beforehand (the conversion is
      outside the timing), bf16 output, torch's own float32 accumulation;
    - torch f32: ``torch.mm`` on the float32 tensors.
    The BLAS and torch are held at the same thread count as fastbp (threadpoolctl and
    torch.set_num_threads). Each figure is the median of `--repeats` timings, each of as
    many calls as fill `--min-time` seconds.
(c) ``Network.predict(X)`` against ``Network.predict(X, precision="bf16")`` on W1's and
    W3's networks, at a training batch's rows and at a larger inference batch.
"""
import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _shown_path(path):
    """A path inside this checkout relative to it (results are committed), else "installed"."""
    root = os.path.dirname(HERE)
    full = os.path.abspath(path)
    return os.path.relpath(full, root) if full.startswith(root + os.sep) else "installed"
sys.path.insert(0, HERE)

from systems import _import_fastbp  # noqa: E402

WORKLOADS = {"W1": ((784, 512, 512, 10), 128), "W3": ((1024, 2048, 2048, 1024), 256)}


def products(name):
    """(label, transa, transb, m, n, k) of every product of one training step."""
    sizes, batch = WORKLOADS[name]
    out = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layer = f"L{i + 1} {n_in}x{n_out}"
        out.append((f"{layer} fwd z.W", False, False, batch, n_out, n_in))
        out.append((f"{layer} dX g.W^T", False, True, batch, n_in, n_out))
        out.append((f"{layer} dW z^T.g", True, False, n_in, n_out, batch))
    return out


def operands(transa, transb, m, n, k, rng):
    A = rng.standard_normal((k, m) if transa else (m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if transb else (k, n)).astype(np.float32)
    return A, B


def timed(fn, min_time, repeats):
    """Median seconds per call over `repeats` timings of n calls each (n fills min_time)."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    n = max(1, int(min_time / once))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times), min(times), max(times)


def peak(bf16, instruction, min_time, repeats):
    """GFLOP/s of the register-only loop (median, min, max over repeats)."""
    flops_per = bf16.peak_chains() * (64 if instruction == "dpbf16" else 32)
    iters = 10000
    bf16.peak_loop(instruction, iters)              # clocks up, pages in
    while True:
        t0 = time.perf_counter()
        bf16.peak_loop(instruction, iters)
        dt = time.perf_counter() - t0
        if dt >= min_time / 2:
            break
        iters *= 4
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        bf16.peak_loop(instruction, iters)
        rates.append(iters * flops_per / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates), min(rates), max(rates)


def systems(threads):
    """name -> maker(transa, transb, A, B) returning a zero-argument call."""
    fastbp = _import_fastbp()
    from fastbp import _bf16
    out = {}

    def fastbp_bf16(ta, tb, A, B):
        m = A.shape[1] if ta else A.shape[0]
        n = B.shape[0] if tb else B.shape[1]
        C = np.empty((m, n), np.float32)
        return lambda: _bf16.bf16_gemm(A, B, ta, tb, 1.0, 0.0, C, threads)
    out["fastbp bf16"] = fastbp_bf16

    from scipy.linalg import blas

    def sgemm(ta, tb, A, B):
        m = A.shape[1] if ta else A.shape[0]
        n = B.shape[0] if tb else B.shape[1]
        Ct = np.empty((m, n), np.float32).T        # C^T = op(B)^T op(A)^T, column-major views
        return lambda: blas.sgemm(1.0, B.T, A.T, 0.0, Ct, tb, ta, 1)
    out["scipy sgemm"] = sgemm

    try:
        import torch
        torch.set_num_threads(threads)

        def torch_mm(dtype):
            def make(ta, tb, A, B):
                a = torch.from_numpy(A).to(dtype)
                b = torch.from_numpy(B).to(dtype)
                a = a.t() if ta else a
                b = b.t() if tb else b
                return lambda: torch.mm(a, b)
            return make
        out["torch bf16"] = torch_mm(torch.bfloat16)
        out["torch f32"] = torch_mm(torch.float32)
    except ImportError:
        pass
    return fastbp, _bf16, out


PREDICT = {"W1": ("relu", "softmax", (128, 8192)), "W3": ("relu", "identity", (256, 2048))}


def predict_section(fastbp, args, rng, say):
    """(c) Network.predict in float32 and with precision="bf16", same network and rows."""
    if "precision" not in fastbp.Network.predict.__code__.co_varnames:
        say("## (c) predict: this fastbp has no predict(precision=)")
        return
    say(f"## (c) `Network.predict` at {args.threads} thread{'s' if args.threads > 1 else ''}: "
        f"float32 vs `precision=\"bf16\"`")
    say()
    say("Forward pass only (bf16 products; bias, activations in float32); rows/s, median. "
        "Max |diff| is the largest difference of the two outputs (softmax probabilities for "
        "W1, identity outputs for W3, Glorot-initialized networks, standard normal inputs).")
    say()
    say("| workload | rows | float32 rows/s | bf16 rows/s | bf16 / float32 | max abs diff | "
        "max abs output |")
    say("|---|---:|---:|---:|---:|---:|---:|")
    for wl in args.workloads.split(","):
        sizes, _ = WORKLOADS[wl]
        act, out_act, row_counts = PREDICT[wl]
        net = fastbp.Network(list(sizes), activation=act, output=out_act, seed=0)
        for n in row_counts:
            X = rng.standard_normal((n, sizes[0])).astype(np.float32)
            with fastbp.num_threads(args.threads):
                f32 = net.predict(X)
                b16 = net.predict(X, precision="bf16")
                t32, _, _ = timed(lambda: net.predict(X), args.min_time, args.repeats)
                t16, _, _ = timed(lambda: net.predict(X, precision="bf16"), args.min_time,
                                  args.repeats)
            say(f"| {wl} | {n} | {n / t32:,.0f} | {n / t16:,.0f} | {t32 / t16:.2f}x | "
                f"{np.abs(b16 - f32).max():.2e} | {np.abs(f32).max():.2e} |")
    say()


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python bench/bf16_peak.py",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.05, help="seconds per timing")
    ap.add_argument("--workloads", default="W1,W3")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-predict", action="store_true", help="skip (c), Network.predict")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bf16.md"))
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.min_time = 3, 0.02
    from threadpoolctl import threadpool_limits
    fastbp, bf16, makers = systems(args.threads)
    rng = np.random.default_rng(0)
    lines = []

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    import scipy
    try:
        import torch
        torch_v = torch.__version__
    except ImportError:
        torch_v = "n/a"
    say("# bfloat16 products: instruction peak and kernel rate")
    say()
    say(f"Written by `python bench/bf16_peak.py{' --threads %d' % args.threads if args.threads != 1 else ''}`"
        f" on {time.strftime('%Y-%m-%d %H:%M')}.")
    say(f"CPU: {machine()}, {os.cpu_count()} logical CPUs (shared with other work), load "
        f"average before the run {' '.join('%.2f' % x for x in os.getloadavg())}. "
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"torch {torch_v}, fastbp {fastbp.__version__} ({_shown_path(os.path.dirname(fastbp.__file__))}), "
        f"bf16 kernel `{bf16.bf16_capability()}`, tile {'x'.join(map(str, bf16.tile_shape()[:2]))}"
        f" with k block {bf16.tile_shape()[2]}.")
    say(f"Medians of {args.repeats} timings of >= {args.min_time:g} s each.")
    say()
    say("What each column times: *fastbp bf16* is `fastbp._bf16.bf16_gemm` from float32 "
        "operands, so the rounding to bf16 (fused into its packing) is inside the timing, and "
        "it writes float32; *scipy sgemm* is float32 throughout; *torch bf16* is `torch.mm` on "
        "tensors converted to bf16 beforehand (conversion not timed) and writes bf16 (half the "
        "output bytes); *torch f32* is `torch.mm` on float32. Same thread count for all.")
    say()

    if bf16.bf16_capability() == "avx512_bf16":
        say("## (a) Instruction peak, one core, register-only loop")
        say()
        say("| instruction | flops / zmm instruction | GFLOP/s (median) | min-max |")
        say("|---|---:|---:|---:|")
        rates = {}
        for instr, label, per in (("dpbf16", "VDPBF16PS zmm (bf16 pairs -> f32)", 64),
                                  ("fma", "VFMADD231PS zmm (f32)", 32)):
            med, lo, hi = peak(bf16, instr, 2 * args.min_time, args.repeats)
            rates[instr] = med
            say(f"| {label} | {per} | {med:.1f} | {lo:.1f}-{hi:.1f} |")
        say()
        say(f"VDPBF16PS / FMA: {rates['dpbf16'] / rates['fma']:.2f}x the flops per second; "
            f"{rates['dpbf16'] / 64:.2f} G VDPBF16PS/s, {rates['fma'] / 32:.2f} G VFMADD/s "
            f"(instructions per second: one of each per cycle would be the clock).")
        say()
    else:
        rates = {}
        say("## (a) Instruction peak: skipped (no AVX512_BF16 here, or emulation forced)")
        say()

    say(f"## (b) Products at {args.threads} thread{'s' if args.threads > 1 else ''}, GFLOP/s "
        f"(2mnk / time)")
    say()
    names = list(makers)
    head = "| workload | product | m x n x k | " + " | ".join(names) + \
        " | bf16 / sgemm | bf16 / torch bf16 |"
    totals = {}
    with threadpool_limits(limits=args.threads):
        for wl in args.workloads.split(","):
            say(f"### {wl}: {'-'.join(map(str, WORKLOADS[wl][0]))}, batch {WORKLOADS[wl][1]}")
            say()
            say(head)
            say("|---|---|---|" + "---:|" * (len(names) + 2))
            tot = {s: 0.0 for s in names}
            flops_total = 0.0
            for label, ta, tb, m, n, k in products(wl):
                A, B = operands(ta, tb, m, n, k, rng)
                flops = 2.0 * m * n * k
                flops_total += flops
                g = {}
                for s in names:
                    med, lo, hi = timed(makers[s](ta, tb, A, B), args.min_time, args.repeats)
                    g[s] = flops / med / 1e9
                    tot[s] += med
                cells = " | ".join(f"{g[s]:.1f}" for s in names)
                tb16 = (f"{g['fastbp bf16'] / g['torch bf16']:.2f}x" if "torch bf16" in g
                        else "n/a")
                say(f"| {wl} | {label} | {m}x{n}x{k} | {cells} | "
                    f"{g['fastbp bf16'] / g['scipy sgemm']:.2f}x | {tb16} |")
            cells = " | ".join(f"{flops_total / tot[s] / 1e9:.1f}" for s in names)
            tb16 = (f"{tot['torch bf16'] / tot['fastbp bf16']:.2f}x" if "torch bf16" in tot
                    else "n/a")
            say(f"| {wl} | **all 9 products** (time-weighted) | | {cells} | "
                f"{tot['scipy sgemm'] / tot['fastbp bf16']:.2f}x | {tb16} |")
            totals[wl] = tot
            say()

        # the emulation's cost, on one W1 product
        label, ta, tb, m, n, k = products("W1")[3]
        A, B = operands(ta, tb, m, n, k, rng)
        prev = bf16.set_bf16_mode("emulate")
        try:
            med, _, _ = timed(makers["fastbp bf16"](ta, tb, A, B), args.min_time,
                              max(3, args.repeats // 2))
        finally:
            bf16.set_bf16_mode("native" if prev == "avx512_bf16" else "emulate")
        say(f"The portable emulation (`FASTBP_BF16=emulate`) on W1 {label} ({m}x{n}x{k}): "
            f"{2.0 * m * n * k / med / 1e9:.2f} GFLOP/s.")
        say()
        if not args.no_predict:
            predict_section(fastbp, args, rng, say)
    if rates:
        say(f"For scale: the measured VDPBF16PS peak is {rates['dpbf16']:.0f} GFLOP/s per core "
            f"and the FMA peak {rates['fma']:.0f}.")
        say()
    if not args.quick:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
