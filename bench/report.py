"""Render the raw benchmark JSON (``run.py``) as markdown tables and PNG charts."""
from __future__ import annotations

import os

SYS_LABEL = {"fastbp": "fastbp", "torch": "PyTorch eager", "sklearn": "sklearn (float64)",
             "numpy": "NumPy BP", "fastbp_bf16": "fastbp-bf16",
             "torch_bf16": "PyTorch-autocast-bf16"}
COLORS = {"fastbp": "#d62728", "torch": "#ff7f0e", "sklearn": "#1f77b4", "numpy": "#2ca02c",
          "fastbp_bf16": "#9467bd", "torch_bf16": "#8c564b",
          "gemm": "#7f7f7f", "roofline": "#c7c7c7"}


# ----------------------------------------------------------------- formatting
def fnum(x, unit=""):
    if x is None:
        return "–"
    if x >= 1000:
        s = f"{x:,.0f}"
    elif x >= 100:
        s = f"{x:.0f}"
    elif x >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.2f}"
    return s + unit


def fratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:.2f}×" if r < 10 else f"{r:.1f}×"


def fpct(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{100.0 * a / b:.0f}%"


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


# ------------------------------------------------------------------- indexing
def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def merge_rounds(recs):
    """One record per cell: with --rounds > 1 the cell's figure is the median
    of the rounds' medians; lists are concatenated, peaks are maxima."""
    if len(recs) == 1:
        return recs[0]
    ok = [r for r in recs if r.get("status") == "ok"]
    if not ok:
        return recs[-1]
    m = dict(ok[0])
    m["rounds"] = len(ok)
    for k in ("samples_per_second",):
        if k in ok[0]:
            m[k] = _median([r[k] for r in ok])
            m["by_round"] = {r.get("round"): r[k] for r in ok}
    for k in ("samples_per_second_raw", "gflops", "call_overhead_us"):
        if k in ok[0]:
            m[k] = _median([r[k] for r in ok])
    if "samples_per_second_min" in ok[0]:
        m["samples_per_second_min"] = min(r["samples_per_second_min"] for r in ok)
        m["samples_per_second_max"] = max(r["samples_per_second_max"] for r in ok)
    for k in ("epoch_s", "call_s", "reported_samples_per_second"):
        if k in ok[0]:
            m[k] = [x for r in ok for x in (r.get(k) or [])]
    for k in ("peak_rss_mb", "run_peak_rss_mb", "rss_data_mb", "other_load_cores"):
        vals = [r[k] for r in ok if r.get(k) is not None]
        if vals:
            m[k] = max(vals)
    for k in ("scipy_sgemm", "numpy_sgemm", "numpy_dgemm", "torch_sgemm", "bf16_peak"):
        if k in ok[0] and all(k in r for r in ok):
            m[k] = dict(gflops=_median([r[k]["gflops"] for r in ok]),
                        gflops_best=max(r[k]["gflops_best"] for r in ok))
    return m


class Results:
    def __init__(self, results):
        self.meta = results.get("meta", {})
        self.records = results.get("records", [])
        groups = {}
        for r in self.records:
            key = (r.get("kind"), r.get("system"), r.get("workload"), r.get("threads"))
            groups.setdefault(key, []).append(r)
        self.idx = {k: merge_rounds(v) for k, v in groups.items()}
        self.cpu_count = self.meta.get("cpu_count") or self.meta.get("machine", {}).get("cpu_count") or 1
        self.notes = []           # footnotes for n/a / errors
        self._note_ids = {}

    def gemm_workload(self, w):
        """The workload whose GEMM-only bound w has: a variant's (W1D, W1B) is its base's."""
        d = self.meta.get("workload_defs", {}).get(w) or {}
        return d.get("base") or w

    def rec(self, kind, system, workload, threads):
        if kind == "gemm" and workload is not None:
            workload = self.gemm_workload(workload)
        return self.idx.get((kind, system, workload, threads))

    def sps(self, kind, system, workload, threads):
        r = self.rec(kind, system, workload, threads)
        if r and r.get("status") == "ok":
            return r.get("samples_per_second")
        return None

    def ratio(self, a, b):
        """a / b for two cells (kind, system, workload, threads): with two or more rounds
        holding both, the median of the rounds' own ratios (the cells of a round ran
        minutes apart, while the machine's speed drifts between rounds); otherwise the
        ratio of the cells' figures. None if either is missing."""
        ra, rb = self.rec(*a), self.rec(*b)
        if not (ra and rb and ra.get("status") == "ok" and rb.get("status") == "ok"):
            return None
        pa, pb = ra.get("by_round") or {}, rb.get("by_round") or {}
        common = [k for k in pa if k in pb and pb[k]]
        if len(common) >= 2:
            return _median([pa[k] / pb[k] for k in common])
        fa, fb = ra.get("samples_per_second"), rb.get("samples_per_second")
        return fa / fb if fa is not None and fb else None

    def contended(self, r):
        """True when other processes kept more than the idle cores busy during the cell."""
        ol = r.get("other_load_cores")
        if ol is None:
            return False
        spare = max(0.0, self.cpu_count - (r.get("threads") or 1))
        return ol > spare + 0.25

    def cell(self, kind, system, workload, threads, fmt=fnum):
        r = self.rec(kind, system, workload, threads)
        if r is None:
            return "–"
        if r.get("status") == "ok":
            return fmt(r.get("samples_per_second")) + (" †" if self.contended(r) else "")
        reason = r.get("reason", r.get("status"))
        key = (system, reason)
        if key not in self._note_ids:
            self._note_ids[key] = len(self.notes) + 1
            self.notes.append(f"[{self._note_ids[key]}] {system}: {r.get('status')}: {reason}")
        label = "n/a" if r.get("status") == "n/a" else r.get("status", "err")
        return f"{label} [{self._note_ids[key]}]"

    def sgemm(self, threads, which="scipy_sgemm"):
        r = self.rec("sgemm", "sgemm", None, threads)
        if r and r.get("status") == "ok":
            return r[which]["gflops"]
        return None

    def flops(self, w):
        return self.meta["workload_defs"][w]["flops_per_sample"]

    def roofline_sps(self, w, threads, inference=False):
        g = self.sgemm(threads)
        if g is None:
            return None
        f = self.flops(w) if not inference else 2 * self.meta["workload_defs"][w]["n_weights"]
        return g * 1e9 / f


# ---------------------------------------------------------------------- parts
def machine_md(meta):
    m = meta.get("machine", {})
    v = m.get("versions", {})
    lines = ["## Machine", ""]
    lines.append(f"- CPU: **{m.get('cpu_model', '?')}**, {m.get('cpu_count', '?')} logical CPUs"
                 + (f", {m['physical_cores']} physical cores" if m.get("physical_cores") else "")
                 + (f" ({m['affinity_cpus']} usable)" if m.get("affinity_cpus") not in
                    (None, m.get("cpu_count")) else "")
                 + (f"; SIMD: {', '.join(m['simd'])}" if m.get("simd") else ""))
    if m.get("mem_total_gb"):
        lines.append(f"- Memory: {m['mem_total_gb']} GiB; platform {m.get('platform', '?')}")
    lines.append("- Versions: " + ", ".join(
        f"{k} {v[k] if v.get(k) else 'not installed'}" for k in
        ("numpy", "scipy", "torch", "sklearn", "threadpoolctl", "matplotlib")
        if k in v) + f", Python {m.get('python', '?')}")
    fb = v.get("fastbp")
    kern = m.get("fastbp_gemm_kernel")
    kern = f"; small float32 products by its own {kern} kernel" if kern and kern != "blas" else ""
    lines.append(f"- fastbp: {fb} ({m.get('fastbp_module', '')}{kern})" if fb else
                 f"- fastbp: **not importable** ({m.get('fastbp_error', '?')})")
    tps = m.get("threadpools") or []
    if tps:
        lines.append("- Thread pools / BLAS (threadpoolctl):")
        for d in tps:
            lines.append(f"  - {d.get('internal_api')} {d.get('version') or ''} "
                         f"({d.get('user_api')}, {d.get('architecture') or '-'}, "
                         f"{d.get('threading_layer') or '-'}): `{os.path.basename(d.get('filepath') or '')}`")
    env = m.get("env") or {}
    envs = {k: v for k, v in env.items() if not k.endswith("NUM_THREADS")}
    if envs:
        lines.append("- Environment (left as found): "
                     + ", ".join(f"`{k}={v}`" for k, v in envs.items()))
    la0, la1 = meta.get("loadavg_start"), meta.get("loadavg_end")
    if la0:
        lines.append(f"- Load average (1/5/15 min) at start {'/'.join(f'{x:.2f}' for x in la0)}"
                     + (f", at end {'/'.join(f'{x:.2f}' for x in la1)}" if la1 else "")
                     + " (other processes on the machine add noise)")
    if meta.get("interrupted") or "total_wall_s" not in meta:
        lines.append("- **This run was interrupted: the tables hold only the cells measured "
                     "before that (– = not measured).**")
    lines.append(f"- Date: {meta.get('date', '?')}; command: `{meta.get('command', '?')}`"
                 + (f"; total wall time {meta['total_wall_s']:.0f} s" if "total_wall_s" in meta
                    else "")
                 + ("; **--quick run (smoke test, not for quoting)**" if meta.get("quick") else ""))
    lines.append(f"- Protocol: median of up to {meta.get('repeats')} timed epochs "
                 f"(at least {meta.get('min_repeats')}; a cell stops adding epochs after "
                 f"{meta.get('budget_s')} s) after one warm-up epoch, each cell in a fresh process.")
    return "\n".join(lines)


def workloads_md(meta):
    rows = []
    for w in meta["workloads"]:
        d = meta["workload_defs"][w]
        rows.append([w, d["description"], d["batch_size"], f"{d['n_samples']:,}",
                     f"{d['n_weights']:,}", f"{d['flops_per_sample'] / 1e6:.3g}"])
    return _table(["workload", "network", "batch", "samples/epoch", "weights P",
                   "MFLOP/sample (6P − 2·W₁)"], rows)


def sgemm_md(R):
    rows = []
    for t in R.meta["threads"]:
        r = R.rec("sgemm", "sgemm", None, t)
        if not r or r.get("status") != "ok":
            rows.append([t, "–", "–", "–", "–"])
            continue
        a, b, d = (r[k]["gflops"] for k in ("scipy_sgemm", "numpy_sgemm", "numpy_dgemm"))
        note = "differ by %.0f%%" % (100 * abs(a - b) / max(a, b)) if abs(a - b) > 0.05 * max(a, b) \
            else "same (within 5%)"
        tm = r.get("torch_sgemm")
        rows.append([t, f"**{fnum(a)}** (best {fnum(r['scipy_sgemm']['gflops_best'])})",
                     f"{fnum(b)} (best {fnum(r['numpy_sgemm']['gflops_best'])})", note,
                     f"{fnum(tm['gflops'])} (best {fnum(tm['gflops_best'])})" if tm else "–",
                     fnum(d)])
    n = R.meta.get("sgemm_n", 2048)
    return (f"### sgemm roofline (square {n}×{n}×{n}, GFLOP/s, median of ≥7 calls)\n\n"
            + _table(["threads", "scipy.linalg.blas.sgemm (fastbp's BLAS) = roofline",
                      "numpy float32 matmul (numpy's BLAS)", "scipy vs numpy",
                      "torch.mm float32 (torch's BLAS)", "numpy float64 matmul (dgemm)"],
                     rows))


def bf16_md(R):
    """fastbp's bf16 mixed precision beside its float32 and PyTorch's autocast, and the
    fraction of the VDPBF16PS peak (one core's rate times the threads)."""
    systems = R.meta["systems"]
    if "fastbp_bf16" not in systems:
        return ""
    rows = []
    for w in R.meta["workloads"]:
        for t in R.meta["threads"]:
            b = ("train", "fastbp_bf16", w, t)
            sps = R.sps(*b)
            if sps is None:
                continue
            gf = sps * R.flops(w) / 1e9
            r = R.rec("sgemm", "sgemm", None, t)
            peak = (r or {}).get("bf16_peak")
            row = [w, t] + [R.cell("train", s, w, t) for s in
                            ("fastbp", "fastbp_bf16", "torch", "torch_bf16")]
            for other in ("fastbp", "torch_bf16", "torch"):
                q = R.ratio(b, ("train", other, w, t)) if other in systems else None
                row.append(f"{q:.2f}×" if q else "–")
            row += [f"{gf:.0f}", f"{100 * gf / (peak['gflops'] * t):.0f}%" if peak else "–"]
            mem = [R.rec("train", s, w, t) for s in ("fastbp", "fastbp_bf16")]
            row.append(" / ".join(f"{m['run_peak_rss_mb']:.0f}" if m and m.get("run_peak_rss_mb")
                                  else "–" for m in mem))
            rows.append(row)
    if not rows:
        return ""
    peaks = [R.rec("sgemm", "sgemm", None, t) for t in R.meta["threads"]]
    pk = next((p["bf16_peak"]["gflops"] for p in peaks if p and p.get("bf16_peak")), None)
    infer = []
    for w in R.meta["workloads"]:
        for t in R.meta["threads"]:
            q = R.ratio(("infer", "fastbp_bf16", w, t), ("infer", "fastbp", w, t))
            qt = R.ratio(("infer", "fastbp_bf16", w, t), ("infer", "torch_bf16", w, t))
            if q:
                infer.append(f"{w} at {t} thread{'s' if t > 1 else ''}: {q:.2f}× float32"
                             + (f", {qt:.2f}× PyTorch autocast" if qt else ""))
    return ("### bfloat16 mixed precision (training samples/s; fastbp `Trainer(precision=\"bf16\")`, "
            "PyTorch `torch.autocast(\"cpu\", dtype=torch.bfloat16)`)\n\n"
            + _table(["workload", "threads", "fastbp float32", "fastbp bf16", "PyTorch float32",
                      "PyTorch autocast bf16", "bf16 / fastbp float32",
                      "bf16 / PyTorch autocast", "bf16 / PyTorch float32",
                      "fastbp bf16 GFLOP/s", "% of VDPBF16PS peak × threads",
                      "training peak RSS MB: float32 / bf16"], rows)
            + (f"\n\nVDPBF16PS peak of one core, register-only loop: {pk:.1f} GFLOP/s."
               if pk else "")
            + ("\n\nInference (`predict(precision=\"bf16\")`): " + "; ".join(infer) + "."
               if infer else ""))


def training_md(R, t):
    systems = R.meta["systems"]
    header = ["workload"] + [SYS_LABEL[s] for s in systems] + [
        "GEMM-only bound", "roofline"]
    if "fastbp" in systems:
        header += ["fastbp % roofline", "fastbp % GEMM bound"]
        header += [f"fastbp / {SYS_LABEL[s].split()[0]}" for s in systems if s != "fastbp"]
    rows = []
    for w in R.meta["workloads"]:
        row = [w]
        for s in systems:
            row.append(R.cell("train", s, w, t))
        g = R.sps("gemm", "gemm", w, t)
        roof = R.roofline_sps(w, t)
        row += [fnum(g), fnum(roof)]
        if "fastbp" in systems:
            f = R.sps("train", "fastbp", w, t)
            fb = ("train", "fastbp", w, t)
            row += [fpct(f, roof), fpct(R.ratio(fb, ("gemm", "gemm", w, t)), 1)]
            row += [fratio(R.ratio(fb, ("train", s, w, t)), 1) for s in systems if s != "fastbp"]
        rows.append(row)
    return f"### Training, {t} thread{'s' if t > 1 else ''} (samples/s, median epoch)\n\n" \
        + _table(header, rows)


def details_md(R):
    rows = []
    multi = (R.meta.get("rounds") or 1) > 1
    for r in R.records:
        if r.get("kind") != "train":
            continue
        w, t, s = r["workload"], r["threads"], r["system"]
        if r.get("status") != "ok":
            rows.append([w, t, s, r.get("status"), "", "", "", "", "", "", "",
                         f"{r.get('peak_rss_mb', 0):.0f}", "", _load(R, r)])
            continue
        sps = r["samples_per_second"]
        gfl = sps * R.flops(w) / 1e9
        ls, le = r.get("loss_start"), r.get("loss_end")
        loss = (f"{ls:.3g} → {le:.3g}" if ls is not None else f"→ {le:.3g}") if le is not None else ""
        lib = r.get("reported_samples_per_second")
        rows.append([w, t, s + (f" (round {r['round'] + 1})" if multi else ""), fnum(sps),
                     f"{fnum(r['samples_per_second_min'])}–{fnum(r['samples_per_second_max'])}",
                     fnum(sorted(lib)[len(lib) // 2]) if lib else "",
                     len(r["epoch_s"]), f"{sorted(r['epoch_s'])[len(r['epoch_s']) // 2]:.3f}",
                     f"{gfl:.1f}", fpct(sps, R.roofline_sps(w, t)),
                     fpct(sps, _same_round(R.rec("gemm", "gemm", w, t), r)),
                     _rss(r), loss,
                     _load(R, r)])
    return _table(["workload", "threads", "system", "samples/s", "min–max",
                   "library-reported", "epochs", "median epoch s", "GFLOP/s", "% roofline",
                   "% GEMM bound", "peak RSS MB: process / training (after import)",
                   "loss on 1024 samples: start → end", "other load (cores)"], rows)


def _same_round(cell, r):
    """The cell's figure in r's round (its median over rounds if it has none there)."""
    if not cell or cell.get("status") != "ok":
        return None
    return (cell.get("by_round") or {}).get(r.get("round"), cell.get("samples_per_second"))


def _rss(r):
    run = r.get("run_peak_rss_mb")
    return (f"{r.get('peak_rss_mb', 0):.0f} / {run:.0f}" if run is not None
            else f"{r.get('peak_rss_mb', 0):.0f}") + f" ({r.get('rss_import_mb', 0):.0f})"


def memory_md(R):
    """Peak RSS while training: the peak is reset once the data are generated (so the
    benchmark's own float64 copies do not count); imports and the data still do."""
    systems = R.meta["systems"]
    rows = []
    for w in R.meta["workloads"]:
        for t in R.meta["threads"]:
            recs = {s: R.rec("train", s, w, t) for s in systems}
            ok = {s: r for s, r in recs.items()
                  if r and r.get("status") == "ok" and r.get("run_peak_rss_mb") is not None}
            if not ok:
                continue
            row = [w, t] + [f"{ok[s]['run_peak_rss_mb']:.0f}" if s in ok else "–"
                            for s in systems]
            anyr = next(iter(ok.values()))
            row.append(f"{anyr.get('rss_data_mb', 0) - anyr.get('rss_import_mb', 0):.0f}")
            if "fastbp" in ok and "numpy" in ok:
                fb, np_ = ok["fastbp"], ok["numpy"]
                row.append(f"{fb['run_peak_rss_mb'] - np_['run_peak_rss_mb']:+.0f}")
                if fb.get("rss_data_mb") is not None and np_.get("rss_data_mb") is not None:
                    start = fb["rss_data_mb"] - np_["rss_data_mb"]
                    row += [f"{start:+.1f}", f"{fb['run_peak_rss_mb'] - np_['run_peak_rss_mb'] - start:+.1f}"]
                else:
                    row += ["–", "–"]
            else:
                row += ["–", "–", "–"]
            rows.append(row)
    if not rows:
        return ""
    header = (["workload", "threads"] + [SYS_LABEL[s] for s in systems]
              + ["data (X, y)", "fastbp − NumPy", "of which before training (imports)",
                 "of which in training"])
    return ("### Memory (peak RSS while training, MB: the peak is reset after the data are "
            "generated; it includes the imports and the data)\n\n" + _table(header, rows))


def _load(R, r):
    ol = r.get("other_load_cores")
    if ol is None:
        return ""
    return f"{ol:.2f}" + (" †" if R.contended(r) else "")


def gemm_md(R):
    rows = []
    for w in dict.fromkeys(R.gemm_workload(w) for w in R.meta["workloads"]):
        for t in R.meta["threads"]:
            r = R.rec("gemm", "gemm", w, t)
            if not r or r.get("status") != "ok":
                continue
            rows.append([w, t, r["n_calls_per_step"], fnum(r["samples_per_second"]),
                         fnum(r["samples_per_second_raw"]), f"{r['call_overhead_us']:.2f}",
                         f"{r['gflops']:.1f}", fpct(r["gflops"], R.sgemm(t))])
    if not rows:
        return ""
    return ("### GEMM-only bound details\n\n"
            + _table(["workload", "threads", "sgemm calls/step", "bound samples/s",
                      "raw (incl. Python call overhead)", "overhead µs/call",
                      "GFLOP/s at these shapes", "% of square-sgemm rate"], rows))


def _cost(r):
    """'0.91× (+10%)': a throughput ratio and the extra time per sample it means."""
    if not r:
        return "–"
    extra = 100 * (1 / r - 1)
    return f"{r:.2f}× ({'±0' if round(extra) == 0 else f'{extra:+.0f}'.replace('-', '−')}%)"


def variants_md(R):
    """Cost of dropout / batch norm: each variant's throughput over its base's (W1D / W1,
    W1B / W1), per system and thread count, as the median of the rounds' own ratios; and
    fastbp over each peer on the variant."""
    defs = R.meta.get("workload_defs", {})
    variants = [w for w in R.meta["workloads"] if (defs.get(w) or {}).get("base")]
    tables = []
    for base in dict.fromkeys(defs[v]["base"] for v in variants):
        vs = [v for v in variants if defs[v]["base"] == base]
        rows = []
        for t in R.meta["threads"]:
            for s in R.meta["systems"]:
                if not any((R.rec("train", s, w, t) or {}).get("status") == "ok" for w in vs):
                    continue
                row = [t, SYS_LABEL[s], R.cell("train", s, base, t)]
                for v in vs:
                    r = R.ratio(("train", s, v, t), ("train", s, base, t))
                    row += [R.cell("train", s, v, t), _cost(r)]
                if "fastbp" in R.meta["systems"]:
                    row += ["" if s == "fastbp" else
                            fratio(R.ratio(("train", "fastbp", v, t), ("train", s, v, t)), 1)
                            for v in vs]
                rows.append(row)
        if not rows:
            continue
        header = ["threads", "system", base]
        for v in vs:
            what = " + ".join(x for x in (
                f"dropout {defs[v]['dropout']:g}" if defs[v].get("dropout") else "",
                "batch norm" if defs[v].get("batch_norm") else "") if x) or v
            header += [v, f"{v} / {base}: cost of {what}"]
        if "fastbp" in R.meta["systems"]:
            header += [f"fastbp / system on {v}" for v in vs]
        tables.append(_table(header, rows))
    if not tables:
        return ""
    return ("### Dropout and batch norm (samples/s; *V / base* = the variant's throughput over "
            "its base's, the median of the rounds' own ratios, and in parentheses the extra "
            "time per sample, 1 / ratio − 1)\n\n" + "\n\n".join(tables))


def inference_md(R):
    systems = [s for s in R.meta["systems"] if s in ("fastbp", "torch", "numpy")]
    ws = [w for w in R.meta["workloads"] if any(R.rec("infer", s, w, t) for s in systems
                                                  for t in R.meta["threads"])]
    if not ws or not systems:
        return ""
    header = ["workload", "threads"] + [SYS_LABEL[s] for s in systems] + ["roofline (2P FLOP/sample)"]
    if "fastbp" in systems:
        header += [f"fastbp / {SYS_LABEL[s].split()[0]}" for s in systems if s != "fastbp"]
    rows = []
    for w in ws:
        for t in R.meta["threads"]:
            row = [w, t] + [R.cell("infer", s, w, t) for s in systems]
            row.append(fnum(R.roofline_sps(w, t, inference=True)))
            if "fastbp" in systems:
                row += [fratio(R.ratio(("infer", "fastbp", w, t), ("infer", s, w, t)), 1)
                        for s in systems if s != "fastbp"]
            rows.append(row)
    return ("### Inference (samples/s, one call on the whole data set: `net.predict`, "
            "torch `no_grad` forward, NumPy forward; softmax included)\n\n" + _table(header, rows))


def scaling_md(R):
    threads = R.meta["threads"]
    if len(threads) < 2:
        return ""
    t0 = threads[0]
    rows = []
    for w in R.meta["workloads"]:
        for s in R.meta["systems"] + ["gemm"]:
            kind = "gemm" if s == "gemm" else "train"
            if kind == "gemm" and R.gemm_workload(w) != w:
                continue  # a variant's bound is its base's, already listed
            vals = [R.sps(kind, s, w, t) for t in threads]
            if all(v is None for v in vals):
                continue
            base = vals[0]
            rows.append([w, "GEMM-only bound" if s == "gemm" else SYS_LABEL[s]]
                        + [f"{fnum(v)} ({fratio(v, base)})" if v is not None else "–" for v in vals])
    return (f"### Thread scaling (training samples/s, speed-up over {t0} thread"
            f"{'s' if t0 > 1 else ''} in parentheses)\n\n"
            + _table(["workload", "system"] + [f"{t} thr" for t in threads], rows))


# ---------------------------------------------------------------------- chart
def chart(R, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    ws = R.meta["workloads"]
    threads = R.meta["threads"]
    systems = R.meta["systems"]
    series = [("train", s, SYS_LABEL[s]) for s in systems] + [
        ("gemm", "gemm", "GEMM-only bound"), ("roof", "roofline", "sgemm roofline")]
    ncol = min(2, len(ws))
    nrow = (len(ws) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.5 * ncol, 4.2 * nrow), squeeze=False)
    width = 0.8 / len(series)
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=COLORS.get(s), edgecolor="#555555" if kind != "train" else "white",
                     hatch="//" if kind != "train" else None, label=label)
               for kind, s, label in series]
    for k, w in enumerate(ws):
        ax = axes[k // ncol][k % ncol]
        bars, missing = [], []
        for j, (kind, s, label) in enumerate(series):
            for i, t in enumerate(threads):
                x = i + (j - (len(series) - 1) / 2) * width
                v = R.roofline_sps(w, t) if kind == "roof" else R.sps(kind, s, w, t)
                if v:
                    r = R.rec(kind, s, w, t) if kind != "roof" else None
                    bars.append((x, v, kind, s, " †" if r and R.contended(r) else ""))
                elif kind == "train":
                    r = R.rec(kind, s, w, t)
                    missing.append((x, "not run" if r is None else r.get("status", "n/a")))
        if not bars:
            ax.axis("off")
            continue
        lo = min(b[1] for b in bars) / 4
        for x, v, kind, s, mark in bars:
            ax.bar(x, v - lo, width, bottom=lo, color=COLORS.get(s),
                   hatch="//" if kind != "train" else None,
                   edgecolor="white" if kind == "train" else "#555555")
            ax.text(x, v * 1.04, fnum(v) + mark, rotation=90, ha="center", va="bottom",
                    fontsize=6.5)
        for x, why in missing:
            ax.text(x, lo * 1.15, why, rotation=90, ha="center", va="bottom", fontsize=7,
                    color="#444444")
        ax.set_yscale("log")
        ax.set_ylim(lo, max(b[1] for b in bars) * 2.5)
        ax.set_xticks(range(len(threads)))
        ax.set_xticklabels([f"{t} thread{'s' if t > 1 else ''}" for t in threads])
        d = R.meta["workload_defs"][w]
        arch = "-".join(map(str, d["sizes"])) if len(d["sizes"]) < 6 else \
            f"{d['sizes'][0]}-{len(d['sizes']) - 2}x{d['sizes'][1]}-{d['sizes'][-1]}"
        ax.set_title(f"{w}: {arch}, batch {d['batch_size']}", fontsize=10)
        ax.set_ylabel("training samples/s (log)")
        ax.grid(axis="y", which="both", alpha=0.3)
    for k in range(len(ws), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=9)
    fig.text(0.5, 0.955, "median epoch throughput; † = other processes competed for the "
             "cores during the cell (figure depressed)", ha="center", va="top", fontsize=8,
             color="#555555")
    m = R.meta.get("machine", {})
    fig.suptitle(f"fastbp training throughput — {m.get('cpu_model', '?')}, "
                 f"{m.get('cpu_count', '?')} CPUs" + (" (--quick)" if R.meta.get("quick") else ""),
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.94))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scaling_chart(R, path):
    threads = R.meta["threads"]
    if len(threads) < 3:
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    ws = R.meta["workloads"]
    fig, axes = plt.subplots(1, len(ws), figsize=(4.2 * len(ws), 3.8), squeeze=False)
    for k, w in enumerate(ws):
        ax = axes[0][k]
        for s in R.meta["systems"] + ["gemm"]:
            kind = "gemm" if s == "gemm" else "train"
            pts = [(t, R.sps(kind, s, w, t)) for t in threads]
            pts = [(t, v) for t, v in pts if v]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                        color=COLORS.get(s), label="GEMM-only bound" if s == "gemm" else SYS_LABEL[s],
                        linestyle="--" if s == "gemm" else "-")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(threads)
        ax.set_xticklabels([str(t) for t in threads])
        ax.set_xlabel("threads")
        ax.set_title(w)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("training samples/s")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------- main
