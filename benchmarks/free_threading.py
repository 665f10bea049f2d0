#!/usr/bin/env python
"""Thread scaling of cyprop with and without the GIL: 1 thread against 2 for

- ``train_many`` of 4 networks (``n_threads=1`` against ``2``),
- ``fit`` of two networks, one after the other against one per Python thread,
- one-row calls, a loop of them on one thread against a loop on each of two threads:
  ``forward`` on one shared network, ``partial_fit`` on a network per thread,
- and, as a control, SHA-256 of a large buffer (which releases the GIL): what two threads
  can get from the machine at the time.

The workload is W2: ``[784, 30, 10]``, sigmoid, softmax + cross-entropy, plain SGD, on
random MNIST-shaped data (``--samples``, 10,000), batch sizes 1 and 10.  Every fit runs
its kernels on one thread (``n_threads=1``), so the threads are the Python threads alone.
Figures are samples (or calls) per second, medians of ``--repeats`` rounds, each round
the better of two tries on 1 thread and on 2, alternated; the speed-up is 2 threads over
1 (the median of the rounds' ratios).

Run it with any Python that has cyprop installed, say a free-threaded 3.14t:

    PYTHON_GIL=0 python3.14t benchmarks/free_threading.py
    PYTHON_GIL=1 python3.14t benchmarks/free_threading.py     # the same build, GIL on

``--compare`` runs several interpreters in one run, their rounds interleaved (a shared
machine drifts), and prints one table; each is ``PYTHON`` or ``PYTHON:VAR=VALUE,...``:

    python benchmarks/free_threading.py --compare python3.14t:PYTHON_GIL=0 \\
        python3.14t:PYTHON_GIL=1 python3.11
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

SIZES = [784, 30, 10]
BATCH_SIZES = (1, 10)
N_NETWORKS = 4   # train_many's networks
ROWS = (         # (name, what its rate counts)
    ("train_many, 4 networks", "samples/s"),
    ("fit, 2 networks", "samples/s"),
    ("forward, 1 row, shared network", "calls/s"),
    ("partial_fit, 1 row, network per thread", "calls/s"),
    ("control: SHA-256, no GIL held", "MB/s"),
)
#: The control: hashlib releases the GIL for large buffers, so its speed-up is what two
#: threads get from this machine at the moment (2 on two idle cores; less when shared).
CONTROL_MB, CONTROL_HASHES = 16, 8


def data(n: int):
    import numpy as np
    rng = np.random.default_rng(0)
    return rng.uniform(size=(n, SIZES[0])), rng.integers(0, SIZES[-1], n)


def network(seed: int):
    import cyprop
    return cyprop.Network(SIZES, seed=seed, backend="cython")


def on_threads(work, n_threads: int) -> float:
    """Wall time of ``work(i)`` on each of ``n_threads`` threads started together (from
    the first start to the last end: not counting how long the OS takes to start them)."""
    barrier = threading.Barrier(n_threads)
    spans: list[tuple[float, float]] = []

    def run(i: int) -> None:
        barrier.wait()
        began = time.perf_counter()
        work(i)
        spans.append((began, time.perf_counter()))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return max(end for _, end in spans) - min(began for began, _ in spans)


def pair(one, two) -> list[float]:
    """[rate on 1 thread, rate on 2]: the better of two tries of each, alternated (a
    first run right after other work was up to 15% slower)."""
    ones, twos = [], []
    for _ in range(2):
        ones.append(one())
        twos.append(two())
    return [max(ones), max(twos)]


def measure(samples: int, epochs: int, calls: int) -> dict[str, list[float]]:
    """One round: {row name: [rate on 1 thread, rate on 2]} of every measurement."""
    import cyprop
    X, y = data(samples)
    rates: dict[str, list[float]] = {}

    for batch_size in BATCH_SIZES:
        fit = {"epochs": epochs, "batch_size": batch_size, "seed": 0, "verbose": 0}

        def many(n_threads: int) -> float:
            began = time.perf_counter()
            cyprop.train_many(network, X, y, N_NETWORKS, n_threads=n_threads, **fit)
            return N_NETWORKS * epochs * samples / (time.perf_counter() - began)

        rates[f"{ROWS[0][0]}, batch {batch_size}"] = pair(lambda: many(1), lambda: many(2))

        def fits(n_threads: int) -> float:
            nets = [network(i) for i in range(2)]
            if n_threads == 1:
                began = time.perf_counter()
                for net in nets:
                    net.fit(X, y, n_threads=1, **fit)
                took = time.perf_counter() - began
            else:
                took = on_threads(lambda i: nets[i].fit(X, y, n_threads=1, **fit), 2)
            return 2 * epochs * samples / took

        rates[f"{ROWS[1][0]}, batch {batch_size}"] = pair(lambda: fits(1), lambda: fits(2))

    rows = [X[i] for i in range(min(calls, samples))]   # 1-D rows, as a service gets them
    labels = [int(label) for label in y[:len(rows)]]
    shared = network(0)

    def serve(i: int) -> None:
        for k in range(calls):
            shared.forward(rows[k % len(rows)])

    rates[ROWS[2][0]] = pair(lambda: calls / on_threads(serve, 1),
                             lambda: 2 * calls / on_threads(serve, 2))

    learners = [network(i) for i in range(2)]
    for net in learners:
        net.partial_fit(rows[0], labels[0], optimizer=cyprop.SGD(0.1))

    def learn(i: int) -> None:
        net = learners[i]
        for k in range(calls):
            net.partial_fit(rows[k % len(rows)], labels[k % len(rows)])

    rates[ROWS[3][0]] = pair(lambda: calls / on_threads(learn, 1),
                             lambda: 2 * calls / on_threads(learn, 2))

    buffer = b"x" * (CONTROL_MB << 20)

    def digest(i: int) -> None:
        for _ in range(CONTROL_HASHES):
            hashlib.sha256(buffer).digest()

    work = CONTROL_MB * CONTROL_HASHES
    rates[ROWS[4][0]] = pair(lambda: work / on_threads(digest, 1),
                             lambda: 2 * work / on_threads(digest, 2))
    return rates


def describe() -> dict[str, object]:
    """This interpreter and machine, as the table's header names them."""
    import cyprop
    from cyprop import _compiled
    gil = sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True
    build = "free-threaded" if "free-threading" in sys.version else "GIL build"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return {"python": platform.python_version(), "build": build, "gil": gil,
            "label": f"{platform.python_version()} {build}, GIL {'on' if gil else 'off'}",
            "cyprop": cyprop.__version__, "kernel": _compiled.CHOSEN, "cpu": cpu,
            "cores": cores}


