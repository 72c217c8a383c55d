"""Independent verification: OpenDSS power flows of the full feeder checked against the limits.

Imports nothing from the optimisation (`nfca.opf`): a published envelope is proved by the engine
alone.
"""

from nfca.verify.check import (
    Verification,
    Verifier,
    check,
    combine,
    promised_box,
    promised_points,
    verify,
    verify_many,
    verify_points,
)

__all__ = [
    "Verification",
    "Verifier",
    "check",
    "combine",
    "promised_box",
    "promised_points",
    "verify",
    "verify_many",
    "verify_points",
]
