"""A breach of a hard rule, as the checker reports it (``planner.verify.check``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """One breach: the rule's name (``planner.verify.rules.RULES``, or ``evacuation``), what it names, the text."""

    rule: str
    guest: str | None
    host: str | None
    node: int | None
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"
