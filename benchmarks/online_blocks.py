#!/usr/bin/env python
"""Online plain SGD (batch size 1): the per-sample path ('online-next') beside the blocked
one ('online-blocks', at several block sizes) and the plain-C yardstick, in one run.
With ``--optimizers``: SGD with momentum and Nesterov (with weight decay) on both paths,
and Adam, RMSprop and Adagrad on their planned one, as fractions of plain SGD's planned
path and of its per-sample path in the same run.

One thread (OMP_NUM_THREADS=1, BLAS on one thread), one epoch per measurement, the
configurations interleaved within each repeat (a shared machine drifts), median of the
repeats.  ``--yardstick`` names the C source of another plain-C per-sample SGD to
compare with, whose program takes the command line ``bench <W1|W2|W3> <n> <epochs>
fnext`` (not part of cyprop), compiled here with -O3 -march=native; without it, no C
column.  (``cyprop bench --batch-sizes 1`` compares the same path with cyprop's own C
baseline.)

    python benchmarks/online_blocks.py --yardstick path/to/sgd.c
    python benchmarks/online_blocks.py --workloads W3 --ks 16,32,48,64 --repeats 7
    python benchmarks/online_blocks.py --workloads 784x256x10 --ks 32,64
    python benchmarks/online_blocks.py --optimizers --workloads W2,W3 --repeats 7
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import cyprop  # noqa: E402
from cyprop import _compiled  # noqa: E402

SIZES = {"W1": [64, 32, 10], "W2": [784, 30, 10], "W3": [784, 100, 10]}


def sizes_of(workload):
    """W1, W2, W3, or any sizes written as 784x256x10 (random data)."""
    return SIZES.get(workload) or [int(s) for s in workload.split("x")]


def data(workload, n, dtype):
    rng = np.random.default_rng(0)
    sizes = sizes_of(workload)
    if workload == "W1":
        try:
            from sklearn.datasets import load_digits
            digits = load_digits()
            X, y = digits.data / 16, digits.target
        except ImportError:
            X, y = rng.uniform(size=(1797, 64)), rng.integers(0, 10, 1797)
        # an epoch of 1797 samples lasts about a millisecond: repeated up to ``n``, for a
        # measurement that the machine's noise does not swamp
        X, y = np.tile(X, (n // len(X) + 1, 1))[:n], np.tile(y, n // len(y) + 1)[:n]
    else:
        X, y = rng.uniform(size=(n, sizes[0])), rng.integers(0, 10, n)
    Y = np.eye(sizes[-1])[y % sizes[-1]]
    return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(Y, dtype=dtype)


#: --optimizers: SGD's variants (those of ``cyprop bench --optimizers``), lr 0.1.
MOMENTUM = {"momentum": dict(momentum=0.9),
            "nesterov+wd": dict(momentum=0.9, nesterov=True, weight_decay=1e-4)}


#: --optimizers: the adaptive ones on their planned (per-sample, fused) path, for their
#: fraction of plain SGD on both of its paths.
ADAPTIVE = {"adam": lambda: cyprop.Adam(0.001), "rmsprop": lambda: cyprop.RMSprop(0.001),
            "adagrad": lambda: cyprop.Adagrad(0.01)}


def epoch_seconds(core, net, X, Y, plan, make=None, **sgd):
    """Seconds of one epoch on ``plan`` from the net's start and a fresh optimizer:
    ``make()``'s, else SGD (lr 0.1, options ``sgd``; plain by default)."""
    params = net._params.copy()
    optimizer = make() if make else cyprop.SGD(0.1, **sgd)
    state = optimizer.state_for(params)
    order = np.arange(len(X), dtype=np.intp)
    hyper = vars(_compiled.core_hyper(optimizer))
    arch = net.arch
    start = time.perf_counter()
    core.train_epoch(arch.sizes_array, arch.activation_codes, arch.loss_code, params, X, Y,
                     order, plan.struct(core), hyper, state, 0)
    return time.perf_counter() - start


def build_yardstick(source, folder):
    binaries = {}
    for dtype, define in (("float64", []), ("float32", ["-DUSE_FLOAT"])):
        path = Path(folder) / f"sgd_{dtype}"
        subprocess.run(["gcc", "-O3", "-march=native", *define, '-DFLAGS_STR="native"',
                        "-o", str(path), source, "-lm"], check=True)
        binaries[dtype] = path
    return binaries


