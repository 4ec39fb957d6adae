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
    check_output_file(path)
    folder = os.path.dirname(os.path.abspath(path)) or "."
    created = _make_folders(folder)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(handle)
    done = False
    try:
        yield temporary
        os.replace(temporary, path)
        done = True
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
        if not done:
            _remove_empty(created)


def _make_folders(folder):
    """os.makedirs(folder, exist_ok=True); returns the folders it created, deepest first."""
    created = []
    while not os.path.isdir(folder):
        created.append(folder)
        folder = os.path.dirname(folder)
    for path in reversed(created):
        os.makedirs(path, exist_ok=True)
    return created


def _remove_empty(folders):
    """Removes the folders a failed run created, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            return


def process_alive(pid):
    """Whether process `pid` still runs on this machine (this process counts as alive). A killed child that its
    parent has not waited for yet is a zombie: os.kill(pid, 0) still succeeds, so /proc is asked too."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rpartition(")")[2].split()[:1] not in (["Z"], ["X"])
    except OSError:
        return True  # no /proc (macOS): kill(pid, 0) is the answer


@contextlib.contextmanager
def atomic_outputs(paths):
    """Temporary paths for several outputs; all are renamed into place only if the whole block succeeds.

    Every output is checked before the block runs (atomic_path's check_output_file), so the renames at its end
    cannot fail on a folder in the way or a missing parent: one run's outputs appear all together or not at all.
    """
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
    if os.path.isdir(path):
        raise UserError(f"{what} {path} is a folder; expected a file")
    if not os.path.isfile(path):
        raise UserError(f"{what} not found: {path}")
    if not os.access(path, os.R_OK):
        raise UserError(f"{what} is not readable: {path}")
    return path


def require_folder(path, what="folder"):
    """Raises a UserError unless `path` is a folder."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{what} {path} is a file; expected a folder")
    if not os.path.isdir(path):
        raise UserError(f"{what} not found: {path}")
    return path


def _check_can_create(path, what):
    """UserError unless `path` (absent) can be created: its nearest existing ancestor is a writable folder."""
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise UserError(f"{what} {path} cannot be created: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path} cannot be created: folder {ancestor} is not writable")


def check_output_file(path, what="output file"):
    """Checks, before any work, that `path` can be written as a file (an existing file is replaced at the end)."""
    if os.path.isdir(path):
        raise UserError(f"{what} {path} is a folder; expected a file path")
    if os.path.exists(path):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UserError(f"{what} {path} cannot be replaced: folder {folder} is not writable")
    else:
        _check_can_create(path, what)
    return path


def check_output_folder(path, what="output folder", files=()):
    """Checks, before any work, that `path` is or can become a writable folder, and that each of `files` (names
    inside it) can be written there."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{what} {path} is a file; expected a folder")
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"{what} {path} is not writable")
    else:
        _check_can_create(path, what)
    for name in files:
        check_output_file(os.path.join(path, name))
    return path
