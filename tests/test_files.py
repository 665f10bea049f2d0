"""Model files as data from outside, and the paths save and load are given.

Files here are crafted by hand (zipfile, struct, json), not only through ``save``: a
file must never crash, hang or balloon ``load``, nor load into a corrupt network.
Anything that could crash or block runs in a child process, so that it fails the
test instead of ending the run.

tests/corpus/load/ keeps crafted and fuzzer-found inputs (tools/fuzz_load.py) that
``test_corpus_replays_cleanly`` loads; ``python tests/test_files.py DIR`` writes the
crafted ones of this module there.
"""

import hashlib
import io
import json
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import zipfile
import zlib

import numpy as np
import pytest

import cyprop
from cyprop import persistence
from conftest import as_format_1, set_nested

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus", "load")
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file types")


# --------------------------------------------------------------------- helpers
def npy(array, version=None):
    buffer = io.BytesIO()
    if version is None:
        np.save(buffer, array)
    else:
        header = {"descr": npy_descr(array), "fortran_order": False, "shape": array.shape}
        write = {(1, 0): "write_array_header_1_0", (2, 0): "write_array_header_2_0"}[version]
        getattr(np.lib.format, write)(buffer, header)
        buffer.write(array.tobytes())
    return buffer.getvalue()


def npy_descr(array):
    return np.lib.format.dtype_to_descr(array.dtype)


def npy_raw(header, data=b"", version=1):
    """An .npy member with the header dict text given as is."""
    text = header.encode("latin1")
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text + data


def zip_bytes(members, compression=zipfile.ZIP_STORED):
    """A zip of {name: bytes} (names taken as given, .npy included)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buffer.getvalue()


def base_net(optimizer=True):
    net = cyprop.Network([4, 5, 3], seed=1)
    if optimizer:
        X = np.random.default_rng(0).normal(size=(12, 4))
        net.fit(X, np.arange(12) % 3, epochs=2, batch_size=4, verbose=0,
                optimizer=cyprop.SGD(0.1, momentum=0.9))
    return net


def saved_members(net=None):
    """{name.npy: bytes} of a file written by save."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "m.npz")
        (net or base_net()).save(path)
        with zipfile.ZipFile(path) as zf:
            return {info.filename: zf.read(info) for info in zf.infolist()}


def meta_of(members):
    return json.loads(np.load(io.BytesIO(members["metadata.npy"])).tobytes())


def with_meta(members, meta):
    text = json.dumps(meta).encode()
    return {**members, "metadata.npy": npy(np.frombuffer(text, dtype=np.uint8))}


def edited(edit, members=None):
    """The members of a valid file with the metadata changed by ``edit(meta)``."""
    members = members or saved_members()
    meta = meta_of(members)
    edit(meta)
    return with_meta(members, meta)


def load_bytes(tmp_path, content, name="m.npz"):
    path = tmp_path / name
    path.write_bytes(content)
    return cyprop.load(path)


def refused(tmp_path, content, *problems):
    with pytest.raises(ValueError) as info:
        load_bytes(tmp_path, content)
    message = str(info.value)
    assert message.startswith("cannot load "), message
    for problem in problems:
        assert problem in message, message
    return message


def run_child(code, timeout=60):
    """Run ``code`` in a fresh interpreter; its exit status and output."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def patch_entry(content, name, central=None, local=None):
    """``content`` (a zip) with fields of entry ``name`` overwritten: ``central`` and
    ``local`` map a field's offset in that header to (struct format, value)."""
    data = bytearray(content)
    encoded = name.encode()
    for signature, fields in ((b"PK\x01\x02", central), (b"PK\x03\x04", local)):
        name_at = 46 if signature == b"PK\x01\x02" else 30
        start = 0
        while fields:
            start = data.index(signature, start)
            if data[start + name_at:start + name_at + len(encoded)] == encoded:
                for offset, (fmt, value) in fields.items():
                    struct.pack_into(fmt, data, start + offset, value)
                break
            start += 4
    return bytes(data)


# ------------------------------------------------------- 1. generator states
def rng_state(name, seed=3):
    state = getattr(np.random, name)(seed).state
    return json.loads(json.dumps(state, default=lambda a: a.tolist()))


def with_rng(state, members=None):
    def edit(meta):
        meta["rng"] = state
    return edited(edit, members)



