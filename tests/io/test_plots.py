"""Figures stay readable: width capped, many end-users in stacked panels."""

from __future__ import annotations

import struct

import pandas as pd

from nfca.io import plots


def _png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


def _table(n_users: int, methods=("optimal", "fair")) -> pd.DataFrame:
    rows = [
        {
            "end_user": f"u{k}",
            "distance_m": float(k),
            "capacity_kva": 9.2,
            "firm_kw": 9.2,
            "participant": k % 4 != 0,
            "method": m,
            "direction": "import",
            "status": "ok",
            "guaranteed_kw": 9.2 * (1 - k / n_users),
        }
        for m in methods
        for k in range(n_users)
    ]
    return pd.DataFrame(rows)


def test_bar_chart_width_is_capped_and_users_are_paged():
    small = plots.envelope_bars(_table(20), None, "import")
    large = plots.envelope_bars(_table(239), None, "import")
    (_, h_small), (w_large, h_large) = _png_size(small.png), _png_size(large.png)
    assert w_large <= plots.WIDTH_IN * plots.DPI + 1  # the 239-user chart was 6003 px wide
    assert h_large > 3 * h_small * 0.8  # four panels of about 60 end-users, one under the other
    five = plots.envelope_bars(_table(55, ("optimal", "fair", "proportional", "propfair", "maxmin")), None, "import")
    assert _png_size(five.png)[0] <= plots.WIDTH_IN * plots.DPI + 1
