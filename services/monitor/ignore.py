"""Which workspace paths the monitor does not report: tool and build folders, and patterns from settings."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Final

IGNORED_DIRS: Final = frozenset({".git", "node_modules", "target", "dist", "__pycache__"})


class IgnoreRules:
    def __init__(self, patterns: list[str]) -> None:
        self.patterns = [pattern.rstrip("/") for pattern in patterns if pattern.strip()]

    def ignored(self, relative: str) -> bool:
        """``relative`` is a workspace-relative POSIX path; a match on any segment hides everything under it."""
        segments = relative.split("/")
        if any(segment in IGNORED_DIRS for segment in segments):
            return True
        return any(
            fnmatchcase(relative, pattern) or any(fnmatchcase(segment, pattern) for segment in segments)
            for pattern in self.patterns
        )
