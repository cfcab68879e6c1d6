"""Exit statuses every command uses (README: "Exit status")."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_DENIED: Final = 1  # a gate found what it checks for (findings at --fail-on, a difference)
EXIT_ERROR: Final = 2  # bad input: one line on stderr naming the file and the record
