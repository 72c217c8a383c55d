"""Errors a user can act on. Each carries the exit code the CLI returns (documented in README)."""


class NfcaError(Exception):
    """Base class: a one-line message naming the element or limit at fault."""

    exit_code = 1


class FeederError(NfcaError):
    """The feeder file is malformed or uses something the network model does not support."""

    exit_code = 2


class InputError(NfcaError):
    """A command-line option or an input table (CSV) is invalid."""

    exit_code = 2


class InfeasibleError(NfcaError):
    """No operating point satisfies the limits (for example firm users alone violate them)."""

    exit_code = 3


class SolverError(NfcaError):
    """The solver failed (iteration limit, numerical trouble) after the retries were tried."""

    exit_code = 4


class VerificationError(NfcaError):
    """An envelope failed its independent OpenDSS verification: nothing was published."""

    exit_code = 5


class OutputError(NfcaError):
    """An output folder or file cannot be written."""

    exit_code = 6


class Interrupted(BaseException):
    """A signal (SIGTERM, SIGHUP; Ctrl-C is KeyboardInterrupt) stopped the work: everything half
    written is removed on the way out, and the CLI exits with 128 + the signal's number.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it.
    """

    def __init__(self, exit_code: int = 130, message: str = ""):
        super().__init__(message or f"interrupted (exit {exit_code})")
        self.exit_code = exit_code
        self.message = message
