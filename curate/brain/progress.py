"""Progress reporting: a rich bar in a terminal, or a callback (an App operator)."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator


@contextlib.contextmanager
def progress_bar(total: int, label: str, enabled=True) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``.

    ``enabled`` is True (a rich bar), False (silent) or a callable
    ``f(fraction, label)`` such as a FiftyOne operator's ``ctx.set_progress``.
    """
    done = 0
    if callable(enabled):
        def advance(n: int = 1) -> None:
            nonlocal done
            done += n
            enabled(done / max(total, 1), f"{label}: {done}/{total}")

        enabled(0.0, f"{label}: 0/{total}")
        yield advance
        return
    if not enabled:
        yield lambda n=1: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n=1: bar.advance(task, n)
