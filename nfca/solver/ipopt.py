"""Ipopt (cyipopt, MUMPS) on Pyomo models: one status table, one options set.

`solve_ipopt` solves a Pyomo model through Pyomo's `cyipopt` solver. `IpoptSession` keeps the
model's in-memory NLP (PyNumero) and re-solves it with new variable bounds and a primal-dual warm
start: no NL file round trip per solve.
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np
import pyomo.environ as pyo

from nfca.solver.status import Result, Status

IPOPT_OPTIONS = {
    "tol": 1e-9,
    "constr_viol_tol": 1e-9,
    "acceptable_tol": 1e-7,
    "max_iter": 500,
    "print_level": 0,
    "mu_strategy": "adaptive",
    "linear_solver": "mumps",
    "bound_relax_factor": 0.0,  # envelopes never exceed capacity, not even by 1e-8
}

# Ipopt's ApplicationReturnStatus by return code, and what each means here.
IPOPT_STATUS = {
    0: "Solve_Succeeded", 1: "Solved_To_Acceptable_Level", 2: "Infeasible_Problem_Detected",
    3: "Search_Direction_Becomes_Too_Small", 4: "Diverging_Iterates", 5: "User_Requested_Stop",
    6: "Feasible_Point_Found", -1: "Maximum_Iterations_Exceeded", -2: "Restoration_Failed",
    -3: "Error_In_Step_Computation", -4: "Maximum_CpuTime_Exceeded", -5: "Maximum_WallTime_Exceeded",
    -10: "Not_Enough_Degrees_Of_Freedom", -11: "Invalid_Problem_Definition", -12: "Invalid_Option",
    -13: "Invalid_Number_Detected", -100: "Unrecoverable_Exception", -101: "NonIpopt_Exception_Thrown",
    -102: "Insufficient_Memory", -199: "Internal_Error",
}
_NORMALISED = {
    "Solve_Succeeded": Status.optimal, "Solved_To_Acceptable_Level": Status.acceptable,
    "Infeasible_Problem_Detected": Status.infeasible, "Maximum_Iterations_Exceeded": Status.iteration_limit,
    "Maximum_CpuTime_Exceeded": Status.time_limit, "Maximum_WallTime_Exceeded": Status.time_limit,
    "Search_Direction_Becomes_Too_Small": Status.numerical_failure,
    "Diverging_Iterates": Status.numerical_failure, "Restoration_Failed": Status.numerical_failure,
    "Error_In_Step_Computation": Status.numerical_failure, "Invalid_Number_Detected": Status.numerical_failure,
}


def status_of(return_code: int | None) -> tuple[Status, str]:
    """Normalised status and Ipopt's name for an Ipopt return code."""
    name = IPOPT_STATUS.get(return_code, "")
    return _NORMALISED.get(name, Status.error), name


@contextlib.contextmanager
def _quiet_pyomo():
    """Pyomo logs (with tracebacks) what nfca reports as a status: keep stderr to nfca's one line."""
    log = logging.getLogger("pyomo")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _counter():
    iters = [0]

    def count(nlp, alg_mod, iter_count, *args):
        iters[0] = iter_count
        return True

    return iters, count


def solve_ipopt(m: pyo.ConcreteModel, options: dict | None = None) -> Result:
    """Solve a Pyomo model with Ipopt; never raises for solver outcomes."""
    iters, count = _counter()
    solver = pyo.SolverFactory("cyipopt")
    solver.config.options.update({**IPOPT_OPTIONS, **(options or {})})
    solver.config.intermediate_callback = count
    t0 = time.perf_counter()
    try:
        with _quiet_pyomo():
            res = solver.solve(m, tee=False)
    except OSError:  # a full disk or a file-size limit is not a solver outcome
        raise
    except Exception as exc:  # evaluation errors inside Ipopt
        msg = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        return Result(Status.error, msg, iters[0], time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    msg = res.solver.message.decode() if isinstance(res.solver.message, bytes) else str(res.solver.message)
    status, name = status_of(getattr(res.solver, "return_code", None))
    if name:
        msg = f"{name}: {msg}"
    else:  # not from cyipopt's return code: go by Pyomo's termination condition
        tc = str(res.solver.termination_condition)
        status = {"optimal": Status.optimal, "infeasible": Status.infeasible, "maxIterations": Status.iteration_limit,
                  "maxTimeLimit": Status.time_limit}.get(tc, Status.acceptable if "acceptable" in msg.lower() else Status.error)
    return Result(status, msg, iters[0], seconds)


class IpoptSession:
    """Repeated Ipopt solves of one in-memory NLP (PyNumero) with per-solve variable bounds and
    an optional primal-dual warm start."""

    _problem_class = None

    def __init__(self, nlp) -> None:
        self.nlp = nlp

    @classmethod
    def _problem(cls):
        if cls._problem_class is None:
            from pyomo.contrib.pynumero.interfaces.cyipopt_interface import CyIpoptNLP

            class Problem(CyIpoptNLP):
                def __init__(self, nlp, lb, ub, callback):
                    self._lb, self._ub = lb, ub
                    super().__init__(nlp, intermediate_callback=callback)

                def x_lb(self):
                    return self._lb

                def x_ub(self):
                    return self._ub

            cls._problem_class = Problem
        return cls._problem_class

    def solve(self, x0: np.ndarray, options: dict, lb: np.ndarray | None = None, ub: np.ndarray | None = None,
              warm: tuple | None = None) -> tuple[Result, tuple | None]:
        """One Ipopt run from `x0` with bounds `lb`, `ub` (default: the NLP's) and, for a warm
        start, the multipliers `warm` = (constraints, lower bounds, upper bounds). Returns the
        result and (x, multipliers...) when Ipopt returned a point."""
        nlp = self.nlp
        iters, count = _counter()
        prob = self._problem()(nlp, nlp.primals_lb() if lb is None else lb, nlp.primals_ub() if ub is None else ub, count)
        for k, v in {**IPOPT_OPTIONS, **options}.items():
            prob.add_option(k, v)
        t0 = time.perf_counter()
        try:
            lam, zl, zu = warm if warm is not None else (None, None, None)
            x, info = prob.solve(x0, lagrange=lam, zl=zl, zu=zu)
        except OSError:  # a full disk or a file-size limit is not a solver outcome
            raise
        except Exception as exc:  # evaluation errors inside Ipopt
            return Result(Status.error, " ".join(str(exc).split())[:200], iters[0], time.perf_counter() - t0), None
        finally:
            prob.close()
        msg = info["status_msg"]
        msg = msg.decode() if isinstance(msg, bytes) else str(msg)
        status, name = status_of(info["status"])
        res = Result(status, f"{name}: {msg}" if name else msg, iters[0], time.perf_counter() - t0)
        return res, (x, info["mult_g"], info["mult_x_L"], info["mult_x_U"])
