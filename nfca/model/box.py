"""What a published envelope set promises: the box of operating points it must hold in.

Every end-user u has a range [lo_u, hi_u] of net power (kW, consumption positive):

* a participant: [-export_u, +import_u] (`Guarantee.box`), [0, +import_u] or [-export_u, 0]
  (`Guarantee.direction`, one box per direction);
* a non-participant: between 0 and its firm value in the same way ([-firm_u, +firm_u] in a box,
  [0, +firm_u] or [-firm_u, 0] per direction), or exactly at its forecast in one interval of a
  dynamic study.

Each user is anywhere in its range independently of all others, mixed directions included. A
point of the box is a vector t in [0, 1]^n: user u draws lo_u + t_u (hi_u - lo_u), with reactive
power at the study's power factor, q = tan(phi) |p| (vars consumed on import, absorbed on export).
The vertices are t in {0, 1}^n. `Guarantee.corner` (ALEXANDER D3.3's definition, for comparison)
promises only the corners: every participant at its envelope in one direction, every
non-participant at its firm value in the same direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class Guarantee(str, Enum):
    """Which operating points a published envelope set is promised (and verified) for."""

    box = "box"  # each participant anywhere in [-export, +import], independently, directions mixed
    direction = "direction"  # [0, +import] and [-export, 0] separately (contracts never mix them)
    corner = "corner"  # every participant at its envelope in one direction (the seed's definition)


@dataclass(frozen=True)
class Point:
    """One operating point of a box: t per end-user (0: at the low end of its range, 1: at the high end)."""

    t: np.ndarray
    label: str


@dataclass(frozen=True, eq=False)
class Box:
    """The ranges of net power (kW, consumption +) an envelope set is promised for, per end-user
    in the feeder's order, and the power factor of everyone's reactive power."""

    users: tuple[str, ...]
    lo_kw: np.ndarray
    hi_kw: np.ndarray
    tan_phi: float

    def loads(self, point: Point | np.ndarray) -> dict[str, tuple[float, float]]:
        """(kW, kvar) of every end-user at a point of the box."""
        p, q = self.power_kw(point.t if isinstance(point, Point) else point)
        return {u: (float(a), float(b)) for u, a, b in zip(self.users, p, q)}

    def power_kw(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.lo_kw + np.asarray(t, dtype=float) * (self.hi_kw - self.lo_kw)
        return p, self.tan_phi * np.abs(p)

    @property
    def free(self) -> np.ndarray:
        """The users whose range is not a single value."""
        return self.hi_kw > self.lo_kw

    def corners(self) -> list[Point]:
        """The box's uniform vertices: everyone at the high end of their range (every participant
        at its import envelope), everyone at the low end (at its export envelope)."""
        n = len(self.users)
        return [
            Point(np.ones(n), "everyone at the high end of their range"),
            Point(np.zeros(n), "everyone at the low end of their range"),
        ]

    def sample(self, n: int, seed: int) -> list[Point]:
        """n seeded random points: half at random vertices, half uniform in the box's interior."""
        rng = np.random.default_rng(seed)
        k = len(self.users)
        out = []
        for j in range(n):
            t = rng.integers(0, 2, k).astype(float) if j % 2 == 0 else rng.random(k)
            out.append(Point(t, f"audit point {j + 1}"))
        return out
