"""Process pools for the corpus builders and the loader: one way to start workers, one way to map over them in order.

Workers are forked where the platform allows it, so they share the parent's data (codes, vocabulary, sentences)
without pickling it; elsewhere (macOS, Windows) they are spawned and receive it through `initargs`.
"""
import atexit
import collections
import contextlib
import ctypes
import functools
import importlib
import multiprocessing
import os
import signal


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


_worker_job = None  # what every worker of an `ordered_job_map` pool reads, set once per worker


def _set_worker_job(job):
    global _worker_job
    _worker_job = job


def _call_with_worker_job(function, task):
    return function(_worker_job, task)


def ordered_job_map(processes, job, function, tasks, read_ahead=3):
    """function(job, task) for every task, in input order (`ordered_map`): in a pool of `processes` workers, each
    given `job` once by the pool initializer (shared, not copied, where workers are forked; tasks stay small), or
    here for one process. `function` is a module-level function (a pool pickles it by name)."""
    with process_pool(processes, _set_worker_job, (job,)) as pool:
        if pool is None:
            yield from (function(job, task) for task in tasks)
        else:
            yield from ordered_map(pool, functools.partial(_call_with_worker_job, function), tasks, read_ahead)


def _start_loader_worker(parent):
    # Ctrl-C reaches the whole process group: the parent handles it. SIGTERM keeps its default here (the trainer's
    # handler, which only sets a flag, is the parent's), so terminate() ends a worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:  # Linux: die with the parent, also when it is killed (kill -9, msrun ending a job)
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(0)


_loader_pools = {}  # (pid, processes) -> the loader pool of that size of that process


def loader_pool(processes):
    """The pool of the streaming loader (src/dataset.py) for the life of this process, or None for 0 processes:
    one per size, shared by every loader of the process (its tasks carry what they read). Its workers are forked
    at the first call, so make it before this process runs MindSpore graphs or dataset pipelines. They die with
    the parent and are terminated when it exits."""
    if processes <= 0:
        return None
    key = (os.getpid(), processes)  # a forked child makes its own
    if key not in _loader_pools:
        importlib.import_module("mindspore.dataset")  # what the workers read with: imported once, here
        pool = _context().Pool(processes, _start_loader_worker, (os.getpid(),))
        atexit.register(_close_pool, pool, os.getpid())
        _loader_pools[key] = pool
    return _loader_pools[key]


def _close_pool(pool, owner):
    if os.getpid() == owner:  # not in a forked child, whose exit handlers are copies
        pool.terminate()
        pool.join()
