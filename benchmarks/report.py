"""Where a benchmark's Markdown table goes: the terminal, and appended to a results file if asked."""
from __future__ import annotations


def publish(text: str, write: str | None, title: str | None = None) -> int:
    """Print ``text``; append it to ``write`` (a results ``.md``) when given, under ``title`` if the file is new.

    Returns the exit status.
    """
    import os

    print(text)
    if write:
        head = f"# {title}\n\n" if title and not os.path.exists(write) else ""
        with open(write, "a") as f:
            f.write(head + text + "\n")
    return 0
