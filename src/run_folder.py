"""A run folder's plumbing besides checkpoints: metrics.jsonl, the ranks' pid files and the SIGTERM stop they
serve, the check that a resumed run continues the same run, and the digest of the final parameters."""
import contextlib
import hashlib
import json
import os
import signal

import numpy as np

from src import checkpoint as ckpt
from src.errors import UserError

# Config keys a resumed run may change: they stretch or shorten the run, not what a step computes.
RESUMABLE_CHANGES = ("dataset_config.epochs", "dataset_config.fine_tune_epochs", "checkpoint_options.save_ckpt_steps",
                     "checkpoint_options.keep_ckpt_max", "checkpoint_options.existed_ckpt", "model_config.save_graphs",
                     "dataset_config.loader_workers",
                     "dataset_config.dynamic_shapes",
                     "checkpoint_options.early_stop_patience")


class MetricsLog:
    """One JSON object per line in RUN_FOLDER/metrics.jsonl (rank 0 only), flushed at once."""

    def __init__(self, path, enabled=True):
        self.path, self.enabled = path, enabled
        self.lines = 0
        if enabled and os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                self.lines = sum(1 for _ in handle)

    def truncate(self, lines):
        """Drops lines written after a checkpoint (a resumed run writes them again)."""
        if not self.enabled or not os.path.exists(self.path):
            self.lines = 0
            return
        with open(self.path, encoding="utf-8") as handle:
            kept = [line for _, line in zip(range(lines), handle)]
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.writelines(kept)
        self.lines = len(kept)

    def write(self, record):
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        self.lines += 1


class StopRequest:
    """Set by SIGTERM; the loop checks it before each update, so the run stops at an update boundary."""

    def __init__(self):
        self.requested = False
        self.installed = False
        self.previous = None

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGTERM, self._handle)
            self.installed = True
        except ValueError:  # not the main thread: signals cannot be handled here
            self.installed = False
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def raise_stop(self):
        """Sends this process SIGTERM (handled at once, in this thread) or, without a handler, sets the flag."""
        if self.installed:
            signal.raise_signal(signal.SIGTERM)
        self.requested = True

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous)
            self.installed = False
        return False


@contextlib.contextmanager
def rank_pid_file(run_folder, rank):
    """RUN/pids/rank_N.pid while this rank trains (SIGTERM handler already installed): stop_training.sh signals
    the ranks from these files, since msrun starts each worker in a session of its own and does not forward
    SIGTERM."""
    path = os.path.join(run_folder, "pids", f"rank_{rank}.pid")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\n")
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        with contextlib.suppress(OSError):  # other ranks may still hold theirs
            os.rmdir(os.path.dirname(path))


def config_differences(saved, current, prefix=""):
    """(dotted key, saved value, current value) of every key whose value differs between two config dicts."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current)):
            yield from config_differences(saved.get(key), current.get(key), f"{prefix}{key}.")
    elif saved != current:
        yield prefix[:-1], saved, current


def check_resumable(path, metadata, *, config, phases, world, vocab_checksum):
    """UserError unless the checkpoint at `path` continues this run: a training checkpoint of one of `phases`,
    written with the same config (but for RESUMABLE_CHANGES), number of ranks and vocabulary."""
    if metadata.get("kind") != "training" or metadata.get("phase") not in phases:
        raise UserError(f"{path}: not a training checkpoint of this run's phases ({', '.join(phases)})")
    defaults = {f"{group}.{key}": value for group, values in type(config)().to_dict().items()
                for key, value in values.items()}
    for key, before, now in config_differences(metadata.get("config", {}), config.to_dict()):
        if before is None and key in defaults and now == defaults[key]:
            continue  # a key added after the checkpoint was written, at its default: nothing changed
        if key not in RESUMABLE_CHANGES:
            raise UserError(f"cannot resume from {path}: config key {key} was {before!r}, now {now!r}")
    if metadata.get("world_size") != world:
        raise UserError(f"cannot resume from {path}: it was written by {metadata.get('world_size')} rank(s), "
                        f"this run has {world} (the data shards would differ)")
    ckpt.check_vocab(metadata, vocab_checksum, path)


def parameters_digest(model):
    """SHA-256 of every parameter's name and bytes: equal digests on all ranks show they did not drift apart."""
    digest = hashlib.sha256()
    for parameter in sorted(model.get_parameters(), key=lambda p: p.name):
        digest.update(parameter.name.encode("utf-8"))
        digest.update(np.ascontiguousarray(parameter.asnumpy()).tobytes())
    return digest.hexdigest()
