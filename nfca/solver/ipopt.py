"""Ipopt (cyipopt, MUMPS) on Pyomo models: one status table, one options set.

`solve_ipopt` solves a Pyomo model through Pyomo's `cyipopt` solver. `IpoptSession` keeps the
model's in-memory NLP (PyNumero) and re-solves it with new variable bounds and a primal-dual warm
start: no NL file round trip per solve.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from nfca.solver import lean_pyomo, one_blas_thread

lean_pyomo()
import pyomo.environ as pyo  # noqa: E402
from pyomo.core.base.suffix import active_import_suffix_generator  # noqa: E402

from nfca.solver.status import Result, Status  # noqa: E402

IPOPT_OPTIONS = {
    "tol": 1e-9,
    "constr_viol_tol": 1e-9,
    "acceptable_tol": 1e-7,
    # 5 iterations in a row within acceptable_tol end a solve that cannot reach `tol` (Ipopt's
    # default, 15, is rarely met where the dual residual jumps from step to step: at 440 end-users
    # the optimal sets took 154 and 212 iterations instead of 87 and 139, to the same watts)
    "acceptable_iter": 5,
    "max_iter": 500,
    "print_level": 0,
    "mu_strategy": "adaptive",
    "linear_solver": "mumps",
    # AMD ordering: on a box's scenario NLP (network copies coupled by the envelopes) an
    # iteration costs about 1/1.5 of MUMPS's automatic choice (benchmarks/README.md, Sibelga batch)
    "mumps_pivot_order": 0,
    "bound_relax_factor": 0.0,  # envelopes never exceed capacity, not even by 1e-8
    "sb": "yes",  # no banner
}

# Ipopt's ApplicationReturnStatus by return code, and what each means here.
IPOPT_STATUS = {
    0: "Solve_Succeeded",
    1: "Solved_To_Acceptable_Level",
    2: "Infeasible_Problem_Detected",
    3: "Search_Direction_Becomes_Too_Small",
    4: "Diverging_Iterates",
    5: "User_Requested_Stop",
    6: "Feasible_Point_Found",
    -1: "Maximum_Iterations_Exceeded",
    -2: "Restoration_Failed",
    -3: "Error_In_Step_Computation",
    -4: "Maximum_CpuTime_Exceeded",
    -5: "Maximum_WallTime_Exceeded",
    -10: "Not_Enough_Degrees_Of_Freedom",
    -11: "Invalid_Problem_Definition",
    -12: "Invalid_Option",
    -13: "Invalid_Number_Detected",
    -100: "Unrecoverable_Exception",
    -101: "NonIpopt_Exception_Thrown",
    -102: "Insufficient_Memory",
    -199: "Internal_Error",
}
_NORMALISED = {
    "Solve_Succeeded": Status.optimal,
    "Solved_To_Acceptable_Level": Status.acceptable,
    "Infeasible_Problem_Detected": Status.infeasible,
    "Maximum_Iterations_Exceeded": Status.iteration_limit,
    "Maximum_CpuTime_Exceeded": Status.time_limit,
    "Maximum_WallTime_Exceeded": Status.time_limit,
    "Search_Direction_Becomes_Too_Small": Status.numerical_failure,
    "Diverging_Iterates": Status.numerical_failure,
    "Restoration_Failed": Status.numerical_failure,
    "Error_In_Step_Computation": Status.numerical_failure,
    "Invalid_Number_Detected": Status.numerical_failure,
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


# The second attempt when the first fails: the same start, a monotone barrier, more iterations.
RETRY_OPTIONS = {"mu_strategy": "monotone", "nlp_scaling_method": "gradient-based", "max_iter": 3000}


def describe_options(options: dict) -> str:
    o = {**IPOPT_OPTIONS, **options}
    return (
        f"{o['mu_strategy']} barrier, {o.get('nlp_scaling_method', 'gradient-based')} scaling, max_iter {o['max_iter']}"
    )


def solve_ipopt(
    m: pyo.ConcreteModel,
    options: dict | None = None,
    retry: bool = True,
    infeasible_is_final: Callable[[], bool] | None = None,
) -> Result:
    """Solve a Pyomo model with Ipopt; never raises for solver outcomes.

    When the first attempt fails, the model is reset to its starting point and solved again with
    a monotone barrier and up to 3000 iterations (`RETRY_OPTIONS`). An infeasible verdict is
    retried too, unless `infeasible_is_final()` says it is proved. `options` (the user's) win over
    both attempts' own. `Result.attempts` records what was tried."""
    user = dict(options or {})
    start = [(v, v.value) for v in m.component_data_objects(pyo.Var, descend_into=True) if not v.fixed]
    res = run_ipopt(m, user)
    attempts = [(f"warm start, {describe_options(user)}", res)]
    final = res.status is Status.infeasible and infeasible_is_final is not None and infeasible_is_final()
    if retry and not res.ok and not final:
        for var, value in start:
            var.set_value(value, skip_validation=True)
        again = {**RETRY_OPTIONS, **user}
        second = run_ipopt(m, again)
        attempts.append((f"the same warm start again, {describe_options(again)}", second))
        res = res.then(second)
    return replace(res, attempts=tuple(attempts))


_IPOPT_LOADED = False


def _load_ipopt() -> None:
    """Load Ipopt (cyipopt and the BLAS its MUMPS uses), then hold that BLAS to one thread."""
    global _IPOPT_LOADED
    if not _IPOPT_LOADED:
        import cyipopt  # noqa: F401

        one_blas_thread()
        _IPOPT_LOADED = True


def run_ipopt(m: pyo.ConcreteModel, options: dict | None = None) -> Result:
    """One Ipopt attempt on a Pyomo model through Pyomo's cyipopt interface."""
    _load_ipopt()
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
        status = {
            "optimal": Status.optimal,
            "infeasible": Status.infeasible,
            "maxIterations": Status.iteration_limit,
            "maxTimeLimit": Status.time_limit,
        }.get(tc, Status.acceptable if "acceptable" in msg.lower() else Status.error)
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

            _load_ipopt()

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

    def solve(
        self,
        x0: np.ndarray,
        options: dict,
        lb: np.ndarray | None = None,
        ub: np.ndarray | None = None,
        warm: tuple | None = None,
    ) -> tuple[Result, tuple | None]:
        """One Ipopt run from `x0` with bounds `lb`, `ub` (default: the NLP's) and, for a warm
        start, the multipliers `warm` = (constraints, lower bounds, upper bounds). Returns the
        result and (x, multipliers...) when Ipopt returned a point."""
        nlp = self.nlp
        iters, count = _counter()
        prob = self._problem()(
            nlp, nlp.primals_lb() if lb is None else lb, nlp.primals_ub() if ub is None else ub, count
        )
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


# Warm start from a previous primal-dual point of the same NLP: push it only marginally into the
# interior and start the barrier small.
WARM_OPTIONS = {
    "warm_start_init_point": "yes",
    "warm_start_bound_push": 1e-9,
    "warm_start_bound_frac": 1e-9,
    "warm_start_slack_bound_push": 1e-9,
    "warm_start_slack_bound_frac": 1e-9,
    "warm_start_mult_bound_push": 1e-9,
    "mu_init": 1e-6,
}


class PersistentIpopt:
    """Ipopt on a Pyomo model whose structure changes rarely.

    The in-memory NLP (PyNumero: one NL file) is built on the first solve and again only after
    `invalidate()` (a component was added or removed). In between, each solve reads the
    variables' current bounds and values, so a variable held by equal bounds, new values and a
    warm start cost no NL file. Never `.fix()` a variable of such a model: fixed variables are
    not in the NLP; hold it with equal bounds instead."""

    def __init__(self, m: pyo.ConcreteModel) -> None:
        self.m = m
        self.nlp = None
        self.builds = 0
        self._last: dict = {}  # per stage ("": the latest): (x, multipliers) of its last successful solve

    def invalidate(self) -> None:
        self.nlp = None
        self._last = {}

    def solve(
        self,
        options: dict | None = None,
        retry: bool = True,
        infeasible_is_final: Callable[[], bool] | None = None,
        warm: bool = False,
        stage: str = "",
    ) -> Result:
        """Solve from the model's current values (warm: from the multipliers of the last solution
        too, when the NLP is unchanged). A problem solved in stages with other objectives names
        them: a stage starts from its own last solution's multipliers, else from the latest's.
        On failure, try again without the multipliers, then once more with a monotone barrier and
        up to 3000 iterations (`retry=False`: neither); an infeasible verdict is retried too
        unless `infeasible_is_final()` says it is proved. A solution is loaded into the model
        (values, the `dual` suffix); after a failure the model keeps the values it had."""
        from pyomo.contrib.pynumero.interfaces.pyomo_nlp import PyomoNLP

        if self.nlp is None:
            with _quiet_pyomo():
                self.nlp = PyomoNLP(self.m)
            self.vars = self.nlp.get_pyomo_variables()
            self.constraints = self.nlp.get_pyomo_constraints()
            self.session = IpoptSession(self.nlp)
            self.builds += 1
        user = dict(options or {})
        inf = float("inf")
        lb = np.array([inf * -1 if v.lb is None else v.lb for v in self.vars], dtype=float)
        ub = np.array([inf if v.ub is None else v.ub for v in self.vars], dtype=float)
        x0 = np.array([0.0 if v.value is None else v.value for v in self.vars], dtype=float)
        x0 = np.clip(x0, lb, ub)
        attempts = []
        res, out = None, None
        last = self._last.get(stage) or self._last.get("")
        if warm and last is not None:
            _, lam, zl, zu = last
            res, out = self.session.solve(x0, {**WARM_OPTIONS, **user}, lb, ub, (lam, zl, zu))
            attempts.append((f"warm start from the previous solution's multipliers, {describe_options(user)}", res))
        if res is None or (retry and not res.ok):
            res2, out = self.session.solve(x0, user, lb, ub)
            attempts.append((f"warm start, {describe_options(user)}", res2))
            res = res2 if res is None else res.then(res2)
        final = res.status is Status.infeasible and infeasible_is_final is not None and infeasible_is_final()
        if retry and not res.ok and not final:
            again = {**RETRY_OPTIONS, **user}
            res3, out = self.session.solve(x0, again, lb, ub)
            attempts.append((f"the same warm start again, {describe_options(again)}", res3))
            res = res.then(res3)
        if res.ok and out is not None:
            x, lam, zl, zu = out
            self.nlp.set_primals(x)
            self.nlp.set_duals(lam)
            self._load(x, lam)
            self._last[stage] = self._last[""] = out
        return replace(res, attempts=tuple(attempts))

    def _load(self, x: np.ndarray, lam: np.ndarray) -> None:
        """The solution into the model: variable values and the `dual` suffix (what PyNumero's
        `load_state_into_pyomo` does, without revalidating each value against its bounds: about
        a tenth of the time, a day makes hundreds of solves)."""
        for var, value in zip(self.vars, x):
            var.set_value(value, skip_validation=True)
        duals = dict(active_import_suffix_generator(self.m)).get("dual")
        if duals is not None:
            duals.clear()
            duals.update(zip(self.constraints, lam))
