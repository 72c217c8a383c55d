"""Solver outcomes as data, and the one place nfca calls Ipopt.

`Status` and `Result` report every solve the same way whatever the solver (Ipopt here, HiGHS in
`market_bridge`); `solve_ipopt` solves a Pyomo model, `PersistentIpopt` re-solves one whose
structure rarely changes from its in-memory NLP, `IpoptSession` runs one in-memory NLP with new
bounds and a warm start.
"""

from nfca.solver.status import Result, Status

_IPOPT = (
    "IPOPT_OPTIONS",
    "RETRY_OPTIONS",
    "WARM_OPTIONS",
    "IpoptSession",
    "PersistentIpopt",
    "run_ipopt",
    "solve_ipopt",
)
__all__ = ["Status", "Result", *_IPOPT]


def lean_pyomo() -> None:
    """Call before Pyomo loads: Pyomo's optional-dependency hook imports scipy.stats, integrate and
    spatial (~0.5 s, a third of a small feeder's run) whenever anything imports scipy after it;
    nfca uses scipy.sparse only, and scipy loads its other submodules on first use anyway.

    Off Windows, it also tells Pyomo that the Windows C runtimes are absent before it looks for
    them: the first in-memory NLP of a process otherwise searches for ten of them by name, which
    starts about 30 compiler and ldconfig processes (~0.2 s). There, `os.environ` is the C
    library's environment, the one Pyomo would reach through those runtimes."""
    import sys

    from pyomo.common import dependencies
    from pyomo.common.env import CtypesEnviron

    flag = getattr(dependencies, "scipy_available", None)
    if flag is not None and hasattr(flag, "_callback"):
        flag._callback = None
    if not sys.platform.startswith("win"):
        for dll in getattr(CtypesEnviron, "DLLs", ()):
            if getattr(dll, "_loaded", False) is None:  # not looked for yet
                dll._loaded = False


YOUNG_OBJECTS = 10_000  # new objects between two young collections (Python's default: 700)


def few_collections() -> None:
    """For a process nfca owns (the `nfca` command, batch and dynamic workers). Pyomo models are
    millions of small objects that live as long as their study; Python's cyclic collector, at
    its default of a young collection every 700 new objects, scans them again and again while
    they are built and once more at exit (about 0.35 s of an IEEE envelopes run). Here young
    collections come every `YOUNG_OBJECTS` and the exit scans nothing: the process ends anyway.
    Older generations keep their thresholds, so garbage cycles are still collected."""
    import atexit
    import gc

    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])
    atexit.register(gc.freeze)


def one_blas_thread() -> None:
    """Every BLAS loaded so far computes on one thread, whatever the environment or the import
    order: a sum's order depends on the thread count, and on a non-convex problem a last-digit
    difference can lead the solver to another local optimum, so the published numbers would
    depend on the machine. nfca's parallelism is across processes (batch workers, chains)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def __getattr__(name: str):
    """The Ipopt part loads Pyomo (~0.7 s): only when first used, so `import nfca` and the CLI's
    start stay fast (issue 16)."""
    if name in _IPOPT:
        from nfca.solver import ipopt

        return getattr(ipopt, name)
    raise AttributeError(f"module 'nfca.solver' has no attribute {name!r}")
