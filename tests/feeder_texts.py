"""Small feeders built in code (OpenDSS text), and the IEEE European LV feeder as the reference case.

Tests import them (`from tests.feeder_texts import three_wire_text, write_dss`); the fixtures in
conftest.py write the usual ones to a temporary folder."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IEEE_EULV = ROOT / "feeders" / "ieee_eulv" / "Master.dss"

HEADER = """Clear
Set DefaultBaseFrequency=50
New Circuit.{name} basekv=11 pu={pu} phases=3 bus1=mv MVAsc3=150 MVAsc1=120 basefreq=50
New Transformer.tr phases=3 windings=2 buses=[mv lv] conns=[delta wye] kVs=[11 {kv}] kVAs=[{kva} {kva}] XHL=4 %Rs=[0.5 0.5] basefreq=50
"""


def four_wire_kron_text(n_segments: int = 8, seg_m: float = 40.0, kw: float = 4.0) -> str:
    """A 416 V feeder (Kron-reduced, 3 conductors) with single-phase wye and three-phase wye users."""
    lines = [HEADER.format(name="kron", pu=1.03, kv=0.416, kva=250)]
    lines.append(
        "New LineCode.main nphases=3 R1=0.32 X1=0.075 R0=1.3 X0=0.09 C1=0 C0=0 units=km normamps=180 basefreq=50"
    )
    lines.append("New LineCode.svc nphases=3 R1=1.15 X1=0.09 R0=1.2 X0=0.09 C1=0 C0=0 units=km normamps=80 basefreq=50")
    prev = "lv"
    for k in range(1, n_segments + 1):
        lines.append(f"New Line.m{k} bus1={prev} bus2=n{k} linecode=main length={seg_m} units=m")
        # a dead-end stub with nobody on it, and an intermediate joint (exercise the reduction)
        lines.append(f"New Line.j{k} bus1=n{k} bus2=j{k} linecode=svc length=4 units=m")
        lines.append(f"New Line.s{k} bus1=j{k} bus2=cp{k} linecode=svc length=6 units=m")
        if k % 3 == 0:
            lines.append(f"New Line.stub{k} bus1=n{k} bus2=stub{k} linecode=svc length=5 units=m")
        phase = (k - 1) % 3 + 1
        lines.append(f"New Load.u{k} bus1=cp{k}.{phase} phases=1 kV=0.24 XfkVA=9.2 kW={kw} kvar=0 model=1")
        if k % 4 == 0:
            lines.append(f"New Load.t{k} bus1=cp{k}.1.2.3 phases=3 kV=0.416 XfkVA=27.7 kW={3 * kw} kvar=1 model=1")
        prev = f"n{k}"
    lines.append("Set VoltageBases=[11 0.416]\nCalcVoltageBases")
    return "\n".join(lines) + "\n"


def three_wire_text(n_segments: int = 8, seg_m: float = 25.0, kw: float = 3.0) -> str:
    """A 3x230 V (IT-like, three-wire) feeder: phase-to-phase single-phase and delta three-phase users,
    one connection point holding several end-users."""
    lines = [HEADER.format(name="it230", pu=1.0, kv=0.23, kva=250)]
    lines.append(
        "New LineCode.c95 nphases=3 R1=0.32 X1=0.08 R0=1.28 X0=0.1 C1=0 C0=0 units=km normamps=200 basefreq=50"
    )
    lines.append("New LineCode.c16 nphases=3 R1=1.15 X1=0.09 R0=1.2 X0=0.09 C1=0 C0=0 units=km normamps=90 basefreq=50")
    prev = "lv"
    pairs = ["1.2", "2.3", "3.1"]
    for k in range(1, n_segments + 1):
        lines.append(f"New Line.m{k} bus1={prev} bus2=n{k} linecode=c95 length={seg_m} units=m")
        lines.append(f"New Line.s{k} bus1=n{k} bus2=cp{k} linecode=c16 length=8 units=m")
        lines.append(
            f"New Load.a{k} bus1=cp{k}.{pairs[k % 3]} phases=1 conn=delta kV=0.23 XfkVA=9.2 kW={kw} kvar=0.5 model=1"
        )
        if k % 3 == 0:
            lines.append(
                f"New Load.d{k} bus1=cp{k}.1.2.3 phases=3 conn=delta kV=0.23 XfkVA=25.1 kW={2 * kw} kvar=0 model=1"
            )
        if k == n_segments // 2:  # a small building: four more contracts on the same point
            for j in range(4):
                lines.append(
                    f"New Load.b{j} bus1=cp{k}.{pairs[j % 3]} phases=1 conn=delta kV=0.23 XfkVA=5.8 kW=1 model=1"
                )
        prev = f"n{k}"
    lines.append("Set VoltageBases=[11 0.23]\nCalcVoltageBases")
    return "\n".join(lines) + "\n"


# A four-wire 400 V feeder: explicit neutral on node 4, 4x4 line impedances, phase-to-neutral users.
# Cable data (ohm/km, 50 Hz, no earth return: the neutral is a conductor of the model): 4x95 Al
# main cable (R 0.320 per core, X1 = X_self - X_mutual ~ 0.08) and 4x16 Cu services.
FOUR_WIRE_CODES = """New LineCode.4x95al nphases=4 units=km normamps=240 basefreq=50
~ rmatrix=[0.320 | 0 0.320 | 0 0 0.320 | 0 0 0 0.320]
~ xmatrix=[0.700 | 0.620 0.700 | 0.600 0.620 0.700 | 0.620 0.600 0.620 0.700]
New LineCode.4x16cu nphases=4 units=km normamps=90 basefreq=50
~ rmatrix=[1.150 | 0 1.150 | 0 0 1.150 | 0 0 0 1.150]
~ xmatrix=[0.750 | 0.660 0.750 | 0.640 0.660 0.750 | 0.660 0.640 0.660 0.750]
"""


def four_wire_text(
    n_segments: int = 8,
    seg_m: float = 60.0,
    kw: float = 4.0,
    earthing: str = "transformer",
    r_earth: float = 2.0,
    r_customer: float = 20.0,
) -> str:
    """A 416 V four-wire feeder (lines on .1.2.3.4, 4x4 matrices) with unbalanced single-phase users
    between a phase and the neutral (most on phase a) and three-phase users on .1.2.3.4.

    earthing: "transformer" (the star point, node 4 of the LV busbar, earthed by a Reactor of
    `r_earth` ohm), "rneut" (the same through the transformer's own Rneut/Xneut), "line" (the same
    through a one-conductor Line to node 0), "multi" (the transformer's Reactor plus `r_customer`
    ohm earth electrodes at every other customer) or "none" (a floating neutral: not supported).
    """
    rneut = f" wdg=2 Rneut={r_earth} Xneut=0.05" if earthing == "rneut" else ""
    lines = [
        "Clear\nSet DefaultBaseFrequency=50",
        "New Circuit.fourwire basekv=11 pu=1.03 phases=3 bus1=mv MVAsc3=150 MVAsc1=120 basefreq=50",
        "New Transformer.tr phases=3 windings=2 buses=[mv lv.1.2.3.4] conns=[delta wye] kVs=[11 0.416] "
        f"kVAs=[250 250] XHL=4 %Rs=[0.5 0.5] basefreq=50{rneut}",
        FOUR_WIRE_CODES,
    ]
    if earthing in ("transformer", "multi"):
        lines.append(f"New Reactor.earth phases=1 bus1=lv.4 bus2=lv.0 R={r_earth} X=0.05 basefreq=50")
    elif earthing == "line":
        lines.append(
            f"New Line.earth phases=1 bus1=lv.4 bus2=lv.0 r1={r_earth} x1=0.05 r0={r_earth} x0=0.05 "
            "c1=0 c0=0 length=1 units=km normamps=400 basefreq=50"
        )
    prev = "lv"
    phases = [1, 1, 2, 1, 3, 1, 2, 1, 1, 3, 1, 2]  # two thirds of single-phase users on phase a
    for k in range(1, n_segments + 1):
        lines.append(f"New Line.m{k} bus1={prev}.1.2.3.4 bus2=n{k}.1.2.3.4 linecode=4x95al length={seg_m} units=m")
        lines.append(f"New Line.s{k} bus1=n{k}.1.2.3.4 bus2=cp{k}.1.2.3.4 linecode=4x16cu length=12 units=m")
        ph = phases[(k - 1) % len(phases)]
        lines.append(f"New Load.u{k} bus1=cp{k}.{ph}.4 phases=1 kV=0.24 XfkVA=9.2 kW={kw} kvar=0.5 model=1")
        if k % 4 == 0:
            lines.append(f"New Load.t{k} bus1=cp{k}.1.2.3.4 phases=3 kV=0.416 XfkVA=27.7 kW={2 * kw} kvar=1 model=1")
        if earthing == "multi" and k % 2 == 0:
            lines.append(
                f"New Reactor.earth_cp{k} phases=1 bus1=cp{k}.4 bus2=cp{k}.0 R={r_customer} X=0.01 basefreq=50"
            )
        prev = f"n{k}"
    lines.append("Set VoltageBases=[11 0.416]\nCalcVoltageBases")
    return "\n".join(lines) + "\n"


def parallel_text(
    head: str = "identical",
    transformers: tuple[float, ...] = (250.0,),
    n_segments: int = 6,
    kw: float = 4.0,
    head_amps: float = 180.0,
    extra: str = "",
) -> str:
    """A 416 V (Kron) feeder whose head cable (lv to n0, 60 m) is laid as exported from a GIS:

    head: "identical" two cables of code `head` (`head_amps` each) in parallel; "equivalent" the
    one cable they are (half the impedance, twice the ampacity); "mixed" a `head` cable in
    parallel with an `alt` one of another type (other R/X, 120 A), so their currents split by a
    complex, not fixed, share; "single" one `head` cable. The rest is code `main` (180 A).
    transformers: the kVA of each transformer in parallel between mv and lv, all with the same
    impedance in ohms (XHL and %R scale with kVA), so they share the current equally: (60, 60)
    is the same feeder as (120,), and in (40, 60) the 40 kVA one limits the pair to 80 kVA.
    Users: one single-phase wye user per segment and a three-phase one every third.
    """
    lines = [
        "Clear\nSet DefaultBaseFrequency=50",
        "New Circuit.par basekv=11 pu=1.03 phases=3 bus1=mv MVAsc3=150 MVAsc1=120 basefreq=50",
    ]
    for t, kva in enumerate(transformers, 1):
        scale = kva / transformers[0]
        lines.append(
            f"New Transformer.tr{t} phases=3 windings=2 buses=[mv lv] conns=[delta wye] kVs=[11 0.416] "
            f"kVAs=[{kva} {kva}] XHL={4 * scale:g} %Rs=[{0.5 * scale:g} {0.5 * scale:g}] basefreq=50"
        )
    r1, x1, r0, x0 = 0.32, 0.075, 1.3, 0.09
    lines.append(
        f"New LineCode.main nphases=3 R1={r1} X1={x1} R0={r0} X0={x0} C1=0 C0=0 units=km normamps=180 basefreq=50"
    )
    lines.append(
        f"New LineCode.head nphases=3 R1={r1} X1={x1} R0={r0} X0={x0} C1=0 C0=0 units=km "
        f"normamps={head_amps} basefreq=50"
    )
    lines.append(
        f"New LineCode.head2 nphases=3 R1={r1 / 2} X1={x1 / 2} R0={r0 / 2} X0={x0 / 2} C1=0 C0=0 units=km "
        f"normamps={2 * head_amps} basefreq=50"
    )
    lines.append("New LineCode.alt nphases=3 R1=0.21 X1=0.2 R0=0.8 X0=0.3 C1=0 C0=0 units=km normamps=120 basefreq=50")
    lines.append("New LineCode.svc nphases=3 R1=1.15 X1=0.09 R0=1.2 X0=0.09 C1=0 C0=0 units=km normamps=80 basefreq=50")
    if head == "equivalent":
        lines.append("New Line.head bus1=lv bus2=n0 linecode=head2 length=60 units=m")
    elif head == "single":
        lines.append("New Line.head bus1=lv bus2=n0 linecode=head length=60 units=m")
    else:
        other = "alt" if head == "mixed" else "head"
        lines.append("New Line.head bus1=lv bus2=n0 linecode=head length=60 units=m")
        lines.append(f"New Line.head_b bus1=n0 bus2=lv linecode={other} length=60 units=m")  # laid the other way
    prev = "n0"
    for k in range(1, n_segments + 1):
        lines.append(f"New Line.m{k} bus1={prev} bus2=n{k} linecode=main length=40 units=m")
        lines.append(f"New Line.s{k} bus1=n{k} bus2=cp{k} linecode=svc length=10 units=m")
        lines.append(f"New Load.u{k} bus1=cp{k}.{(k - 1) % 3 + 1} phases=1 kV=0.24 XfkVA=9.2 kW={kw} kvar=0 model=1")
        if k % 3 == 0:
            lines.append(f"New Load.t{k} bus1=cp{k}.1.2.3 phases=3 kV=0.416 XfkVA=27.7 kW={2 * kw} model=1")
        prev = f"n{k}"
    lines.append(extra)
    lines.append("Set VoltageBases=[11 0.416]\nCalcVoltageBases")
    return "\n".join(lines) + "\n"


def export_text(
    normamps: bool = False,
    voltage_bases: bool = False,
    units: str = "none",
    source_kv: float | None = 11,
    lv_kv: float = 0.416,
    load_kv: float = 0.24,
    xfkva: bool = False,
    load_kw: float = 3.0,
    n_segments: int = 6,
) -> str:
    """A feeder as DSO GIS exports write them: the .dss a planner gets, not one written for nfca.

    By default it has none of `normamps`, `Set VoltageBases`, length units or `XfkVA`: line codes
    in ohm/km (`units=km` on the code) and lines whose lengths follow their code's units, one line
    with its own R/X and no unit at all. `units`: "none" (lengths in the code's km, as OpenDSS
    reads them), "m" (every line `units=m`, lengths in metres) or "mixed" (some of each; the
    same physical lengths). `source_kv=None` leaves the circuit at OpenDSS's default 115 kV.
    `lv_kv` is the transformer's LV winding (and the base when `voltage_bases`), `load_kv` the
    single-phase loads' kV (0.24 on a 0.416 grid; 0.23 on a 0.42 one is the Spanish export).
    """
    amps = " normamps={}" if normamps else ""
    basekv = f" basekv={source_kv}" if source_kv is not None else ""
    lines = [
        "Clear",
        "Set DefaultBaseFrequency=50",
        f"New Circuit.export{basekv} pu=1.02 phases=3 bus1=mv MVAsc3=150 MVAsc1=120 basefreq=50",
        f"New Transformer.tr phases=3 windings=2 buses=[mv lv] conns=[delta wye] kVs=[11 {lv_kv}] kVAs=[400 400] "
        "XHL=4 %Rs=[0.5 0.5] basefreq=50",
        "New LineCode.al150 nphases=3 R1=0.206 X1=0.075 R0=0.83 X0=0.3 C1=0 C0=0 units=km"
        + amps.format(275)
        + " basefreq=50",
        "New LineCode.al50 nphases=3 R1=0.641 X1=0.08 R0=2.56 X0=0.32 C1=0 C0=0 units=km"
        + amps.format(140)
        + " basefreq=50",
        "New LineCode.cu16 nphases=3 R1=1.15 X1=0.09 R0=4.6 X0=0.36 C1=0 C0=0 units=km"
        + amps.format(90)
        + " basefreq=50",
    ]

    def length(k: int, metres: float) -> str:
        if units == "m" or (units == "mixed" and k % 2 == 0):
            return f"length={metres:g} units=m"
        return f"length={metres / 1000:g}"  # in the code's km

    prev = "lv"
    for k in range(1, n_segments + 1):
        code = "al150" if k <= n_segments // 2 else "al50"
        lines.append(f"New Line.m{k} bus1={prev} bus2=n{k} linecode={code} {length(k, 35)}")
        lines.append(f"New Line.s{k} bus1=n{k} bus2=cp{k} linecode=cu16 {length(k + 1, 12)}")
        cap = " XfkVA=9.2" if xfkva else ""
        lines.append(f"New Load.h{k} bus1=cp{k}.{(k - 1) % 3 + 1} phases=1 kV={load_kv}{cap} kW={load_kw} kvar=0.3")
        prev = f"n{k}"
    # a service with its own impedance and no unit at all (ohm per whatever its length is in)
    lines.append(
        f"New Line.bare bus1={prev} bus2=shop r1=0.00115 x1=0.00009 r0=0.0046 x0=0.00036 c1=0 c0=0 length=15"
        + amps.format(90)
    )
    lines.append(f"New Load.shop bus1=shop.1.2.3 phases=3 kV={lv_kv}{' XfkVA=27.7' if xfkva else ''} kW={2 * load_kw}")
    if voltage_bases:
        lines.append(f"Set VoltageBases=[11 {lv_kv}]\nCalcVoltageBases")
    return "\n".join(lines) + "\n"


def write_dss(folder: Path, text: str, name: str = "Master.dss") -> Path:
    """`text` written as `folder/name`; its path."""
    path = folder / name
    path.write_text(text)
    return path


def feeder_with_coordinates(folder: Path) -> Path:
    """The 3x230 V test feeder with bus coordinates in metres (a building of five contracts on cp4)."""
    text = three_wire_text() + "Buscoords xy.csv\n"
    xy = {"mv": (-20, 0), "lv": (0, 0)}
    for k in range(1, 9):
        xy[f"n{k}"] = (25.0 * k, 0.0)
        xy[f"cp{k}"] = (25.0 * k, 8.0 if k % 2 else -8.0)
    (folder / "xy.csv").write_text("".join(f"{b},{x},{y}\n" for b, (x, y) in xy.items()))
    (folder / "crs.txt").write_text("local\n")
    return write_dss(folder, text)