def write_report(results, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    R = Results(results)
    written = []
    png = chart(R, os.path.join(out_dir, "training.png"))
    spng = scaling_chart(R, os.path.join(out_dir, "scaling.png"))
    parts = ["# fastbp training benchmark", "", machine_md(R.meta), "",
             "How to read these tables: see `bench/README.md`. Throughput is training "
             "samples per second (higher is better). *roofline* = sgemm rate ÷ "
             "(6P − 2·W₁) FLOP per sample; *GEMM-only bound* = batch ÷ time of the step's "
             "matrix products alone with the same BLAS and threads. With several rounds a "
             "cell's figure is the median over rounds, and a ratio between two cells (% GEMM "
             "bound, fastbp / other) the median of the rounds' own ratios.", "",
             "## Workloads", "", workloads_md(R.meta), "", sgemm_md(R), ""]
    for t in R.meta["threads"]:
        parts += [training_md(R, t), ""]
    if png:
        parts += [f"![training throughput]({os.path.basename(png)})", ""]
    for section in (bf16_md(R), variants_md(R), scaling_md(R), inference_md(R), gemm_md(R),
                    memory_md(R)):
        if section:
            parts += [section, ""]
    if spng:
        parts += [f"![thread scaling]({os.path.basename(spng)})", ""]
    parts += ["### All training cells", "", details_md(R), ""]
    flagged = [r for r in R.idx.values() if r.get("status") == "ok" and R.contended(r)]
    notes = list(R.notes)
    if flagged:
        notes.append(f"† {len(flagged)} cell(s) ran while other processes kept more than the "
                     "spare cores busy (column *other load*): their figures are depressed by "
                     "contention, typically severely for multi-threaded cells. Re-run them on a "
                     "quiet machine (`--wait-quiet 60`) or with `--rounds 3`.")
    if notes:
        parts += ["### Notes", ""] + [f"- {n}" for n in notes] + [""]
    md = os.path.join(out_dir, "training.md")
    with open(md, "w") as f:
        f.write("\n".join(parts))
    written.append(md)
    written += [p for p in (png, spng) if p]
    return written
