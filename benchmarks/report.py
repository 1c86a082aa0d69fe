"""Where a benchmark's Markdown table goes: the terminal, and appended to a results file if asked."""
from __future__ import annotations


def publish(text: str, write: str | None) -> int:
    """Print ``text``; append it to ``write`` (a results ``.md``) when given. Returns the exit status."""
    print(text)
    if write:
        with open(write, "a") as f:
            f.write(text + "\n")
    return 0
