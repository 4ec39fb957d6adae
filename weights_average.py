"""Averages the model weights of several checkpoints (optimizer state and metadata are left out).

    python weights_average.py --input_files a.ckpt,b.ckpt --output_file averaged.npz
    python weights_average.py --input_files runs/x/checkpoints/*.ckpt --output_file averaged.npz
    python weights_average.py --input_folder runs/x/checkpoints [--last 5] --output_file averaged.ckpt

--input_folder takes the training checkpoints listed in the folder's latest.json (oldest first), or every
.ckpt/.npz file in it when there is no list. Every checkpoint must hold the same parameter names and shapes.
"""
import argparse
import os

from src.errors import UserError, check_output_file, require_file, require_folder, run_cli


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input_files", nargs="+", default=[],
                        help=".ckpt/.npz files, space- or comma-separated (a shell glob works)")
    parser.add_argument("--input_folder", default="", help="folder of checkpoints (see above)")
    parser.add_argument("--last", type=int, default=0, metavar="N",
                        help="with --input_folder: only the newest N checkpoints")
    parser.add_argument("--output_file", required=True, help="averaged weights: .npz or .ckpt")
    args = parser.parse_args(argv)
    if bool(args.input_files) == bool(args.input_folder):
        parser.error("give exactly one of --input_files and --input_folder")
    if args.last < 0:
        parser.error("--last must be >= 0")
    return args


def folder_checkpoints(folder, last=0):
    from src.checkpoint import POINTER_NAME, WEIGHT_SUFFIXES, CheckpointManager
    require_folder(folder, "checkpoint folder")
    if os.path.exists(os.path.join(folder, POINTER_NAME)):
        names = CheckpointManager(folder, "", 1).kept()
    else:
        names = sorted(name for name in os.listdir(folder) if name.endswith(WEIGHT_SUFFIXES) and
                       not name.startswith("."))
    paths = [os.path.join(folder, name) for name in names]
    paths = paths[-last:] if last else paths
    if not paths:
        raise UserError(f"no checkpoints in {folder}")
    return paths


def average_checkpoints(paths):
    """{name: mean array} over the model weights of `paths`, in the inputs' dtype."""
    return _average(paths)[0]


def _average(paths):
    """(averaged weights, metadata of the first checkpoint); one-line errors on any mismatch."""
    import numpy as np
    from src.checkpoint import read_checkpoint
    if not paths:
        raise UserError("no checkpoints to average")
    sums, dtypes, first_path, metadata = None, None, paths[0], None
    for path in paths:
        weights, _, file_metadata = read_checkpoint(path)
        if sums is None:
            sums = {name: array.astype(np.float64) for name, array in weights.items()}
            dtypes = {name: array.dtype for name, array in weights.items()}
            metadata = file_metadata
            continue
        for name, total in sums.items():
            if name not in weights:
                raise UserError(f"{path} lacks parameter {name} (present in {first_path})")
            if weights[name].shape != total.shape:
                raise UserError(f"{path}: parameter {name} has shape {weights[name].shape}, {first_path} has "
                                f"{total.shape}")
            total += weights[name]
        extra = sorted(set(weights) - set(sums))
        if extra:
            raise UserError(f"{path} has parameter {extra[0]} that {first_path} lacks")
        if metadata.get("vocab_checksum", "") != file_metadata.get("vocab_checksum", ""):
            raise UserError(f"{path} was trained with another vocabulary than {first_path}")
    count = len(paths)
    return {name: (total / count).astype(dtypes[name]) for name, total in sums.items()}, metadata


def main(args):
    from src.checkpoint import write_checkpoint
    if args.input_files:
        paths = [path.strip() for item in args.input_files for path in item.split(",") if path.strip()]
    else:
        paths = folder_checkpoints(args.input_folder, args.last)
    if not args.output_file.endswith((".npz", ".ckpt")):
        raise UserError(f"--output_file {args.output_file}: expected a .npz or .ckpt name")
    check_output_file(args.output_file, "--output_file")
    for path in paths:
        require_file(path, "checkpoint")
    averaged, metadata = _average(paths)
    write_checkpoint(args.output_file, averaged, {"kind": "weights", "averaged_from": paths,
                                                   "vocab_checksum": metadata.get("vocab_checksum", ""),
                                                   "config": metadata.get("config", {})})
    print(f"averaged {len(paths)} checkpoints ({len(averaged)} parameters) into {args.output_file}")
    return 0


if __name__ == "__main__":
    run_cli(main, parse_args())
