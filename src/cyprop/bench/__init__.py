"""``cyprop bench``: how fast cyprop trains, against its NumPy reference, PyTorch,
scikit-learn and a plain-C baseline, on this machine.

    cyprop bench --quick              # about half a minute
    python -m cyprop.bench --quick    # the same
    cyprop bench --help               # the workloads, systems and options

From Python, ``cyprop.bench.main(["--quick", "--json", "bench.json"])`` runs the same and
returns the exit status.  ``import cyprop`` does not import this package, and this package
imports PyTorch, scikit-learn and matplotlib only when a run asks for them.
"""

from ._suite import main

__all__ = ["main"]
