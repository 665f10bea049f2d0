"""Differential test: random, and absurd but legal, uses of the public API played on
both backends with the same seeds must behave the same.

Hypothesis draws a *case*: a network (layer sizes down to 1 unit, activations, loss,
dtype, init, dropout, max-norm), data (extreme values, denormals, -0.0, constant
columns, one sample; handed over in C or Fortran order, as a strided view, read-only,
big-endian, integer, bool or a list), targets in each accepted form (and some refused
ones), an optimizer with any of its options at the edges of its range, a schedule, and a
few calls (``fit``, ``partial_fit`` of a batch or a row, ``forward``, ``predict``,
``evaluate``, ``loss``, ``gradients``).  The case is played once per backend; for every
call both must raise the same exception type (with a message), or both return results
that agree within the parity tolerances (conftest.RTOL / ATOL), and the parameters,
steps and history after each call must agree too.  A successful call never returns a
value that is not finite (the library raises instead).

The cases run in a child process (one, reused while it lives), so a crash or a hang is
a failure with the case that caused it, which Hypothesis then shrinks.  More examples
while hunting, fresh ones each run:
``CYPROP_DIFFERENTIAL_EXAMPLES=5000 pytest tests/test_differential.py``.  Two known
differences turn up there: a ReLU pre-activation formed below the smallest normal number,
which the per-sample paths' flush reads as 0 (csrc/_epoch.pxi, flush_reads_right), and a
``fit`` epoch's accuracy where two outputs tie within a rounding (the history has no
outputs to tell a tie by; ``predict``'s labels are compared with their outputs).
"""

import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import ATOL, RTOL  # noqa: E402

# In the suite a fixed set of cases (derandomized, about 20 s); while hunting, fresh ones.
HUNTING = "CYPROP_DIFFERENTIAL_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("CYPROP_DIFFERENTIAL_EXAMPLES", "1500"))
CALL_TIMEOUT = 120   # seconds for one case on one backend (a first import may build)

HIDDEN = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")
# (Not near float32's largest number: there a sum overflows in one order and not in
# another, and the backends sum in different orders.)
SPECIAL = [0.0, -0.0, 1.0, -1.0, 1e30, -1e30, 5e-324, -5e-324, 1e-310, 1e-40,
           1e-8, 123.456, 1e154]
LAYOUTS = ("C", "F", "strided", "readonly", "bigendian", "int", "bool", "list", "float16")
RATES = [5e-324, 1e-300, 1e-12, 1e-3, 0.05, 0.5, 1.0, 1e3, 1e30]


# ---------------------------------------------------------------------- the cases
@st.composite
def networks(draw):
    n_layers = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 4)) for _ in range(n_layers + 1)]
    loss = draw(st.sampled_from(["mse", "cross_entropy"]))
    if loss == "cross_entropy":
        outputs = ["sigmoid"] + (["softmax"] if sizes[-1] > 1 else [])
    else:
        outputs = list(HIDDEN) + (["softmax"] if sizes[-1] > 1 else [])
    output = draw(st.sampled_from(outputs))
    activation = draw(st.one_of(st.sampled_from(HIDDEN),
                                st.lists(st.sampled_from(HIDDEN), min_size=n_layers - 1,
                                         max_size=n_layers - 1)))
    if isinstance(activation, list) and not activation:
        activation = "sigmoid"
    return dict(sizes=sizes, activation=activation, output=output, loss=loss,
                init=draw(st.sampled_from(["normal", "uniform", "xavier", "he"])),
                dtype=draw(st.sampled_from(["float64", "float32"])),
                seed=draw(st.integers(0, 3)),
                dropout=draw(st.sampled_from([0.0, 0.0, 0.0, 0.5])) if n_layers > 1 else 0.0,
                max_norm=draw(st.sampled_from([None, None, None, 1e-3, 1.0, 1e300])))


def values(draw, shape, special=True):
    """A float64 array of ``shape``: mostly moderate numbers, some special ones."""
    n = int(np.prod(shape))
    if special and draw(st.booleans()):
        elements = st.one_of(st.floats(-3, 3, allow_subnormal=False),
                             st.sampled_from(SPECIAL))
    else:
        elements = st.floats(-3, 3, allow_subnormal=False)
    flat = np.array(draw(st.lists(elements, min_size=n, max_size=n)), dtype=np.float64)
    out = flat.reshape(shape)
    if out.ndim == 2 and out.shape[1] > 1 and draw(st.booleans()):
        out[:, 0] = out[0, 0]   # a constant column
    return out


