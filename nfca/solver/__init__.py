"""Solver outcomes as data, and the one place nfca calls Ipopt.

`Status` and `Result` report every solve the same way whatever the solver (Ipopt here, HiGHS in
`market_bridge`); `solve_ipopt` solves a Pyomo model, `IpoptSession` re-solves one in-memory NLP
with new bounds and a warm start.
"""

from nfca.solver.ipopt import IPOPT_OPTIONS, IpoptSession, solve_ipopt
from nfca.solver.status import Result, Status

__all__ = ["Status", "Result", "solve_ipopt", "IpoptSession", "IPOPT_OPTIONS"]