BAD_STATES = [
    ("MT19937", ["state", "pos"], 625), ("MT19937", ["state", "pos"], -1),
    ("MT19937", ["state", "pos"], 10 ** 6), ("MT19937", ["state", "pos"], True),
    ("MT19937", ["state", "pos"], 3.0), ("MT19937", ["state", "pos"], KeyError),
    ("MT19937", ["state", "key"], [1] * 623), ("MT19937", ["state", "key"], [1] * 625),
    ("MT19937", ["state", "key"], [2 ** 32] * 624), ("MT19937", ["state", "key"], [-1] * 624),
    ("MT19937", ["state", "key"], "abc"), ("MT19937", ["has_uint32"], 0),
    ("Philox", ["buffer_pos"], -1), ("Philox", ["buffer_pos"], 0), ("Philox", ["buffer_pos"], 5),
    ("Philox", ["buffer_pos"], -(2 ** 40)), ("Philox", ["state", "counter"], [0, 0, 0]),
    ("Philox", ["state", "key"], [0, 0, 0]), ("Philox", ["state", "key"], [0, 2 ** 64]),
    ("Philox", ["buffer"], [0] * 5), ("Philox", ["buffer"], KeyError),
    ("Philox", ["has_uint32"], 2), ("Philox", ["has_uint32"], True),
    ("Philox", ["uinteger"], 2 ** 32), ("Philox", ["uinteger"], -1),
    ("PCG64", ["state", "state"], 2 ** 128), ("PCG64", ["state", "state"], -1),
    ("PCG64", ["state", "inc"], 2), ("PCG64", ["state", "inc"], 2 ** 128 + 1),
    ("PCG64", ["state", "extra"], 1), ("PCG64", ["extra"], 1), ("PCG64", ["uinteger"], KeyError),
    ("PCG64", ["state"], [1, 2]), ("PCG64DXSM", ["state", "inc"], "1"),
    ("PCG64DXSM", ["has_uint32"], None), ("SFC64", ["state", "state"], [0, 0, 0]),
    ("SFC64", ["state", "state"], [0, 0, 0, 2 ** 64]), ("SFC64", ["state", "state"], 7),
    ("SFC64", ["bit_generator"], "MT19937"), ("SFC64", ["bit_generator"], ["SFC64"]),
    ("SFC64", ["bit_generator"], "RandomState"),
]


@pytest.mark.parametrize("name, keys, value", BAD_STATES,
                         ids=[f"{n}-{'.'.join(k)}-{str(v)[:12]}" for n, k, v in BAD_STATES])
def test_invalid_generator_state_is_refused(tmp_path, name, keys, value):
    # Refused while validating, before NumPy is given the state: a draw from such a
    # state reads outside the generator's arrays (an MT19937 pos of 10**6 segfaults).
    content = zip_bytes(with_rng(set_nested(rng_state(name), keys, value)))
    refused(tmp_path, content, "invalid random generator state (")


def test_generator_state_not_an_object(tmp_path):
    refused(tmp_path, zip_bytes(with_rng([1, 2])), "invalid random generator state")


EDGE_STATES = {
    "MT19937-pos-0": ("MT19937", {"pos": 0}),
    "MT19937-pos-624": ("MT19937", {"pos": 624}),
    "MT19937-key-max": ("MT19937", {"key": [2 ** 32 - 1] * 624}),
    "Philox-buffer-pos-1": ("Philox", {"buffer_pos": 1, "buffer": [2 ** 64 - 1] * 4}),
    "Philox-buffer-pos-4": ("Philox", {"buffer_pos": 4, "has_uint32": 1,
                                       "uinteger": 2 ** 32 - 1}),
    "Philox-max-words": ("Philox", {"counter": [2 ** 64 - 1] * 4, "key": [2 ** 64 - 1] * 2}),
    "PCG64-max": ("PCG64", {"state": 2 ** 128 - 1, "inc": 2 ** 128 - 1, "has_uint32": 1}),
    "PCG64-zero": ("PCG64", {"state": 0, "inc": 1}),
    "PCG64DXSM-max": ("PCG64DXSM", {"state": 2 ** 128 - 1, "inc": 1,
                                    "uinteger": 2 ** 32 - 1}),
    "SFC64-max": ("SFC64", {"state": [2 ** 64 - 1] * 4}),
}


def edge_state(name, changes):
    state = rng_state(name)
    for key, value in changes.items():
        (state["state"] if key in state["state"] else state)[key] = value
    return state


def test_edge_generator_states_load_and_train(tmp_path):
    # Valid states at the ends of their ranges: they load as written, and the first
    # shuffling fit (which draws from them) works.  In a child: a wrong state crashes.
    paths = {}
    for label, (name, changes) in EDGE_STATES.items():
        paths[label] = str(tmp_path / f"{label}.npz")
        with open(paths[label], "wb") as fh:
            fh.write(zip_bytes(with_rng(edge_state(name, changes))))
    status, output = run_child(f"""
        import json
        import numpy as np
        import cyprop
        X = np.random.default_rng(0).normal(size=(17, 4))
        for label, path in {paths!r}.items():
            net = cyprop.load(path)
            state = json.dumps(net._rng.bit_generator.state, default=lambda a: a.tolist())
            written = json.loads(np.load(path)["metadata"].tobytes())["rng"]
            assert json.loads(state) == written, label
            for batch_size in (1, 4):
                net.fit(X, np.arange(17) % 3, epochs=2, batch_size=batch_size, shuffle=True,
                        verbose=0)
            assert np.isfinite(net.forward(X)).all()
            print("ok", label)
    """)
    assert status == 0, output
    assert output.count("ok ") == len(EDGE_STATES), output


# ------------------------------------------- 2. metadata fields: type and range
def _set_optimizer(key, value):
    def edit(meta):
        meta["optimizer"][key] = value
    return edit


def _set_config(key, value):
    def edit(meta):
        meta["optimizer"]["config"][key] = value
    return edit


def _set(key, value):
    def edit(meta):
        meta[key] = value
    return edit


def _sizes(sizes):
    def edit(meta):
        meta["sizes"] = sizes
        meta["activations"] = ["sigmoid"] * (len(sizes) - 1)
        meta["dropout"] = [0.0] * (len(sizes) - 2)
    return edit


def _set_record(value):
    def edit(meta):
        meta["history"]["records"]["loss"][0] = value
    return edit


