"""nfca: guaranteed-capacity operating envelopes for non-firm connection agreements on LV feeders.

Data flows one way: feeder file -> `Feeder` (network) -> Pyomo UTOPF model -> envelopes ->
OpenDSS verification -> outputs.
"""

from nfca.errors import (
    FeederError, InfeasibleError, InputError, NfcaError, OutputError, SolverError, VerificationError,
)
from nfca.network import Feeder, EndUser, ConnectionPoint, Line, LinearElement, Source, Bus

__all__ = [
    "NfcaError", "FeederError", "InputError", "SolverError", "InfeasibleError", "OutputError",
    "VerificationError",
    "Feeder", "EndUser", "ConnectionPoint", "Line", "LinearElement", "Source", "Bus",
]
__version__ = "0.1.0"