@st.composite
def inputs(draw, n, n_in):
    layout = draw(st.sampled_from(LAYOUTS))
    if layout in ("int", "bool"):
        X = np.array(draw(st.lists(st.integers(-3, 3), min_size=n * n_in,
                                   max_size=n * n_in)), dtype=np.float64).reshape(n, n_in)
    else:
        X = values(draw, (n, n_in))
    return dict(data=X, layout=layout)


@st.composite
def targets(draw, n, net):
    """Targets in one of the forms the network accepts (or, now and then, refuses)."""
    n_out, output, loss = net["sizes"][-1], net["output"], net["loss"]
    forms = ["rows", "rows_list"]
    if n_out > 1:
        forms += ["labels", "labels_float", "labels_list", "labels_uint8"]
    else:
        forms += ["flat", "labels01"]
    forms += ["bad"]
    form = draw(st.sampled_from(forms))
    if form in ("labels", "labels_float", "labels_list", "labels_uint8", "labels01"):
        top = n_out if n_out > 1 else 2
        data = np.array(draw(st.lists(st.integers(0, top - 1), min_size=n, max_size=n)))
    elif form == "bad":
        data = draw(st.sampled_from(["nan", "label_too_big", "negative_label", "shape",
                                     "wrong_rows", "string"]))
    elif loss == "cross_entropy" or draw(st.booleans()):
        data = np.array(draw(st.lists(st.floats(0, 1), min_size=n * n_out,
                                      max_size=n * n_out))).reshape(n, n_out)
        if output == "softmax" and draw(st.booleans()):
            data = np.eye(n_out)[np.arange(n) % n_out]   # one-hot rows
    else:
        data = values(draw, (n, n_out))
    return dict(form=form, data=data)


@st.composite
def optimizers(draw):
    name = draw(st.sampled_from(["SGD", "SGD", "Adam", "RMSprop", "Adagrad", "Rprop"]))
    lr = draw(st.sampled_from(RATES + [0.0]))
    decay = draw(st.sampled_from([0.0, 0.0, 1e-3, 1.0, 1e6]))
    if name == "SGD":
        momentum = draw(st.sampled_from([0.0, 0.0, 0.5, 0.9, 1.0, 2.0]))
        kwargs = dict(momentum=momentum, weight_decay=decay,
                      nesterov=momentum > 0 and draw(st.booleans()))
    elif name == "Adam":
        kwargs = dict(beta1=draw(st.sampled_from([0.0, 0.5, 0.9, 1 - 1e-16])),
                      beta2=draw(st.sampled_from([0.0, 0.5, 0.999, 1 - 1e-16])),
                      eps=draw(st.sampled_from([5e-324, 1e-300, 1e-8, 1.0, 1e30])),
                      weight_decay=decay)
    elif name == "RMSprop":
        kwargs = dict(alpha=draw(st.sampled_from([0.0, 0.5, 0.99, 1.0])),
                      eps=draw(st.sampled_from([5e-324, 1e-8, 1.0, 1e30])),
                      momentum=draw(st.sampled_from([0.0, 0.5, 0.9])), weight_decay=decay)
    elif name == "Adagrad":
        kwargs = dict(eps=draw(st.sampled_from([5e-324, 1e-10, 1.0, 1e30])),
                      weight_decay=decay)
    else:
        kwargs = dict(etas=draw(st.sampled_from([(0.5, 1.2), (1e-300, 1e300), (0.999, 1.001)])),
                      step_sizes=draw(st.sampled_from([(1e-6, 50.0), (0.0, 0.0), (0.0, 1e300)])))
    return dict(name=name, learning_rate=lr, **kwargs)


SCHEDULES = st.one_of(
    st.none(),
    st.builds(lambda s, g: ("StepDecay", dict(step_size=s, gamma=g)),
              st.integers(1, 3), st.sampled_from([1e-300, 0.1, 1.0])),
    st.builds(lambda p, m: ("Cosine", dict(period=p, min_rate=m)),
              st.integers(1, 3), st.sampled_from([0.0, 1e-3, 10.0])),
    st.builds(lambda p: ("InverseScaling", dict(power=p)), st.sampled_from([1e-9, 0.5, 50.0])),
    st.builds(lambda f, p: ("ReduceOnPlateau", dict(factor=f, patience=p)),
              st.sampled_from([1e-9, 0.5]), st.integers(0, 2)),
)


