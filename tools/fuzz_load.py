"""Coverage-guided fuzzing of ``cyprop.load`` with atheris (run it through tools/fuzz.sh,
which builds cyprop with AddressSanitizer and UBSan first; not part of CI).

Each input is written to a file and loaded.  ``load`` may refuse it with a ValueError
or an OSError; any other exception is a finding, and so is a crash, a hang (libFuzzer's
-timeout) or a balloon (-rss_limit_mb).  A file that loads must then train: one short
shuffling ``fit`` and a ``forward`` (only divergence or an overflowing result, which
huge but finite weights legitimately give, may stop them).

Coverage comes from cyprop's Python code, zipfile and json (instrumented as imported);
a custom mutator mostly edits the members of a zip input (a metadata JSON field, an
.npy header or data) and writes the zip back with the right CRC-32s, so that mutations
get past the checksums instead of all ending at a CRC-32 mismatch.

    python tools/fuzz_load.py --seeds DIR   write the seed corpus (valid files of many
                                            kinds) to DIR, then exit
    python tools/fuzz_load.py CORPUS... [libFuzzer flags]
"""

import io
import os
import random
import sys
import tempfile
import traceback
import warnings

import atheris

with atheris.instrument_imports(include=["cyprop", "zipfile", "json"]):
    import json
    import zipfile

    import cyprop

import numpy as np

_PATH = os.path.join(tempfile.mkdtemp(prefix="cyprop-fuzz-"), "input.npz")
_X = np.random.default_rng(0).normal(size=(5, 1))


def TestOneInput(data):
    try:
        _load_and_train(data)
    except Exception:
        # A finding.  Abort here rather than let the exception through atheris: its
        # C++ rethrow trips a check of the preloaded ASan runtime and hides the traceback.
        traceback.print_exc()
        sys.stderr.flush()
        os.abort()


def _load_and_train(data):
    with open(_PATH, "wb") as fh:
        fh.write(data)
    try:
        net = cyprop.load(_PATH, backend="cython")
    except (ValueError, OSError):
        return
    # Loaded: it must work.  Inputs of the right width, one-hot targets (valid for
    # every output and loss).
    X = np.repeat(_X, net.sizes[0], axis=1)
    Y = np.zeros((X.shape[0], net.sizes[-1]))
    Y[:, 0] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            net.fit(X, Y, epochs=1, batch_size=2, shuffle=True, verbose=0)
            net.forward(X)
        except (cyprop.TrainingDiverged, FloatingPointError):
            pass


# --------------------------------------------------------------------- the mutator
_INTERESTING = [0, 1, -1, 2, 4, 5, 623, 624, 625, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 62,
                2 ** 63, 2 ** 64 - 1, 2 ** 64, 2 ** 128 - 1, 2 ** 128, 10 ** 30, 0.5, -0.5,
                1e308, -1e308, float("nan"), float("inf"), float("-inf"), True, False, None,
                "", "x", "PCG64", "MT19937", "Philox", "SFC64", "float32", "softmax", [],
                [0], [1, 2], {}, {"a": 1}]


def _members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def _zip(members):
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as zf:
        warnings.simplefilter("ignore")   # duplicate names are meant
        for name, content in members:
            zf.writestr(name, content)
    return buffer.getvalue()


def _mutate_json(value, rng):
    """``value`` (parsed JSON) with one field replaced, removed or added."""
    path, node = [], value
    while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append((node, key))
        node = node[key]
    if not path:
        return rng.choice(_INTERESTING)
    parent, key = path[-1]
    action = rng.random()
    if action < 0.1 and isinstance(parent, dict):
        del parent[key]
    elif action < 0.15 and isinstance(parent, list):
        parent.append(parent[key])
    elif action < 0.5 and isinstance(node, int) and not isinstance(node, bool):
        parent[key] = node + rng.choice([-1, 1, -node - 1, node, 2 ** rng.randrange(70)])
    else:
        parent[key] = rng.choice(_INTERESTING)
    return value


def _mutate_member(name, content, max_size, rng):
    header = min(len(content), 128)   # magic, header length, header dict
    if name == "metadata.npy" and rng.random() < 0.7:
        start = content.find(b"{", 10)
        try:
            meta = json.loads(content[start:])
        except ValueError:
            pass
        else:
            text = json.dumps(_mutate_json(meta, rng)).encode()
            return content[:start] + text if rng.random() < 0.5 else _npy(np.frombuffer(
                text, dtype=np.uint8))
    if rng.random() < 0.5:   # the .npy header
        return atheris.Mutate(content[:header], max_size) + content[header:]
    return atheris.Mutate(content, max_size)


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def CustomMutator(data, max_size, seed):
    rng = random.Random(seed)
    try:
        members = _members(data)
    except Exception:
        members = None
    if not members or rng.random() < 0.15:
        return atheris.Mutate(data, max_size)   # raw bytes: zip structure and all
    index = rng.randrange(len(members))
    if rng.random() < 0.3:
        # the metadata more often than any array: it decides what is read
        index = next((i for i, (name, _) in enumerate(members) if name == "metadata.npy"), index)
    name, content = members[index]
    action = rng.random()
    if action < 0.03:
        del members[index]
    elif action < 0.06:
        members.append((rng.choice(["weights_9.npy", "x/metadata.npy", name]), content))
    else:
        members[index] = (name, _mutate_member(name, content, max_size, rng))
    return _zip(members)[:max_size]


# ------------------------------------------------------------------------- seeds
def write_seeds(directory):
    """Valid files from ``save`` of networks of every kind the format holds."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    optimizers = [None, cyprop.SGD(0.1), cyprop.SGD(0.1, momentum=0.9, nesterov=True),
                  cyprop.Adam(0.01), cyprop.RMSprop(0.01, momentum=0.5), cyprop.Adagrad(0.1),
                  cyprop.Rprop(0.01)]
    generators = ["PCG64", "PCG64DXSM", "SFC64", "Philox", "MT19937"]
    for i, optimizer in enumerate(optimizers):
        for dtype in ("float32", "float64"):
            sizes = [3, 4, 2] if i % 2 else [2, 3, 3, 1]
            net = cyprop.Network(sizes, dtype=dtype, seed=i, dropout=0.25 * (i % 3 == 1),
                                 max_norm=2.0 if i % 3 == 2 else None,
                                 loss="mse" if sizes[-1] == 1 and i % 4 == 0 else "cross_entropy")
            name = generators[(i + (dtype == "float32")) % len(generators)]
            net._rng = np.random.Generator(getattr(np.random, name)(i))
            if optimizer is not None:
                X = rng.normal(size=(6, sizes[0]))
                Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], 6)] if sizes[-1] > 1 \
                    else (X[:, :1] > 0).astype(float)
                net.fit(X, Y, epochs=2, batch_size=3 if i != 6 else 6, optimizer=optimizer,
                        verbose=0)
            net.save(os.path.join(directory, f"{i}-{dtype}-{name}.npz"))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--seeds"]:
        write_seeds(sys.argv[2])
        sys.exit(0)
    atheris.Setup(sys.argv, TestOneInput, custom_mutator=CustomMutator)
    atheris.Fuzz()
