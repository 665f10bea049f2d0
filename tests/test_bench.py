"""The benchmark suite, cyprop.bench: it ships in the package with its C baseline, runs
from any installation, and writes every measurement and ratio it prints.

The runs here are tiny (a few hundred samples, one repeat): they check what the benchmark
does, not how fast anything is.
"""

import contextlib
import importlib.resources
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import cyprop
from cyprop.bench import _baseline, _suite
from cyprop.bench import main as bench_main

ROOT = Path(__file__).resolve().parents[1]
COMPILED = "cython" in cyprop.available_backends()


def tiny(*extra):
    """Arguments of a run that takes a few seconds."""
    return ["--quick", "--samples", "300", "--max-samples-slow", "60", "--repeats", "1",
            *extra]


def run_python(code, cwd):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# ----------------------------------------------------------------- packaging
def test_c_source_is_installed_with_the_package():
    source = importlib.resources.files("cyprop.bench").joinpath(_baseline.SOURCE_NAME)
    assert source.is_file(), f"{_baseline.SOURCE_NAME} is missing from the installed cyprop"
    text = source.read_text(encoding="utf-8")
    assert "int main(int argc, char **argv)" in text and "CYPROP_FLOAT32" in text
    assert _baseline.source().read_bytes() == source.read_bytes()


