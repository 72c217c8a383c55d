"""The engine seam: the only code that talks to OpenDSS. It returns data only (a `Feeder`, power
flows, load shapes); nothing else in nfca imports opendssdirect."""

from nfca.engine.opendss import (
    DEFAULT_CAPACITY_KVA, LoadShapeSeries, PowerFlow, compile_feeder, load_shapes, powerflow, powerflows, read_feeder,
)

__all__ = ["DEFAULT_CAPACITY_KVA", "LoadShapeSeries", "PowerFlow", "compile_feeder", "load_shapes", "powerflow",
           "powerflows", "read_feeder"]
