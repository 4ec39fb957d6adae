"""The corpus files of tokenize_corpus.py and apply_bpe_encoding.py: finding the inputs, naming the outputs,
reading them in blocks of whole lines for the workers, or line by line from a saved position."""
import dataclasses
import os

from src.errors import UserError, require_folder


def find_text_files(folders):
    """Every `.txt` entry of each folder (sorted, not recursive), checked readable before any work starts."""
    files = []
    for folder in folders:
        require_folder(folder, "corpus folder")
        names = sorted(name for name in os.listdir(folder) if name.endswith(".txt"))
        if not names:
            raise UserError(f"no .txt files in folder {folder} (empty corpus)")
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                raise UserError(f"cannot read {path}: not a regular file (a folder or a dangling link?)")
            try:
                with open(path, "rb"):
                    pass
            except OSError as error:
                raise UserError(f"cannot read {path}: {error.strerror}") from None
            files.append(path)
    return files


def output_paths(files, output_folder, prefix=""):
    """OUTPUT_FOLDER/[PREFIX.]name for each input; refuses collisions and writing over an input."""
    outputs, seen = [], {}
    for path in files:
        name = os.path.basename(path)
        target = os.path.join(output_folder, f"{prefix}.{name}" if prefix else name)
        if target in seen:
            raise UserError(f"{seen[target]} and {path} would both be written to {target}")
        if os.path.exists(target) and os.path.samefile(target, path):
            raise UserError(f"output {target} would overwrite its input: choose another output folder")
        seen[target] = path
        outputs.append(target)
    return outputs


def iter_line_blocks(path, lines_per_block):
    """Raw lines of a file (split at b"\\n", terminators removed) in lists of `lines_per_block`, each with
    its size in bytes."""
    block, size = [], 0
    with open(path, "rb") as handle:
        for raw in handle:
            size += len(raw)
            block.append(raw[:-1] if raw.endswith(b"\n") else raw)
            if len(block) == lines_per_block:
                yield block, size
                block, size = [], 0
    if block:
        yield block, size


def iter_byte_blocks(path, block_bytes=16 << 20):
    """Blocks of whole lines of a file, as bytes (each ends at b"\\n" or at the end of the file), with the
    number of the block's first line."""
    line_number = 1
    with open(path, "rb") as handle:
        rest = b""
        while True:
            chunk = handle.read(block_bytes)
            data = rest + chunk
            if not data:
                return
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            if cut == 0:  # no line end yet: read on
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
            yield block, line_number
            line_number += block.count(b"\n")
            if not chunk:
                return


@dataclasses.dataclass(frozen=True)
class LinePosition:
    """Where a line of a list of files starts: the file's index in the list, the byte offset and the 0-based line
    number in that file, and the line's index over all the files."""
    file: int = 0
    offset: int = 0
    file_line: int = 0
    line: int = 0


def iter_text_lines(paths, what="text file", start=LinePosition()):
    """(position, text) of each line of the files read one after another from `start`, streamed: the text is
    UTF-8 without its line end (`\\n`, and a `\\r` before it). A one-line UserError names an empty file or the
    first line that is not UTF-8 (file:line)."""
    line = start.line
    for file_index in range(start.file, len(paths)):
        path = paths[file_index]
        offset, file_line = (start.offset, start.file_line) if file_index == start.file else (0, 0)
        with open(path, "rb") as handle:
            handle.seek(offset)
            for raw in handle:
                try:
                    text = raw.rstrip(b"\n").decode("utf-8").rstrip("\r")
                except UnicodeDecodeError:
                    raise UserError(f"{path}:{file_line + 1}: not valid UTF-8 text") from None
                yield LinePosition(file_index, offset, file_line, line), text
                offset += len(raw)
                file_line += 1
                line += 1
        if offset == 0:
            raise UserError(f"{what} is empty: {path}")