def test_python_dash_m_help_outside_the_source_tree(tmp_path):
    done = subprocess.run([sys.executable, "-m", "cyprop.bench", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m cyprop.bench")
    assert "--quick" in done.stdout and "W3 [784, 100, 10]" in done.stdout


def test_imports_stay_light(tmp_path):
    """``import cyprop`` leaves the benchmark out; importing the benchmark loads no peer."""
    out = run_python("""
        import sys
        import cyprop
        print("bench" if "cyprop.bench" in sys.modules else "-")
        import cyprop.bench
        print(" ".join(m for m in ("torch", "sklearn", "matplotlib") if m in sys.modules))
        """, cwd=tmp_path)
    first, peers = (out.splitlines() + [""])[:2]
    assert first == "-"
    assert peers == ""


# ----------------------------------------------------------------- arguments
def test_quick_defaults_and_what_overrides_them():
    args = _suite.parse_args(["--quick"])
    assert (args.workloads, args.batch_sizes, args.dtypes, args.threads) == (
        ["W1", "W2"], [1, 10], ["float64"], [1])
    assert args.systems == ["cython", "numpy", "c", "torch", "sklearn"]
    args = _suite.parse_args(["--quick", "--workloads", "w3", "--dtypes", "f32,float64",
                              "--systems", "cython,yardstick"])
    assert (args.workloads, args.dtypes, args.systems) == (
        ["W3"], ["float64", "float32"], ["cython", "c"])
    full = _suite.parse_args([])
    assert (full.workloads, full.batch_sizes, full.repeats, full.samples) == (
        ["W1", "W2", "W3"], [1, 10, 128], 5, 10000)
    assert full.systems == list(_suite.SYSTEMS) and full.json is None


@pytest.mark.parametrize("bad", [["--dtypes", "float16"], ["--systems", "mxnet"],
                                 ["--workloads", "W9"], ["--batch-sizes", "0"],
                                 ["--threads", "two"],
                                 # one of these ran and the others were dropped
                                 ["--optimizers", "--one-row"],
                                 ["--largedata", "--optimizers"],
                                 # refused at the end of the run, or (empty) ignored
                                 ["--json", "."], ["--json", ""], ["--plot", "out/"],
                                 ["--json", f"{__file__}/x.json"],
                                 # the numbers written over the plot at the end
                                 ["--json", "r.png", "--plot", "./r.png"],
                                 # a format matplotlib cannot write: after the whole run
                                 pytest.param(["--plot", "x.xyz"], marks=pytest.mark.skipif(
                                     not importlib.util.find_spec("matplotlib"),
                                     reason="needs matplotlib"))])
def test_bad_arguments_are_usage_errors(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main(bad)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--point-budget", "nan"], ["--point-budget", "-1"],
                                 ["--blas-threads", "-3"], ["--lbfgs-iter", "0"],
                                 ["--sparse-density", "2"], ["--sparse-density", "0"],
                                 ["--sparse-density", "nan"]])
def test_settings_without_a_meaning_are_refused_before_the_run(bad, capsys):
    """(They were taken, and the run went on with them: a NaN budget that never stopped
    a point, -3 BLAS threads handed to threadpoolctl, a sparse density of 2.)"""
    with pytest.raises(SystemExit) as exc:
        _suite.parse_args(bad)
    assert exc.value.code == 2
    assert bad[0] in capsys.readouterr().err


# ------------------------------------------------------------------ a real run
@pytest.mark.skipif(not COMPILED, reason="needs cyprop's compiled core")
def test_tiny_run_prints_and_writes_the_ratios(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)   # nothing may depend on the source tree
    path = tmp_path / "out" / "bench.json"
    assert bench_main(tiny("--workloads", "W1", "--systems", "cython,numpy,c",
                           "--json", str(path))) == 0
    out = capsys.readouterr().out
    report = json.loads(path.read_text())

    assert report["config"]["quick"] and report["config"]["workloads"] == ["W1"]
    assert report["machine"]["cyprop"] == cyprop.__version__
    measured = {(r["system"], r["variant"], r["batch_size"]) for r in report["results"]}
    assert {("cyprop-cython", "f64 1thr", 1), ("cyprop-cython", "f64 1thr", 10),
            ("cyprop-numpy", "f64 1thr", 1), ("cyprop-numpy", "f64 1thr", 10)} <= measured
    for r in report["results"]:
        assert r["sps_med"] > 0 and len(r["times"]) == r["repeats"]
    versus_numpy = report["ratios"]["cython_over_peer"]["cyprop-numpy"]["f64 1thr"]
    assert set(versus_numpy) == {"W1/bs=1", "W1/bs=10"}
    assert all(ratio > 0 for ratio in versus_numpy.values())
    assert "cython / NumPy reference, f64 1thr" in out
    assert report["inference"] and report["threads"]["n_samples"] == 300
    (share,) = report["gemm_share"]   # W1 at the largest batch size, float64
    assert share["batch_size"] == 10 and 0 < share["fraction"] and share["gemm_gflops"] > 0
    assert "against the batch's matrix products alone" in out

    # The C baseline ran, or the output says why not.
    c_runs = [r for r in report["results"] if r["system"] == _suite.C_SYSTEM]
    if c_runs:
        assert report["c_baseline"]["compiler"]
        assert {r["variant"] for r in c_runs} <= {"f64 native", "f64 portable"}
        assert c_runs[0]["n_samples"] == 300 and c_runs[0]["batch_size"] == 1
        assert set(report["ratios"]["cython_bs1_over_c_baseline"]["W1"]) <= {
            "f64_vs_native", "f64_vs_portable"}
        assert "compiled core at bs=1 / the plain-C baseline" in out
    else:
        notes = [n for n in report["skipped"] if n.startswith("C baseline")]
        assert notes, report["skipped"]
        assert f"skipped: {notes[0]}" in out
    assert f"raw numbers written to {path}" in out


@pytest.mark.skipif(not COMPILED, reason="needs cyprop's compiled core")
def test_c_baseline_without_a_compiler_is_skipped_with_a_reason(tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))          # no cc, gcc or clang
    monkeypatch.setenv("CC", "/bin/false" if os.path.exists("/bin/false") else "nocc")
    config_var = sysconfig.get_config_var
    monkeypatch.setattr(_baseline.sysconfig, "get_config_var",
                        lambda name: None if name == "CC" else config_var(name))
    path = tmp_path / "bench.json"
    assert bench_main(tiny("--workloads", "W1", "--batch-sizes", "1", "--systems", "cython,c",
                           "--json", str(path))) == 0
    out = capsys.readouterr().out
    report = json.loads(path.read_text())
    assert not [r for r in report["results"] if r["system"] == _suite.C_SYSTEM]
    note, = report["skipped"]
    assert note.startswith("C baseline: no working C compiler") and "set CC" in note
    assert f"skipped: {note}" in out
    assert report["c_baseline"]["compiler"] is None


