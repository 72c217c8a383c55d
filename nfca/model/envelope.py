"""What an envelope study computes and under which assumptions: methods, directions, options, and
the published envelope set (data only; the optimisation is in `nfca.opf`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import math

from nfca.errors import InputError
from nfca.model.limits import Limits
from nfca.model.network import EndUser
from nfca.solver import Result


class Method(str, Enum):
    optimal = "optimal"
    fair = "fair"
    proportional = "proportional"
    propfair = "propfair"
    maxmin = "maxmin"


class Direction(str, Enum):
    import_ = "import"
    export = "export"

    @property
    def sign(self) -> float:
        return 1.0 if self is Direction.import_ else -1.0


@dataclass(frozen=True)
class EnvelopeOptions:
    """Physical assumptions of an envelope study, with their defaults."""

    limits: Limits = Limits()  # voltage, current and neutral limits, margins, tolerances
    power_factor: float = 1.0  # of every participant, both directions (vars absorbed/consumed)
    source_pu: float | None = None  # None: the feeder file's source voltage
    reduce: bool = True  # exact network reduction before optimising
    kron: bool = False  # optimise on the Kron-reduced model (neutrals taken as perfectly earthed)
    # What a non-participant (a firm connection) may use: its own `EndUser.firm_kw` if set, else
    # `firm_kw` for everyone if set, else `firm_diversity` x its capacity x power factor.
    firm_kw: float | None = None
    firm_diversity: float = 1.0
    # Ipopt options for every attempt, over nfca's (nfca.solver.IPOPT_OPTIONS) and the retry's, as
    # (name, value) pairs or a dict, e.g. {"max_iter": 50}; `nfca envelopes --ipopt-option max_iter=50`.
    ipopt_options: tuple[tuple[str, float | int | str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "ipopt_options", tuple(sorted(dict(self.ipopt_options).items())))
        if not (math.isfinite(self.power_factor) and 0 < self.power_factor <= 1):
            raise InputError(f"power factor must be in (0, 1], got {self.power_factor}")
        if self.source_pu is not None and not (math.isfinite(self.source_pu) and 0.8 <= self.source_pu <= 1.2):
            raise InputError(f"source voltage must be within 0.8-1.2 pu, got {self.source_pu}")
        if self.firm_kw is not None and not (math.isfinite(self.firm_kw) and self.firm_kw >= 0):
            raise InputError(f"--firm-kw must be a non-negative number of kW, got {self.firm_kw}")
        if not (math.isfinite(self.firm_diversity) and 0 <= self.firm_diversity <= 1):
            raise InputError(f"--firm-diversity must be within 0-1, got {self.firm_diversity}")
        if self.limits.v_neutral_max_v is not None and self.kron:
            raise InputError("a neutral voltage limit needs the explicit neutral: the Kron-reduced model has none")


@dataclass(frozen=True)
class EnvelopeSet:
    """Guaranteed power of every end-user for one method and direction (kW, non-negative)."""

    method: Method
    direction: Direction
    guaranteed_kw: dict[str, float]
    participant: dict[str, bool]
    binding: dict[str, str]
    result: Result
    seconds: float
    iterations: int
    solves: int
    v_min_pu: float  # of the model's solution, over limited customer voltages
    v_max_pu: float
    # Net power (kW, consumption +) the non-participants were held at, e.g. their forecast in one
    # interval of a dynamic study; None: their firm capacity in the envelope's direction.
    firm_kw: dict[str, float] | None = None

    @property
    def total_kw(self) -> float:
        return float(sum(v for k, v in self.guaranteed_kw.items() if self.participant[k]))


def firm_kw(user: EndUser, options: EnvelopeOptions) -> float:
    """What a non-participant may use in each direction (kW): its firm connection."""
    if user.firm_kw is not None:
        return user.firm_kw
    if options.firm_kw is not None:
        return min(options.firm_kw, user.capacity_kva * options.power_factor)
    return options.firm_diversity * user.capacity_kva * options.power_factor