BAD_FIELDS = [
    ("steps-2**63", _set_optimizer("steps", 2 ** 63), "step count"),
    ("steps-2**62", _set_optimizer("steps", 2 ** 62), "step count"),
    ("steps-float", _set_optimizer("steps", 3.0), "step count"),
    ("steps-bool", _set_optimizer("steps", True), "step count"),
    ("lr-nan", _set_config("learning_rate", float("nan")), "invalid SGD configuration"),
    ("lr-inf", _set_config("learning_rate", float("inf")), "invalid SGD configuration"),
    ("lr-string", _set_config("learning_rate", "0.1"), "invalid SGD configuration"),
    ("lr-10**400", _set_config("learning_rate", 10 ** 400), "integer of 401 digits"),
    ("lr-list", _set_config("learning_rate", [0.1]), "invalid SGD configuration"),
    ("momentum-bool", _set_config("momentum", True), "invalid SGD configuration"),
    ("nesterov-int", _set_config("nesterov", 1), "invalid SGD configuration"),
    ("config-unknown", _set_config("lr", 0.1), "unknown parameter 'lr'"),
    ("initial-lr-inf", _set_optimizer("initial_learning_rate", float("inf")),
     "invalid initial learning rate"),
    ("name-list", _set_optimizer("name", ["SGD"]), "unknown optimizer"),
    ("history-epochs-10**400", lambda meta: meta["history"].update(epochs=10 ** 400),
     "integer of 401 digits"),
    ("history-without-stop-reason", lambda meta: meta["history"].pop("stop_reason"),
     "invalid training history"),   # found by tools/fuzz_load.py: was a KeyError
    ("seed-negative", _set("seed", -1), "invalid seed"),
    ("seed-2**128", _set("seed", 2 ** 128), "invalid seed"),
    ("seed-float", _set("seed", 1.0), "invalid seed"),
    ("dropout-nan", _set("dropout", [float("nan")]), "invalid dropout"),
    ("max-norm-inf", _set("max_norm", float("inf")), "invalid max_norm"),
    ("max-norm-bool", _set("max_norm", True), "invalid max_norm"),
    ("sizes-huge", _sizes([10 ** 9, 10 ** 9]), "their arrays need"),
    ("sizes-many-layers", _sizes([1] * 100_000), "calls for 200001 arrays, the file holds 7"),
    ("loss-list", _set("loss", ["mse"]), "invalid loss"),
    ("dtype-dict", _set("dtype", {}), "invalid dtype"),
    ("activations-unhashable", _set("activations", [["sigmoid"], "softmax"]),
     "invalid activations"),
]


@pytest.mark.parametrize("label, edit, problem", BAD_FIELDS, ids=[b[0] for b in BAD_FIELDS])
def test_invalid_metadata_field_is_refused(tmp_path, label, edit, problem):
    refused(tmp_path, zip_bytes(edited(edit)), problem)


def format_1_members():
    """{name.npy: bytes} of a file of format 1 (the history's records in the metadata)."""
    arrays = {name[:-len(".npy")]: np.load(io.BytesIO(data))
              for name, data in saved_members().items()}
    return {name + ".npy": npy(array) for name, array in as_format_1(arrays).items()}


BAD_FORMAT_1_FIELDS = [
    ("history-string", _set_record("0.5"), "history record 'loss'"),
    ("history-bool", _set_record(True), "history record 'loss'"),
    ("history-list", _set_record([0.5]), "history record 'loss'"),
    ("history-10**400", _set_record(10 ** 400), "integer of 401 digits"),
    ("history-without-stop-reason", lambda meta: meta["history"].pop("stop_reason"),
     "invalid training history"),
]


@pytest.mark.parametrize("label, edit, problem", BAD_FORMAT_1_FIELDS,
                         ids=[b[0] for b in BAD_FORMAT_1_FIELDS])
def test_invalid_metadata_field_of_format_1_is_refused(tmp_path, label, edit, problem):
    refused(tmp_path, zip_bytes(edited(edit, format_1_members())), problem)


def test_steps_just_below_the_limit_load(tmp_path):
    net = load_bytes(tmp_path, zip_bytes(edited(_set_optimizer("steps", 2 ** 62 - 1))))
    assert net.optimizer.steps == 2 ** 62 - 1


def test_integer_values_load_as_floats(tmp_path):
    def edit(meta):
        meta["optimizer"]["config"]["learning_rate"] = 1
        meta["history"]["records"]["loss"][0] = 2
    net = load_bytes(tmp_path, zip_bytes(edited(edit, format_1_members())))
    assert net.optimizer.learning_rate == 1.0 and net.history.loss[0] == 2.0
    assert type(net.history.loss[0]) is float


def test_absurd_sizes_are_refused_before_allocating(tmp_path):
    import tracemalloc

    content = zip_bytes(edited(_sizes([10 ** 9, 10 ** 9])))
    tracemalloc.start()
    try:
        refused(tmp_path, content, "their arrays need")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2 ** 20


def test_error_messages_stay_short(tmp_path):
    # A 1 MB string in a field is named, not repeated in full.
    message = refused(tmp_path, zip_bytes(edited(_set("loss", "x" * 2 ** 20))), "invalid loss")
    assert len(message) < 300


