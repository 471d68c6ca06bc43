"""The progress display of `fit`: a tqdm bar, or a plain line on stderr where tqdm is missing.

tqdm comes with the `experiments` extra; the core install has no tqdm, and `fit`'s default
`progress=True` must still work there, so it falls back to `_TextProgress`.
"""

import importlib.util
import sys
import time


def progress_bar(initial: int, total: int, enabled: bool):
    """A bar with `update(n)`, `set_postfix(dict)` and `close()`: tqdm's if installed."""
    if importlib.util.find_spec("tqdm") is None:
        return _TextProgress(initial, total, enabled)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)


def update_bar(bar, record: dict[str, float]) -> None:
    """Show a history row's loss (and solver steps, when logged) on the bar."""
    postfix = {"loss": f"{record['loss']:.4f}"}
    if "num_steps" in record:
        postfix["solver steps"] = f"{record['num_steps']:.0f}"
    bar.set_postfix(postfix)


class _TextProgress:
    """`step n/total, loss ..., x steps/s` on stderr, for when tqdm is not installed.

    On a terminal the line is rewritten in place at most twice a second; elsewhere (a log
    file) a new line is written every 30 seconds, and one at the end.
    """

    def __init__(self, initial: int, total: int, enabled: bool):
        self.step, self.total, self.enabled = initial, total, enabled
        self.first, self.start = initial, time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.interval = 0.5 if self.tty else 30.0
        self.shown_at = self.start
        self.postfix = ""
        self.width = 0  # of the longest line shown, to blank out a longer one rewritten

    def update(self, n: int) -> None:
        self.step += n
        if self.enabled and time.perf_counter() - self.shown_at >= self.interval:
            self._show()

    def set_postfix(self, postfix: dict[str, str]) -> None:
        self.postfix = "".join(f", {k} {v}" for k, v in postfix.items())

    def close(self) -> None:
        if self.enabled and self.step > self.first:
            self._show()
            if self.tty:
                sys.stderr.write("\n")
        self.enabled = False

    def _show(self) -> None:
        self.shown_at = time.perf_counter()
        rate = (self.step - self.first) / max(self.shown_at - self.start, 1e-9)
        line = f"step {self.step}/{self.total}{self.postfix}, {rate:.3g} steps/s"
        self.width = max(self.width, len(line))
        sys.stderr.write(f"\r{line:<{self.width}}" if self.tty else f"{line}\n")
        sys.stderr.flush()
