"""Robustness: whatever array a caller passes, every call either works (the result of the
same values as a C-contiguous float64 array) or raises ValueError/TypeError naming the
problem; never a crash, silent garbage, or a write into the caller's arrays.

Property tests (hypothesis) draw the network (shape, activations, loss, dtype, backend)
and the input (dtype, memory layout, values); each example compares every call on the
variant against the same call on the canonical array.  Examples are few and small (a
shared 2-core machine runs the suite): the strategies aim at the edges instead
(1-sample data, 1-unit layers, read-only, memory-mapped, unaligned, byte-swapped,
non-finite, huge and tiny values, odd label types).

The cases that could crash the process (zero strides, unaligned buffers, huge batch
sizes in the compiled core) run once more in a child process, so that a segfault fails
one test with its signal instead of killing the run.
"""

import copy
import itertools
import os
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cyprop

HIDDEN = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")
COMBOS = ([(h, o, "mse") for h in HIDDEN for o in HIDDEN + ("softmax",)]
          + [(h, o, "cross_entropy") for h in HIDDEN for o in ("softmax", "sigmoid")])
# Bounded hidden units and a bounded loss gradient: the outputs stay finite for any
# finite input, however large.
SATURATING = [(h, o, "cross_entropy") for h in ("sigmoid", "tanh") for o in ("softmax", "sigmoid")]
TOLERANCE = {"float64": {"rtol": 1e-9, "atol": 1e-12}, "float32": {"rtol": 1e-4, "atol": 1e-5}}

INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
FLOAT_DTYPES = ("float16", "float32", "float64", "longdouble")
NUMERIC_DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",)
LAYOUTS = ("C", "fortran", "strided", "reversed", "read-only", "memmap", "unaligned",
           "byteswapped", "list")
# Under tools/sanitize.sh, UBSan stops the process at the first report: unaligned input
# is then left to the child process of test_risky_layouts_do_not_crash_the_compiled_core,
# so that a report fails that one test instead of ending the whole run.
SANITIZED = (bool(os.environ.get("CYPROP_SANITIZED_RUN"))
             or "libasan" in os.environ.get("LD_PRELOAD", ""))
IN_PROCESS_LAYOUTS = tuple(l for l in LAYOUTS if not (SANITIZED and l == "unaligned"))

# Derandomized (the same examples every run, no example database); no "explain" phase
# (slow, and the falsifying example says enough).
PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(PROPERTY, max_examples=15)


# ------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def mmap_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("memmaps")


_names = itertools.count()


def make_net(spec):
    sizes, (activation, output, loss), dtype, backend = spec
    return cyprop.Network(sizes, activation=activation, output=output, loss=loss,
                          dtype=dtype, backend=backend, seed=0)


@st.composite
def net_specs(draw, combos=COMBOS, max_inputs=5):
    """(sizes, combo, dtype, backend): 1-unit layers and no hidden layer included."""
    combo = draw(st.sampled_from(combos))
    sizes = [draw(st.integers(1, max_inputs)),
             *draw(st.lists(st.integers(1, 5), max_size=2)),
             # a softmax over one unit is refused (always 1)
             draw(st.integers(2 if combo[1] == "softmax" else 1, 4))]
    return (sizes, combo, draw(st.sampled_from(["float64", "float32"])),
            draw(st.sampled_from(["cython", "numpy"])))


def elements(dtype, low=-1000, high=1000):
    """Values of ``dtype`` in [low, high] (whole numbers for the integer dtypes)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.integers(max(info.min, low), min(info.max, high))
    width = {2: 16, 4: 32}.get(dtype.itemsize, 64)
    return st.floats(low, high, width=width, allow_subnormal=width != 16)


def values(draw, dtype, shape, low=-1000, high=1000):
    numpy_dtype = np.float64 if dtype == "longdouble" else dtype
    a = draw(hnp.arrays(numpy_dtype, shape, elements=elements(numpy_dtype, low, high)))
    return a.astype(dtype)


def laid_out(a, layout, mmap_dir=None):
    """The values of ``a`` in another memory layout (or as nested lists)."""
    a = np.ascontiguousarray(a)
    if layout == "C":
        return a.copy()
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "strided":
        wide = np.zeros(tuple(2 * s + 1 for s in a.shape), dtype=a.dtype)
        view = wide[(slice(1, None, 2),) * a.ndim]
        view[...] = a
        return view
    if layout == "reversed":  # negative strides
        flipped = a[(slice(None, None, -1),) * a.ndim].copy()
        return flipped[(slice(None, None, -1),) * a.ndim]
    if layout == "read-only":
        a = a.copy()
        a.flags.writeable = False
        return a
    if layout == "memmap":
        path = os.path.join(mmap_dir, f"a{next(_names)}.dat")
        m = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
        m[...] = a
        m.flush()
        del m
        return np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape)
    if layout == "unaligned":
        raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
        view = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        view[...] = a
        return view
    if layout == "byteswapped":
        return a.astype(a.dtype.newbyteorder())
    if layout == "list":
        return a.tolist()
    raise AssertionError(layout)


@st.composite
def variants(draw, shape, dtypes=NUMERIC_DTYPES, layouts=IN_PROCESS_LAYOUTS, low=-1000,
             high=1000, mmap_dir=None):
    """(variant, canonical float64 C-contiguous array of the same values)."""
    dtype = draw(st.sampled_from(dtypes))
    a = values(draw, dtype, shape, low, high)
    layout = draw(st.sampled_from(layouts))
    if layout in ("unaligned", "byteswapped") and a.dtype.itemsize == 1:
        layout = "C"
    if layout == "list" and dtype == "longdouble":
        layout = "C"   # tolist() would round to float64 first: not the same values
    event(f"layout {layout}")   # pytest --hypothesis-show-statistics lists the mix
    event(f"dtype {dtype}")
    return laid_out(a, layout, mmap_dir), np.ascontiguousarray(a, dtype=np.float64)


def snapshot(obj):
    """A deep copy to compare the caller's argument against after the call."""
    return copy.deepcopy(obj) if isinstance(obj, list) else np.array(obj, copy=True)


