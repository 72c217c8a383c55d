"""Solver outcomes as data, and the one place nfca calls Ipopt.

`Status` and `Result` report every solve the same way whatever the solver (Ipopt here, HiGHS in
`market_bridge`); `solve_ipopt` solves a Pyomo model, `IpoptSession` re-solves one in-memory NLP
with new bounds and a warm start.
"""

from nfca.solver.status import Result, Status

__all__ = ["Status", "Result", "solve_ipopt", "IpoptSession", "IPOPT_OPTIONS"]


def __getattr__(name: str):
    """The Ipopt part loads Pyomo (~0.7 s): only when first used, so `import nfca` and the CLI's
    start stay fast (issue 16)."""
    if name in ("solve_ipopt", "IpoptSession", "IPOPT_OPTIONS"):
        from nfca.solver import ipopt

        return getattr(ipopt, name)
    raise AttributeError(f"module 'nfca.solver' has no attribute {name!r}")
