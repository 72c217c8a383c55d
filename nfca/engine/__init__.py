"""The engine seam: the only code that talks to OpenDSS, and it returns data only.

`read(path) -> (Feeder, LoadShapes)` reads a feeder file safely (`script`: no programs, no files
written) and compiles it once in an engine process (`session`, `worker`), which then serves
`powerflows(feeder, cases)`. `opendss` is the code that runs inside that process; nothing else
in nfca imports opendssdirect.
"""

from nfca.engine.opendss import DEFAULT_CAPACITY_KVA, LoadShapeSeries, PowerFlow
from nfca.engine.session import LoadShapes, close_all, load_shapes, powerflows, prestart, read, read_feeder

__all__ = [
    "DEFAULT_CAPACITY_KVA",
    "LoadShapeSeries",
    "LoadShapes",
    "PowerFlow",
    "close_all",
    "load_shapes",
    "powerflows",
    "prestart",
    "read",
    "read_feeder",
]