def freeze(obj):
    """Make an array argument read-only (where NumPy allows it), so a write raises."""
    if isinstance(obj, np.ndarray):
        obj.flags.writeable = False
    return obj


def assert_unchanged(obj, before):
    if isinstance(obj, list):
        assert obj == before
        return
    assert obj.dtype == before.dtype and obj.shape == before.shape
    np.testing.assert_array_equal(np.asarray(obj), before)
    assert not obj.flags.writeable


def outcome(f, *args, strict=True, **kwargs):
    """("ok", result) or ("error", exception type, message).  ``strict``: a warning on
    the way is an error too (a finding of its own)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error" if strict else "ignore")
            return ("ok", f(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - compared below
        return ("error", type(exc), str(exc))


def assert_same_outcome(got, want, what):
    if want[0] == "error" or got[0] == "error":
        assert got == want, f"{what}: {got} vs {want} (canonical)"
        return
    flat_got, flat_want = flatten(got[1]), flatten(want[1])
    assert len(flat_got) == len(flat_want), what
    for g, w in zip(flat_got, flat_want):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=what)
        assert np.asarray(g).dtype == np.asarray(w).dtype, what


def flatten(result):
    if isinstance(result, dict):
        return [result[k] for k in sorted(result)]
    if isinstance(result, (list, tuple)):
        return [x for item in result for x in flatten(item)]
    return [result]


def assert_finite(result, what):
    for r in flatten(result):
        assert np.all(np.isfinite(r)), f"{what} is not finite: {r}"


@st.composite
def targets(draw, net, n, mmap_dir, layouts=IN_PROCESS_LAYOUTS):
    """(Y variant, canonical float64 (n, n_out) targets): class labels for a
    multi-output network (of any integer, bool or whole-float dtype), else targets in
    [0, 1] (soft labels for cross-entropy, valid for every loss), 1-D for one output."""
    n_out = net.sizes[-1]
    if n_out > 1 and draw(st.booleans()):
        dtype = draw(st.sampled_from(INT_DTYPES + ("float16", "float32", "float64", "bool")))
        high = 1 if dtype == "bool" else n_out - 1
        labels = np.array(draw(st.lists(st.integers(0, high), min_size=n, max_size=n)),
                          dtype=dtype)
        variant = laid_out(labels, draw(st.sampled_from(layouts)), mmap_dir)
        return variant, np.eye(n_out)[labels.astype(np.int64)]
    if draw(st.booleans()):
        Y, Y0 = draw(variants((n, n_out), dtypes=("float16", "float32", "float64"),
                              layouts=layouts, low=0, high=1, mmap_dir=mmap_dir))
    else:
        Y, Y0 = draw(variants((n, n_out), dtypes=("bool", "uint8", "int64"), layouts=layouts,
                              low=0, high=1, mmap_dir=mmap_dir))
    if n_out == 1 and draw(st.booleans()):
        Y = Y[:, 0] if isinstance(Y, np.ndarray) else [row[0] for row in Y]
    return Y, Y0


# ---------------------------------------------- every dtype and layout, every call
def assert_every_call_as_canonical(net, X, X0, Y, Y0, batch_size=2):
    """Every call on (X, Y) gives what it gives on the canonical (X0, Y0); the caller's
    arrays are left as they were (they are made read-only first, so a write raises)."""
    X_before, Y_before = snapshot(X), snapshot(Y)
    freeze(X), freeze(Y)
    params = net._params.copy()

    for name in ("forward", "predict"):
        got, want = outcome(getattr(net, name), X), outcome(getattr(net, name), X0)
        assert_same_outcome(got, want, name)
        assert_finite(got[1], name)
    got = outcome(net.forward, X[0]), outcome(net.forward, X0[0])   # one sample, 1-D
    assert_same_outcome(*got, "forward of one sample")
    got = outcome(net.forward, X, return_hidden=True)
    assert_same_outcome(got, outcome(net.forward, X0, return_hidden=True), "return_hidden")
    if isinstance(X, np.ndarray):
        assert not np.shares_memory(net.forward(X), X)
    for name in ("loss", "gradients", "evaluate"):
        got, want = outcome(getattr(net, name), X, Y), outcome(getattr(net, name), X0, Y0)
        assert_same_outcome(got, want, name)
        assert_finite(got[1], name)
    np.testing.assert_array_equal(net._params, params)   # inference changes nothing

    trained = []
    for inputs in ((X, Y), (X0, Y0)):
        other = net.copy()
        fit = outcome(other.fit, *inputs, epochs=2, batch_size=batch_size, seed=1,
                      optimizer=cyprop.SGD(0.01, momentum=0.5), verbose=0)
        partial = outcome(other.partial_fit, *inputs, batch_size=batch_size)
        trained.append((str(fit[1:]) if fit[0] == "error" else "ok",
                        str(partial[1:]) if partial[0] == "error" else "ok",
                        other._params, getattr(other.optimizer, "state", None),
                        other.history.loss))
    assert_same_outcome(("ok", trained[0]), ("ok", trained[1]), "fit / partial_fit")
    assert_unchanged(X, X_before)
    assert_unchanged(Y, Y_before)


@pytest.mark.parametrize("layout", IN_PROCESS_LAYOUTS)
@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_every_layout_and_dtype(layout, dtype, mmap_dir):
    """Each input dtype in each layout, for X and for the targets (labels, or one-hot)."""
    if layout in ("unaligned", "byteswapped") and np.dtype(dtype).itemsize == 1:
        pytest.skip("one-byte items have no alignment or byte order")
    rng = np.random.default_rng(0)
    raw = rng.integers(-3, 4, size=(5, 3)) if dtype != "bool" else rng.integers(0, 2, (5, 3))
    if dtype.startswith("uint"):
        raw = np.abs(raw)
    a = (raw * 0.5 if dtype in FLOAT_DTYPES else raw).astype(dtype)
    if layout == "list" and dtype == "longdouble":
        pytest.skip("tolist() of long doubles rounds to float64")
    X, X0 = laid_out(a, layout, mmap_dir), a.astype(np.float64)
    labels = (np.arange(5) % 2).astype(dtype)
    for net_dtype, backend in itertools.product(("float64", "float32"), ("cython", "numpy")):
        net = cyprop.Network([3, 4, 2], activation="tanh", dtype=net_dtype, backend=backend,
                             seed=0)
        Y = laid_out(labels, layout, mmap_dir)
        assert_every_call_as_canonical(net, X, X0, Y, np.eye(2)[labels.astype(int)])
        one_hot = np.eye(2)[labels.astype(int)].astype(dtype)
        Y = laid_out(one_hot, layout, mmap_dir)
        assert_every_call_as_canonical(net, X, X0, Y, one_hot.astype(np.float64))


@settings(PROPERTY, max_examples=60)
@given(spec=net_specs(), data=st.data())
def test_input_variants_give_the_canonical_result(spec, data, mmap_dir):
    net = make_net(spec)
    n = data.draw(st.integers(1, 6), label="n")
    X, X0 = data.draw(variants((n, net.sizes[0]), mmap_dir=mmap_dir), label="X")
    Y, Y0 = data.draw(targets(net, n, mmap_dir), label="Y")
    batch_size = data.draw(st.integers(1, n + 1), label="batch_size")
    assert_every_call_as_canonical(net, X, X0, Y, Y0, batch_size)


@FEW
@given(spec=net_specs(), data=st.data())
def test_sample_weight_variants_give_the_canonical_result(spec, data, mmap_dir):
    net = make_net(spec)
    n = data.draw(st.integers(1, 6), label="n")
    X = np.random.default_rng(n).normal(size=(n, net.sizes[0]))
    Y = np.random.default_rng(n).uniform(size=(n, net.sizes[-1]))
    w, w0 = data.draw(variants((n,), low=0, high=5, mmap_dir=mmap_dir), label="sample_weight")
    assume(np.any(w0 > 0))
    before = snapshot(w)
    freeze(w)
    results = []
    for weights in (w, w0):
        other = net.copy()
        outcome_ = outcome(other.fit, X, Y, epochs=2, batch_size=2, seed=1, verbose=0,
                           sample_weight=weights)
        results.append((outcome_[0], other._params))
    assert_same_outcome(("ok", results[0]), ("ok", results[1]), "fit with sample_weight")
    assert_unchanged(w, before)


# ------------------------------------------------------------- what is refused
BAD_DTYPES = {
    "object": lambda a: a.astype(object),
    "str": lambda a: a.astype(str),
    "bytes": lambda a: a.astype("S8"),
    "complex64": lambda a: a.astype(np.complex64),
    "complex128": lambda a: a.astype(np.complex128) + 1j,
    "datetime64": lambda a: a.astype(np.int64).astype("datetime64[s]"),
    "timedelta64": lambda a: a.astype(np.int64).astype("timedelta64[s]"),
    "structured": lambda a: np.zeros(a.shape, dtype=[("x", "f8")]),
    "None": lambda a: np.full(a.shape, None),
}


def every_call(net, X, Y):
    """(name, thunk) of every call that takes the data."""
    return [("forward", lambda: net.forward(X)), ("predict", lambda: net.predict(X)),
            ("loss", lambda: net.loss(X, Y)), ("gradients", lambda: net.gradients(X, Y)),
            ("evaluate", lambda: net.evaluate(X, Y)),
            ("fit", lambda: net.fit(X, Y, epochs=1, verbose=0, optimizer=cyprop.Adam())),
            ("partial_fit", lambda: net.partial_fit(X, Y, optimizer=cyprop.Adam()))]


def assert_refused(net, X, Y, error, pattern, inference=True):
    """Every call raises ``error`` matching ``pattern``, and leaves the network as it was."""
    params, optimizer, history = net._params.copy(), net.optimizer, net.history
    for name, call in every_call(net, X, Y):
        if not inference and name in ("forward", "predict"):
            continue
        with pytest.raises(error, match=pattern):
            call()
    np.testing.assert_array_equal(net._params, params)
    assert net.optimizer is optimizer and net.history is history


@PROPERTY
@given(spec=net_specs(), kind=st.sampled_from(sorted(BAD_DTYPES)),
       where=st.sampled_from(["X", "Y"]), layout=st.sampled_from(["C", "fortran", "list"]),
       n=st.integers(1, 4))
def test_non_numeric_dtypes_raise_type_error(spec, kind, where, layout, n):
    net = make_net(spec)
    X = np.ones((n, net.sizes[0]))
    Y = np.zeros((n, net.sizes[-1]))
    bad = BAD_DTYPES[kind](X if where == "X" else Y)
    if layout == "list" and kind in ("structured", "datetime64", "timedelta64"):
        layout = "C"   # as lists these become plain numbers or tuples
    bad = laid_out(bad, layout) if layout != "list" else bad.tolist()
    if layout == "list" and kind in ("object", "None"):
        # a list of Python numbers is numeric data; a list of None is object data
        bad = bad if kind == "None" else np.asarray(bad, dtype=object)
    if where == "X":
        assert_refused(net, bad, Y, TypeError, r"X must hold numbers")
    else:
        assert_refused(net, X, bad, TypeError, r"\bY\b.*(numbers|integers)",
                       inference=False)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pandas_nullable_numbers_are_taken_as_numbers(dtype):
    # NumPy makes a frame of Float64/Int64/boolean columns an array of objects: it was
    # refused as "X must hold numbers (got dtype object)", as scikit-learn's MLP is not
    pd = pytest.importorskip("pandas")
    net = cyprop.Network([3, 4, 2], seed=0, dtype=dtype)
    frame = pd.DataFrame({"a": pd.array([0.5, 2.0, -1.0, 3.0], dtype="Float64"),
                          "b": pd.array([1, 0, 3, 2], dtype="Int64"),
                          "c": pd.array([True, False, True, True], dtype="boolean")})
    plain = frame.astype("float64").to_numpy()
    np.testing.assert_array_equal(net.forward(frame), net.forward(plain))
    Y = pd.DataFrame({"p": pd.array([0.0, 1.0, 0.5, 1.0], dtype="Float64"),
                      "q": pd.array([1.0, 0.0, 0.5, 0.0], dtype="Float64")})
    twin = net.copy()
    net.fit(frame, Y, epochs=2, verbose=0)
    twin.fit(plain, Y.astype("float64").to_numpy(), epochs=2, verbose=0)
    np.testing.assert_array_equal(net._params, twin._params)
    frame.iloc[2, 1] = pd.NA   # missing: refused as NaN is
    assert_refused(net, frame, np.eye(4, 2), ValueError, r"X contains NaN")


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok", "bsr", "dia"])
def test_sparse_input_is_refused_by_name(fmt):
    # np.asarray wraps a sparse matrix in a 0-d object array: the message said
    # "X must hold numbers (got dtype object)"
    sparse = pytest.importorskip("scipy.sparse")
    net = cyprop.Network([3, 4, 2], seed=0)
    X, Y = np.eye(4, 3), np.eye(4, 2)
    assert_refused(net, sparse.random(4, 3, density=0.5, format=fmt, random_state=0), Y,
                   TypeError, rf"^X is a scipy.sparse {fmt}_matrix, .*X.toarray\(\)")
    assert_refused(net, X, sparse.coo_array(Y), TypeError,
                   r"^Y is a scipy.sparse coo_array, .*Y.toarray\(\)", inference=False)
    with pytest.raises(TypeError, match=r"^sample_weight is a scipy.sparse csr_array, "):
        net.fit(X, Y, epochs=1, sample_weight=sparse.csr_array(np.ones((1, 4))), verbose=0)


def test_iterators_are_refused_by_name():
    # np.asarray wraps a generator in a 0-d object array: the message said "X must
    # hold numbers (got dtype object)", as if its rows held something else
    net = cyprop.Network([3, 4, 2], seed=0)
    X, Y = np.eye(4, 3), np.eye(4, 2)
    assert_refused(net, (row for row in X), Y, TypeError,
                   r"^X is an iterator \(generator\), not an array: .*memory map")
    assert_refused(net, map(list, X), Y, TypeError, r"^X is an iterator \(map\)")
    for labels in (iter([0, 1, 0, 1]), (row for row in Y)):
        assert_refused(net, X, labels, TypeError, r"^Y is an iterator", inference=False)
    with pytest.raises(TypeError, match=r"^sample_weight is an iterator \(generator\)"):
        net.fit(X, Y, epochs=1, sample_weight=(1.0 for _ in X), verbose=0)


@PROPERTY
@given(spec=net_specs(), data=st.data())
def test_non_finite_values_raise_value_error(spec, data):
    net = make_net(spec)
    n = data.draw(st.integers(1, 5), label="n")
    where = data.draw(st.sampled_from(["X", "Y", "sample_weight"]), label="where")
    value = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="value")
    dtype = data.draw(st.sampled_from(["float16", "float32", "float64"]), label="dtype")
    layout = data.draw(st.sampled_from(["C", "fortran", "strided", "read-only", "list"]))
    X = np.ones((n, net.sizes[0]))
    Y = np.zeros((n, net.sizes[-1]))
    w = np.ones(n)
    target = {"X": X, "Y": Y, "sample_weight": w}[where]
    target[tuple(data.draw(st.integers(0, s - 1)) for s in target.shape)] = value
    bad = laid_out(target.astype(dtype), layout)
    if where == "X":
        assert_refused(net, bad, Y, ValueError, r"X contains NaN or infinity")
    elif where == "Y":
        assert_refused(net, X, bad, ValueError, r"Y contains NaN or infinity", inference=False)
    else:
        before = net._params.copy()
        with pytest.raises(ValueError, match="sample_weight must be finite"):
            net.fit(X, Y, epochs=1, sample_weight=bad, verbose=0)
        np.testing.assert_array_equal(net._params, before)


@PROPERTY
@given(spec=net_specs(), data=st.data())
def test_wrong_shapes_raise_value_error(spec, data):
    net = make_net(spec)
    n_in, n_out = net.sizes[0], net.sizes[-1]
    n = data.draw(st.integers(1, 4), label="n")
    # (0-d and ragged input: test_scalar_input_is_refused, test_ragged_input_is_refused)
    case = data.draw(st.sampled_from(["features", "empty", "3-d", "n-mismatch", "columns",
                                      "Y 3-d"]), label="case")
    X, Y = np.ones((n, n_in)), np.zeros((n, n_out))
    if case == "features":
        X = np.ones((n, n_in + data.draw(st.sampled_from([-n_in, -1, 1, 7]))))
        pattern = r"X has \d+ features, but the network expects"
    elif case == "empty":
        X, Y = np.ones((0, n_in)), np.zeros((0, n_out))
        pattern = "X is empty"
    elif case == "3-d":
        X = np.ones((n, n_in, 1))
        pattern = "X must be a 2-D array"
    elif case == "n-mismatch":
        Y = np.zeros((n + data.draw(st.sampled_from([-n, 1, 5])), n_out))
        pattern = "different numbers of samples"
    elif case == "columns":
        Y = np.zeros((n, n_out + data.draw(st.sampled_from([1, 3]))))
        pattern = r"Y has \d+ columns, but the network has"
    else:
        Y = np.zeros((n, n_out, 1))
        pattern = "Y must be class labels .* or targets"
    inference = case not in ("n-mismatch", "columns", "Y 3-d")
    assert_refused(net, X, Y, ValueError, pattern, inference=inference)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_scalar_input_is_refused(backend):
    """A 0-d X is neither a sample (n_in,) nor a batch: refused, with its true number of
    dimensions, also by a network with one input (not taken as one sample)."""
    net = cyprop.Network([1, 2], seed=0, backend=backend)
    for X in (np.float64(0.5), 0.5, np.array(0.5)):
        for call in (lambda: net.forward(X), lambda: net.predict(X),
                     lambda: net.loss(X, [0])):
            with pytest.raises(ValueError, match="got 0 dimension"):
                call()


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_ragged_input_is_refused(backend):
    """Nested lists of unequal lengths: a ValueError that names X, from every call
    (not NumPy's own message from a conversion done before the checks)."""
    net = cyprop.Network([2, 3], seed=0, backend=backend)
    assert_refused(net, [[1.0, 2.0], [3.0]], np.zeros((2, 3)), ValueError,
                   "X is not a rectangular array")


# ------------------------------------------------------------------- labels
@PROPERTY
@given(n_out=st.integers(2, 5), data=st.data(),
       backend=st.sampled_from(["cython", "numpy"]))
def test_class_labels(n_out, data, backend):
    """Whole-number labels of any numeric dtype in 0..n_out-1 are one-hot targets;
    anything else is a ValueError naming the label (or a TypeError for non-numbers)."""
    net = cyprop.Network([2, 3, n_out], seed=0, backend=backend)
    n = data.draw(st.integers(1, 6), label="n")
    X = np.random.default_rng(n).normal(size=(n, 2))
    good = data.draw(st.lists(st.integers(0, n_out - 1), min_size=n, max_size=n), label="good")
    kind = data.draw(st.sampled_from(["int", "whole float", "bool", "fraction", "negative",
                                      "too large", "nan"]), label="kind")
    labels = np.array(good, dtype=object)
    i = data.draw(st.integers(0, n - 1), label="position")
    if kind == "int":
        dtype = data.draw(st.sampled_from(INT_DTYPES))
    elif kind == "whole float":
        dtype = data.draw(st.sampled_from(["float16", "float32", "float64"]))
    elif kind == "bool":
        dtype = "bool"
        labels = labels.astype(int) % 2
    elif kind == "fraction":
        dtype = "float64"
        labels[i] = data.draw(st.floats(-100, 100).filter(lambda v: v != round(v)))
    elif kind == "negative":
        dtype = data.draw(st.sampled_from(["int8", "int32", "int64", "float64"]))
        labels[i] = data.draw(st.integers(-100, -1))
    elif kind == "too large":
        dtype = data.draw(st.sampled_from(["uint8", "int32", "int64", "float32"]))
        labels[i] = data.draw(st.integers(n_out, 200))
    else:
        dtype, labels[i] = "float64", data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    labels = np.array(labels.tolist(), dtype=dtype)
    labels.flags.writeable = False
    before = labels.copy()
    if kind in ("int", "whole float", "bool"):
        one_hot = np.eye(n_out)[labels.astype(np.int64)]
        for name in ("loss", "gradients", "evaluate"):
            assert_same_outcome(outcome(getattr(net, name), X, labels),
                                outcome(getattr(net, name), X, one_hot), name)
    else:
        pattern = {"fraction": "not whole numbers", "nan": "NaN or infinity"}.get(
            kind, f"label {labels[i]:g}, outside the range 0..{n_out - 1}")
        assert_refused(net, X, labels, ValueError, pattern, inference=False)
    np.testing.assert_array_equal(labels, before)


@pytest.mark.parametrize("label", [
    np.float64(1e300), np.float64(2.0 ** 63), np.float32(1e30), np.float64(-1e20),
    np.uint64(2 ** 64 - 1), np.uint64(2 ** 63), np.int64(-2 ** 63)], ids=repr)
def test_huge_labels_are_named_in_the_error(label):
    """A label beyond the int64 range must be reported as given, with no warning on the
    way (the cast to int64 must not run first: it wraps or is undefined)."""
    net = cyprop.Network([2, 3], seed=0)
    labels = np.array([0, label], dtype=np.asarray(label).dtype)
    result = outcome(net.loss, np.ones((2, 2)), labels)
    assert result[:2] == ("error", ValueError), result
    shown = re.search(r"label (\S+), outside", result[2])
    assert shown and np.isclose(float(shown.group(1)), float(label), rtol=1e-6), result[2]


@pytest.mark.parametrize("labels,error,pattern", [
    (np.array(["0", "1"]), TypeError, "integers"),
    (np.array([b"0", b"1"]), TypeError, "integers"),
    (np.array([0, 1], dtype=object), TypeError, "integers"),
    (np.array([0, 1j]), TypeError, "integers"),
    (np.array([0.5, 1.0], dtype=np.float16), ValueError, "whole numbers"),
])
def test_label_types_refused(labels, error, pattern):
    net = cyprop.Network([2, 4, 3], seed=0)
    assert_refused(net, np.ones((2, 2)), labels, error, pattern, inference=False)


# ---------------------------------------------------------- huge and tiny values
@PROPERTY
@given(spec=net_specs(combos=SATURATING, max_inputs=4), data=st.data())
def test_huge_finite_inputs_give_finite_outputs_on_both_backends(spec, data):
    """Up to 1e300 (float64) or 1e37 (float32): the first layer's sums stay finite and the
    hidden units saturate, so both backends give the same finite result."""
    sizes, combo, dtype, _ = spec
    assume(len(sizes) > 2)
    big = 1e300 if dtype == "float64" else 1e37
    n = data.draw(st.integers(1, 5), label="n")
    X = data.draw(hnp.arrays(np.float64, (n, sizes[0]), elements=st.one_of(
        st.floats(-big, big), st.sampled_from([big, -big, 0.0]))), label="X")
    Y = np.random.default_rng(n).uniform(size=(n, sizes[-1]))
    results = {}
    for backend in ("cython", "numpy"):
        net = make_net((sizes, combo, dtype, backend))
        results[backend] = [outcome(net.forward, X), outcome(net.evaluate, X, Y),
                            outcome(net.gradients, X, Y)]
        for result in results[backend]:
            assert result[0] == "ok", result
            assert_finite(result[1], backend)
    for c, r in zip(results["cython"], results["numpy"]):
        for a, b in zip(flatten(c[1]), flatten(r[1])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@PROPERTY
@given(spec=net_specs(), data=st.data())
def test_tiny_values_work_and_match_the_reference(spec, data):
    """Subnormal inputs (down to 5e-324, or float32's 1e-45) are ordinary finite numbers."""
    sizes, combo, dtype, _ = spec
    tiny = np.finfo(dtype).smallest_subnormal
    n = data.draw(st.integers(1, 4), label="n")
    scale = data.draw(st.sampled_from([1, 7, 1e3, 1e6]), label="scale")
    X = data.draw(hnp.arrays(np.int64, (n, sizes[0]), elements=st.integers(-3, 3))) * tiny * scale
    X = X.astype(dtype)
    Y = np.random.default_rng(n).uniform(size=(n, sizes[-1]))
    cython, numpy_ = (make_net((sizes, combo, dtype, b)) for b in ("cython", "numpy"))
    for name in ("forward", "loss", "gradients"):
        args = (X,) if name == "forward" else (X, Y)
        a, b = outcome(getattr(cython, name), *args), outcome(getattr(numpy_, name), *args)
        assert a[0] == b[0] == "ok", (a, b)
        assert_finite(a[1], name)
        for x, y in zip(flatten(a[1]), flatten(b[1])):
            np.testing.assert_allclose(x, y, **TOLERANCE[dtype])


@PROPERTY
@given(data=st.data(), where=st.sampled_from(["X", "Y"]))
def test_values_too_large_for_float32_are_refused(data, where):
    """float64 values beyond float32's range (3.4e38) overflow on conversion to a float32
    network's dtype: a ValueError saying so, not infinities in the kernels."""
    net = cyprop.Network([3, 4, 2], activation="relu", output="identity", loss="mse",
                         dtype="float32", seed=0)
    n = data.draw(st.integers(1, 4))
    X, Y = np.ones((n, 3)), np.zeros((n, 2))
    target = X if where == "X" else Y
    huge = data.draw(st.floats(3.5e38, 1e308)
                     | st.sampled_from([1e39, 1e300, np.finfo(np.float64).max]))
    target[data.draw(st.integers(0, n - 1)), 0] = huge * data.draw(st.sampled_from([1, -1]))
    pattern = f"{where} contains NaN or infinity \\(or values too large for float32\\)"
    assert_refused(net, X, Y, ValueError, pattern, inference=where == "X")
    # the same values pass a float64 network's checks (cross-entropy refuses targets
    # outside [0, 1], and squared errors of 1e300 overflow: the check itself is asked)
    net64 = cyprop.Network([3, 4, 2], activation="relu", output="identity", loss="mse", seed=0)
    assert outcome(net64._check_data, X, Y)[0] == "ok"


def overflowing_net(dtype="float64", backend="cython"):
    """Identity units: a finite input of 1e308 overflows inside the network."""
    net = cyprop.Network([2, 2, 1], activation="identity", output="identity", loss="mse",
                         dtype=dtype, backend=backend, seed=0)
    net.weights = [np.array([[2.0, -2.0], [1.0, 1.0]]), np.array([[1.0, 1.0]])]
    return net


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("call", ["forward", "loss", "evaluate", "gradients"])
def test_overflow_inside_the_network_is_not_silent(call, backend):
    """Finite inputs and weights, but a sum overflows: the call must raise (a ValueError or
    an ArithmeticError saying so) rather than return inf/NaN as if it were a result."""
    net = overflowing_net(backend=backend)
    X, Y = np.full((1, 2), 1e308), np.zeros(1)
    args = (X,) if call == "forward" else (X, Y)
    result = outcome(getattr(net, call), *args, strict=False)
    if result[0] == "ok":
        assert_finite(result[1], f"{call} of finite inputs")
    else:
        assert issubclass(result[1], (ValueError, ArithmeticError)), result
        assert re.search("overflow|too large|NaN|infinit", result[2]), result


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_int64_extremes_convert_like_float64(backend):
    for dtype in ("float64", "float32"):
        net = cyprop.Network([2, 3, 2], activation="tanh", seed=0, dtype=dtype, backend=backend)
        X = np.array([[np.iinfo(np.int64).max, np.iinfo(np.int64).min], [0, -1]])
        U = np.array([[np.iinfo(np.uint64).max, 0], [1, 2 ** 63]], dtype=np.uint64)
        for a in (X, U):
            # canonical: the values as float64, which is how NumPy would convert them
            # (for float32 networks, the double rounding is the same here: powers of two)
            np.testing.assert_array_equal(net.forward(a), net.forward(a.astype(np.float64)))


# ------------------------------------------------------------------- overflow of state
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_weights_that_do_not_fit_the_dtype_are_refused(dtype):
    """Assigning values that overflow the network's dtype (1e300 into float32) or that are
    not real numbers must raise, not store inf or drop the imaginary part."""
    net = cyprop.Network([3, 4, 2], seed=0, dtype=dtype)
    params = net._params.copy()
    too_big = 1e300 if dtype == "float32" else np.inf
    for value, error in ((np.full((4, 3), too_big), ValueError),
                         (np.full((4, 3), 1 + 1j), TypeError),
                         (np.full((4, 3), "1"), TypeError),
                         (np.full((4, 3), None), TypeError)):
        result = outcome(net.weights.__setitem__, 0, value)
        assert result[:2] == ("error", error), (value.dtype, result)
    np.testing.assert_array_equal(net._params, params)
    assert np.isfinite(net._params).all()


def test_sample_weights_too_large_for_float32_are_refused():
    """sample_weight=1e39 on a float32 network becomes inf on conversion: a ValueError
    about the weights, not a 'training diverged, try a smaller learning rate'."""
    net = cyprop.Network([3, 4, 2], seed=0, dtype="float32")
    X = np.random.default_rng(0).normal(size=(4, 3))
    result = outcome(net.fit, X, [0, 1, 0, 1], epochs=1, verbose=0,
                     sample_weight=[1e39, 1.0, 1.0, 1.0])
    assert result[:2] == ("error", ValueError), result
    assert "sample_weight" in result[2]


@pytest.mark.parametrize("class_weight", [{0.5: 2.0}, {1.7: 2.0}, {"0": 2.0}, {0: "2"}])
def test_class_weight_keys_and_values_are_checked(class_weight):
    """Keys must be class labels (whole numbers): 0.5 silently meaning class 0 is garbage."""
    net = cyprop.Network([3, 4, 2], seed=0)
    X = np.random.default_rng(0).normal(size=(4, 3))
    result = outcome(net.fit, X, [0, 1, 0, 1], epochs=1, verbose=0, class_weight=class_weight)
    assert result[0] == "error" and issubclass(result[1], (ValueError, TypeError)), result
    assert "class_weight" in result[2]


def test_huge_batch_size_means_one_batch():
    """A batch size beyond the number of samples is one batch, on both backends (the
    compiled core must not get a number that does not fit its index type)."""
    X = np.random.default_rng(0).normal(size=(5, 3))
    y = [0, 1, 0, 1, 1]
    results = []
    for backend in ("cython", "numpy"):
        for batch_size in (5, 2 ** 62, 2 ** 70):
            net = cyprop.Network([3, 4, 2], seed=0, backend=backend)
            result = outcome(net.fit, X, y, epochs=2, batch_size=batch_size, verbose=0)
            assert result[0] == "ok", (backend, batch_size, result)
            results.append(net._params)
    for r in results[1:3]:
        np.testing.assert_array_equal(r, results[0])
    for r in results[3:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kwargs", [{"target_loss": -1.0}, {"min_delta": float("nan")},
                                    {"target_error": -0.5}, {"min_update": float("inf")},
                                    {"schedule": "cosine"}, {"validation_split": 2.0}],
                         ids=lambda kw: next(iter(kw)))
def test_refused_fit_leaves_the_network_as_it_was(kwargs):
    """A fit call refused for its arguments changes nothing: not the weights, not the
    optimizer (with its state), not the history."""
    X = np.random.default_rng(0).normal(size=(8, 3))
    y = np.arange(8) % 2
    net = cyprop.Network([3, 4, 2], seed=0)
    net.fit(X, y, epochs=2, verbose=0, optimizer=cyprop.SGD(0.1, momentum=0.9))
    params, optimizer, history = net._params.copy(), net.optimizer, net.history
    state = optimizer.state.copy()
    result = outcome(net.fit, X, y, epochs=1, verbose=0, optimizer=cyprop.Adam(), **kwargs)
    assert result[0] == "error" and issubclass(result[1], (ValueError, TypeError)), result
    np.testing.assert_array_equal(net._params, params)
    assert net.optimizer is optimizer, f"the refused call replaced the optimizer ({result[2]})"
    np.testing.assert_array_equal(optimizer.state, state)
    assert net.history is history and len(history) == 2


# ------------------------------------------------ large inputs converted in blocks
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_large_inputs_converted_in_blocks_give_the_canonical_result(backend):
    """forward() converts a large input of another dtype or layout a block at a time; the
    result is the same as for the converted whole, every layer included, and a bad value
    in the last block is found."""
    n = 65536 * 2 + 3
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 2)).astype(np.float32)
    net = cyprop.Network([2, 3, 2], activation="tanh", seed=0, backend=backend)
    X0 = X.astype(np.float64)
    for variant in (X, np.asfortranarray(X0), X0[::-1][::-1]):
        np.testing.assert_array_equal(net.forward(variant), net.forward(X0))
        for a, b in zip(net.forward(variant, return_hidden=True),
                        net.forward(X0, return_hidden=True)):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(net.predict(X), net.predict(X0))
    bad = X.copy()
    bad[-1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.forward(bad)
    with pytest.raises(TypeError, match="numbers"):
        net.forward(X.astype(object))


# ---------------------------------------------------- risky layouts, in a child
CHILD = textwrap.dedent("""
    import numpy as np, cyprop
    from cyprop import _compiled
    rng = np.random.default_rng(0)

    def unaligned(a):
        raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
        view = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        view[...] = a
        return view

    X = rng.normal(size=(9, 4))
    y = np.arange(9) % 3
    cases = {
        "zero strides": np.broadcast_to(X[0], (9, 4)),
        "zero row stride, 1 row": np.broadcast_to(X[:1], (1, 4)),
        "unaligned float64": unaligned(X),
        "unaligned float32": unaligned(X.astype(np.float32)),
        "negative strides": X[::-1, ::-1],
        "big strides": np.zeros((9 * 1000, 4 * 7))[::1000, ::7] + X,
    }
    for blas in (True, False):   # the BLAS's products; the own ones or per-sample loops
        for kernel in _compiled.KERNELS.values():
            kernel.set_blas(*(_compiled.BLAS if blas else (None, None)))
        for dtype in ("float64", "float32"):
            for name, A in cases.items():
                n = A.shape[0]
                want = None
                for batch_size in (1, 3, n, 2 ** 40):
                    net = cyprop.Network([4, 5, 3], seed=0, dtype=dtype, backend="cython")
                    net.fit(A, y[:n], epochs=2, batch_size=batch_size, shuffle=False,
                            verbose=0)
                    ref = cyprop.Network([4, 5, 3], seed=0, dtype=dtype, backend="cython")
                    ref.fit(np.ascontiguousarray(A, dtype=np.float64), y[:n], epochs=2,
                            batch_size=batch_size, shuffle=False, verbose=0)
                    assert np.array_equal(net._params, ref._params), (name, batch_size)
                    out = net.forward(A)
                    assert np.array_equal(out, net.forward(np.ascontiguousarray(A))), name
                    assert np.isfinite(out).all() and np.isfinite(net.loss(A, y[:n])), name
                    net.gradients(A, y[:n])
                    assert net.evaluate(A, unaligned(np.eye(3)[y[:n]])) == net.evaluate(A, y[:n])
    print("OK")
""")


def test_risky_layouts_do_not_crash_the_compiled_core():
    # generous: importing cyprop in an editable install may first rebuild the extension
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode >= 0, f"killed by signal {-result.returncode}:\n{result.stderr}"
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_finite_inputs_whose_sum_overflows_are_accepted(dtype):
    """The finite check sums the input in its own dtype; a sum that overflows (every
    value finite, near the dtype's largest) must fall back to checking the elements."""
    big = np.finfo(dtype).max / 4
    X = np.full((64, 3), big, dtype=dtype)
    net = cyprop.Network([3, 2], output="identity", loss="mse", dtype=dtype, seed=0)
    with np.errstate(over="ignore"):
        assert net.forward(X).shape == (64, 2)
    X[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.forward(X)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")   # (np.matrix)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_finite_check_finds_every_kind_of_value_anywhere(dtype):
    """all_finite (the compiled core's one pass where there is one, else NumPy's sum)
    against np.isfinite, with the bad value in the vectorised body, in the tail past the
    last whole group of running sums, and in strided or Fortran-ordered arrays."""
    from cyprop import _validation

    compiled = "cython" in cyprop.available_backends()
    assert (_validation._compiled_finite() is not None) == compiled
    rng = np.random.default_rng(3)
    for n in (0, 1, 15, 16, 17, 33, 1000):
        x = rng.normal(size=n).astype(dtype)
        assert _validation.all_finite(x)
        for position in {0, n // 2, n - 1} if n else ():
            for bad in (np.nan, np.inf, -np.inf):
                y = x.copy()
                y[position] = bad
                assert not _validation.all_finite(y), (n, position, bad)
    X = rng.normal(size=(40, 9)).astype(dtype)
    X[7, 3] = np.inf
    assert not _validation.all_finite(X)
    assert not _validation.all_finite(np.asfortranarray(X))
    assert _validation.all_finite(X[8:])
    assert not _validation.all_finite(X[:, 3])
    assert _validation.all_finite(X[:, 4])
    big = np.full(100, np.finfo(dtype).max, dtype=dtype)   # finite, but the sum overflows
    assert _validation.all_finite(big)
    # subclasses, whose reshape(-1) may keep two dimensions (np.matrix: a TypeError)
    assert _validation.all_finite(np.matrix(X[8:]))
    assert not _validation.all_finite(np.matrix(X))
    assert not _validation.all_finite(np.ma.masked_array(X))
