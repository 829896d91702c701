"""The one error a launch file can raise: it names the file, the line (when known), the field and the reason."""

from __future__ import annotations

from pathlib import Path


class LaunchError(ValueError):
    def __init__(self, file: str | Path | None, line: int | None, field: str, reason: str) -> None:
        self.file = str(file) if file is not None else "<launch>"
        self.line = line
        self.field = field
        self.reason = reason
        where = f"{self.file}:{line}" if line else self.file
        super().__init__(f"{where}: {field}: {reason}" if field else f"{where}: {reason}")
