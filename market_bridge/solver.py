"""HiGHS through Pyomo, with outcomes reported as ``nfca.solver``'s ``Status`` and ``Result``.

Every clearing in ``market_bridge`` is a Pyomo model solved here. We use Pyomo's APPSI HiGHS
interface (the solver behind ``SolverFactory('appsi_highs')``) as a persistent solver, so a
model whose mutable parameters change (the bid-aggregation sweep) is re-solved without rebuilding.
HiGHS is deterministic for a given model, so the same case gives the same clearing.
"""

from __future__ import annotations

import time

import pyomo.environ as pyo
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers import Highs

from nfca.solver import Result, Status

_STATUS = {
    TerminationCondition.optimal: Status.optimal,
    TerminationCondition.infeasible: Status.infeasible,
    TerminationCondition.unbounded: Status.unbounded,
    TerminationCondition.infeasibleOrUnbounded: Status.infeasible,
    TerminationCondition.maxTimeLimit: Status.time_limit,
    TerminationCondition.maxIterations: Status.iteration_limit,
}


class Solver:
    """A persistent HiGHS solver for one Pyomo model (re-solve after changing mutable params)."""

    def __init__(self, time_limit_s: float = 120.0) -> None:
        self._opt = Highs()
        if not self._opt.available():
            raise RuntimeError("HiGHS (highspy) is not available to Pyomo")
        self._opt.config.load_solution = False
        self._opt.config.stream_solver = False
        self._opt.config.time_limit = time_limit_s

    def solve(self, model: pyo.ConcreteModel) -> Result:
        """Solve ``model``; load the solution into its variables only when optimal."""
        start = time.perf_counter()
        try:
            res = self._opt.solve(model)
        except Exception as exc:  # HiGHS or Pyomo failure: report, do not crash the scheme
            return Result(Status.error, f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start)
        status = _STATUS.get(res.termination_condition, Status.error)
        obj = float("nan")
        if status.ok:
            res.solution_loader.load_vars()
            obj = float(res.best_feasible_objective)
        return Result(status, res.termination_condition.name, seconds=time.perf_counter() - start, objective=obj)


def solve(model: pyo.ConcreteModel) -> Result:
    """Solve a model once with HiGHS."""
    return Solver().solve(model)
