"""What an envelope study computes and under which assumptions: methods, directions, options, and
the published envelope set (data only; the optimisation is in `nfca.opf`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from nfca.errors import InputError
from nfca.model.box import Guarantee, Point
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
    guarantee: Guarantee = Guarantee.box  # which operating points the envelopes are promised for
    # Box guarantee: import and export compete for the same room. The joint problem maximises
    # (1 - w) log(import) + w log(export) of the method's measure (total, level, ...): both
    # directions get a guarantee wherever a pair exists; w = 0.5 weighs them equally.
    export_weight: float = 0.5
    audit_points: int = 200  # seeded random points of the box also checked by OpenDSS
    audit_seed: int = 0
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
        object.__setattr__(self, "guarantee", Guarantee(self.guarantee))
        if not (math.isfinite(self.export_weight) and 0 < self.export_weight < 1):
            raise InputError(f"--export-weight must be strictly between 0 and 1, got {self.export_weight}")
        if not (isinstance(self.audit_points, int) and self.audit_points >= 0):
            raise InputError(f"--audit-points must be a whole number >= 0, got {self.audit_points}")
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
class Binding:
    """The limit that stops an end-user short of its capacity, as data and as text."""

    kind: str  # capacity | voltage | current | rating | neutral | firm | fairness
    text: str  # e.g. "voltage bus 906 phase a 0.90 pu", "ampacity line line12", "capacity"
    element: str = ""  # the bus, line or transformer
    phase: str = ""  # "a", "ab", "n", ...
    value: float | None = None  # the limit, in `unit`
    unit: str = ""  # pu, V or A
    where: str = ""  # the operating point of the box where it binds

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class EnvelopeSet:
    """Guaranteed power of every end-user for one method and direction (kW, non-negative), and
    the box of operating points it is promised for."""

    method: Method
    direction: Direction
    guaranteed_kw: dict[str, float]
    participant: dict[str, bool]
    binding: dict[str, Binding]
    result: Result
    seconds: float
    iterations: int
    solves: int
    # Net power (kW, consumption +) the non-participants were held at, e.g. their forecast in one
    # interval of a dynamic study; None: anywhere within their firm value (see `nfca.model.box`).
    firm_kw: dict[str, float] | None = None
    guarantee: Guarantee = Guarantee.corner
    scenarios: tuple[Point, ...] = ()  # the vertices the optimisation held the limits at
    worst_points: tuple[Point, ...] = ()  # each limit's worst vertex of the box at the published values

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
