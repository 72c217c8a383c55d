"""Normalised solver statuses and results (the same for Ipopt and HiGHS)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Status(str, Enum):
    """What a solve ended with, whatever the solver."""

    optimal = "optimal"
    acceptable = "acceptable"  # Ipopt: converged to its acceptable tolerances
    infeasible = "infeasible"
    unbounded = "unbounded"
    iteration_limit = "iteration_limit"
    time_limit = "time_limit"
    numerical_failure = "numerical_failure"  # restoration failed, invalid number, tiny steps, ...
    error = "error"

    @property
    def ok(self) -> bool:
        return self in (Status.optimal, Status.acceptable)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Result:
    """One solver run: normalised status, the solver's own message, effort."""

    status: Status
    message: str  # the solver's status name and message, e.g. "Maximum_Iterations_Exceeded: ..."
    iterations: int = 0
    seconds: float = 0.0
    objective: float = float("nan")
    # (what was tried, its own result) per attempt when a solve was retried; see `failure()`
    attempts: tuple[tuple[str, Result], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))

    @property
    def ok(self) -> bool:
        return self.status.ok

    def failure(self) -> str:
        """What was tried and how each attempt ended, for an error message."""
        tried = self.attempts or (("one attempt", self),)
        return f"{len(tried)} attempt(s): " + "; ".join(
            f"{k}) {what}: {r.status.value} ({r.message.split(':')[0]}) after {r.iterations} iterations"
            for k, (what, r) in enumerate(tried, 1)
        )

    def then(self, other: Result) -> Result:
        """`other` as the outcome, with the effort of both runs (a retry after this one)."""
        return Result(
            other.status,
            other.message,
            self.iterations + other.iterations,
            self.seconds + other.seconds,
            other.objective,
        )
