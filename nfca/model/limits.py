"""The limits every envelope must respect, in one value object, and how far a quantity exceeds one.

Voltage limits apply to the voltage each end-user sees (phase-to-neutral for wye users,
phase-to-phase for phase-to-phase and delta users), in per unit of that leg's nominal voltage or,
when given in volts, in volts of the leg. Currents are limited by each line conductor's ampacity
and each transformer's rated current; the neutral-to-earth voltage optionally at end-users'
neutral conductors.

Two tolerances, deliberately apart: the optimisation model holds its limits tighter by a
*margin* (so rounding published watts down cannot push a point over), and the OpenDSS
verification accepts a *tolerance* (the engines agree to ~1e-9 pu).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nfca.errors import InputError

# The optimisation model holds its limits this far inside the real ones, so that published values
# (whole watts, rounded down) verify: 9e-6 of each voltage limit (under 1e-5 pu, and the same
# volts whatever the voltage bases) and 0.01 % of each rating. They cost 0.03 kW of the IEEE
# feeder's 300 kW optimal import (README, Methods).
V_MARGIN_PU = 9e-6
I_MARGIN = 1e-4
V_TOL_PU = 1e-6  # verification: a voltage beyond its limit by more than this is a violation
LOADING_TOL_PCT = 1e-4  # verification: loading above 100 % by more than this is a violation


@dataclass(frozen=True)
class Limits:
    """Voltage, current and neutral limits, with the model's margins and the verifier's tolerances."""

    vmin_pu: float = 0.90
    vmax_pu: float = 1.10
    vmin_v: float | None = None  # volts of the leg an end-user sees; overrides vmin_pu
    vmax_v: float | None = None
    v_neutral_max_v: float | None = None  # neutral-to-earth (V) at end-users' neutral conductors
    v_margin_pu: float = V_MARGIN_PU
    i_margin: float = I_MARGIN
    v_tol_pu: float = V_TOL_PU
    loading_tol_pct: float = LOADING_TOL_PCT

    def __post_init__(self) -> None:
        for name in ("vmin_pu", "vmax_pu", "vmin_v", "vmax_v", "v_neutral_max_v", "v_margin_pu", "i_margin"):
            x = getattr(self, name)
            if x is not None and not np.isfinite(x):
                raise InputError(f"{name} must be a finite number, got {x}")
        if not 0 < self.vmin_pu < 1 < self.vmax_pu:
            raise InputError(f"voltage limits must satisfy 0 < vmin < 1 < vmax, got {self.vmin_pu}, {self.vmax_pu}")
        if (self.vmin_v is not None and self.vmin_v <= 0) or (self.vmax_v is not None and self.vmax_v <= 0):
            raise InputError(f"voltage limits in volts must be positive, got {self.vmin_v}, {self.vmax_v}")
        if self.vmin_v is not None and self.vmax_v is not None and not self.vmin_v < self.vmax_v:
            raise InputError(
                f"the lower voltage limit must be below the upper one, got {self.vmin_v} V, {self.vmax_v} V"
            )
        if self.v_neutral_max_v is not None and not self.v_neutral_max_v > 0:
            raise InputError(f"the neutral voltage limit must be positive (V), got {self.v_neutral_max_v}")
        if not (0 <= self.v_margin_pu < 0.01 and 0 <= self.i_margin < 0.01):
            raise InputError(f"margins must be within [0, 0.01), got {self.v_margin_pu}, {self.i_margin}")

    def voltage_bounds_pu(self, nominal_v: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """The (lower, upper) limits on a leg's voltage magnitude, per unit of its nominal `nominal_v`."""
        nominal_v = np.asarray(nominal_v, dtype=float)
        lo = self.vmin_v / nominal_v if self.vmin_v is not None else np.full(nominal_v.shape, self.vmin_pu)
        hi = self.vmax_v / nominal_v if self.vmax_v is not None else np.full(nominal_v.shape, self.vmax_pu)
        return lo, hi

    def describe(self, nominal_v: float | None = None) -> str:
        """The voltage limits as a planner reads them, e.g. '0.90-1.10 pu (216-264 V)'."""
        if self.vmin_v is not None or self.vmax_v is not None:
            lo = f"{self.vmin_v:g} V" if self.vmin_v is not None else f"{self.vmin_pu:.2f} pu"
            hi = f"{self.vmax_v:g} V" if self.vmax_v is not None else f"{self.vmax_pu:.2f} pu"
            return f"{lo}-{hi}"
        volts = f" ({self.vmin_pu * nominal_v:.0f}-{self.vmax_pu * nominal_v:.0f} V)" if nominal_v else ""
        return f"{self.vmin_pu:.2f}-{self.vmax_pu:.2f} pu{volts}"


def limit_excess(value: np.ndarray, lower: np.ndarray | float, upper: np.ndarray | float) -> np.ndarray:
    """How far each `value` is outside [lower, upper], as a fraction of the limit it breaks
    (negative inside: the distance to the nearer limit). Lower limits of 0 mean none."""
    value = np.asarray(value, dtype=float)
    lower = np.broadcast_to(np.asarray(lower, dtype=float), value.shape)
    upper = np.broadcast_to(np.asarray(upper, dtype=float), value.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        over = (value - upper) / upper
        under = np.where(lower > 0, (lower - value) / np.where(lower > 0, lower, 1.0), -np.inf)
    return np.maximum(over, under)
