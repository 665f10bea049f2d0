"""Reading and writing cyprop's ``.npz`` archives safely: the file handling that
``persistence`` (network files) and ``ensemble`` (ensemble files) share.

Nothing here knows what a network is.  The internal API, for those two modules:

- ``save_target(path)`` -> (file to write, permission bits or None), refusing anything
  but a regular file; ``write_atomic(target, arrays, mode)`` writes an ``.npz`` there
  through a temporary file, fsync and rename (``write_file_atomic``: any content);
- ``open_regular_file(path)`` opens a regular file (never blocking on a FIFO or
  opening a device) for reading; ``check_members(path, archive, size, kind)``
  checks every member of an open ``zipfile.ZipFile`` (stored, unencrypted, plain
  unique ``<name>.npy`` names, data inside the file) and returns them by name;
  ``read_array(path, archive, info, name, shape, dtype)`` reads one member, its
  ``.npy`` header checked before any data is; ``decode_json(path, text)`` parses the
  metadata member's JSON (no huge integers);
- ``invalid(path, problem)`` is the ``ValueError`` every refusal raises, and
  ``guarded(path, problem, function, *args)`` turns whatever a damaged file makes
  zipfile or NumPy raise into one;
- ``json_default`` serialises the NumPy scalars and arrays a metadata dict may hold;
  ``METADATA`` is the name of the metadata member, ``NPY_HEADER_LIMIT`` the largest
  ``.npy`` header read, ``METADATA_LIMIT`` the largest metadata member.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import re
import reprlib
import secrets
import stat
import struct
import zipfile
from collections.abc import Callable
from typing import IO, Any, BinaryIO, TypeVar

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import NDArray

from . import _reference

#: The name of the member that holds a file's metadata (UTF-8 JSON as uint8).
METADATA = "metadata"
#: The largest ``.npy`` header read, in bytes (NumPy's own safe limit).
NPY_HEADER_LIMIT = 10_000
#: The largest metadata member read, in bytes (``cyprop.persistence.METADATA_LIMIT``).
METADATA_LIMIT = 16 * 2**20

# No integer a real file holds has more digits (2**128 has 39); parsing a huge one
# takes time quadratic in its length.
_JSON_INT_DIGITS = 64
# Zip flag bits a stored member may have: sizes in a trailing data descriptor (0x08)
# and UTF-8 names (0x800); anything else (encryption, ...) is refused.
_ZIP_FLAGS = 0x08 | 0x800
_MEMBER_NAME = re.compile(r"[A-Za-z0-9_]+\.npy")
#: reprlib.Repr for values quoted in error messages: cut short.
short = reprlib.Repr()
short.maxstring = short.maxother = 60
_T = TypeVar("_T")


def save_target(path: str) -> tuple[str, int | None]:
    """(the file to write, the permission bits to give it or None for a new file).

    A symbolic link is followed, so that its target is replaced and the link stays.
    A file the caller may not write is refused (PermissionError).  Anything but a
    regular file is refused: renaming onto it would replace a FIFO
    or a device node (as root, even /dev/null) with a file.  So is a path that can
    only name a directory: os.path.abspath makes "" the working directory and
    "new/" or "new/.." other names, so the temporary file went into a directory the
    caller never named, and the error named that file."""
    if not path:
        raise FileNotFoundError(errno.ENOENT, "cannot save to '': the path is empty", path)
    if os.path.basename(os.fsdecode(path)) in ("", ".", ".."):
        raise IsADirectoryError(errno.EISDIR, f"cannot save to {path!r}: it names a "
                                "directory, not a file", path)
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        # path, not target: the kernel follows a link as realpath cannot read it
        # (/dev/stdout to a pipe reads "pipe:[N]", a name of nothing)
        st = os.stat(path)
    except FileNotFoundError:
        return target, None
    require_regular_file(path, st.st_mode, "save to")
    if not os.access(target, os.W_OK):
        # as open(path, "wb") refuses it (and the command line's --save): the rename
        # would replace a file its owner made read-only to keep it
        raise PermissionError(errno.EACCES, f"cannot save to {path!r}: the file is "
                              "read-only", path)
    return target, stat.S_IMODE(st.st_mode) & 0o777


def write_atomic(path: str, arrays: dict[str, Any], mode: int | None) -> None:
    """Write ``arrays`` as an .npz to ``path`` via a temporary file and a rename;
    ``mode``: the new file's permission bits (None: 0o666 less the umask)."""
    # to a file object, so savez adds no ".npz"
    write_file_atomic(path, lambda fh: np.savez(fh, **arrays), mode)


