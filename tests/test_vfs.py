"""Tests for drivers/vfs.py beyond the shared suite: dir_copy, the copier that makes each vfs
layer, must keep everything a root filesystem depends on.
"""
import os
import stat
import struct

import pytest

from drivers import vfs

CAP_NET_BIND_SERVICE = 10
# struct vfs_cap_data, revision 2, effective bit set: what `setcap cap_net_bind_service+ep` writes.
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << CAP_NET_BIND_SERVICE, 0, 0, 0)


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    return src


def copied(tmp_path, source):
    """Copy `source` into a fresh directory and return that directory."""
    target = tmp_path / "dst"
    target.mkdir()
    vfs.dir_copy(str(source), str(target))
    return target


def test_file_content_is_copied(tmp_path, source):
    (source / "data").write_bytes(b"x" * 100000)
    assert (copied(tmp_path, source) / "data").read_bytes() == b"x" * 100000


def test_owner_is_kept(tmp_path, source):
    (source / "f").write_text("")
    os.chown(str(source / "f"), 1234, 5678)
    info = os.lstat(str(copied(tmp_path, source) / "f"))
    assert (info.st_uid, info.st_gid) == (1234, 5678)


def test_setuid_mode_survives_owner_change(tmp_path, source):
    (source / "su").write_text("")
    os.chown(str(source / "su"), 1000, 1000)
    os.chmod(str(source / "su"), 0o4755)
    assert stat.S_IMODE(os.lstat(str(copied(tmp_path, source) / "su")).st_mode) == 0o4755


def test_file_mtime_is_kept(tmp_path, source):
    (source / "f").write_text("")
    os.utime(str(source / "f"), ns=(1000000000123456789, 1000000000123456789))
    assert os.lstat(str(copied(tmp_path, source) / "f")).st_mtime_ns == 1000000000123456789


def test_directory_mtime_is_kept_after_filling_it(tmp_path, source):
    (source / "d").mkdir()
    (source / "d" / "f").write_text("")
    os.utime(str(source / "d"), ns=(1000000000, 1000000000))
    assert os.lstat(str(copied(tmp_path, source) / "d")).st_mtime_ns == 1000000000


def test_directory_mode_is_kept(tmp_path, source):
    (source / "tmp").mkdir()
    os.chmod(str(source / "tmp"), 0o1777)
    assert stat.S_IMODE(os.lstat(str(copied(tmp_path, source) / "tmp")).st_mode) == 0o1777


def test_user_xattr_is_kept(tmp_path, source):
    (source / "f").write_text("")
    os.setxattr(str(source / "f"), "user.origin", b"layer")
    assert os.getxattr(str(copied(tmp_path, source) / "f"), "user.origin") == b"layer"


def test_file_capability_survives_owner_change(tmp_path, source):
    (source / "ping").write_text("")
    os.chown(str(source / "ping"), 1000, 1000)
    os.setxattr(str(source / "ping"), "security.capability", CAPABILITY)
    target = copied(tmp_path, source) / "ping"
    assert os.getxattr(str(target), "security.capability") == CAPABILITY


def test_hard_links_stay_one_inode(tmp_path, source):
    (source / "a").write_text("shared")
    os.link(str(source / "a"), str(source / "b"))
    target = copied(tmp_path, source)
    assert os.lstat(str(target / "a")).st_ino == os.lstat(str(target / "b")).st_ino


def test_symlink_is_copied_as_link(tmp_path, source):
    os.symlink("/nonexistent/target", str(source / "link"))
    assert os.readlink(str(copied(tmp_path, source) / "link")) == "/nonexistent/target"


def test_symlink_owner_is_kept(tmp_path, source):
    os.symlink("target", str(source / "link"))
    os.lchown(str(source / "link"), 42, 43)
    info = os.lstat(str(copied(tmp_path, source) / "link"))
    assert (info.st_uid, info.st_gid) == (42, 43)


def test_device_node_is_recreated(tmp_path, source):
    os.mknod(str(source / "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    info = os.lstat(str(copied(tmp_path, source) / "null"))
    assert stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(1, 3)


def test_fifo_is_recreated(tmp_path, source):
    os.mkfifo(str(source / "pipe"))
    assert stat.S_ISFIFO(os.lstat(str(copied(tmp_path, source) / "pipe")).st_mode)


def test_nested_directories_are_copied(tmp_path, source):
    deep = source / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "f").write_text("deep")
    assert (copied(tmp_path, source) / "a" / "b" / "c" / "f").read_text() == "deep"


def test_empty_file_is_copied(tmp_path, source):
    (source / "empty").write_text("")
    assert (copied(tmp_path, source) / "empty").read_bytes() == b""
