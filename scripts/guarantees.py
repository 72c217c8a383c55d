"""The README's figures on what a guarantee promises, recomputed.

    python scripts/guarantees.py ieee       # totals per method and guarantee; the corner sets audited
    python scripts/guarantees.py tradeoff   # box guarantee: import against export as the export weight moves
    python scripts/guarantees.py sibelga    # feeder types of the Sibelga-style grid, corner and box
    python scripts/guarantees.py audit      # the default (box) sets audited far beyond the CLI's 200 points

Every number printed comes from the library as `nfca envelopes` / `nfca batch` compute it, every
set verified by OpenDSS; nothing is typed in.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IEEE = ROOT / "feeders" / "ieee_eulv" / "Master.dss"
METHODS = ["optimal", "fair", "proportional", "propfair", "maxmin"]


def ieee() -> None:
    from nfca.engine import powerflows, read_feeder
    from nfca.model.envelope import EnvelopeOptions
    from nfca.studies.envelopes import run_envelopes
    from nfca.verify import check, promised_box

    feeder = read_feeder(IEEE)
    totals = {}
    for g in ("corner", "direction", "box"):
        t0 = time.perf_counter()
        study = run_envelopes(feeder, METHODS, options=EnvelopeOptions(guarantee=g))
        for e in study.envelopes:
            totals[(g, e.method.value, e.direction.value)] = e.total_kw
        print(f"{g:9s} {time.perf_counter() - t0:6.1f} s, verified {study.verified}")
    print("\nIEEE European LV feeder, every end-user a participant, kW guaranteed in total (import / export):")
    print(f"{'method':13s} {'corner':>17s} {'direction':>17s} {'box':>17s}")
    for m in METHODS:
        cells = [
            f"{totals[(g, m, 'import')]:7.1f} / {totals[(g, m, 'export')]:6.1f}" for g in ("corner", "direction", "box")
        ]
        print(f"{m:13s} " + " ".join(f"{c:>17s}" for c in cells))

    # the corner sets, audited over the box they would be read as: each end-user anywhere between
    # its export and its import envelope (random points, half at vertices), and each limit's worst vertex
    options = EnvelopeOptions(guarantee="corner")
    corner = run_envelopes(feeder, ["optimal", "fair"], options=options)
    print("\nThe corner sets (ALEXANDER D3.3's definition) inside their box, OpenDSS on the full feeder:")
    for m in ("optimal", "fair"):
        sets = [e for e in corner.envelopes if e.method.value == m]
        box = promised_box(feeder, sets, options)
        points = box.sample(1000, seed=1)
        checks = [check(feeder, pf, options) for pf in powerflows(feeder, [box.loads(p) for p in points])]
        broken = [c for c in checks if not c.verified]
        vmax = max(c.v_max_pu for c in checks)
        vmin = min(c.v_min_pu for c in checks)
        load = max(c.max_loading_pct for c in checks)
        print(
            f"  {m:8s} {len(broken):4d} of {len(points)} random points break a limit; over them the customer "
            f"voltages reach {vmin:.3f}-{vmax:.3f} pu and the loading {load:.1f} %"
        )
        worst = _worst_cases(feeder, sets, options)
        print(f"           at each limit's worst vertex: {worst}")


def _worst_cases(feeder, sets, options) -> str:
    """How the corner sets fare at each limit's worst vertex of their box (the robust search)."""
    from nfca.engine import powerflows
    from nfca.opf.problem import EnvelopeProblem
    from nfca.opf.worstcase import worst_vertices
    from nfca.verify import check, promised_box

    problem = EnvelopeProblem(feeder, options)
    box = promised_box(feeder, sets, options)
    sb = problem.net.s_base_va
    order = [list(box.users).index(n) for n in problem.net.users]
    lo, hi = box.lo_kw[order] * 1e3 / sb, box.hi_kw[order] * 1e3 / sb
    found = worst_vertices(problem.points, lo, hi, problem.tan_phi)
    bad = [c for c in found if c.excess > 0]
    flows = powerflows(feeder, [box.loads(c.t[np.argsort(order)]) for c in bad])
    checks = [check(feeder, pf, options) for pf in flows]
    if not checks:
        return "no limit breaks"
    vmin, vmax = min(c.v_min_pu for c in checks), max(c.v_max_pu for c in checks)
    load = max(c.max_loading_pct for c in checks)
    return (
        f"{sum(not c.verified for c in checks)} of the {len(found)} worst vertices break a limit in OpenDSS "
        f"(voltages {vmin:.3f}-{vmax:.3f} pu, loading up to {load:.1f} %)"
    )


