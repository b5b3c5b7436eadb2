"""The Handle protocol: what a deployer returns for a running job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional, Protocol, runtime_checkable

__all__ = ["Handle", "JobStatus"]


@dataclass(frozen=True)
class JobStatus:
    """``phase`` is one of 'Pending', 'Running', 'Succeeded', 'Failed'."""

    phase: str
    exit_code: Optional[int] = None
    message: str = ""

    @property
    def done(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@runtime_checkable
class Handle(Protocol):
    name: str

    def logs(self, follow: bool = True) -> Iterator[str]:
        """Lines of output; with ``follow``, until the job ends."""

    def wait(self, timeout: Optional[float] = None) -> JobStatus:
        """Block until the job ends; on timeout stop it and raise JobTimeoutError."""

    def status(self) -> JobStatus:
        ...

    def result(self, timeout: Optional[float] = None) -> Any:
        """Wait, then return the job's value or re-raise its exception."""

    def delete(self) -> None:
        """Stop the job if it runs and remove everything it left. Idempotent."""