def test_an_unknown_init_is_named_short(tmp_path):
    # (the constructor's refusal repeated the file's 1 MB string in full)
    message = refused(tmp_path, zip_bytes(edited(_set("init", "x" * 2 ** 20))), "unknown init")
    assert len(message) < 300
    # an unhashable one was "unhashable type: 'list'", naming no argument
    with pytest.raises(ValueError, match=r"unknown init \['he'\]"):
        cyprop.Network([2, 2], init=["he"])


# ------------------------------------------------------ 3. the zip and .npy layers
def test_compressed_members_are_refused(tmp_path):
    content = zip_bytes(saved_members(), compression=zipfile.ZIP_DEFLATED)
    refused(tmp_path, content, "is compressed (method 8)")


def test_encrypted_flag_is_refused(tmp_path):
    content = zip_bytes(saved_members())
    content = patch_entry(content, "weights_0.npy", central={8: ("<H", 0x1)},
                          local={6: ("<H", 0x1)})
    refused(tmp_path, content, "'weights_0.npy' is encrypted")


def test_unknown_flags_are_refused(tmp_path):
    content = patch_entry(zip_bytes(saved_members()), "biases_0.npy",
                          central={8: ("<H", 0x40)}, local={6: ("<H", 0x40)})
    refused(tmp_path, content, "flagged 0x40")


@pytest.mark.parametrize("field", ["compressed", "uncompressed", "both"])
def test_sizes_beyond_the_file_are_refused(tmp_path, field):
    offsets = {"compressed": [20], "uncompressed": [24], "both": [20, 24]}[field]
    content = patch_entry(zip_bytes(saved_members()), "weights_1.npy",
                          central={o: ("<I", 2 ** 31) for o in offsets})
    refused(tmp_path, content, "'weights_1.npy' claims more data than the file holds")


def test_overlapping_members_are_refused(tmp_path):
    # Two directory entries for the same data: their sizes add up past the file's.
    members = saved_members()
    content = zip_bytes({**members, "pad_0.npy": b"\0" * 2000})
    start = content.index(b"PK\x01\x02")
    offset = struct.unpack_from("<I", content, start + 42)[0]
    content = patch_entry(content, "pad_0.npy", central={20: ("<I", len(content) - 100),
                                                         24: ("<I", len(content) - 100),
                                                         42: ("<I", offset)})
    refused(tmp_path, content)


def test_duplicate_names_are_refused(tmp_path):
    members = saved_members()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf, pytest.warns(UserWarning, match="Duplicate"):
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("biases_1.npy", members["biases_1.npy"])
    refused(tmp_path, buffer.getvalue(), "duplicate entries 'biases_1.npy'")


@pytest.mark.parametrize("name", ["dir/", "dir/weights_0.npy", "../weights_0.npy",
                                  "/metadata.npy", "weights_0.npy.txt", "wéights.npy",
                                  "weights_0"])
def test_odd_member_names_are_refused(tmp_path, name):
    content = zip_bytes({**saved_members(), name: b""})
    refused(tmp_path, content, "not a plain '<name>.npy' array")


def test_name_with_nul_byte_is_refused(tmp_path):
    members = saved_members()
    content = zip_bytes({**members, "biases_9.npyXx": b""})
    content = content.replace(b"biases_9.npyXx", b"biases_9.npy\0x")
    refused(tmp_path, content, "not a plain")


def test_metadata_over_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    members = saved_members()
    monkeypatch.setattr(persistence, "METADATA_LIMIT", 100)
    message = refused(tmp_path, zip_bytes(members), "more than the 100 this cyprop reads")
    assert str(len(members["metadata.npy"])) in message


def test_metadata_padded_with_spaces_loads(tmp_path):
    # JSON allows the whitespace; the limit is on bytes, not on what they hold.
    members = saved_members()
    text = b" " * 300_000 + json.dumps(meta_of(members)).encode() + b"\n" * 1000
    net = load_bytes(tmp_path, zip_bytes({**members, "metadata.npy": npy(
        np.frombuffer(text, dtype=np.uint8))}))
    assert net.sizes == [4, 5, 3]


@pytest.mark.parametrize("header, data, problem", [
    ("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 5), }", b"0" * 10, "expected 1-D"),
    ("{'descr': '|i1', 'fortran_order': False, 'shape': (10,), }", b"0" * 10, "dtype int8"),
    ("{'descr': '<u2', 'fortran_order': False, 'shape': (5,), }", b"0" * 10, "dtype uint16"),
    ("{'descr': '|u1', 'fortran_order': False, 'shape': (-10,), }", b"0" * 10, "invalid shape"),
    ("{'descr': '|u1', 'fortran_order': False, 'shape': (True,), }", b"0", "invalid shape"),
    ("{'descr': [('a', '|u1')], 'fortran_order': False, 'shape': (1,), }", b"0", "dtype"),
    ("{'descr': ('|u1', (4,)), 'fortran_order': False, 'shape': (1,), }", b"0" * 4, "dtype"),
    ("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", b"0" * 8, "dtype object"),
    ("{'descr': '|u1', 'fortran_order': 0, 'shape': (1,), }", b"0", "unreadable"),
    ("{'descr': '|u1', 'fortran_order': False, 'shape': (10,), }", b"0" * 5, "truncated"),
    ("{'descr': '|u1', 'fortran_order': False, 'shape': (10,), }", b"0" * 11, "after its end"),
    ("{'descr': '|u1', 'shape': (10,), }", b"0" * 10, "unreadable"),
    ("{'descr': '|u1', 'fortran_order': False, 'shape': (10,), '" + "x" * 20_000 + "': 1}",
     b"", "more than 10000"),
    ("(" * 5000 + ")" * 5000, b"", "unreadable"),
])
def test_bad_metadata_npy_headers(tmp_path, header, data, problem):
    content = zip_bytes({**saved_members(), "metadata.npy": npy_raw(header, data)})
    refused(tmp_path, content, "array 'metadata'", problem)


