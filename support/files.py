"""Files: folders made and checked before a long run, writes that never leave half a file, reads
that run no pickled code.

A write goes to a temporary file `path.tmp-PID` in the same folder, is flushed to disk, then
renamed over the old file, so a crash during a write leaves the previous file intact. Every read
of a PyTorch file uses `torch.load(..., weights_only=True)`.
"""

import glob
import hashlib
import json
import os
import tempfile

import torch

from support.errors import UserError

ON_WINDOWS = os.name == "nt"


def ensure_parent_dir(path):
    """Create the folder a file will be written to; fail early and clearly if we cannot."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create folder {folder!r} for {path!r}: {exc.strerror}") from None
    try:  # a real write, not os.access: that says yes to root on read-only mounts
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"folder {folder!r} is not writable ({exc.strerror}); cannot save {path!r}") from None
    return path



def _remove_stale_temporaries(path):
    """Delete `path.tmp-PID` files left by writers that were killed (their PID no longer runs).

    On Windows the test is the removal itself: a file that another process still has open cannot
    be removed there, and os.kill(pid, 0) would send that process CTRL_C_EVENT instead of
    testing it.
    """
    for stale in glob.glob(glob.escape(path) + ".tmp-*"):
        pid = stale.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and (ON_WINDOWS or not _pid_running(int(pid))):
            try:
                os.remove(stale)
            except OSError:
                pass


def _pid_running(pid):
    """Whether process `pid` runs (POSIX; on Windows this is never asked, see above)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _temporary(path):
    return f"{path}.tmp-{os.getpid()}"


def write_temporary(path, write):
    """Write a file that will replace `path` in full to its temporary name, flushed to disk;
    returns that name. replace(path) then puts it in place."""
    ensure_parent_dir(path)
    _remove_stale_temporaries(path)
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        _discard(tmp)
        raise UserError(f"could not write {path!r}: {exc.strerror or exc}") from None
    return tmp


def replace(path):
    """Rename the temporary file written by write_temporary over `path` (atomic)."""
    try:
        os.replace(_temporary(path), path)
    except OSError as exc:
        _discard(_temporary(path))
        raise UserError(f"could not write {path!r}: {exc.strerror or exc}") from None


def _discard(tmp):
    if os.path.exists(tmp):
        os.remove(tmp)


def _replace_atomically(path, write):
    write_temporary(path, write)
    replace(path)


def atomic_write_json(obj, path):
    _replace_atomically(path, lambda handle: handle.write(json.dumps(obj, indent=2).encode()))


def load_file(path, what="checkpoint"):
    """torch.load(path, weights_only=True) with one-line errors for missing or damaged files."""
    if not os.path.isfile(path):
        raise UserError(f"{what} {path!r} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code in it, random bytes, ...
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{what} {path!r} is damaged or not a PyTorch checkpoint ({reason}); "
                        f"delete it (or pass --fresh to train.py) and train again") from None


def file_sha256(path):
    """Fingerprint of a file (the tokenizer), to tell whether a checkpoint was trained with it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
