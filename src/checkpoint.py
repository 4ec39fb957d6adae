"""Checkpoint files: model weights, optimizer state and run metadata; strict loading; rotation and resume.

A checkpoint is a MindSpore `.ckpt` (or a NumPy `.npz`, weights only) holding
- the model's trainable parameters under their names relative to `Seq2SeqModel` (`embedder.table`, ...),
- for training checkpoints, the optimizer's own state (moments, beta powers, global step) under `optimizer.<name>`,
- one JSON string `mass_metadata` (a `__metadata__` string array in .npz): phase, epoch, batch position, step,
  loss scale, the resolved config, the vocabulary checksum, ...

Every file is written under the hidden temporary name .NAME.PID.tmp[.ckpt|.npz] (PID: the writing process) and
renamed into place, so a crash never leaves half a checkpoint under a checkpoint's name. A writer killed mid-write
(kill -9) cannot remove its temporary: `CheckpointManager` removes those of its folder when it starts, once their
writer is gone.
"""
import contextlib
import json
import os
import re
import shutil

import numpy as np

from src.errors import UserError, process_alive, require_file

METADATA_KEY = "mass_metadata"
NPZ_METADATA_KEY = "__metadata__"
OPTIMIZER_PREFIX = "optimizer."
WEIGHT_SUFFIXES = (".ckpt", ".npz")
POINTER_NAME = "latest.json"


# ----------------------------------------------------------------------------------------------------------------
# Model and optimizer parameters
# ----------------------------------------------------------------------------------------------------------------

def model_parameters(model):
    """[(name relative to the model, Parameter)] of the trainable parameters, in model order.

    Non-trainable parameters (e.g. the dropout key of src.dropout) are run state, not weights.
    """
    return [(name, param) for name, param in model.parameters_and_names() if param.requires_grad]


def model_weights(model):
    """{name: numpy array} copies of the model's trainable parameters."""
    return {name: param.asnumpy().copy() for name, param in model_parameters(model)}


def optimizer_state(optimizer, model):
    """{optimizer.NAME: numpy array} of the optimizer's own parameters (the model's weights excluded)."""
    weight_ids = {id(param) for _, param in model_parameters(model)}
    return {OPTIMIZER_PREFIX + param.name: param.asnumpy().copy()
            for param in optimizer.get_parameters() if id(param) not in weight_ids}


def _assign(param, array):
    import mindspore as ms
    # .ckpt stores 0-d tensors (global step, beta powers) as shape (1,): restore the parameter's own shape.
    param.set_data(ms.Tensor(np.ascontiguousarray(array).reshape(param.shape), dtype=param.dtype))


def check_weights_match(model, weights, path):
    """One-line UserError naming the first parameter whose name or shape differs between `model` and `weights`."""
    expected = model_parameters(model)
    for name, param in expected:
        if name not in weights:
            raise UserError(f"checkpoint {path} lacks the model parameter {name} (expected shape {tuple(param.shape)})"
                            " - was it written by another model?")
        if tuple(weights[name].shape) != tuple(param.shape):
            raise UserError(f"checkpoint {path}: parameter {name} has shape {tuple(weights[name].shape)}, the model "
                            f"expects {tuple(param.shape)} (another model_config or vocabulary?)")
    names = {name for name, _ in expected}
    unexpected = [name for name in weights if name not in names]
    if unexpected:
        raise UserError(f"checkpoint {path} has parameter {unexpected[0]} that the model lacks"
                        f"{f' (and {len(unexpected) - 1} more)' if len(unexpected) > 1 else ''}")


def check_vocab(metadata, vocab_checksum, path):
    found = metadata.get("vocab_checksum", "")
    if vocab_checksum and found and found != vocab_checksum:
        raise UserError(f"checkpoint {path} was trained with vocabulary checksum {found}, but the vocabulary given "
                        f"has checksum {vocab_checksum}")