# ------------------------------------------------------- the C baseline's maths
def numpy_online_sgd(weights, biases, X, y, learning_rate):
    """The C baseline's training, in NumPy: sigmoid layers, quadratic cost, one sample
    at a time, in order."""
    weights = [w.copy() for w in weights]
    biases = [b.copy() for b in biases]
    for x, label in zip(X, y):
        acts = [x]
        for w, b in zip(weights, biases):
            acts.append(1.0 / (1.0 + np.exp(-(w @ acts[-1] + b))))
        target = np.zeros_like(acts[-1])
        target[label] = 1.0
        delta = (acts[-1] - target) * acts[-1] * (1.0 - acts[-1])
        for layer in range(len(weights) - 1, -1, -1):
            below = acts[layer]
            delta_below = (weights[layer].T @ delta) * below * (1.0 - below)
            weights[layer] -= learning_rate * np.outer(delta, below)
            biases[layer] -= learning_rate * delta
            delta = delta_below
    return np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(weights, biases)])


def test_c_baseline_trains_like_numpy(tmp_path):
    """The baseline computes what it claims: one epoch of its fused loops gives the
    weights of the textbook loop (layers narrower and wider than its 16 partial sums,
    and deeper and shallower networks)."""
    with _baseline.Baseline([("float64", "portable"), ("float32", "native")],
                            fallback=True) as baseline:
        if baseline.compiler is None:
            pytest.skip(baseline.notes[0])
        rng = np.random.default_rng(0)
        for sizes in ([5, 4, 3], [64, 32, 10], [37, 19, 17, 3], [40, 3]):
            n = 23
            X = rng.random((n, sizes[0]))
            y = rng.integers(0, sizes[-1], n).astype(np.int32)
            weights = [rng.normal(size=(sizes[l], sizes[l - 1])) / np.sqrt(sizes[l - 1])
                       for l in range(1, len(sizes))]
            biases = [0.1 * rng.normal(size=sizes[l]) for l in range(1, len(sizes))]
            start = np.concatenate([np.concatenate([w.ravel(), b])
                                    for w, b in zip(weights, biases)])
            expected = numpy_online_sgd(weights, biases, X, y, 0.5)
            for (dtype, build) in baseline.programs:
                folder = tmp_path / f"{dtype}-{build}-{len(sizes)}-{sizes[0]}"
                folder.mkdir()
                start.astype("<f8").tofile(folder / "params.f64")
                X.astype("<f8").tofile(folder / "X.f64")
                y.astype("<i4").tofile(folder / "y.i32")
                got = np.fromfile(baseline.train(dtype, build, folder, sizes, n, 0.5), "<f8")
                tol = 1e-12 if dtype == "float64" else 1e-5
                np.testing.assert_allclose(got, expected, rtol=0, atol=tol,
                                           err_msg=f"{dtype} {build} {sizes}")
                assert np.abs(expected - start).max() > 0.1   # it did train


# ------------------------------------------ the script in the source checkout
def test_checkout_script_smoke_run_writes_every_measurement(tmp_path):
    """benchmarks/bench.py (a thin wrapper of cyprop.bench.main): each system at each
    thread count (bs 1 on one thread only), the ratios at one dtype and thread count, and
    the JSON."""
    script = ROOT / "benchmarks" / "bench.py"
    if not script.is_file():
        pytest.skip("benchmarks/bench.py is not beside these tests")
    if not COMPILED:
        pytest.skip("needs cyprop's compiled core")
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(script), *tiny(
                           "--workloads", "W1", "--batch-sizes", "1,10",
                           "--systems", "cython,numpy", "--dtypes", "float64,float32",
                           "--threads", "1,2", "--json", str(out))],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    measured = {(r["system"], r["variant"], r["batch_size"]) for r in report["results"]}
    for system, dtypes in (("cyprop-cython", ("f64", "f32")), ("cyprop-numpy", ("f64",))):
        for dtype in dtypes:
            assert (system, f"{dtype} 1thr", 1) in measured
            assert (system, f"{dtype} 2thr", 1) not in measured
            assert {(system, f"{dtype} {t}thr", 10) for t in (1, 2)} <= measured
    ratios = report["ratios"]
    assert set(ratios["cython_over_best_peer"]["f64 2thr"]) == {"W1/bs=10"}
    assert ratios["cython_over_best_peer"]["f64 1thr"]["W1/bs=1"]["peer"].startswith("cyprop-numpy")
    assert ratios["thread_scaling"]["2thr/1thr"]["W1/bs=10"] > 0
    assert "Ratios of samples/s" in done.stdout


