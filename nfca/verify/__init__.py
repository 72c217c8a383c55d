"""Independent verification: OpenDSS power flows of the full feeder checked against the limits.

Imports nothing from the optimisation (`nfca.opf`): a published envelope is proved by the engine
alone.
"""

from nfca.verify.check import Verification, check, envelope_loads, verify

__all__ = ["Verification", "check", "envelope_loads", "verify"]