def load_model_weights(model, path, vocab_checksum=""):
    """Loads a .ckpt or .npz into `model` strictly (names and shapes must match); returns the file's metadata.

    `vocab_checksum` (Dictionary.checksum()) is compared with the checksum stored in the file when both are known.
    """
    weights, _, metadata = read_checkpoint(path)
    check_vocab(metadata, vocab_checksum, path)
    set_model_weights(model, weights, path)
    return metadata


def set_model_weights(model, weights, path="weights"):
    """Copies {name: array} into the model after `check_weights_match`."""
    check_weights_match(model, weights, path)
    for name, param in model_parameters(model):
        _assign(param, weights[name])


def load_optimizer_state(optimizer, model, state, path):
    """Restores `optimizer_state` arrays into a freshly built optimizer of the same kind."""
    current = optimizer_state(optimizer, model)
    if set(current) != set(state):
        missing = sorted(set(current) - set(state)) or sorted(set(state) - set(current))
        raise UserError(f"checkpoint {path}: optimizer state does not match this optimizer (first difference: "
                        f"{missing[0]}) - was learn_rate_config.optimizer changed?")
    weight_ids = {id(param) for _, param in model_parameters(model)}
    for param in optimizer.get_parameters():
        if id(param) in weight_ids:
            continue
        array = state[OPTIMIZER_PREFIX + param.name]
        if array.size != int(np.prod(param.shape)):
            raise UserError(f"checkpoint {path}: optimizer state {param.name} has shape {tuple(array.shape)}, "
                            f"expected {tuple(param.shape)}")
        _assign(param, array)


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------

def _suffix(path):
    for suffix in WEIGHT_SUFFIXES:
        if path.endswith(suffix):
            return suffix
    raise UserError(f"checkpoint {path}: expected a .ckpt or .npz file")


def read_checkpoint(path):
    """-> (model weights {name: array}, optimizer state {optimizer.NAME: array}, metadata dict)."""
    suffix = _suffix(path)
    require_file(path, "checkpoint")
    metadata_text = ""
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (ValueError, OSError, EOFError) as error:
            raise UserError(f"cannot read checkpoint {path}: {str(error).splitlines()[0] if str(error) else 'corrupt'}"
                            ) from None
        if NPZ_METADATA_KEY in arrays:
            metadata_text = str(arrays.pop(NPZ_METADATA_KEY))
    else:
        import mindspore as ms
        try:
            loaded = ms.load_checkpoint(path)
        except (ValueError, RuntimeError, TypeError, OSError) as error:
            raise UserError(f"cannot read checkpoint {path}: {str(error).strip().splitlines()[0]}") from None
        arrays = {}
        for name, value in loaded.items():
            if isinstance(value, str):
                if name == METADATA_KEY:
                    metadata_text = value
                continue
            arrays[name] = value.asnumpy()
    try:
        metadata = json.loads(metadata_text) if metadata_text else {}
    except json.JSONDecodeError:
        raise UserError(f"checkpoint {path}: unreadable metadata") from None
    weights = {name: array for name, array in arrays.items() if not name.startswith(OPTIMIZER_PREFIX)}
    optimizer = {name: array for name, array in arrays.items() if name.startswith(OPTIMIZER_PREFIX)}
    return weights, optimizer, metadata


def _temporary_path(path):
    """.NAME.PID.tmp beside PATH, ending with PATH's .ckpt/.npz suffix: MindSpore appends ".ckpt" to names without
    it. MindSpore writes a .ckpt through a temporary of its own, .NAME.PID.tmp.tmp."""
    folder, name = os.path.split(os.path.abspath(path))
    suffix = next((suffix for suffix in WEIGHT_SUFFIXES if name.endswith(suffix)), "")
    return os.path.join(folder, f".{name}.{os.getpid()}.tmp{suffix}")


# .NAME.PID.tmp, .NAME.PID.tmp.ckpt / .npz (ours), .NAME.PID.tmp.tmp (MindSpore's, inside save_checkpoint)
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.tmp(?:\.ckpt|\.npz|\.tmp)?")