def write_file_atomic(path: str, write: Callable[[BinaryIO], Any], mode: int | None) -> None:
    """``write(file)`` to ``path`` via a temporary file and a rename; ``mode`` as for
    ``write_atomic``."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = _temporary_path(path)
    # O_EXCL: never clobber an existing file.  Created with at most the kept bits (the
    # umask may take some away: fchmod restores them), so never readable by more
    # people than the file it replaces, even for a moment.
    fd, fh = -1, None
    try:
        # Ctrl-C held back until the file and its file object exist: landing in
        # between, it left the file beside the target and its descriptor open
        with _reference._interrupts_deferred():
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | getattr(os, "O_BINARY", 0), 0o666 if mode is None else mode)
            except OSError as exc:
                # (a missing or read-only folder) named by the path the caller gave, as
                # open(path, "wb") names it, not by the temporary file's
                raise type(exc)(exc.errno, exc.strerror, path) from None
            fh = os.fdopen(fd, "wb")
        with fh:
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        if fd != -1:   # (created by this call: O_EXCL)
            with contextlib.suppress(OSError):
                if fh is not None:
                    fh.close()
                else:
                    os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _temporary_path(path: str) -> str:
    """``.{name}.{random}.tmp`` beside ``path`` (of its type, str or bytes): in the same
    directory, so that os.replace is a rename within one file system (atomic); a
    dot-name with a random part, so that it neither shows up nor collides; the name
    cut short where needed, so that it fits wherever the final name (up to NAME_MAX
    bytes) does."""
    directory, name = os.path.split(os.path.abspath(os.fsencode(path)))
    suffix = f".{secrets.token_hex(8)}.tmp".encode()
    try:
        name_max = min(os.pathconf(directory, "PC_NAME_MAX"), 255)
    except (AttributeError, OSError, ValueError):   # no pathconf (Windows)
        name_max = 255
    cut = max(name_max - 1 - len(suffix), 0)
    if len(name) > cut:
        # At a character boundary (not before a UTF-8 continuation byte): some file
        # systems want valid UTF-8 names.
        while cut > 0 and 0x80 <= name[cut] < 0xC0:
            cut -= 1
        name = name[:cut]
    tmp = os.path.join(directory, b"." + name + suffix)
    return tmp if isinstance(path, bytes) else os.fsdecode(tmp)


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable on POSIX; directories cannot be opened (and need
    # not be synced) on Windows, hence best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def same_file(first: str, second: str) -> bool:
    """Whether two destinations are one file: by their resolved names (neither need
    exist yet), or as os.path.samefile sees it (hard links)."""
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:   # either does not exist (yet): different names, different files
        return False


def require_regular_file(path: str, mode: int, action: str) -> None:
    """Raise unless ``mode`` (an ``st_mode``) is a regular file's, naming what it is."""
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, f"cannot {action} {path!r}: it is a directory",
                                path)
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    raise ValueError(f"cannot {action} {path!r}: it is {kind}, not a regular file")


def open_regular_file(path: str) -> BinaryIO:
    """``path`` opened for reading in binary mode, if it is a regular file."""
    # Looked at before it is opened: opening a device can have effects of its own
    # (a tape rewinds, a watchdog starts), and opening a FIFO blocks until a writer
    # comes.
    require_regular_file(path, os.stat(path).st_mode, "load")
    # The path may have changed since: O_NONBLOCK keeps a FIFO from blocking the
    # open (regular files ignore it), fstat checks what was opened.
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
             | getattr(os, "O_BINARY", 0))
    fd = os.open(path, flags)
    try:
        require_regular_file(path, os.fstat(fd).st_mode, "load")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def invalid(path: str, problem: str) -> ValueError:
    return ValueError(f"cannot load {path!r}: {problem}")


def guarded(path: str, problem: str, function: Callable[..., _T], *args: Any) -> _T:
    """``function(*args)``, any exception from it a ValueError: zipfile and NumPy raise a
    wide, undocumented range of them on damaged input (BadZipFile, EOFError,
    struct.error, NotImplementedError, RuntimeError, ...)."""
    try:
        return function(*args)
    except MemoryError:
        raise
    except Exception as exc:
        raise invalid(path, f"{problem} ({type(exc).__name__}: {short.repr(str(exc))})") \
            from exc