def tradeoff() -> None:
    from nfca.engine import read_feeder
    from nfca.model.envelope import EnvelopeOptions
    from nfca.studies.envelopes import run_envelopes

    feeder = read_feeder(IEEE)
    weights = [0.1, 0.25, 0.5, 0.75, 0.9]
    rows = []
    for w in weights:
        study = run_envelopes(feeder, ["optimal", "fair"], options=EnvelopeOptions(export_weight=w, audit_points=50))
        got = {(e.method.value, e.direction.value): e.total_kw for e in study.envelopes}
        rows.append((w, got))
        print(
            f"w = {w:4.2f}: optimal {got[('optimal', 'import')]:6.1f} / {got[('optimal', 'export')]:6.1f} kW, "
            f"fair {got[('fair', 'import')]:6.1f} / {got[('fair', 'export')]:6.1f} kW (import / export), "
            f"verified {study.verified}"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for m, style in (("optimal", "o-"), ("fair", "s--")):
        x = [got[(m, "import")] for _, got in rows]
        y = [got[(m, "export")] for _, got in rows]
        ax.plot(x, y, style, label=m)
        for (w, _), xi, yi in zip(rows, x, y):
            ax.annotate(f"w={w:g}", (xi, yi), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("guaranteed import, total (kW)")
    ax.set_ylabel("guaranteed export, total (kW)")
    ax.set_title(
        "IEEE European LV feeder, box guarantee:\nimport against export as the export weight w moves", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = ROOT / "docs" / "tradeoff_ieee.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out)
    print(f"figure: {out.relative_to(ROOT)}")


def sibelga() -> None:
    import pandas as pd
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid"
        assert runner.invoke(app, ["feeders", "sibelga", "--seed", "1", "--out", str(grid)]).exit_code == 0
        for g in ("corner", "box"):
            out = Path(tmp) / g
            t0 = time.perf_counter()
            res = runner.invoke(
                app, ["batch", str(grid), "--out", str(out), "--crs", "EPSG:31370", "--guarantee", g, "--quiet"]
            )
            wall = time.perf_counter() - t0
            types = pd.read_csv(out / "feeder_types.csv")
            counts = types["type"].value_counts().sort_index().to_dict()
            print(
                f"{g:7s}: {wall:6.1f} s wall, exit {res.exit_code}; feeder types {counts}; "
                f"fair/optimal median {(types['fair_import_kw'] / types['optimal_import_kw']).median():.3f} import, "
                f"{(types['fair_export_kw'] / types['optimal_export_kw']).median():.3f} export"
            )


def audit(n: int = 2500) -> None:
    """The IEEE feeder's box sets at n random vertices, n interior points and every single end-user
    move from both uniform corners, each solved by OpenDSS on the full feeder."""
    from nfca.engine import powerflows, read_feeder
    from nfca.model.envelope import EnvelopeOptions
    from nfca.studies.envelopes import run_envelopes
    from nfca.verify import check, promised_box

    feeder = read_feeder(IEEE)
    options = EnvelopeOptions()
    study = run_envelopes(feeder, ["optimal", "fair"], options=options)
    for m in ("optimal", "fair"):
        box = promised_box(feeder, [e for e in study.envelopes if e.method.value == m], options)
        rng = np.random.default_rng(12345)
        k = len(box.users)
        points = [rng.integers(0, 2, k).astype(float) for _ in range(n)] + [rng.random(k) for _ in range(n)]
        for corner in (np.ones(k), np.zeros(k)):
            for j in range(k):
                t = corner.copy()
                t[j] = 1 - t[j]
                points.append(t)
        checks = [check(feeder, pf, options) for pf in powerflows(feeder, [box.loads(t) for t in points])]
        broken = [c for c in checks if not c.verified]
        print(
            f"{m:8s} {len(points)} points, {len(broken)} break a limit; customer voltages "
            f"{min(c.v_min_pu for c in checks):.4f}-{max(c.v_max_pu for c in checks):.4f} pu, "
            f"loading up to {max(c.max_loading_pct for c in checks):.1f} %"
            + (f"; first: {broken[0].violations[0]}" if broken else "")
        )


if __name__ == "__main__":
    jobs = {"ieee": ieee, "tradeoff": tradeoff, "sibelga": sibelga, "audit": audit}
    for name in sys.argv[1:] or list(jobs):
        jobs[name]()