@st.composite
def calls(draw, n, net):
    n_in = net["sizes"][0]
    kind = draw(st.sampled_from(["fit", "fit", "partial_fit", "partial_fit_row", "forward",
                                 "forward_row", "predict", "predict_row", "evaluate",
                                 "loss", "gradients"]))
    call = dict(kind=kind)
    if kind in ("fit", "partial_fit"):
        call.update(batch_size=draw(st.sampled_from([1, 2, 3, 4, 5, 64])),
                    shuffle=draw(st.booleans()), optimizer=draw(st.none() | optimizers()))
    if kind == "fit":
        call.update(epochs=draw(st.sampled_from([0, 1, 1, 2, 3])),
                    seed=draw(st.none() | st.integers(0, 3)), schedule=draw(SCHEDULES))
    if kind.endswith("_row"):
        call["X"] = dict(data=values(draw, (n_in,)), layout=draw(st.sampled_from(
            ["C", "readonly", "bigendian", "strided", "list", "int"])))
        if kind == "partial_fit_row":
            call["Y"] = draw(targets(1, net))
    else:
        m = draw(st.sampled_from([1, n]))
        call["X"] = draw(inputs(m, n_in))
        if kind not in ("forward", "predict"):
            call["Y"] = draw(targets(m, net))
    return call


@st.composite
def cases(draw):
    net = draw(networks())
    n = draw(st.sampled_from([1, 2, 3, 5, 7]))
    return dict(net=net, n=n, calls=draw(st.lists(calls(n, net), min_size=1, max_size=4)))


# ---------------------------------------------------------------- playing a case
def arrange(spec, dtype):
    """The array a user hands over: ``spec["data"]`` in the layout ``spec["layout"]``."""
    data, layout = spec["data"], spec["layout"]
    if layout == "F":
        return np.asfortranarray(data)
    if layout == "strided":
        wide = np.zeros(data.shape[:-1] + (2 * data.shape[-1],), dtype=dtype)
        wide[..., ::2] = data
        return wide[..., ::2]
    if layout == "readonly":
        out = data.astype(dtype)
        out.flags.writeable = False
        return out
    if layout == "bigendian":
        return data.astype(np.dtype(dtype).newbyteorder(">"))
    if layout == "int":
        return data.astype(np.int32)
    if layout == "bool":
        return data != 0
    if layout == "list":
        return data.tolist()
    if layout == "float16":
        with np.errstate(over="ignore"):
            return data.astype(np.float16)
    return np.ascontiguousarray(data, dtype=dtype)


def target_array(spec, n_out, dtype):
    form, data = spec["form"], spec["data"]
    if form == "labels":
        return data.astype(np.int64)
    if form == "labels_float":
        return data.astype(np.float64)
    if form == "labels_list":
        return data.tolist()
    if form == "labels_uint8":
        return data.astype(np.uint8)
    if form == "labels01":
        return data.astype(np.int64)
    if form == "flat":
        return data.reshape(-1).astype(dtype)
    if form == "rows_list":
        return data.tolist()
    if form == "rows":
        return data.astype(dtype)
    n = spec.get("n", 1)
    return {"nan": np.full((n, n_out), np.nan), "label_too_big": np.full(n, n_out + 1),
            "negative_label": np.full(n, -1), "shape": np.zeros((n, n_out + 1)),
            "wrong_rows": np.zeros((n + 1, n_out)), "string": ["a"] * n}[data]


def build_optimizer(spec):
    import cyprop
    if spec is None:
        return None
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return getattr(cyprop, spec["name"])(**kwargs)


def build_schedule(spec):
    from cyprop import schedules
    return None if spec is None else getattr(schedules, spec[0])(**spec[1])


def outcome(fn):
    """("ok", value) or ("error", type name, message) of fn()."""
    try:
        return ("ok", fn())
    except Exception as exc:   # every exception is compared between the backends
        return ("error", type(exc).__name__, str(exc))


