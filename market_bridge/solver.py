"""HiGHS through Pyomo, with outcomes normalised into a small ``SolveResult``.

Every clearing in ``market_bridge`` is a Pyomo model solved here. We use Pyomo's APPSI HiGHS
interface (the solver behind ``SolverFactory('appsi_highs')``) as a persistent solver, so a
model whose mutable parameters change (the bid-aggregation sweep) is re-solved without rebuilding.
HiGHS is deterministic for a given model, so the same case gives the same clearing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import pyomo.environ as pyo
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers import Highs

_STATUS = {
    TerminationCondition.optimal: "ok",
    TerminationCondition.infeasible: "infeasible",
    TerminationCondition.unbounded: "unbounded",
    TerminationCondition.infeasibleOrUnbounded: "infeasible",
    TerminationCondition.maxTimeLimit: "time_limit",
    TerminationCondition.maxIterations: "iteration_limit",
}


@dataclass(frozen=True)
class SolveResult:
    """Normalised solver outcome: ``status`` in ok | infeasible | unbounded | time_limit | error."""

    status: str
    objective: float
    time_s: float
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Solver:
    """A persistent HiGHS solver for one Pyomo model (re-solve after changing mutable params)."""

    def __init__(self, time_limit_s: float = 120.0) -> None:
        if not Highs().available():
            raise RuntimeError("HiGHS (highspy) is not available to Pyomo")
        self._opt = Highs()
        self._opt.config.load_solution = False
        self._opt.config.stream_solver = False
        self._opt.config.time_limit = time_limit_s

    def solve(self, model: pyo.ConcreteModel) -> SolveResult:
        """Solve ``model``; load the solution into its variables only when optimal."""
        start = time.perf_counter()
        try:
            res = self._opt.solve(model)
        except Exception as exc:  # HiGHS or Pyomo failure: report, do not crash the scheme
            return SolveResult("error", float("nan"), time.perf_counter() - start, str(exc))
        status = _STATUS.get(res.termination_condition, "error")
        if status == "ok":
            res.solution_loader.load_vars()
            obj = float(res.best_feasible_objective)
        else:
            obj = float("nan")
        return SolveResult(status, obj, time.perf_counter() - start, str(res.termination_condition.name))


def solve(model: pyo.ConcreteModel) -> SolveResult:
    """Solve a model once with HiGHS."""
    return Solver().solve(model)
