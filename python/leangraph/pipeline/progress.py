"""Step-by-step progress on stderr, through rich.

On a terminal: a live rich progress bar per step. Elsewhere (a log, a pipe):
the same rich console prints one plain line per step and item, which is what
a log should hold. Disabled: nothing at all.
"""

import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress as RichProgress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)


class Progress:
    """The steps of a pipeline run, numbered: `[2/5] transform`, with items inside each."""

    STEPS = ("load and freeze", "transform", "verify", "benchmark", "report")

    def __init__(self, enabled, stream=None, steps=None):
        self.enabled = enabled
        self.steps = tuple(steps or self.STEPS)
        self.last_seconds = 0.0
        self._step = 0
        self._task = None
        self._console = Console(file=stream or sys.stderr, highlight=False)
        self._live = None
        if enabled and self._console.is_terminal:
            self._live = RichProgress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), console=self._console,
            )

    def __enter__(self):
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.stop()
        return False

    def note(self, text):
        if self.enabled:
            self._console.print(text, markup=False, highlight=False, soft_wrap=True)

    @contextmanager
    def step(self, name, total=None):
        self._step += 1
        label = f"[{self._step}/{len(self.steps)}] {name}"
        started = time.perf_counter()
        if self._live is not None:
            self._task = self._live.add_task(label, total=total)
        else:
            self.note(label)
        try:
            yield
        finally:
            if self._live is not None and self._task is not None:
                task = self._live.tasks[-1]
                # Back to the step's own name: the last item's text would read as still running.
                self._live.update(self._task, description=label, completed=task.total or 1,
                                  total=task.total or 1)
                self._task = None
            self.last_seconds = time.perf_counter() - started

    def item(self, text):
        """One unit of work inside the current step."""
        if not self.enabled:
            return
        if self._live is not None and self._task is not None:
            self._live.update(self._task, description=text)
        else:
            self.note(f"      {text}")

    def advance(self):
        if self._live is not None and self._task is not None:
            self._live.advance(self._task)