def play(case, backend):
    """Play ``case`` on ``backend``: a list of (what the call gave, the state after it)."""
    import cyprop
    spec = case["net"]
    dtype = spec["dtype"]
    made = outcome(lambda: cyprop.Network(backend=backend, **spec))
    if made[0] == "error":
        return [(made, None)]
    net = made[1]
    n_out = spec["sizes"][-1]
    log = []
    for call in case["calls"]:
        kind = call["kind"]
        X = arrange(call["X"], dtype)
        Y = None
        if "Y" in call:
            Y = target_array(dict(call["Y"], n=len(call["X"]["data"]) if kind != "partial_fit_row"
                                  else 1), n_out, dtype)
            if kind == "partial_fit_row" and isinstance(Y, np.ndarray) and Y.ndim:
                Y = Y[0]   # a row's targets, or its label
            elif kind == "partial_fit_row" and isinstance(Y, list):
                Y = Y[0]
        if kind == "fit":
            def run():
                h = net.fit(X, Y, epochs=call["epochs"], batch_size=call["batch_size"],
                            shuffle=call["shuffle"], seed=call["seed"], verbose=0,
                            optimizer=build_optimizer(call["optimizer"]),
                            schedule=build_schedule(call["schedule"]))
                return dict(loss=list(h.loss), accuracy=list(h.accuracy),
                            stop_reason=h.stop_reason)
        elif kind == "partial_fit":
            def run():
                net.partial_fit(X, Y, batch_size=call["batch_size"], shuffle=call["shuffle"],
                                optimizer=build_optimizer(call["optimizer"]))
        elif kind == "partial_fit_row":
            def run():
                net.partial_fit(X, Y)
        elif kind in ("forward", "forward_row"):
            def run():
                return net.forward(X)
        elif kind in ("predict", "predict_row"):
            def run():
                return net.predict(X), net.forward(X)   # (the outputs: ties, see compare)
        elif kind == "gradients":
            def run():
                return net.gradients(X, Y)
        else:
            def run():
                return getattr(net, kind)(X, Y)
        got = outcome(run)
        opt = net.optimizer
        state = dict(params=np.concatenate([p.ravel() for p in net.weights + net.biases]),
                     steps=None if opt is None else opt.steps,
                     opt_state=None if opt is None or opt.state is None else opt.state.copy(),
                     history=list(net.history.loss), stop_reason=net.history.stop_reason)
        log.append((got, state))
    return log


def serve():
    """The child's loop: read a pickled (case, backend), write back play's log."""
    warnings.simplefilter("ignore")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(8)
        if len(head) < 8:
            return
        case, backend = pickle.loads(stdin.read(struct.unpack("<Q", head)[0]))
        try:
            reply = pickle.dumps(("log", play(case, backend)))
        except Exception as exc:   # a bug of this harness, reported as such
            reply = pickle.dumps(("harness", repr(exc)))
        stdout.write(struct.pack("<Q", len(reply)) + reply)
        stdout.flush()


class Child:
    """A child process that plays cases; restarted after a crash or a hang."""

    def __init__(self):
        self.proc = None
        self.errors = tempfile.TemporaryFile()

    def start(self):
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                "import test_differential; test_differential.serve()")
        self.errors.seek(0)
        self.errors.truncate()
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.errors)

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def play(self, case, backend):
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        request = pickle.dumps((case, backend))
        try:
            self.proc.stdin.write(struct.pack("<Q", len(request)) + request)
            self.proc.stdin.flush()
            head = self.read(8)
            return pickle.loads(self.read(struct.unpack("<Q", head)[0]))
        except (EOFError, BrokenPipeError):
            self.proc.wait()
            self.errors.seek(0)
            tail = self.errors.read()[-3000:].decode(errors="replace")
            status = self.proc.returncode
            self.proc = None
            return ("crash", f"the child died (status {status}) on {backend}:\n{tail}")
        except TimeoutError:
            self.stop()
            return ("crash", f"the case did not finish in {CALL_TIMEOUT} s on {backend}")

    def read(self, size):
        out = b""
        while len(out) < size:
            ready, _, _ = select.select([self.proc.stdout], [], [], CALL_TIMEOUT)
            if not ready:
                raise TimeoutError
            chunk = os.read(self.proc.stdout.fileno(), size - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out


@pytest.fixture(scope="module")
def child():
    c = Child()
    yield c
    c.stop()


# ---------------------------------------------------------------- comparing them
def assert_close(a, b, dtype, what):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for key in a:
            assert_close(a[key], b[key], dtype, f"{what}[{key}]")
        return
    if isinstance(a, (list, tuple)) and a and not isinstance(a[0], (int, float)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, dtype, f"{what}[{i}]")
        return
    if a is None or b is None or isinstance(a, str):
        assert a == b, f"{what}: {a!r} != {b!r}"
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape}"
    if a.dtype.kind in "biu":
        np.testing.assert_array_equal(a, b, err_msg=what)
        return
    a, b = a.astype(np.float64), b.astype(np.float64)
    # Relative to the largest value of the array, not to each element: the steps of
    # huge rates cancel (w - lr * sign(w) ~ 0), and then a difference of rounding in
    # the step, relative to the step, is all that remains of a weight.
    scale = max(np.abs(x[np.isfinite(x)]).max(initial=0) for x in (a, b))
    np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=ATOL[dtype] + RTOL[dtype] * scale,
                               err_msg=what)


