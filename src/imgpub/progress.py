"""How the library reports progress without printing: an injected Progress per target."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Progress of one target. Thread-safe: upload workers call `advance` concurrently."""

    def stage(self, name: str, total: int | None = None, unit: str = "B") -> None:
        """A new stage begins ('upload', 'register', 'copy eu-west-1', ...).

        `total` is counted in `unit`: "B" for bytes (shown with rates), anything else ("%",
        "regions") is shown as a plain count.
        """

    def advance(self, amount: int) -> None:
        """`amount` more bytes (or steps) of the current stage are done."""

    def note(self, message: str) -> None:
        """One line worth telling the user (a resumed upload, a skipped region...)."""


class NullProgress:
    def stage(self, name: str, total: int | None = None, unit: str = "B") -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def note(self, message: str) -> None:
        pass


class RecordingProgress:
    """Keeps every call; for tests and for the plain-log reporter."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, int | None]] = []
        self.units: list[str] = []
        self.advanced = 0
        self.notes: list[str] = []

    def stage(self, name: str, total: int | None = None, unit: str = "B") -> None:
        self.stages.append((name, total))
        self.units.append(unit)

    def advance(self, amount: int) -> None:
        self.advanced += amount

    def note(self, message: str) -> None:
        self.notes.append(message)
