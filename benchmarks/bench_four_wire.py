"""Four-wire feeders (issue 8): the cost of the explicit neutral against the Kron-reduced model,
and the guaranteed power each model gives.

    python benchmarks/bench_four_wire.py            # timing and the Kron comparison table
    python benchmarks/bench_four_wire.py timing     # one group
    python benchmarks/bench_four_wire.py table

Feeders: tests/feeder_texts.four_wire_text, the test feeder (8 x 60 m, 10 end-users) and a denser
one of the same length (48 x 10 m, 60 end-users). Times are medians of repeated solves of one
model (the way `nfca envelopes` re-solves it); compare them as ratios within one run.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nfca.engine import read_feeder  # noqa: E402
from nfca.model.envelope import EnvelopeOptions
from nfca.model.reduction import kron_reduce, reduce_feeder  # noqa: E402
from nfca.opf.formulation import solve_powerflow  # noqa: E402
from nfca.opf.network import per_unit  # noqa: E402
from nfca.opf.problem import EnvelopeProblem  # noqa: E402
from nfca.studies.envelopes import run_envelopes  # noqa: E402
from tests.feeder_texts import four_wire_text, write_dss  # noqa: E402

REPEAT = 5
CASES = [
    ("test feeder, 8 x 60 m, 10 users", dict()),
    ("dense feeder, 48 x 10 m, 60 users", dict(n_segments=48, seg_m=10.0, kw=1.0)),
]
METHODS = ["optimal", "fair", "proportional", "propfair", "maxmin"]


def machine() -> str:
    return f"{platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} cores | Python {platform.python_version()}"


def _median_seconds(fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def timing(folder: Path) -> None:
    for title, kwargs in CASES:
        f = read_feeder(write_dss(folder, four_wire_text(**kwargs), f"{title.split(',')[0].replace(' ', '_')}.dss"))
        print(f"{title}:")
        rows = {}
        for kron in (False, True):
            model = reduce_feeder(kron_reduce(f) if kron else f)
            net = per_unit(model)
            pf_s, _ = _median_seconds(lambda: solve_powerflow(net))
            t0 = time.perf_counter()
            prob = EnvelopeProblem(f, EnvelopeOptions(kron=kron, guarantee="corner"))
            build = time.perf_counter() - t0
            solves = {}
            for method, direction in [
                ("optimal", "import"),
                ("optimal", "export"),
                ("fair", "import"),
                ("fair", "export"),
            ]:
                s, sets = _median_seconds(lambda: prob.solve(method, direction))
                solves[f"{method} {direction}"] = (s, sets[0].iterations, sets[0].solves)
            rows[kron] = (net.n, pf_s, build, solves)
        for kron, (n, pf_s, build, solves) in rows.items():
            name = "Kron-reduced   " if kron else "explicit neutral"
            print(
                f"  {name}: {n:4d} conductor nodes, power flow {1e3 * pf_s:6.1f} ms, "
                f"problem set-up {1e3 * build:6.1f} ms"
            )
            for key, (s, it, k) in solves.items():
                print(f"      {key:15s} {1e3 * s:7.1f} ms  {k} solve(s) {it:3d} Ipopt iterations")
        (n4, pf4, b4, s4), (n3, pf3, b3, s3) = rows[False], rows[True]
        total4, total3 = sum(v[0] for v in s4.values()), sum(v[0] for v in s3.values())
        print(
            f"  explicit neutral / Kron: nodes {n4 / n3:.2f}x, power flow {pf4 / pf3:.2f}x, "
            f"set-up {b4 / b3:.2f}x, the four corner envelope solves {total4 / total3:.2f}x"
        )


def table(folder: Path) -> None:
    """Guaranteed power (kW, all participants) per method and direction on both models; the Kron
    envelopes are verified by OpenDSS on the four-wire file like every envelope."""
    for earthing in ("transformer", "multi"):
        f = read_feeder(write_dss(folder, four_wire_text(earthing=earthing), f"fw_{earthing}.dss"))
        four = run_envelopes(f, METHODS, ["import", "export"])
        kron = run_envelopes(f, METHODS, ["import", "export"], EnvelopeOptions(kron=True), require_verified=False)
        print(
            f"\nfour-wire test feeder, earthed at {'the transformer only' if earthing == 'transformer' else 'the transformer and every other customer'}"
            f" (four-wire envelopes all verified: {four.verified})"
        )
        print(
            "| method | direction | four-wire kW | Kron kW | Kron - four-wire | Kron verified? (worst OpenDSS finding) |"
        )
        print("|---|---|---:|---:|---:|---|")
        for e4, ek, vk in zip(four.envelopes, kron.envelopes, kron.verifications):
            diff = 100 * (ek.total_kw - e4.total_kw) / e4.total_kw
            worst = "yes" if vk.verified else f"no: {len(vk.violations)} violation(s), {_worst(vk)}"
            print(
                f"| {e4.method.value} | {e4.direction.value} | {e4.total_kw:.2f} | {ek.total_kw:.2f} | "
                f"{diff:+.1f} % | {worst} |"
            )


def _worst(ver) -> str:
    volts = [v for v in ver.violations if v.startswith("voltage")]
    if volts:
        key = ver.v_min_pu if any(float(v.split()[-2]) < 1 for v in volts) else ver.v_max_pu
        return f"customer voltage {key:.3f} pu"
    return ver.violations[0]


GROUPS = {"timing": timing, "table": table}

if __name__ == "__main__":
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        for name in sys.argv[1:] or GROUPS:
            GROUPS[name](Path(tmp))
