"""What TLS configuration problems report: every problem, each with where it is.

Messages name files, Spec paths, host names, dates and sizes; they never quote the
content of a key or certificate file (not a PEM line, not a base64 fragment), so
they are safe to log and to show in an API response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

__all__ = ["TlsError", "TlsIssue"]


@dataclass(frozen=True, slots=True)
class TlsIssue:
    """One problem or warning; ``path`` like ``listeners[web].tls.certificates[1]``
    ("" when there is no Spec path, e.g. a certificate parsed on its own)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class TlsError(ValueError):
    """TLS configuration refused: a certificate, key, CA, CRL, ticket key file or
    policy that cannot be used. ``issues`` holds every problem found."""

    def __init__(self, issues: str | Iterable[TlsIssue]) -> None:
        self.issues: list[TlsIssue] = [TlsIssue("", issues)] if isinstance(issues, str) else list(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)

    def at(self, path: str) -> list[TlsIssue]:
        """The issues with ``path`` prefixed (``path: message``)."""
        return [TlsIssue(_join(path, issue.path), issue.message) for issue in self.issues]

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (TlsError, (self.issues,))


def _join(prefix: str, rest: str) -> str:
    if not rest:
        return prefix
    if not prefix or rest.startswith("["):
        return prefix + rest
    return f"{prefix}.{rest}"
