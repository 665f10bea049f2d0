#!/usr/bin/env python3
"""Check that the release tag names the package's version, before anything is published.

    python tools/check_release_tag.py            # the tag from $GITHUB_REF (refs/tags/v1.2.3)
    python tools/check_release_tag.py v1.2.3     # or given

The tag must be ``v`` followed by exactly the ``__version__`` in src/cyprop/_version.py
(``v0.1.0`` for ``"0.1.0"``, ``v1.0.0rc1`` for ``"1.0.0rc1"``).  Exit 0 when they match,
1 when they do not or when there is no tag to check (a branch ref, say), with the reason
on stderr.  .github/workflows/release.yml runs this first; tests/test_packaging.py checks
the logic.  Standard library only: it runs before anything is installed.
"""

import os
import re
import sys
from pathlib import Path

VERSION_FILE = Path(__file__).resolve().parents[1] / "src" / "cyprop" / "_version.py"
TAG_PREFIX = "v"


def read_version(path=VERSION_FILE):
    """The ``__version__ = "..."`` string of ``path``."""
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', Path(path).read_text(),
                      re.MULTILINE)
    if not match:
        raise ValueError(f"no __version__ = \"...\" line in {path}")
    return match.group(1)


def tag_from_ref(ref):
    """``refs/tags/v1.2.3`` -> ``v1.2.3``; a bare tag name is returned as it is; a
    branch or pull-request ref (``refs/heads/...``, ``refs/pull/...``) -> None."""
    ref = (ref or "").strip()
    if ref.startswith("refs/tags/"):
        return ref[len("refs/tags/"):]
    if not ref or ref.startswith("refs/"):
        return None
    return ref


def check(tag, version):
    """None when ``tag`` is the release tag of ``version``, else why not."""
    if not tag:
        return "no release tag to check (expected refs/tags/v<version> in GITHUB_REF)"
    if not tag.startswith(TAG_PREFIX):
        return f"tag {tag!r} does not start with {TAG_PREFIX!r}"
    if tag[len(TAG_PREFIX):] != version:
        return (f"tag {tag!r} does not match the package version {version!r} "
                f"(src/cyprop/_version.py): expected tag {TAG_PREFIX + version!r}")
    return None


def main(argv=None, environ=None):
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    if len(argv) > 1:
        print("usage: check_release_tag.py [TAG]  (default: from $GITHUB_REF)", file=sys.stderr)
        return 2
    tag = tag_from_ref(argv[0] if argv else environ.get("GITHUB_REF", ""))
    version = read_version()
    problem = check(tag, version)
    if problem:
        print(f"check_release_tag: {problem}", file=sys.stderr)
        return 1
    print(f"check_release_tag: tag {tag} matches cyprop {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
