"""Notices: what nfca assumed where the feeder file or the options were silent, when that changes
the answer (a capacity or an ampacity defaulted, voltage bases inferred, loads rated for another
voltage than their bus base). Never silent, never an error: the reader and the studies attach
them to their results, the CLI prints each as one line on stderr and `summary.json` lists them
under `notices`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Notice:
    """One thing a default or an inference decided, in one line."""

    kind: str  # a stable key for machines, e.g. "ampacity_defaulted"
    message: str  # one line for people
    level: str = "notice"  # "notice", or "warning" when the default is probably wrong
    data: dict = field(default_factory=dict, hash=False)  # the figures behind the message (counts, values)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "level": self.level,
            "message": self.message,
            **({"data": self.data} if self.data else {}),
        }

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"
