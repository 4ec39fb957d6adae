"""User-facing errors, the CLI wrapper that prints them in one line, and atomic output (one file or several)."""
import contextlib
import os
import sys
import tempfile


class UserError(Exception):
    """A mistake in the user's input (file, flag, config key): shown as one line, no traceback."""


def run_cli(main, args=None):
    """Runs `main(args)`; a UserError becomes `error: ...` on stderr and exit status 2."""
    try:
        status = main(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds.

    Readers never see a half-written file, and a failed run leaves no output behind.
    """
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@contextlib.contextmanager
def atomic_outputs(paths):
    """Temporary paths for several outputs; all are renamed into place only if the whole block succeeds."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(path)) for path in paths]


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
    """Opens a temporary file for writing that replaces `path` when the block succeeds."""
    with atomic_path(path) as temporary:
        with open(temporary, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle


def require_file(path, what="file"):
    """Raises a UserError unless `path` is a readable regular file."""
    if not os.path.isfile(path):
        raise UserError(f"{what} not found: {path}")
    if not os.access(path, os.R_OK):
        raise UserError(f"{what} is not readable: {path}")
    return path


def require_folder(path, what="folder"):
    if not os.path.isdir(path):
        raise UserError(f"{what} not found: {path}")
    return path