@contextlib.contextmanager
def _replaced_atomically(path):
    """Yields the temporary path to write; renames it onto PATH when the block succeeds, else removes it."""
    temporary = _temporary_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        for leftover in (temporary, os.path.splitext(temporary)[0] + ".tmp"):
            if os.path.exists(leftover):
                os.remove(leftover)


def remove_abandoned_temporaries(folder):
    """Removes the temporaries of checkpoints (and of latest.json) in `folder` whose writer is no longer running:
    what a process killed while writing leaves. A live writer's temporaries are left alone. Returns the removed
    paths. (Liveness is asked of this machine: a folder shared between machines needs each run's own folder.)"""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        match = _TEMPORARY.fullmatch(name)
        if not match or not (match["name"].endswith(WEIGHT_SUFFIXES) or match["name"] == POINTER_NAME):
            continue
        if process_alive(int(match["pid"])):
            continue
        path = os.path.join(folder, name)
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def write_checkpoint(path, arrays, metadata=None):
    """Writes {name: numpy array} (+ metadata JSON) to .ckpt or .npz atomically."""
    suffix = _suffix(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    metadata_text = json.dumps(metadata or {}, sort_keys=True)
    with _replaced_atomically(path) as temporary:
        if suffix == ".npz":
            with open(temporary, "wb") as handle:
                np.savez(handle, **arrays, **{NPZ_METADATA_KEY: np.array(metadata_text)})
        else:
            import mindspore as ms
            entries = [{"name": name, "data": ms.Tensor(np.ascontiguousarray(array))} for name, array in arrays.items()]
            ms.save_checkpoint(entries, temporary, append_dict={METADATA_KEY: metadata_text})
    return path


def copy_checkpoint(source, target):
    """Copies a checkpoint file to TARGET under a temporary name first (as write_checkpoint), e.g. a snapshot."""
    with _replaced_atomically(target) as temporary:
        shutil.copyfile(source, temporary)
    return target


def save_checkpoint(path, model, optimizer=None, metadata=None):
    """Model weights, plus the optimizer state when given, plus metadata -> `path` (atomic)."""
    arrays = model_weights(model)
    if optimizer is not None:
        arrays.update(optimizer_state(optimizer, model))
    return write_checkpoint(path, arrays, metadata)


class CheckpointManager:
    """Training checkpoints in one folder: `{prefix}_{phase}_step{step}.ckpt`, the newest `keep_max` kept.

    `latest.json` names the kept files oldest first; it is rewritten (atomically) after each new file is complete,
    so `latest()` never returns a half-written checkpoint. On start, the temporaries that killed writers left in
    the folder are removed (`removed` lists them).
    """

    def __init__(self, folder, prefix, keep_max):
        self.folder, self.prefix, self.keep_max = folder, prefix, keep_max
        self.pointer = os.path.join(folder, POINTER_NAME)
        self.removed = remove_abandoned_temporaries(folder)

    def kept(self):
        if not os.path.exists(self.pointer):
            return []
        try:
            with open(self.pointer, encoding="utf-8") as handle:
                names = json.load(handle)["kept"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{self.pointer}: unreadable checkpoint list") from None
        return [name for name in names if os.path.exists(os.path.join(self.folder, name))]

    def latest(self):
        kept = self.kept()
        return os.path.join(self.folder, kept[-1]) if kept else None

    def save(self, model, optimizer, metadata):
        name = f"{self.prefix}_{metadata['phase']}_step{metadata['step']:07d}.ckpt"
        path = save_checkpoint(os.path.join(self.folder, name), model, optimizer, metadata)
        kept = [kept_name for kept_name in self.kept() if kept_name != name] + [name]
        dropped, kept = kept[:-self.keep_max], kept[-self.keep_max:]
        with _replaced_atomically(self.pointer) as temporary:
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump({"kept": kept}, handle, indent=1)
        for old in dropped:
            old_path = os.path.join(self.folder, old)
            if os.path.exists(old_path):
                os.remove(old_path)
        return path
