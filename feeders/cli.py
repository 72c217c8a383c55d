"""``nfca feeders``: build the test feeders (thin: parses arguments, calls the library)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Build test feeders: the Sibelga-style synthetic grid and the IEEE European LV feeder.", no_args_is_help=True
)


@app.command()
def sibelga(
    seed: int = typer.Option(1, help="Random seed; the same seed writes byte-identical files."),
    out: Path = typer.Option(..., help="Output folder (manifest.csv, grid.gpkg, one folder per LV feeder)."),
    stats: bool = typer.Option(False, "--stats", help="Print totals and distributions of the written grid."),
) -> None:
    """Generate the synthetic Sibelga-style grid (3 MV feeders, 49 LV feeders, 712 CPs, 2,267 end-users)."""
    from feeders import sibelga as lib

    manifest = lib.generate(seed, out)
    typer.echo(f"wrote {manifest}", err=True)
    if stats:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Sibelga-style grid, seed {seed}", show_header=False)
        for key, value in lib.grid_stats(manifest).items():
            if isinstance(value, dict):
                value = "\n".join(f"{k}: {v}" for k, v in value.items())
            table.add_row(key, str(value))
        Console().print(table)


@app.command("ieee-eulv")
def ieee_eulv(out: Path = typer.Option(Path("feeders/ieee_eulv"), help="Output folder of the OpenDSS model.")) -> None:
    """Build the IEEE European LV test feeder as an OpenDSS model."""
    from feeders.build_ieee_eulv import build

    master = build(out)
    typer.echo(f"wrote {master}", err=True)
