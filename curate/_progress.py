"""The one progress bar of curate: rich in a terminal, a callback in the App, or nothing.

``with progress(total, label, enabled) as advance: ... advance(n, **fields)``

``enabled`` is True (a rich bar), False (silent) or a callable ``f(fraction, label)``
such as a FiftyOne operator's ``ctx.set_progress``. ``fields`` names extra numbers the
bar shows (``loss``, ``img/s``); ``advance(n, loss=...)`` updates them.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator


@contextlib.contextmanager
def progress(total: int, label: str, enabled=True, *, completed: int = 0,
             fields: tuple[str, ...] = (), transient: bool = False) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, **fields)`` over ``total`` units, starting at ``completed``."""
    done = completed
    if callable(enabled):
        def report(n: int = 1, **_) -> None:
            nonlocal done
            done += n
            enabled(done / max(total, 1), f"{label}: {done}/{total}")

        enabled(done / max(total, 1), f"{label}: {done}/{total}")
        yield report
        return
    if not enabled:
        yield lambda n=1, **_: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    extra = [TextColumn(f"{name} {{task.fields[{name}]:.4g}}") for name in fields]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *extra,
                  TimeElapsedColumn(), TimeRemainingColumn(), transient=transient) as bar:
        task = bar.add_task(label, total=total, completed=completed, **{f: float("nan") for f in fields})

        def advance(n: int = 1, **values) -> None:
            bar.update(task, advance=n, **values)

        yield advance
