"""nfca: guaranteed-capacity operating envelopes for non-firm connection agreements on LV feeders.

    import nfca
    study = nfca.compute_envelopes("feeder.dss", methods=["optimal", "fair"], participants=0.5, seed=1)
    study.to_dataframe()   # one row per end-user x direction x method (envelopes.csv)
    study.summary          # totals, fairness, verification per method and direction (summary.json)
    study.plot()           # the figures
    study.write("results") # every output file, report.html included

Data flows one way, one sub-package per stage:
feeder file -> `engine` (OpenDSS, the only code that touches it) -> `model` (Feeder, reduction) ->
`opf` (UTOPF in Pyomo) -> `solver` (Ipopt) -> `verify` (OpenDSS power flows against the limits)
-> `studies` (envelopes, dynamic, activations, batch, classification) -> `io` (files, figures).
Importing nfca loads neither Pyomo nor matplotlib nor geopandas: they load when first used.
"""

from __future__ import annotations

import os as _os

# One BLAS thread per process, set before numpy (or Ipopt's MUMPS) loads OpenBLAS (and inherited
# by nfca's worker processes): nfca's dense products are small and its parallelism is across
# processes, so BLAS threads only contend (on a loaded 2-core machine a 55 x 55 product took 100x
# longer with them). A library loaded before nfca, or under a caller's own setting, is held to
# one thread by `nfca.solver.one_blas_thread` below and when Ipopt loads: the numbers must not
# depend on the thread count.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")


from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from nfca.errors import FeederError, InfeasibleError, InputError, NfcaError, OutputError, SolverError, VerificationError
from nfca.model.limits import Limits
from nfca.model.network import DEFAULT_CAPACITY_KVA, Bus, ConnectionPoint, EndUser, Feeder, Line, LinearElement, Source
from nfca.solver import one_blas_thread as _one_blas_thread

_one_blas_thread()  # numpy's, loaded by now

if TYPE_CHECKING:
    from nfca.model.envelope import EnvelopeOptions
    from nfca.studies.envelopes import Study

__all__ = [
    "compute_envelopes",
    "read_feeder",
    "NfcaError",
    "FeederError",
    "InputError",
    "SolverError",
    "InfeasibleError",
    "OutputError",
    "VerificationError",
    "Feeder",
    "EndUser",
    "ConnectionPoint",
    "Line",
    "LinearElement",
    "Source",
    "Bus",
]
__version__ = "0.1.0"


def read_feeder(
    path: str | Path,
    default_capacity_kva: float = DEFAULT_CAPACITY_KVA,
    ampacity: str | Path | None = None,
    default_ampacity_a: float | None = None,
) -> Feeder:
    """Read an OpenDSS feeder file into a Feeder (raises FeederError naming the element at fault).

    Lines without normamps take theirs from `ampacity` (a CSV linecode,amps or line,amps) or
    `default_ampacity_a`; what the reader assumed is in `Feeder.notices`."""
    from nfca.engine import read_feeder as read
    from nfca.model.ratings import AmpacityRules, read_ampacity_table

    rules = (
        read_ampacity_table(ampacity, default_ampacity_a)
        if ampacity is not None
        else AmpacityRules(default_a=default_ampacity_a)
    )
    return read(Path(path), default_capacity_kva=default_capacity_kva, ampacity=rules)


def compute_envelopes(
    feeder: str | Path | Feeder,
    methods: Iterable[str] = ("optimal", "fair"),
    directions: Iterable[str] = ("import", "export"),
    participants: str | float | Iterable[str] = "all",
    seed: int = 0,
    capacities: str | Path | None = None,
    firm_kw: float | None = None,
    firm_diversity: float = 1.0,
    vmin_pu: float = Limits.vmin_pu,
    vmax_pu: float = Limits.vmax_pu,
    power_factor: float = 1.0,
    source_pu: float | None = None,
    options: EnvelopeOptions | None = None,
    default_capacity_kva: float = DEFAULT_CAPACITY_KVA,
    vmin_v: float | None = None,
    vmax_v: float | None = None,
    ampacity: str | Path | None = None,
    default_ampacity_a: float | None = None,
) -> Study:
    """Guaranteed import/export of every end-user, each envelope set verified by OpenDSS.

    `feeder`: an OpenDSS file or a Feeder. `participants`: "all", a fraction (a random subset
    drawn with `seed`), a list of end-user names or a CSV of them. `capacities`: a CSV
    end_user[,capacity_kva][,firm_kw]. Non-participants use their firm value: `firm_kw` each,
    or `firm_diversity` x capacity x power factor (default: full capacity). `vmin_v`/`vmax_v`:
    voltage limits in volts instead of pu. `ampacity`/`default_ampacity_a`: ratings of lines
    without normamps (see `read_feeder`). `options` (an EnvelopeOptions) replaces the limit and
    physics arguments. Returns a Study; raises an
    NfcaError subclass (InputError, FeederError, InfeasibleError, ...) naming what is wrong."""
    from nfca.model.envelope import EnvelopeOptions
    from nfca.model.limits import Limits
    from nfca.studies.envelopes import run_envelopes, select_participants, with_capacities

    f = (
        feeder
        if isinstance(feeder, Feeder)
        else read_feeder(feeder, default_capacity_kva, ampacity, default_ampacity_a)
    )
    if capacities is not None:
        f = with_capacities(f, Path(capacities))
    if isinstance(participants, (str, float, int)):
        chosen = select_participants(f, str(participants), seed)
    else:
        chosen = frozenset(str(p).lower() for p in participants)
        unknown = sorted(chosen - {u.name for u in f.end_users})
        if unknown:
            raise InputError(f"participants: end-user {unknown[0]} is not in feeder {f.name}")
    if options is None:
        options = EnvelopeOptions(
            limits=Limits(vmin_pu=vmin_pu, vmax_pu=vmax_pu, vmin_v=vmin_v, vmax_v=vmax_v),
            power_factor=power_factor,
            source_pu=source_pu,
            firm_kw=firm_kw,
            firm_diversity=firm_diversity,
        )
    return run_envelopes(f, list(methods), list(directions), options, chosen)