def test_huge_version_2_header_length_is_refused(tmp_path):
    member = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2 ** 32 - 1) + b"{" * 100
    refused(tmp_path, zip_bytes({**saved_members(), "metadata.npy": member}),
            "header has 4294967295 bytes")


@pytest.mark.parametrize("magic", [b"\x93NUMPY\x03\x00", b"\x93NUMPX\x01\x00", b"\x93NU"])
def test_bad_npy_magic(tmp_path, magic):
    content = zip_bytes({**saved_members(), "weights_0.npy": magic + b"\0" * 100})
    refused(tmp_path, content, "array 'weights_0' is unreadable")


def test_fortran_order_and_big_endian_arrays_load_correctly(tmp_path):
    net = base_net()
    members = saved_members(net)
    W = net.weights[0].copy()
    for order, byteorder in (("F", "<"), ("C", ">"), ("F", ">")):
        stored = np.asarray(W, dtype=W.dtype.newbyteorder(byteorder), order=order)
        buffer = io.BytesIO()
        np.save(buffer, stored)
        assert (b"'fortran_order': True" in buffer.getvalue()) == (order == "F")
        back = load_bytes(tmp_path, zip_bytes({**members, "weights_0.npy": buffer.getvalue()}))
        assert back.weights[0].tobytes() == W.tobytes()
        assert back._params.flags.c_contiguous and back._params.dtype.isnative


def test_nan_weights_and_state_are_refused(tmp_path):
    members = saved_members()
    bad = np.load(io.BytesIO(members["weights_1.npy"]))
    bad[0, 0] = np.nan
    refused(tmp_path, zip_bytes({**members, "weights_1.npy": npy(bad)}), "NaN")
    state = np.load(io.BytesIO(members["optimizer_state.npy"]))
    state[0, -1] = -np.inf
    refused(tmp_path, zip_bytes({**members, "optimizer_state.npy": npy(state)}), "NaN or inf")


def test_array_member_larger_than_its_header_says_is_refused(tmp_path):
    members = saved_members()
    refused(tmp_path, zip_bytes({**members, "biases_0.npy": members["biases_0.npy"] + b"\0"}),
            "'biases_0' has data after its end")


# ---------------------------------------------- bounded memory, in a child process
def deflate_bomb(header, size):
    """(deflated data, CRC-32, size) of ``header`` and ``size`` zero bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts, crc, chunk = [compressor.compress(header)], zlib.crc32(header), bytes(2 ** 20)
    for start in range(0, size, len(chunk)):
        part = chunk[:size - start]
        parts.append(compressor.compress(part))
        crc = zlib.crc32(part, crc)
    parts.append(compressor.flush())
    return b"".join(parts), crc, len(header) + size


def zip_with_raw_member(members, name, compressed, crc, size, method=zipfile.ZIP_DEFLATED):
    """A zip of ``members`` (stored) plus ``name`` whose data is given pre-compressed."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for member, content in members.items():
            zf.writestr(member, content)
    body = buffer.getvalue()
    cd_start = struct.unpack_from("<I", body, len(body) - 6)[0]
    entries, count = body[cd_start:len(body) - 22], struct.unpack_from("<H", body, len(body) - 12)[0]
    offset, encoded = cd_start, name.encode()
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(compressed),
                        size, len(encoded), 0) + encoded
    central = struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc,
                          len(compressed), size, len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    new_cd = entries + central
    new_cd_start = offset + len(local) + len(compressed)
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, count + 1, count + 1, len(new_cd),
                      new_cd_start, 0)
    return body[:cd_start] + local + compressed + new_cd + end