def check_members(path: str, archive: zipfile.ZipFile, size: int,
                  kind: str = "network") -> dict[str, zipfile.ZipInfo]:
    """{name without .npy: ZipInfo} of an archive whose every member is one cyprop
    could have written: stored, unencrypted, a plain unique name, inside the file,
    the first at its start; ``kind`` names the file expected in errors."""
    members, total = {}, 0
    for info in archive.infolist():
        name = info.orig_filename
        if not _MEMBER_NAME.fullmatch(name):
            raise invalid(path, f"not a cyprop {kind} file (it holds {short.repr(name)}, "
                                 "not a plain '<name>.npy' array)")
        if info.compress_type != zipfile.ZIP_STORED:
            raise invalid(path, f"entry {name!r} is compressed (method {info.compress_type}); "
                                 "cyprop files are not")
        if info.flag_bits & ~_ZIP_FLAGS:
            problem = "encrypted" if info.flag_bits & 0x1 else f"flagged {info.flag_bits:#x}"
            raise invalid(path, f"entry {name!r} is {problem}, which cyprop files never are")
        if name[:-4] in members:
            raise invalid(path, f"the file is corrupted (duplicate entries {name!r})")
        # Stored: the sizes are equal, and the data must lie inside the file.
        total += info.compress_size
        if (info.file_size != info.compress_size or info.header_offset < 0
                or info.header_offset + info.compress_size > size or total > size):
            raise invalid(path, f"the file is truncated or corrupted (entry {name!r} "
                                 "claims more data than the file holds)")
        members[name[:-4]] = info
    # cyprop writes its first entry at the start of the file.  An archive found further
    # in is one stored inside the file: a network inside an ensemble's file, cut short
    # after that network's end (zip readers take the last end record they find).
    if members and min(info.header_offset for info in members.values()) != 0:
        raise invalid(path, "the file is truncated or corrupted (the archive found in "
                            "it does not start at its beginning)")
    return members


def read_array(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str,
                shape: tuple[int, ...] | None, dtype: np.dtype[Any]) -> NDArray[Any]:
    """One member as a native-order, C-contiguous array of its own, its header checked
    against ``shape`` (None: any 1-D) and ``dtype`` *before* the data is read, so a
    bad file can neither trigger unpickling nor a huge allocation."""
    with guarded(path, f"array {name!r} is unreadable", archive.open, info) as fp:
        file_shape, fortran, file_dtype = guarded(
            path, f"array {name!r} is unreadable", _read_npy_header, fp)
        # Byte order aside (a file may come from a big-endian machine), the dtype must
        # match; subarray and structured dtypes never equal a plain one.
        if file_dtype.hasobject or file_dtype.newbyteorder("=") != dtype:
            raise invalid(path, f"array {name!r} has dtype {file_dtype}, expected {dtype.name}")
        if not all(type(n) is int and n >= 0 for n in file_shape):
            raise invalid(path, f"array {name!r} has an invalid shape {short.repr(file_shape)}")
        if shape is None:
            if len(file_shape) != 1:
                raise invalid(path, f"array {name!r} has shape {file_shape}, expected 1-D")
            shape = file_shape
        if tuple(file_shape) != tuple(shape):
            raise invalid(path, f"array {name!r} has shape {tuple(file_shape)}, "
                                 f"expected {tuple(shape)}")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > info.file_size:
            raise invalid(path, f"array {name!r} claims more data than the file holds")
        data = guarded(path, f"array {name!r} is unreadable", fp.read, nbytes)
        # Reading past the end also checks the CRC-32.
        rest = guarded(path, f"array {name!r} is unreadable", fp.read, 1)
    if len(data) != nbytes:
        raise invalid(path, f"array {name!r} is truncated")
    if rest:
        raise invalid(path, f"array {name!r} has data after its end")
    array = np.frombuffer(data, dtype=file_dtype)
    array = array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
    # Own, native-order, C-contiguous: what the compiled core requires.
    return np.array(array, dtype=dtype, order="C", copy=True)


def _read_npy_header(fp: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """(shape, fortran_order, dtype) from an .npy header, read by NumPy once its
    length is known to be sane."""
    magic = fp.read(8)
    if magic[:6] != npy_format.MAGIC_PREFIX or magic[6:] not in (b"\x01\x00", b"\x02\x00"):
        raise ValueError(f"not an .npy array of a version cyprop reads (starts {magic!r})")
    length_format = "<H" if magic[6] == 1 else "<I"
    length_bytes = fp.read(struct.calcsize(length_format))
    (length,) = struct.unpack(length_format, length_bytes)
    if length > NPY_HEADER_LIMIT:
        raise ValueError(f"its header has {length} bytes, more than {NPY_HEADER_LIMIT}")
    header = io.BytesIO(length_bytes + fp.read(length))
    if magic[6] == 1:
        return npy_format.read_array_header_1_0(header)
    return npy_format.read_array_header_2_0(header)


def decode_json(path: str, text: bytes) -> Any:
    """The metadata's JSON value; ValueError for anything but UTF-8 JSON."""
    def parse_int(digits: str) -> int:
        if len(digits) > _JSON_INT_DIGITS:
            raise ValueError(f"an integer of {len(digits)} digits")
        return int(digits)

    try:
        return json.loads(text.decode("utf-8"), parse_int=parse_int)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise invalid(path, f"the metadata is not valid JSON ({short.repr(str(exc))})") \
            from exc


def json_default(value: object) -> Any:
    # NumPy scalars and arrays can appear in generator states and optimizer configs.
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
