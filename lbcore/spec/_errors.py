"""What a bad Spec reports: every problem, each with the path where it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

__all__ = ["SpecError", "SpecIssue", "join_path"]


def join_path(prefix: str, rest: str) -> str:
    """``join_path("listeners[0]", "acls[2].pool")`` -> ``"listeners[0].acls[2].pool"``."""
    if not rest:
        return prefix
    if not prefix or rest.startswith("["):
        return prefix + rest
    return f"{prefix}.{rest}"


@dataclass(frozen=True, slots=True)
class SpecIssue:
    """One problem: ``path`` like ``listeners[0].acls[2].condition`` ("" for the whole file)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """A Spec was refused; ``errors`` holds every problem found, in file order."""

    def __init__(self, errors: Iterable[SpecIssue]) -> None:
        self.errors: list[SpecIssue] = list(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.errors)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (SpecError, (self.errors,))