def yardstick_seconds(binary, workload, n):
    out = subprocess.run([str(binary), "bench", workload, str(n), "1", "fnext"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])["times"][0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="W1,W2,W3")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--ks", default="", help="block sizes besides the planned one")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--yardstick", default="", help="C source of the plain-C yardstick")
    parser.add_argument("--optimizers", action="store_true",
                        help="momentum, Nesterov+wd and the adaptive optimizers, vs plain SGD")
    args = parser.parse_args(argv)
    core = _compiled.KERNELS[_compiled.CHOSEN]
    print(f"kernel {_compiled.CHOSEN}, BLAS threads controlled: "
          f"{core.blas_threads_controlled()}")
    extra_ks = [int(k) for k in args.ks.split(",") if k]
    if args.optimizers:
        return compare_optimizers(core, args)
    with tempfile.TemporaryDirectory() as folder:
        binaries = build_yardstick(args.yardstick, folder) if args.yardstick else {}
        for dtype in args.dtypes.split(","):
            for workload in args.workloads.split(","):
                sizes = sizes_of(workload)
                X, Y = data(workload, args.samples, dtype)
                net = cyprop.Network(sizes, activation="sigmoid", output="softmax",
                                     loss="cross_entropy", dtype=dtype, seed=0)
                planned = _compiled.plan(net.arch, cyprop.SGD(0.1), 1)
                k_plan = _compiled.online_block_rows(sizes[1])
                configs = {"online-next": _compiled.Plan("online-next", "sgd", 1)}
                for k in sorted({k_plan, *extra_ks}):
                    configs[f"blocks k={k}"] = _compiled.Plan("online-blocks", "sgd", 1, k)
                epoch_seconds(core, net, X[:500], Y[:500], planned)   # warm-up
                times = {name: [] for name in configs}
                yardstick = binaries.get(dtype) if workload in SIZES else None
                if yardstick:
                    times["C native"] = []
                for _ in range(args.repeats):
                    for name, plan in configs.items():
                        times[name].append(epoch_seconds(core, net, X, Y, plan))
                    if yardstick:
                        times["C native"].append(yardstick_seconds(yardstick, workload, len(X)))
                sps = {name: len(X) / float(np.median(t)) for name, t in times.items()}
                c = sps.get("C native")
                print(f"{workload} {dtype} (n={len(X)}, planned: {planned.path}"
                      f"{' k=%d' % planned.block_rows if planned.path == 'online-blocks' else ''})")
                for name, value in sps.items():
                    ratio = f"  {value / c:5.2f}x C" if c else ""
                    print(f"  {name:14s} {value / 1e3:9.1f}k samples/s  "
                          f"{value / sps['online-next']:5.2f}x online-next{ratio}")



def compare_optimizers(core, args):
    """Momentum and Nesterov (with weight decay) per sample ('online-next', the path before
    the blocks) and blocked ('online-blocks'), as fractions of plain SGD's planned path."""
    for dtype in args.dtypes.split(","):
        for workload in args.workloads.split(","):
            sizes = sizes_of(workload)
            X, Y = data(workload, args.samples, dtype)
            net = cyprop.Network(sizes, activation="sigmoid", output="softmax",
                                 loss="cross_entropy", dtype=dtype, seed=0)
            k = _compiled.online_block_rows(sizes[1])
            configs = {"sgd planned": ({}, _compiled.plan(net.arch, cyprop.SGD(0.1), 1)),
                       "sgd online-next": ({}, _compiled.Plan("online-next", "sgd", 1))}
            for name, options in MOMENTUM.items():
                rule = _compiled._rule(cyprop.SGD(0.1, **options), core)
                configs[f"{name} online-next"] = (options, _compiled.Plan("online-next",
                                                                          rule, 1))
                configs[f"{name} blocks"] = (options, _compiled.Plan("online-blocks", rule,
                                                                     1, k))
            for name, make in ADAPTIVE.items():
                configs[f"{name} planned"] = ({"make": make},
                                              _compiled.plan(net.arch, make(), 1))
            for options, plan in configs.values():   # warm-up
                epoch_seconds(core, net, X[:500], Y[:500], plan, **options)
            times = {name: [] for name in configs}
            for _ in range(args.repeats):
                for name, (options, plan) in configs.items():
                    times[name].append(epoch_seconds(core, net, X, Y, plan, **options))
            sps = {name: len(X) / float(np.median(t)) for name, t in times.items()}
            base, per_sample = sps["sgd planned"], sps["sgd online-next"]
            print(f"{workload} {dtype} (n={len(X)}, plain SGD planned: "
                  f"{configs['sgd planned'][1].path}, k={k})")
            for name, value in sps.items():
                print(f"  {name:24s} {value / 1e3:9.1f}k samples/s  "
                      f"{value / base:5.2f} of plain SGD  "
                      f"{value / per_sample:5.2f} of its per-sample path")


if __name__ == "__main__":
    main()