def child(args: argparse.Namespace) -> None:
    """Measure ``args.repeats`` rounds here and print them as JSON."""
    measure(min(args.samples, 1000), 1, 200)   # warm-up: imports, first calls
    rounds = [measure(args.samples, args.epochs, args.calls) for _ in range(args.repeats)]
    json.dump({"about": describe(), "rounds": rounds}, sys.stdout)


def run_child(spec: str, args: argparse.Namespace) -> dict:
    """One round of the interpreter ``spec`` (``PYTHON`` or ``PYTHON:VAR=VALUE,...``)."""
    python, _, settings = spec.partition(":")
    env = dict(os.environ)
    env.update(setting.split("=", 1) for setting in settings.split(",") if setting)
    command = [python, os.path.abspath(__file__), "--child", "--repeats", "1",
               "--samples", str(args.samples), "--epochs", str(args.epochs),
               "--calls", str(args.calls)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{spec} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def table(results: list[dict]) -> str:
    """A Markdown table: per measurement and interpreter, the medians on 1 and 2 threads
    and their ratio."""
    names = list(results[0]["rounds"][0])
    lines = ["| measurement | Python | 1 thread | 2 threads | speed-up |",
             "|---|---|---:|---:|---:|"]
    for name in names:
        unit = next(unit for row, unit in ROWS if name.startswith(row))
        for result in results:
            one = statistics.median(r[name][0] for r in result["rounds"])
            two = statistics.median(r[name][1] for r in result["rounds"])
            # the speed-up of each round, then their median (rounds drift together)
            gain = statistics.median(r[name][1] / r[name][0] for r in result["rounds"])
            lines.append(f"| {name} ({unit}) | {result['about']['label']} | {short(one)} "
                         f"| {short(two)} | {gain:.2f} |")
    return "\n".join(lines)


def short(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    return f"{rate / 1e3:.1f}k" if rate >= 1e3 else f"{rate:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="rounds (medians; 7)")
    parser.add_argument("--samples", type=int, default=10_000, help="training samples")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each fit (3)")
    parser.add_argument("--calls", type=int, default=20_000,
                        help="one-row calls per thread and round (20,000)")
    parser.add_argument("--compare", nargs="+", metavar="PYTHON[:VAR=VALUE,...]",
                        help="interpreters to measure in one run, rounds interleaved")
    parser.add_argument("--json", metavar="PATH", help="also write the raw rounds here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    specs = args.compare or [sys.executable]   # (a child has this environment)
    results: list[dict] = [{"about": None, "rounds": []} for _ in specs]
    began = time.perf_counter()
    for r in range(args.repeats):
        for spec, result in zip(specs, results):
            print(f"round {r + 1}/{args.repeats}: {spec}", file=sys.stderr, flush=True)
            done = run_child(spec, args)
            result["about"] = done["about"]
            result["rounds"] += done["rounds"]
    about = results[0]["about"]
    print(f"cyprop {about['cyprop']}, kernel {about['kernel']}, {about['cores']} usable "
          f"cores, {about['cpu']}; W2 {SIZES}, {args.samples:,} samples, {args.epochs} "
          f"epochs per fit, {args.calls:,} one-row calls per thread; medians of "
          f"{args.repeats} rounds, in {time.perf_counter() - began:.0f} s\n")
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"specs": specs, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