def crafted_big_files(directory):
    """{label: path} of crafted files of about 0.3-0.4 MB that once took far more
    memory to load (see test_crafted_files_load_in_bounded_memory)."""
    members = saved_members()
    meta = meta_of(members)
    paths = {}

    def write(label, content):
        paths[label] = os.path.join(directory, label + ".npz")
        with open(paths[label], "wb") as fh:
            fh.write(content)

    # Weights that inflate from 0.2 MB to 200 MB: 25,000 x 1,000 float64 zeros.
    big = dict(meta, sizes=[1000, 25_000], activations=["sigmoid"], dropout=[], optimizer=None)
    header = npy_raw("{'descr': '<f8', 'fortran_order': False, 'shape': (25000, 1000), }"
                     .ljust(117) + "\n")
    compressed, crc, size = deflate_bomb(header, 200_000_000)
    write("deflate-weights", zip_with_raw_member(
        {"metadata.npy": npy(np.frombuffer(json.dumps(big).encode(), np.uint8)),
         "biases_0.npy": npy(np.zeros(25_000))}, "weights_0.npy", compressed, crc, size))
    # Metadata that inflates to 200 MB of spaces before the JSON.
    header = npy_raw("{'descr': '|u1', 'fortran_order': False, 'shape': (200000000,), }"
                     .ljust(117) + "\n")
    compressed, crc, size = deflate_bomb(header, 200_000_000)
    others = {k: v for k, v in members.items() if k != "metadata.npy"}
    write("deflate-metadata", zip_with_raw_member(others, "metadata.npy", compressed, crc, size))
    # Stored, so it loads: 0.4 MB of metadata JSON of the costliest kinds to parse.
    for label, filler in (("spaces", " "), ("empty-lists", "[],"), ("short-strings", '"ab",')):
        pad = filler * (400_000 // len(filler))
        text = json.dumps(dict(meta, padding="PAD")).replace('"PAD"', f"[{pad}0]")
        if label == "spaces":
            text = pad + json.dumps(meta)
        write(label, zip_bytes({**members, "metadata.npy": npy(
            np.frombuffer(text.encode(), np.uint8))}))
    # 5,000 tiny members: the zip directory itself.
    write("many-members", zip_bytes({f"a{i}.npy": b"" for i in range(5000)}))
    return paths


def test_crafted_files_load_in_bounded_memory(tmp_path):
    # Once: deflated weights took 2.3 GB (a 0.8 MB file) and 8 s, deflated metadata
    # 860 MB (a 0.3 MB file).
    paths = crafted_big_files(str(tmp_path))
    for path in paths.values():
        assert os.path.getsize(path) < 600_000, path
    status, output = run_child(f"""
        import resource, time, tracemalloc
        import cyprop
        for label, path in {paths!r}.items():
            tracemalloc.start()
            began = time.perf_counter()
            try:
                cyprop.load(path)
                outcome = "loaded"
            except ValueError as exc:
                outcome = str(exc)[len("cannot load ") + len(repr(path)):][:70]
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(f"{{label}}: {{peak / 2**20:.1f}} MB, {{time.perf_counter() - began:.2f}} s,"
                  f" {{outcome}}")
            assert peak < 20 * 2 ** 20, label
        print("max rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "MB")
    """)
    assert status == 0, output
    assert "deflate-weights: " in output and "is compressed" in output, output
    print(output)


# ----------------------------------------------------------------- 4. save paths
@posix_only
def test_save_through_a_symlink_replaces_the_target(tmp_path):
    target = tmp_path / "real.npz"
    base_net(optimizer=False).save(target)
    (tmp_path / "sub").mkdir()
    link = tmp_path / "sub" / "link.npz"
    link.symlink_to("../real.npz")
    net = base_net()
    net.save(link)
    assert link.is_symlink() and os.readlink(link) == "../real.npz"
    assert cyprop.load(target).optimizer.steps == net.optimizer.steps
    assert sorted(os.listdir(tmp_path)) == ["real.npz", "sub"]
    assert os.listdir(tmp_path / "sub") == ["link.npz"]


@posix_only
def test_save_through_a_dangling_symlink_creates_the_target(tmp_path):
    link = tmp_path / "link.npz"
    link.symlink_to("new.npz")
    base_net(optimizer=False).save(link)
    assert link.is_symlink() and (tmp_path / "new.npz").is_file()


@posix_only
def test_save_refuses_a_fifo_and_leaves_it(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="it is a FIFO, not a regular file"):
        base_net().save(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    link = tmp_path / "link"
    link.symlink_to(fifo)
    with pytest.raises(ValueError, match="it is a FIFO"):
        base_net().save(link)
    assert sorted(os.listdir(tmp_path)) == ["link", "pipe"]


@posix_only
def test_save_refuses_a_socket():
    directory = tempfile.mkdtemp(prefix="cy")   # AF_UNIX paths are short
    try:
        path = os.path.join(directory, "s")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path)
            with pytest.raises(ValueError, match="it is a socket"):
                base_net().save(path)
            with pytest.raises(ValueError, match="it is a socket"):
                cyprop.load(path)
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
        os.unlink(path)
    finally:
        os.rmdir(directory)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="no /proc")
def test_save_refuses_a_pipe_named_through_proc():
    # (/dev/stdout of a piped process: the link's text, "pipe:[N]", was taken for a
    # file name, and the error was a FileNotFoundError for /proc/PID/fd/pipe:[N])
    read, write = os.pipe()
    try:
        with pytest.raises(ValueError, match="it is a FIFO, not a regular file"):
            base_net().save(f"/proc/self/fd/{write}")
    finally:
        os.close(read)
        os.close(write)


def test_save_refuses_a_directory(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match="it is a directory"):
        base_net().save(tmp_path / "d")
    assert (tmp_path / "d").is_dir() and os.listdir(tmp_path) == ["d"]


