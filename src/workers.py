"""Process pools for the corpus builders: one way to start workers, one way to map over them in order.

Workers are forked where the platform allows it, so they share the parent's data (codes, vocabulary, sentences)
without pickling it; elsewhere (macOS, Windows) they are spawned and receive it through `initargs`.
"""
import collections
import contextlib
import multiprocessing


def _context():
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


@contextlib.contextmanager
def process_pool(processes, initializer=None, initargs=()):
    """A pool of `processes` workers, or None for one process (the work is done here: no start-up cost).

    The pool is terminated when the block ends, also on an error, so no worker outlives the command.
    """
    if processes <= 1:
        yield None
        return
    pool = _context().Pool(processes, initializer, initargs)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def ordered_map(pool, function, tasks, read_ahead=3):
    """map(function, tasks) on the pool (here when pool is None), in input order, with at most `read_ahead`
    tasks per worker in flight: Pool.imap would read the whole input into memory first."""
    if pool is None:
        yield from map(function, tasks)
        return
    limit = read_ahead * pool._processes  # noqa: SLF001 (the pool's size; no public accessor)
    pending = collections.deque()
    for task in tasks:
        pending.append(pool.apply_async(function, (task,)))
        if len(pending) >= limit:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()