@pytest.mark.skipif(not COMPILED, reason="needs cyprop's compiled core")
def test_one_row_calls_are_timed_against_the_numpy_chain(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("cyprop.bench._one_row.LOOP_SECONDS", 0.002)
    path = tmp_path / "one_row.json"
    assert bench_main(["--one-row", "--repeats", "1", "--samples", "300",
                       "--dtypes", "f64,f32", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    calls = json.loads(path.read_text())["one_row"]["calls"]
    mine = {(c["call"], c["dtype"]) for c in calls if c["system"] == "cyprop"}
    assert mine == {(f"{call} {shape}", dtype)
                    for call in ("forward", "predict", "partial_fit")
                    for shape in ("(1, n)", "(n,)") for dtype in ("float64", "float32")}
    for c in calls:
        assert c["seconds"] > 0 and c["ratio_to_numpy_chain"] == pytest.approx(
            c["seconds"] / c["numpy_chain_seconds"])
    assert "NumPy one-row forward chain (f64)" in out and "x the NumPy chain" in out


def test_a_one_row_call_and_the_numpy_chain_are_timed_in_turn(monkeypatch):
    """Each call's ratio is to the chain timed beside it: their loops alternate."""
    from cyprop.bench import _one_row
    monkeypatch.setattr(_one_row, "loop_length", lambda call: 2)
    log = []
    seconds, chain = _one_row.per_call_beside(lambda: log.append("call"),
                                              lambda: log.append("chain"), repeats=3)
    assert log == ["chain", "chain", "call", "call"] * 3
    assert seconds > 0 and chain > 0


def test_the_batch_products_are_those_of_one_sgd_step():
    """Forward, gradient and (above the first layer) delta products, each as many
    multiply-adds as the layer has weights times the batch size."""
    calls = _suite.batch_products("W3", 128)
    assert len(calls) == 5
    weights = 784 * 100 + 100 * 10
    assert sum(m * n * k for _, _, m, n, k in calls) == 128 * (2 * weights + 100 * 10)


# ------------------------------------------------- the systems of a point take turns
def fake_point(system, log, seconds=None, sleep=0.0):
    """A Point whose epoch logs its system (and returns ``seconds``, as cyprop's History
    does, when given), and whose context logs around each call."""
    def epoch():
        log.append(system)
        time.sleep(sleep)
        return seconds

    @contextlib.contextmanager
    def context():
        log.append(f"enter {system}")
        yield
        log.append(f"exit {system}")

    return _suite.Point(system, "f64 1thr", "float64", 100, False, epoch, context)


def test_systems_are_warmed_up_once_then_timed_in_turn(monkeypatch):
    monkeypatch.setattr(_suite, "REWARM_BELOW", 0)   # (no re-warm calls here)
    log = []
    points = [fake_point(s, log) for s in ("cyprop-cython", "torch", "jax")]
    times = _suite.time_in_turn(points, repeats=3)
    calls = [entry for entry in log if " " not in entry]
    assert calls == ["cyprop-cython", "torch", "jax"] * 4   # warm-ups, then 3 rounds
    assert [len(t) for t in times] == [3, 3, 3]
    # Each call runs inside its own system's context, and nothing else runs in it.
    assert log == [e for s in calls for e in (f"enter {s}", s, f"exit {s}")]


def test_a_short_epoch_is_warmed_up_again_before_each_timed_run(monkeypatch):
    """Taking turns, the other systems evict a small workload's data from the caches: an
    epoch under REWARM_BELOW runs once more, untimed, right before each timed run (as a
    sequential run's epochs follow their own); a longer one, or a system alone, does not."""
    monkeypatch.setattr(_suite, "REWARM_BELOW", 0.01)
    log = []
    points = [fake_point("cyprop-cython", log), fake_point("sklearn", log, sleep=0.02)]
    _suite.time_in_turn(points, repeats=2)
    calls = [entry for entry in log if " " not in entry]
    assert calls == ["cyprop-cython", "sklearn"] + ["cyprop-cython"] * 2 + ["sklearn"] + \
        ["cyprop-cython"] * 2 + ["sklearn"]
    log.clear()
    _suite.time_in_turn(points[:1], repeats=2)
    assert [entry for entry in log if " " not in entry] == ["cyprop-cython"] * 3


def test_an_epoch_that_measures_itself_is_taken_at_its_word():
    log = []
    points = [fake_point("cyprop-cython", log, seconds=123.0), fake_point("torch", log)]
    mine, timed = _suite.time_in_turn(points, repeats=2)
    assert mine == [123.0, 123.0]
    assert all(0 <= t < 1 for t in timed)


def test_a_system_over_its_budget_stops_while_the_others_go_on(monkeypatch):
    monkeypatch.setattr(_suite, "REWARM_BELOW", 0)   # (no re-warm calls here)
    log = []
    slow = fake_point("sklearn", log, sleep=0.02)
    points = [fake_point("cyprop-cython", log), slow, fake_point("torch", log)]
    fast, slowest, other = _suite.time_in_turn(points, repeats=6, budget=0.05)
    assert len(slowest) == 3                   # the 3 timed calls it always gets
    assert len(fast) == len(other) == 6
    calls = [entry for entry in log if " " not in entry]
    assert calls.count("sklearn") == 4         # its warm-up and 3 timed calls
    assert calls[3:] == (["cyprop-cython", "sklearn", "torch"] * 3
                         + ["cyprop-cython", "torch"] * 3)


def test_each_point_is_prepared_then_timed_before_the_next(monkeypatch):
    """run_training groups by workload, dtype, batch size and threads, prepares a group's
    systems only when its turn comes, times them in turn, runs the C baseline after each
    point at bs=1 of --dtypes, and returns each system's records together."""
    monkeypatch.setattr(_suite, "REWARM_BELOW", 0)   # (no re-warm calls here)
    log = []

    def prepare(system, dtypes):
        def prepare_point(g, X, y, args):
            if g.dtype not in dtypes:
                return None
            log.append(("prepare", system, g))
            point = fake_point(system, [])
            point.epoch = lambda: log.append(("call", system, g))
            point.variant = g.variant
            return point
        return prepare_point

    def c_baseline(wl, dtype, n):
        log.append(("C", wl, dtype))
        return [_suite.result(_suite.C_SYSTEM, f"{_suite.SHORT_DTYPE[dtype]} native", wl, 1,
                              dtype, n, [0.001])]

    args = _suite.parse_args(["--workloads", "W1", "--batch-sizes", "1,10", "--threads", "1,2",
                              "--dtypes", "f32", "--repeats", "2"])
    data = {"W1": (np.zeros((50, 64)), np.zeros(50, dtype=np.int64))}
    prepares = [prepare("cyprop-cython", ["float32"]), prepare("cyprop-numpy", ["float64"])]
    records = _suite.run_training(data, prepares, args, c_baseline)

    Group = _suite.Group
    groups = [Group("W1", 1, "float64", 1), Group("W1", 10, "float64", 1),
              Group("W1", 10, "float64", 2), Group("W1", 1, "float32", 1),
              Group("W1", 10, "float32", 1), Group("W1", 10, "float32", 2)]
    expected = []
    for g in groups:
        system = "cyprop-numpy" if g.dtype == "float64" else "cyprop-cython"
        expected += [("prepare", system, g)] + [("call", system, g)] * 3
        if g == Group("W1", 1, "float32", 1):   # the C baseline at --dtypes only
            expected.append(("C", "W1", "float32"))
    assert log == expected
    assert [(r["system"], r["variant"], r["batch_size"]) for r in records] == [
        ("cyprop-cython", "f32 1thr", 1), ("cyprop-cython", "f32 1thr", 10),
        ("cyprop-cython", "f32 2thr", 10), (_suite.C_SYSTEM, "f32 native", 1),
        ("cyprop-numpy", "f64 1thr", 1), ("cyprop-numpy", "f64 1thr", 10),
        ("cyprop-numpy", "f64 2thr", 10)]
    assert all(r["repeats"] == 2 for r in records if r["system"] != _suite.C_SYSTEM)


@pytest.mark.skipif(not COMPILED, reason="needs cyprop's compiled core")
def test_a_real_run_alternates_the_systems_of_each_point(tmp_path, capsys, monkeypatch):
    """Through main and the systems' own preparation: the compiled core and the NumPy
    reference take turns at every point."""
    log = []
    for system in ("cython", "numpy"):
        module, prepare, title = _suite.TRAINERS[system]

        def logged(g, X, y, args, prepare=prepare):
            point = prepare(g, X, y, args)
            if point is not None:
                epoch = point.epoch
                point.epoch = lambda: (log.append((point.system, g.batch_size)), epoch())[1]
            return point

        monkeypatch.setitem(_suite.TRAINERS, system, (module, logged, title))
    monkeypatch.setattr(_suite, "REWARM_BELOW", 0)   # (no re-warm calls here)
    path = tmp_path / "bench.json"
    assert bench_main(tiny("--workloads", "W1", "--systems", "cython,numpy", "--repeats", "3",
                           "--json", str(path))) == 0
    for bs in (1, 10):
        assert [s for s, b in log if b == bs] == ["cyprop-cython", "cyprop-numpy"] * 4
    report = json.loads(path.read_text())
    assert {(r["system"], r["batch_size"], r["repeats"]) for r in report["results"]} == {
        (s, bs, 3) for s in ("cyprop-cython", "cyprop-numpy") for bs in (1, 10)}
    assert "training: each point's systems in turn" in capsys.readouterr().out


def test_on_several_threads_the_systems_of_a_point_run_one_after_another(monkeypatch):
    """A thread pool spins after its call on the cores the next system's threads need:
    a group on two threads warms up and times each system in a row; on one thread they
    take turns."""
    monkeypatch.setattr(_suite, "REWARM_BELOW", 0)   # (no re-warm calls here)
    log = []

    def prepare(system):
        def prepare_point(g, X, y, args):
            point = fake_point(system, [])
            point.epoch = lambda: log.append((system, g.threads))
            point.variant = g.variant
            return point
        return prepare_point

    args = _suite.parse_args(["--workloads", "W1", "--batch-sizes", "10", "--threads", "1,2",
                              "--dtypes", "f64", "--repeats", "2"])
    data = {"W1": (np.zeros((50, 64)), np.zeros(50, dtype=np.int64))}
    _suite.run_training(data, [prepare("a"), prepare("b")], args)
    assert log == [("a", 1), ("b", 1)] * 3 + [("a", 2)] * 3 + [("b", 2)] * 3


def test_torch_threads_are_restored_after_each_call():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with _suite.torch_threads(before + 1):
            assert torch.get_num_threads() == before + 1
            raise RuntimeError("an epoch that fails")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("mode", [[], ["--optimizers"]])
def test_checkout_online_blocks_script_runs(tmp_path, mode):
    """benchmarks/online_blocks.py calls the core's epoch entry point itself: a change of
    that signature must break this test, not the script in silence."""
    script = ROOT / "benchmarks" / "online_blocks.py"
    if not script.is_file():
        pytest.skip("benchmarks/online_blocks.py is not beside these tests")
    if not COMPILED:
        pytest.skip("needs cyprop's compiled core")
    done = subprocess.run([sys.executable, str(script), *mode, "--workloads", "W1",
                           "--dtypes", "float64,float32", "--samples", "600",
                           "--repeats", "1"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    for dtype in ("float64", "float32"):
        assert f"W1 {dtype} (n=600" in done.stdout
    assert ("of plain SGD" if mode else "x online-next") in done.stdout
