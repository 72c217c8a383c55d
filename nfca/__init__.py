"""nfca: guaranteed-capacity operating envelopes for non-firm connection agreements on LV feeders.

Data flows one way, one sub-package per stage:
feeder file -> `engine` (OpenDSS, the only code that touches it) -> `model` (Feeder, reduction) ->
`opf` (UTOPF in Pyomo) -> `solver` (Ipopt) -> `verify` (OpenDSS power flows against the limits)
-> `studies` (envelopes, dynamic, activations, batch, classification) -> `io` (files, figures).
"""

from nfca.errors import (
    FeederError, InfeasibleError, InputError, NfcaError, OutputError, SolverError, VerificationError,
)
from nfca.model.network import Bus, ConnectionPoint, EndUser, Feeder, Line, LinearElement, Source

__all__ = [
    "NfcaError", "FeederError", "InputError", "SolverError", "InfeasibleError", "OutputError",
    "VerificationError",
    "Feeder", "EndUser", "ConnectionPoint", "Line", "LinearElement", "Source", "Bus",
]
__version__ = "0.1.0"