@pytest.mark.parametrize("name", ["", "new/", "new/.", "new/.."])
def test_save_refuses_a_path_that_names_no_file(tmp_path, monkeypatch, name):
    """A path that can only name a directory (and none that exists): the temporary file
    was made in a directory the caller never named (for "", the parent of the working
    directory), and the error named the temporary file."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    error = FileNotFoundError if name == "" else IsADirectoryError
    for save in (base_net().save, cyprop.Ensemble([base_net()]).save):
        with pytest.raises(error) as info:
            save(name)
        assert info.value.filename == name and ".tmp" not in str(info.value)
    assert os.listdir(tmp_path) == ["work"] and os.listdir(work) == []


@posix_only
def test_save_refuses_a_character_device(tmp_path):
    # A device node of our own (a copy of /dev/null's numbers): as root, renaming onto
    # it would replace it with a file.
    dev = tmp_path / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here ({exc})")
    with pytest.raises(ValueError, match="it is a character device"):
        base_net().save(dev)
    assert stat.S_ISCHR(os.lstat(dev).st_mode)
    assert os.listdir(tmp_path) == ["null"]


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_save_refuses_dev_null_in_a_child():
    # The real /dev/null is checked only with os.replace disabled for it, so that even a
    # regression cannot replace the device node.
    status, output = run_child("""
        import os, stat
        import cyprop
        real_replace = os.replace
        def replace(src, dst, *args, **kwargs):
            if os.path.realpath(dst) == "/dev/null":
                raise AssertionError("save would have replaced /dev/null")
            return real_replace(src, dst, *args, **kwargs)
        os.replace = replace
        try:
            cyprop.Network([2, 2]).save("/dev/null")
        except ValueError as exc:
            assert "it is a character device" in str(exc), exc
        else:
            raise AssertionError("saved to /dev/null")
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
        print("refused")
    """)
    assert status == 0 and "refused" in output, output


@posix_only
@pytest.mark.parametrize("mode, umask", [(0o600, 0o022), (0o640, 0o077), (0o604, 0o022),
                                         (0o755, 0o000)])
def test_save_keeps_the_permission_bits(tmp_path, mode, umask):
    path = tmp_path / "m.npz"
    base_net(optimizer=False).save(path)
    os.chmod(path, mode)
    old = os.umask(umask)
    try:
        base_net().save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert cyprop.load(path).optimizer is not None


@posix_only
def test_save_refuses_a_read_only_file_and_keeps_it(tmp_path, permissions_as_owner):
    # As open(path, "wb") refuses it (and cyprop train --save): renaming onto it would
    # replace a file its owner made read-only to keep it.
    path = tmp_path / "m.npz"
    net = base_net(optimizer=False)
    net.save(path)
    path.chmod(0o444)
    before = path.read_bytes()
    for save in (base_net().save, cyprop.Ensemble([net]).save):
        with pytest.raises(PermissionError, match="the file is read-only"):
            save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]   # no temporary file left


@pytest.mark.parametrize("name", ["a" * 255, "é" * 127 + "x", "模" * 85],
                         ids=["ascii-255", "utf8-2byte-255", "utf8-3byte-255"])
def test_names_at_the_length_limit_save_and_load(tmp_path, name):
    try:
        max_bytes = os.pathconf(tmp_path, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):
        max_bytes = 255
    if len(name.encode()) > max_bytes:
        pytest.skip(f"this file system allows {max_bytes} bytes")
    net = base_net()
    net.save(tmp_path / name)
    assert os.listdir(tmp_path) == [name]
    assert cyprop.load(tmp_path / name).optimizer.steps == net.optimizer.steps


def test_name_over_the_limit_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        base_net().save(tmp_path / ("a" * 300))
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------- 5. load paths
@posix_only
def test_load_of_a_fifo_fails_at_once_in_a_child(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    status, output = run_child(f"""
        import cyprop
        try:
            cyprop.load({str(fifo)!r})
        except ValueError as exc:
            print(exc)
    """, timeout=60)
    assert status == 0 and "it is a FIFO, not a regular file" in output, output


@posix_only
def test_load_of_a_character_device(tmp_path):
    with pytest.raises(ValueError, match="'/dev/null': it is a character device, not a"):
        cyprop.load("/dev/null")


def test_load_of_a_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match="it is a directory"):
        cyprop.load(tmp_path)


def test_load_of_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        cyprop.load(tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError):
        cyprop.load(tmp_path / "absent" / "m.npz")


@posix_only
def test_load_through_a_symlink(tmp_path):
    base_net().save(tmp_path / "m.npz")
    (tmp_path / "link").symlink_to("m.npz")
    assert cyprop.load(tmp_path / "link").sizes == [4, 5, 3]


# ---------------------------------------------------- 6. consistent snapshots
def _digest(net):
    return (hashlib.sha1(net._params.tobytes()).hexdigest(),
            hashlib.sha1(net.optimizer.state.tobytes()).hexdigest())


def test_save_during_fit_writes_a_state_that_existed(tmp_path):
    # Full batches without shuffling: one compiled step per epoch, so the state after k
    # steps is known from a reference run.  Every file saved while another thread
    # trains must hold parameters and optimizer state of one and the same step.
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(256, 16)), rng.integers(0, 8, 256)
    epochs = 1500

    def fresh():
        net = cyprop.Network([16, 64, 8], seed=0, backend=cyprop.available_backends()[0])
        net.optimizer = cyprop.SGD(0.01, momentum=0.9)
        return net

    class Record:
        def __init__(self):
            self.states = {}

        def on_epoch_end(self, net, epoch, logs):
            self.states[net.optimizer.steps] = _digest(net)

    reference, record = fresh(), Record()
    reference.fit(X, y, epochs=epochs, batch_size=256, shuffle=False, n_threads=1, verbose=0,
                  callbacks=[record])
    net = fresh()
    thread = threading.Thread(target=net.fit, args=(X, y), kwargs=dict(
        epochs=epochs, batch_size=256, shuffle=False, n_threads=1, verbose=0))
    thread.start()
    seen = set()
    try:
        while thread.is_alive():
            net.save(tmp_path / "m.npz")
            back = cyprop.load(tmp_path / "m.npz")
            steps = back.optimizer.steps
            if back.optimizer.state is None:
                continue            # saved before the first step
            assert record.states[steps] == _digest(back), f"a mixed state at step {steps}"
            assert back.history.epochs in (steps - 1, steps)
            seen.add(steps)
    finally:
        thread.join()
    assert _digest(net) == record.states[epochs]
    assert len(seen) >= 2, seen



def test_ctrl_c_as_save_creates_its_temporary_file_leaves_nothing_behind(tmp_path):
    """Ctrl-C that arrives just as the temporary file is created (before the code that
    removes it on failure is reached) left it beside the target, its descriptor open."""
    code = f"""
        import os, signal, numpy as np, cyprop

        path = {str(tmp_path / "m.npz")!r}
        net = cyprop.Network([4, 6, 3], seed=0)
        net.save(path)
        before = open(path, "rb").read()
        real_open = os.open

        def open_then_interrupted(name, *args, **kwargs):
            fd = real_open(name, *args, **kwargs)
            if str(name).endswith(".tmp"):
                os.kill(os.getpid(), signal.SIGINT)
            return fd

        os.open = open_then_interrupted
        fds = len(os.listdir("/proc/self/fd"))
        try:
            net.fit(np.ones((8, 4)), np.zeros(8, dtype=int), epochs=1, verbose=0)
            net.save(path)
        except KeyboardInterrupt:
            print("interrupted")
        os.open = real_open
        print(sorted(os.listdir(os.path.dirname(path))))
        assert open(path, "rb").read() == before or cyprop.load(path).history.epochs == 1
        assert len(os.listdir("/proc/self/fd")) == fds, "a descriptor left open"
        print("clean")
    """
    status, output = run_child(code)
    assert status == 0, output
    assert "interrupted" in output and "['m.npz']" in output and "clean" in output, output


# --------------------------------------------------------------- 7. the corpus
def test_corpus_replays_cleanly():
    """Every kept input either loads (and then trains) or is refused with a
    ValueError/OSError; one child process for all, so a crash fails the test."""
    files = sorted(os.listdir(CORPUS))
    assert len(files) >= 10
    status, output = run_child(f"""
        import os, sys, warnings
        import numpy as np
        import cyprop
        for name in {files!r}:
            path = os.path.join({CORPUS!r}, name)
            try:
                net = cyprop.load(path)
            except (ValueError, OSError) as exc:
                print(name, "refused:", type(exc).__name__)
                continue
            X = np.ones((5, net.sizes[0]))
            Y = np.zeros((5, net.sizes[-1]))
            Y[:, 0] = 1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    net.fit(X, Y, epochs=1, batch_size=2, verbose=0)
                    net.forward(X)
                except (cyprop.TrainingDiverged, FloatingPointError):
                    pass
            print(name, "loaded")
        print("replayed", len({files!r}))
    """, timeout=120)
    assert status == 0, output
    assert f"replayed {len(files)}" in output, output


def write_corpus(directory):
    """Write this module's crafted inputs (small ones) to ``directory``."""
    os.makedirs(directory, exist_ok=True)

    def write(label, content):
        assert len(content) < 64 * 1024, label
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label.replace("**", "pow"))
        with open(os.path.join(directory, label + ".npz"), "wb") as fh:
            fh.write(content)

    for name, keys, value in BAD_STATES:
        if name in ("MT19937", "Philox") and keys[-1] in ("pos", "buffer_pos", "key"):
            what = ("missing" if value is KeyError else value if not isinstance(value, list)
                    else f"{len(value)}x{value[0]}")
            write(f"rng-{name}-{keys[-1]}-{what}",
                  zip_bytes(with_rng(set_nested(rng_state(name), keys, value))))
    for label, (name, changes) in EDGE_STATES.items():
        write(f"rng-edge-{label}", zip_bytes(with_rng(edge_state(name, changes))))
    for label, edit, _ in BAD_FIELDS:
        if label.startswith(("steps", "lr", "sizes-huge", "seed", "history-10")):
            write(f"meta-{label}", zip_bytes(edited(edit)))
    members = saved_members()
    write("zip-deflated", zip_bytes(members, compression=zipfile.ZIP_DEFLATED))
    write("zip-encrypted-flag", patch_entry(zip_bytes(members), "weights_0.npy",
                                            central={8: ("<H", 1)}, local={6: ("<H", 1)}))
    write("zip-size-beyond-file", patch_entry(zip_bytes(members), "weights_1.npy",
                                              central={20: ("<I", 2 ** 31), 24: ("<I", 2 ** 31)}))
    write("npy-v2-huge-header", zip_bytes({**members, "metadata.npy": b"\x93NUMPY\x02\x00"
                                           + struct.pack("<I", 2 ** 32 - 1)}))
    write("npy-negative-shape", zip_bytes({**members, "metadata.npy": npy_raw(
        "{'descr': '|u1', 'fortran_order': False, 'shape': (-10,), }", b"0" * 10)}))
    net = base_net()
    W = np.asfortranarray(net.weights[0]).astype(">f8")
    write("npy-fortran-big-endian", zip_bytes({**saved_members(net), "weights_0.npy": npy(W)}))


if __name__ == "__main__":
    write_corpus(sys.argv[1])