def finite(value):
    if isinstance(value, dict):
        return all(finite(v) for k, v in value.items() if k != "stop_reason")
    if isinstance(value, (list, tuple)):
        return all(finite(v) for v in value)
    if value is None:
        return True
    return bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))


def assert_same_labels(cy, ref, dtype, what):
    """predict's labels, (labels, outputs) from each backend: the outputs agree within
    the tolerances, and so do the labels wherever the reference's outputs decide them by
    more than the tolerance (two outputs tied within it, or one output within it of 0.5,
    may fall either way: a rounding apart)."""
    (labels_cy, out_cy), (labels_ref, out_ref) = cy, ref
    assert_close(out_cy, out_ref, dtype, f"{what}, outputs")
    out = np.atleast_2d(np.asarray(out_ref, dtype=np.float64))
    margin = ATOL[dtype] + RTOL[dtype] * np.abs(out).max(initial=0)
    if out.shape[1] == 1:
        decided = np.abs(out[:, 0] - 0.5) > margin
    else:
        top_two = np.sort(out, axis=1)[:, -2:]
        decided = top_two[:, 1] - top_two[:, 0] > margin
    labels_cy, labels_ref = np.atleast_1d(labels_cy), np.atleast_1d(labels_ref)
    assert labels_cy.shape == labels_ref.shape, what
    np.testing.assert_array_equal(labels_cy[decided], labels_ref[decided], err_msg=what)


def compare(case, logs):
    dtype = case["net"]["dtype"]
    cy, ref = logs["cython"], logs["numpy"]
    assert len(cy) == len(ref)
    compare_values = True
    for i, ((got_cy, state_cy), (got_ref, state_ref)) in enumerate(zip(cy, ref)):
        what = ("making the network" if state_cy is None
                else f"call {i} ({case['calls'][i]['kind']})")
        if state_cy is not None and np.abs(case["calls"][i]["X"]["data"]).max() > 1e6:
            # Inputs of 1e30 magnify differences within the tolerances (a weight of 4e-17
            # against 0 after a cancellation) into losses far apart: from here on, the
            # backends must only behave the same.
            compare_values = False
        assert got_cy[0] == got_ref[0], \
            f"{what}: cython {got_cy[0]} {got_cy[1:]}, numpy {got_ref[0]} {got_ref[1:]}"
        if got_cy[0] == "error":
            assert got_cy[1] == got_ref[1], \
                f"{what}: cython raised {got_cy[1:]}, numpy {got_ref[1:]}"
            assert got_cy[2] and got_ref[2], f"{what}: {got_cy[1]} without a message"
        else:
            assert finite(got_cy[1]) and finite(got_ref[1]), \
                f"{what} returned values that are not finite: {got_cy[1]!r} / {got_ref[1]!r}"
            if compare_values and case["calls"][i]["kind"].startswith("predict"):
                assert_same_labels(got_cy[1], got_ref[1], dtype, what)
            elif compare_values:
                assert_close(got_cy[1], got_ref[1], dtype, what)
        if state_cy is not None and compare_values:
            assert_close(state_cy, state_ref, dtype, f"the state after {what}")


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not HUNTING,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_backends_behave_the_same(child, case):
    logs = {}
    for backend in ("cython", "numpy"):
        reply = child.play(case, backend)
        assert reply[0] == "log", reply[1]
        logs[backend] = reply[1]
    compare(case, logs)
