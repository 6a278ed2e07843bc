"""pkg/ioutils: small file helpers shared by every store that writes state to disk.

Docker writes each state file (container config, tag store, image metadata, key.json) so that
a crash leaves either the old file or the whole new one, never a torn mix of both.
"""
import os
import tempfile


def atomic_write_file(path, data, mode):
    """ioutils.AtomicWriteFile: readers see the old file or the whole new one.

    The bytes go to a temporary file in the same directory, reach the disk
    (fsync), and are renamed over path; the directory is synced too so the
    rename itself survives a crash.
    """
    directory = os.path.dirname(path) or "."
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp_path, path)
    except BaseException:
        os.unlink(tmp_path)
        raise
    fsync_dir(directory)


def fsync_dir(path):
    """fsync a directory, so a rename or a new entry in it survives a crash."""
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
