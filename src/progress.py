"""Progress display: a tqdm bar on a terminal, a plain periodic line anywhere else.

Off a terminal (a log file, a pipe, CI) a bar's carriage-return frames pile up on one line of the log; there a
line such as `decode: 1200/1951 (62%) 41.3 sent/s` is printed every `interval` seconds, and once more at the end
when any was printed (a short step stays silent, as tqdm's `disable=None` kept it).
"""
import sys
import time


class PlainProgress:
    """The part of tqdm's interface the pipeline uses (update, close, context manager), as periodic lines."""

    def __init__(self, total=None, desc="", unit="it", initial=0, interval=30.0, file=None):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.interval = interval
        self.file = file or sys.stderr
        self.start = self.last = time.monotonic()
        self.initial = initial
        self.closed = False
        self.printed = False

    def _line(self):
        elapsed = max(time.monotonic() - self.start, 1e-9)
        done = f"{self.n}/{self.total} ({100.0 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        return f"{self.desc}: {done} {(self.n - self.initial) / elapsed:.1f} {self.unit}/s"

    def update(self, count=1):
        self.n += count
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.printed = True
            print(self._line(), file=self.file, flush=True)

    def close(self):
        if not self.closed:
            self.closed = True
            if self.printed:
                print(self._line(), file=self.file, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False


class NoProgress(PlainProgress):
    """Counts, prints nothing (progress turned off)."""

    def update(self, count=1):
        self.n += count

    def close(self):
        self.closed = True


def progress_bar(total=None, desc="", unit="it", initial=0, enabled=True, interval=30.0, **tqdm_options):
    """tqdm on stderr when it is a terminal, else PlainProgress; NoProgress when not enabled."""
    if not enabled:
        return NoProgress(total, desc, unit, initial)
    if sys.stderr.isatty():
        from tqdm import tqdm  # imported only here: ~50 ms of a short command's start-up
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr, **tqdm_options)
    return PlainProgress(total, desc, unit, initial, interval)
