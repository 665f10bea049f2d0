#!/usr/bin/env python
"""The README's training-throughput tables (Markdown) from a benchmark's JSON.

    python benchmarks/bench.py --batch-sizes 1,10,32,128 --json run.json
    python benchmarks/readme_tables.py run.json

Prints the float64 and float32 samples/s tables and the table of ratios, in the README's
layout, from the records that ``cyprop bench --json`` writes (``results``: one record per
system, variant, workload and batch size, with its median samples/s ``sps_med``).
"""

import argparse
import json

WORKLOADS = ("W1", "W2", "W3")
BATCH_SIZES = (1, 10, 32, 128)
SHORT = {"float64": "f64", "float32": "f32"}
#: (row title, system, variant without the dtype), in the README's order
ROWS = {
    "float64": [("cyprop, 1 thread", "cyprop-cython", "1thr"),
                ("cyprop, 2 threads", "cyprop-cython", "2thr"),
                ("NumPy reference, 1 thread", "cyprop-numpy", "1thr"),
                ("NumPy reference, 2 threads", "cyprop-numpy", "2thr"),
                ("PyTorch, 1 thread", "torch", "1thr"),
                ("PyTorch, 2 threads", "torch", "2thr"),
                ("JAX, 1 thread", "jax", "1thr"),
                ("scikit-learn, 1 thread", "sklearn", "1thr"),
                ("scikit-learn, 2 threads", "sklearn", "2thr"),
                ("plain-C baseline, `-march=native`", "C-baseline", "native"),
                ("plain-C baseline, `-O3`", "C-baseline", "portable")],
    "float32": [("cyprop, 1 thread", "cyprop-cython", "1thr"),
                ("cyprop, 2 threads", "cyprop-cython", "2thr"),
                ("PyTorch, 1 thread", "torch", "1thr"),
                ("PyTorch, 2 threads", "torch", "2thr"),
                ("JAX, 1 thread", "jax", "1thr"),
                ("plain-C baseline, `-march=native`", "C-baseline", "native"),
                ("plain-C baseline, `-O3`", "C-baseline", "portable")],
}
COLUMNS = [(wl, bs) for wl in WORKLOADS for bs in BATCH_SIZES]


def samples_per_second(results, system, variant, workload, batch_size):
    """The record's median samples/s, or None where the run has none."""
    for r in results:
        if (r["system"], r["variant"], r["workload"], r["batch_size"]) == (
                system, variant, workload, batch_size):
            return r["sps_med"]
    return None


def fmt_sps(x):
    if x is None:
        return ""
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e5:
        return f"{x / 1e3:.0f}k"
    return f"{x / 1e3:.1f}k"


def fmt_ratio(a, b):
    return f"{a / b:.2f}" if a and b else ""


def header(title):
    names = [f"{wl}/{bs}" for wl, bs in COLUMNS]
    return [f"| {title} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]


def throughput_table(results, dtype):
    lines = header(f"{dtype}, samples/s")
    for title, system, threads in ROWS[dtype]:
        cells = [fmt_sps(samples_per_second(results, system, f"{SHORT[dtype]} {threads}", wl, bs))
                 for wl, bs in COLUMNS]
        if any(cells):
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return lines


def ratio_table(results):
    def sps(system, variant, wl, bs):
        return samples_per_second(results, system, variant, wl, bs)

    lines = header("ratio (same run)")
    cells = [fmt_ratio(sps("cyprop-cython", "f64 2thr", wl, bs),
                       sps("cyprop-cython", "f64 1thr", wl, bs)) for wl, bs in COLUMNS]
    lines.append("| cyprop 2 threads / 1 thread, float64 | " + " | ".join(cells) + " |")
    for build, title in (("native", "`-march=native`"), ("portable", "`-O3`")):
        cells = []
        for wl, bs in COLUMNS:   # (the C baseline runs at batch size 1 only)
            if bs != 1:
                cells.append("")
                continue
            f64 = fmt_ratio(sps("cyprop-cython", "f64 1thr", wl, 1),
                            sps("C-baseline", f"f64 {build}", wl, 1))
            f32 = fmt_ratio(sps("cyprop-cython", "f32 1thr", wl, 1),
                            sps("C-baseline", f"f32 {build}", wl, 1))
            cells.append(f"{f64} (f32 {f32})" if f64 and f32 else f64)
        lines.append(f"| cyprop / C baseline {title}, batch 1 | " + " | ".join(cells) + " |")
    for dtype in ("float64", "float32"):
        variant = f"{SHORT[dtype]} 1thr"
        cells = [fmt_ratio(sps("cyprop-cython", variant, wl, bs), sps("jax", variant, wl, bs))
                 for wl, bs in COLUMNS]
        lines.append(f"| cyprop / JAX, {dtype} | " + " | ".join(cells) + " |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="a benchmark's --json output")
    results = json.load(open(parser.parse_args().json, encoding="utf-8"))["results"]
    for lines in (throughput_table(results, "float64"), throughput_table(results, "float32"),
                  ratio_table(results)):
        print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
