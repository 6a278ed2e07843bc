"""Tests for drivers/archive.py: layer tars in and out, on real files, as root.

The hostile tars follow moby's pkg/archive breakout tests (TestUntarInvalidFilenames,
TestUntarInvalidHardlink, TestUntarInvalidSymlink, TestUntarHardlinkToSymlink) and
TestBuildSymlinkBreakout; each checks that nothing appears outside the layer directory.
"""
import bz2
import errno
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import tarfile
import uuid

import pytest

from drivers import archive, linux

# VFS_CAP_REVISION_2 with CAP_NET_BIND_SERVICE permitted: what `setcap cap_net_bind_service+p` writes.
CAPABILITY = bytes.fromhex("01000002" "00040000" "00000000" "00000000" "00000000")
MTIME = 1500000000


# --- Building tars --------------------------------------------------------------------------

def entry(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, mtime=MTIME,
          linkname="", devmajor=0, devminor=0, xattrs=None):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, mtime
    info.linkname, info.devmajor, info.devminor = linkname, devmajor, devminor
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if xattrs:
        info.pax_headers = {"SCHILY.xattr." + key: value.decode("utf-8", "surrogateescape")
                            for key, value in xattrs.items()}
    return info, data


def directory(name, mode=0o755, **kwargs):
    return entry(name, tarfile.DIRTYPE, mode=mode, **kwargs)


def symlink(name, target, **kwargs):
    return entry(name, tarfile.SYMTYPE, mode=0o777, linkname=target, **kwargs)


def hardlink(name, target, **kwargs):
    return entry(name, tarfile.LNKTYPE, linkname=target, **kwargs)


def make_tar(*entries):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def apply(dest, tar_bytes, mode="delete"):
    return archive.apply_layer(str(dest), io.BytesIO(tar_bytes), whiteout_mode=mode)


def untar(dest, tar_bytes):
    archive.untar(str(dest), io.BytesIO(tar_bytes))


@pytest.fixture
def layer(tmp_path):
    """The layer directory; its sibling `victim` is what breakouts aim at."""
    dest = tmp_path / "layer"
    dest.mkdir()
    (tmp_path / "victim").mkdir()
    return dest


def outside_is_untouched(tmp_path):
    return os.listdir(str(tmp_path / "victim")) == []


# --- Comparing trees ------------------------------------------------------------------------

def snapshot(root):
    """Everything a layer carries about each entry below `root` (not the root itself)."""
    result, first_names = {}, {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            relative = os.path.relpath(path, str(root))
            description = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                           st.st_gid, st.st_rdev, xattr(path, "security.capability")]
            if not stat.S_ISLNK(st.st_mode):
                description.append(st.st_mtime_ns // 10 ** 9)
            if stat.S_ISLNK(st.st_mode):
                description.append(os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as content:
                    description.append(hashlib.sha256(content.read()).hexdigest())
                description.append(first_names.setdefault((st.st_dev, st.st_ino), relative))
            result[relative] = tuple(description)
    return result


def xattr(path, key):
    try:
        return os.getxattr(path, key, follow_symlinks=False)
    except OSError as err:
        if err.errno == errno.ENODATA:
            return None
        raise


def build_sample_tree(root):
    """A small rootfs with every kind of entry a layer can hold."""
    os.makedirs(os.path.join(root, "usr/bin"))
    os.makedirs(os.path.join(root, "tmp"))
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    with open(os.path.join(root, "usr/bin/tool"), "wb") as tool:
        tool.write(b"#!/bin/sh\necho tool\n" * 1000)
    os.chown(os.path.join(root, "usr/bin/tool"), 12345, 54321)
    os.chmod(os.path.join(root, "usr/bin/tool"), 0o4755)
    os.setxattr(os.path.join(root, "usr/bin/tool"), "security.capability", CAPABILITY)
    os.link(os.path.join(root, "usr/bin/tool"), os.path.join(root, "usr/bin/tool-link"))
    os.symlink("/run", os.path.join(root, "var-run"))
    os.symlink("bin/tool", os.path.join(root, "usr/relative"))
    os.mkfifo(os.path.join(root, "fifo"))
    os.mknod(os.path.join(root, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(os.path.join(root, "loop"), 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    with open(os.path.join(root, "empty"), "wb"):
        pass
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (MTIME, MTIME), follow_symlinks=False)


def tar_of(root, **kwargs):
    out = io.BytesIO()
    archive.write_tar(str(root), out, **kwargs)
    return out.getvalue()


def names_in(tar_bytes):
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return {member.name: member for member in tar.getmembers()}


# --- Compression ----------------------------------------------------------------------------

@pytest.mark.parametrize("head, kind", [
    (b"\x1f\x8b\x08\x00", "gzip"), (b"BZh91AY", "bzip2"), (b"\xfd7zXZ\x00\x00", "xz"),
    (b"etc/passwd\x00\x00", "uncompressed"), (b"", "uncompressed")])
def test_detect_compression_reads_magic_bytes(head, kind):
    assert archive.detect_compression(head) == kind


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress],
                         ids=["gzip", "bzip2", "xz"])
def test_compressed_layer_is_extracted(layer, compress):
    apply(layer, compress(make_tar(entry("hello", data=b"world"))))
    assert (layer / "hello").read_bytes() == b"world"


def test_zstd_is_an_unsupported_compression(layer):
    with pytest.raises(archive.ArchiveError, match="unsupported compression format zstd"):
        apply(layer, b"\x28\xb5\x2f\xfd" + b"\0" * 600)


def test_stream_that_is_no_tar_is_an_invalid_header(layer):
    with pytest.raises(archive.ArchiveError, match="invalid tar header"):
        apply(layer, b"PK\x03\x04" + b"garbage" * 200)


def test_empty_stream_is_an_empty_layer(layer):
    digest = apply(layer, b"")
    assert digest == archive.LayerDigest("sha256:" + hashlib.sha256(b"").hexdigest(), 0)
    assert os.listdir(str(layer)) == []


def test_tar_truncated_in_file_data_is_unexpected_eof(layer):
    tar = make_tar(entry("big", data=b"x" * 100000))
    with pytest.raises(archive.ArchiveError, match='unexpected EOF in the data of "big"'):
        apply(layer, tar[:50000])


def test_tar_truncated_in_a_header_is_unexpected_eof(layer):
    tar = make_tar(entry("a", data=b"1"), entry("b", data=b"2"))
    with pytest.raises(archive.ArchiveError, match="unexpected EOF"):
        apply(layer, tar[:1024 + 100])


def test_truncated_gzip_is_unexpected_eof(layer):
    compressed = gzip.compress(make_tar(entry("big", data=os.urandom(200000))))
    with pytest.raises(archive.ArchiveError, match="unexpected EOF"):
        apply(layer, compressed[:len(compressed) // 2])


def test_corrupt_header_after_first_entry_is_refused(layer):
    tar = bytearray(make_tar(entry("a", data=b"1"), entry("b", data=b"2")))
    tar[1024:1024 + 8] = b"garbage!"  # the second entry's header, after a's header and data
    with pytest.raises(archive.ArchiveError, match="invalid tar header"):
        apply(layer, bytes(tar))


def test_diff_id_is_sha256_of_the_uncompressed_tar(layer):
    tar = make_tar(directory("etc"), entry("etc/hostname", data=b"box\n"))
    digest = apply(layer, gzip.compress(tar))
    assert digest.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_diff_id_covers_bytes_after_the_end_of_archive(layer):
    tar = make_tar(entry("a", data=b"1")) + b"trailing junk"
    assert apply(layer, tar).diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_size_is_the_sum_of_regular_file_sizes(layer):
    tar = make_tar(directory("d"), entry("d/a", data=b"x" * 1000), entry("b", data=b"y" * 24),
                   symlink("s", "d/a"), hardlink("h", "d/a"))
    assert apply(layer, tar).size == 1024


# --- Entry types ----------------------------------------------------------------------------

def test_regular_file_gets_content_mode_and_mtime(layer):
    apply(layer, make_tar(entry("file", data=b"content", mode=0o640, mtime=1234567890)))
    st = os.lstat(str(layer / "file"))
    assert (layer / "file").read_bytes() == b"content"
    assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o640, 1234567890)


def test_large_file_is_copied_intact(layer):
    data = os.urandom(3 * 1024 * 1024 + 17)
    apply(layer, make_tar(entry("blob", data=data)))
    assert (layer / "blob").read_bytes() == data


def test_directory_mtime_is_set_after_its_children(layer):
    apply(layer, make_tar(directory("d", mode=0o750, mtime=1000), entry("d/child", data=b"x")))
    st = os.lstat(str(layer / "d"))
    assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o750, 1000)


def test_symlink_target_is_kept_verbatim(layer):
    apply(layer, make_tar(symlink("var/run", "/run"), symlink("d/rel", "../x/./y")))
    assert os.readlink(str(layer / "var/run")) == "/run"
    assert os.readlink(str(layer / "d/rel")) == "../x/./y"


def test_symlink_mtime_is_set_on_the_link_itself(layer, tmp_path):
    target = tmp_path / "victim" / "target"
    target.write_bytes(b"")
    before = os.stat(str(target)).st_mtime
    apply(layer, make_tar(symlink("link", str(target), mtime=1000)))
    assert os.lstat(str(layer / "link")).st_mtime == 1000
    assert os.stat(str(target)).st_mtime == before


def test_hard_links_share_an_inode(layer):
    apply(layer, make_tar(entry("a", data=b"same"), hardlink("b", "a"), hardlink("c", "/a")))
    inodes = {os.lstat(str(layer / name)).st_ino for name in "abc"}
    assert len(inodes) == 1 and os.lstat(str(layer / "a")).st_nlink == 3


def test_character_and_block_devices_are_made(layer):
    apply(layer, make_tar(entry("null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
                          entry("loop0", tarfile.BLKTYPE, mode=0o660, devmajor=7, devminor=0)))
    null, loop = os.lstat(str(layer / "null")), os.lstat(str(layer / "loop0"))
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 0)
    assert stat.S_IMODE(null.st_mode) == 0o666


def test_fifo_is_made(layer):
    apply(layer, make_tar(entry("pipe", tarfile.FIFOTYPE, mode=0o620)))
    st = os.lstat(str(layer / "pipe"))
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620


def test_setuid_setgid_and_sticky_bits_survive_chown(layer):
    apply(layer, make_tar(entry("su", mode=0o6755, uid=1000, gid=1000),
                          directory("tmp", mode=0o1777)))
    assert stat.S_IMODE(os.lstat(str(layer / "su")).st_mode) == 0o6755
    assert stat.S_IMODE(os.lstat(str(layer / "tmp")).st_mode) == 0o1777


def test_owner_is_numeric_even_without_a_passwd_entry(layer):
    info, data = entry("file", uid=12345, gid=54321)
    info.uname, info.gname = "root", "root"  # names must be ignored (CVE-2019-14271)
    apply(layer, make_tar((info, data)))
    st = os.lstat(str(layer / "file"))
    assert (st.st_uid, st.st_gid) == (12345, 54321)


def test_symlink_owner_is_set_without_following(layer, tmp_path):
    target = tmp_path / "victim" / "target"
    target.write_bytes(b"")
    apply(layer, make_tar(symlink("link", str(target), uid=777, gid=778)))
    assert os.lstat(str(layer / "link")).st_uid == 777
    assert os.stat(str(target)).st_uid == 0


def test_capability_xattr_from_pax_header_is_set(layer):
    apply(layer, make_tar(entry("ping", mode=0o755, uid=5, xattrs={
        "security.capability": CAPABILITY})))
    assert os.getxattr(str(layer / "ping"), "security.capability") == CAPABILITY


def test_long_names_from_pax_and_gnu_headers(layer):
    long_dir = "d" * 120
    name = long_dir + "/" + "f" * 150
    apply(layer, make_tar(directory(long_dir), entry(name, data=b"pax")))
    gnu = io.BytesIO()
    with tarfile.open(fileobj=gnu, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info, data = entry(long_dir + "/" + "g" * 150, data=b"gnu")
        tar.addfile(info, io.BytesIO(data))
    apply(layer, gnu.getvalue())
    assert (layer / name).read_bytes() == b"pax"
    assert (layer / long_dir / ("g" * 150)).read_bytes() == b"gnu"


def test_missing_parent_directories_are_created_0755(layer):
    apply(layer, make_tar(entry("a/b/c", data=b"x")))
    assert stat.S_IMODE(os.lstat(str(layer / "a/b")).st_mode) == 0o755


def test_existing_directory_merges_with_a_directory_entry(layer):
    (layer / "d").mkdir()
    (layer / "d/old").write_bytes(b"from the parent layer")
    apply(layer, make_tar(directory("d", mode=0o700)))
    assert (layer / "d/old").exists()
    assert stat.S_IMODE(os.lstat(str(layer / "d")).st_mode) == 0o700


def test_existing_directory_is_replaced_by_a_file(layer):
    (layer / "x/sub").mkdir(parents=True)
    apply(layer, make_tar(entry("x", data=b"now a file")))
    assert (layer / "x").read_bytes() == b"now a file"


def test_existing_file_is_replaced_by_a_directory(layer):
    (layer / "x").write_bytes(b"file")
    apply(layer, make_tar(directory("x"), entry("x/inside", data=b"1")))
    assert (layer / "x/inside").read_bytes() == b"1"


def test_root_entry_sets_the_layer_directory_mode(layer):
    apply(layer, make_tar(directory("./", mode=0o700), entry("./f", data=b"1")))
    assert stat.S_IMODE(os.lstat(str(layer)).st_mode) == 0o700
    assert (layer / "f").read_bytes() == b"1"


def test_unknown_whiteout_mode_is_refused(layer):
    with pytest.raises(ValueError, match="unknown whiteout mode"):
        apply(layer, make_tar(), mode="btrfs")


# --- Whiteouts ------------------------------------------------------------------------------

def test_whiteout_deletes_file(layer):
    (layer / "etc").mkdir()
    (layer / "etc/gone").write_bytes(b"")
    apply(layer, make_tar(entry("etc/.wh.gone")))
    assert os.listdir(str(layer / "etc")) == []


def test_whiteout_deletes_directory_tree(layer):
    (layer / "d/sub").mkdir(parents=True)
    (layer / "d/sub/file").write_bytes(b"")
    os.symlink("/", str(layer / "d/sub/root-link"))
    apply(layer, make_tar(entry(".wh.d")))
    assert os.listdir(str(layer)) == []


def test_whiteout_deletes_a_symlink_not_its_target(layer, tmp_path):
    (tmp_path / "victim" / "keep").write_bytes(b"")
    os.symlink(str(tmp_path / "victim"), str(layer / "link"))
    apply(layer, make_tar(entry(".wh.link")))
    assert not os.path.lexists(str(layer / "link"))
    assert (tmp_path / "victim" / "keep").exists()


def test_opaque_whiteout_empties_directory_but_keeps_this_layers_entries(layer):
    (layer / "d/old-dir").mkdir(parents=True)
    (layer / "d/old-file").write_bytes(b"")
    (layer / "d/kept-dir").mkdir()
    (layer / "d/kept-dir/old").write_bytes(b"")
    apply(layer, make_tar(directory("d"), entry("d/new", data=b"1"), directory("d/kept-dir"),
                          entry("d/.wh..wh..opq")))
    assert sorted(os.listdir(str(layer / "d"))) == ["kept-dir", "new"]
    assert os.listdir(str(layer / "d/kept-dir")) == []


def test_whiteout_naming_dotdot_is_refused(layer):
    (layer / "d").mkdir()
    with pytest.raises(archive.ArchiveError, match="invalid whiteout"):
        apply(layer, make_tar(entry("d/.wh..."), entry("d/.wh.")))
    assert (layer / "d").is_dir()


def test_overlay_whiteout_becomes_a_0_0_character_device(layer):
    apply(layer, make_tar(directory("etc"), entry("etc/.wh.gone", uid=3, gid=4)), mode="overlay")
    st = os.lstat(str(layer / "etc/gone"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert (st.st_uid, st.st_gid) == (3, 4)
    assert not os.path.lexists(str(layer / "etc/.wh.gone"))


def test_overlay_opaque_whiteout_sets_the_xattr(layer):
    apply(layer, make_tar(directory("d"), entry("d/.wh..wh..opq"), entry("d/f", data=b"1")),
          mode="overlay")
    assert os.getxattr(str(layer / "d"), "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(str(layer / "d"))) == ["f"]


def test_aufs_mode_keeps_whiteout_files(layer):
    apply(layer, make_tar(entry(".wh.gone"), directory("d"), entry("d/.wh..wh..opq")),
          mode="aufs")
    assert stat.S_ISREG(os.lstat(str(layer / ".wh.gone")).st_mode)
    assert (layer / "d/.wh..wh..opq").exists()


def test_aufs_metadata_is_not_extracted(layer):
    apply(layer, make_tar(directory(".wh..wh.aufs"), entry(".wh..wh.orph/x", data=b"1")))
    assert os.listdir(str(layer)) == []


def test_hard_link_into_aufs_plnk_becomes_a_copy(layer):
    apply(layer, make_tar(directory(".wh..wh.plnk"),
                          entry(".wh..wh.plnk/1234.5678", data=b"shared", mode=0o751),
                          hardlink("usr/bin/shared", ".wh..wh.plnk/1234.5678")))
    assert (layer / "usr/bin/shared").read_bytes() == b"shared"
    assert stat.S_IMODE(os.lstat(str(layer / "usr/bin/shared")).st_mode) == 0o751
    assert sorted(os.listdir(str(layer))) == ["usr"]


# --- Hostile tars ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../victim/dotdot", "/../victim/slash-dotdot",
                                  "a/../../victim/x", "./../victim/x"])
def test_name_climbing_out_is_refused(layer, tmp_path, name):
    with pytest.raises(archive.ArchiveError, match="breakout"):
        apply(layer, make_tar(entry(name, data=b"pwned")))
    assert outside_is_untouched(tmp_path)


def test_relative_symlink_pointing_outside_is_refused(layer, tmp_path):
    tar = make_tar(symlink("loophole-victim", "../victim"), entry("loophole-victim/file"))
    with pytest.raises(archive.ArchiveError, match="invalid symlink.*breakout"):
        apply(layer, tar)
    assert outside_is_untouched(tmp_path)


def test_nested_symlink_pointing_outside_is_refused(layer, tmp_path):
    tar = make_tar(symlink("dir/loophole", "../../victim"),
                   entry("dir/loophole/newdir/newfile"))
    with pytest.raises(archive.ArchiveError, match="invalid symlink"):
        apply(layer, tar)
    assert outside_is_untouched(tmp_path)


def test_symlink_from_a_parent_layer_is_resolved_inside_the_layer(layer, tmp_path):
    os.symlink("../../victim", str(layer / "loophole"))
    apply(layer, make_tar(entry("loophole/file", data=b"contained")))
    assert outside_is_untouched(tmp_path)
    assert (layer / "victim/file").read_bytes() == b"contained"


def test_absolute_symlink_parent_stays_inside_the_root_in_untar(layer):
    unique = "pydockerd-archive-test-%s" % uuid.uuid4().hex
    untar(layer, make_tar(symlink("link", "/tmp"), entry("link/" + unique, data=b"x")))
    assert not os.path.lexists("/tmp/" + unique)
    assert (layer / "tmp" / unique).read_bytes() == b"x"


def test_layer_writing_through_its_own_symlink_is_refused(layer):
    """Issue 10's finding: `a -> /etc` then `a/passwd` was accepted."""
    passwd = open("/etc/passwd", "rb").read()
    tar = make_tar(symlink("a", "/etc"), entry("a/passwd", data=b"root::0:0::/:/bin/sh\n"))
    with pytest.raises(archive.ArchiveError, match='"a/passwd".*through the symlink "a"'):
        apply(layer, tar)
    assert not (layer / "etc").exists()
    assert open("/etc/passwd", "rb").read() == passwd


def test_layer_through_a_symlink_of_a_lower_layer_is_still_followed_inside(layer):
    """Only the layer's own symlinks are refused: /var/run -> /run from below is normal."""
    os.symlink("/run", str(layer / "var-run"))
    apply(layer, make_tar(entry("var-run/file", data=b"x")))
    assert (layer / "run" / "file").read_bytes() == b"x"


def test_symlink_chain_through_root_stays_inside_the_root_in_untar(layer, tmp_path):
    host_dir = tmp_path / "victim"
    tar = make_tar(symlink("symlink2", "/../../../../.."),
                   symlink("symlink", "symlink2" + str(host_dir)),
                   entry("symlink/inject", data=b"x"))
    untar(layer, tar)
    assert outside_is_untouched(tmp_path)
    assert (layer / str(host_dir).lstrip("/") / "inject").read_bytes() == b"x"


def test_layer_symlink_chain_is_refused(layer, tmp_path):
    tar = make_tar(directory("d"), symlink("d/up", ".."), entry("d/up/d/up/d/up/escape", data=b"x"))
    with pytest.raises(archive.ArchiveError, match='through the symlink "d/up"'):
        apply(layer, tar)
    assert outside_is_untouched(tmp_path)
    assert not (layer / "escape").exists()


def test_symlink_loop_is_refused(layer):
    tar = make_tar(symlink("a", "b"), symlink("b", "a"), entry("a/file"))
    with pytest.raises(archive.ArchiveError, match="too many levels of symbolic links"):
        untar(layer, tar)
    with pytest.raises(archive.ArchiveError, match='through the symlink "a"'):
        apply(layer, tar)


@pytest.mark.parametrize("kind", ["file", "symlink", "hardlink"])
def test_layer_repeating_an_entry_is_refused(layer, kind):
    """Issue 10's finding: a repeated entry was accepted, and the later one silently won."""
    second = {"file": entry("etc/passwd", data=b"evil"), "symlink": symlink("etc/passwd", "/x"),
              "hardlink": hardlink("etc/passwd", "etc/group")}[kind]
    tar = make_tar(directory("etc"), entry("etc/group", data=b"g"),
                   entry("etc/passwd", data=b"good"), second)
    with pytest.raises(archive.ArchiveError, match='"etc/passwd" appears twice'):
        apply(layer, tar)


def test_layer_repeating_a_directory_merges(layer):
    apply(layer, make_tar(directory("d"), entry("d/a", data=b"a"), directory("d", mode=0o700),
                          entry("d/b", data=b"b")))
    assert sorted(os.listdir(str(layer / "d"))) == ["a", "b"]
    assert stat.S_IMODE(os.stat(str(layer / "d")).st_mode) == 0o700


def test_untar_repeating_an_entry_keeps_the_last_as_go_does(layer):
    untar(layer, make_tar(entry("f", data=b"first"), entry("f", data=b"second")))
    assert (layer / "f").read_bytes() == b"second"


def test_file_over_a_symlink_replaces_only_the_link(layer, tmp_path):
    (tmp_path / "victim" / "keep").write_bytes(b"")
    os.symlink(str(tmp_path / "victim"), str(layer / "loophole-victim"))
    apply(layer, make_tar(entry("loophole-victim", data=b"plain")))
    assert (layer / "loophole-victim").read_bytes() == b"plain"
    assert os.listdir(str(tmp_path / "victim")) == ["keep"]


@pytest.mark.parametrize("target", ["../../etc/passwd", "../victim/hello", "/../victim/hello"])
def test_hard_link_climbing_out_is_refused(layer, tmp_path, target):
    (tmp_path / "victim" / "hello").write_bytes(b"secret")
    passwd_links = os.stat("/etc/passwd").st_nlink
    with pytest.raises(archive.ArchiveError, match="invalid hardlink.*breakout"):
        apply(layer, make_tar(hardlink("link", target)))
    assert os.stat("/etc/passwd").st_nlink == passwd_links
    assert os.stat(str(tmp_path / "victim" / "hello")).st_nlink == 1


def test_hard_link_to_a_symlink_links_the_symlink_itself(layer):
    passwd_links = os.stat("/etc/passwd").st_nlink
    apply(layer, make_tar(symlink("symlink", "/etc/passwd"), hardlink("hardlink", "symlink")))
    assert os.readlink(str(layer / "hardlink")) == "/etc/passwd"
    assert os.stat("/etc/passwd").st_nlink == passwd_links


def test_hard_link_through_a_symlinked_parent_stays_inside(layer, tmp_path):
    (tmp_path / "victim" / "hello").write_bytes(b"secret")
    tar = make_tar(symlink("root", "/"), hardlink("link", "root" + str(tmp_path / "victim/hello")))
    with pytest.raises(archive.ArchiveError, match="No such file or directory"):
        untar(layer, tar)
    with pytest.raises(archive.ArchiveError, match='through the symlink "root"'):
        apply(layer, tar)
    assert os.stat(str(tmp_path / "victim" / "hello")).st_nlink == 1


def test_non_directory_entry_for_the_root_is_refused(layer):
    with pytest.raises(archive.ArchiveError, match="layer root"):
        apply(layer, make_tar(entry("./", data=b"")))
    assert layer.is_dir()


def test_no_space_left_propagates_as_enospc(tmp_path):
    """A 256 KiB tmpfs, mounted in a child's private mount namespace, fills up."""
    small = tmp_path / "small"
    small.mkdir()
    tar = make_tar(entry("big", data=b"x" * (2 << 20)))
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
            linux.mount("tmpfs", str(small), "tmpfs", 0, "size=256k")
            apply(small, tar)
        except OSError as err:
            code = 0 if err.errno == errno.ENOSPC else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


# --- write_tar ------------------------------------------------------------------------------

def test_write_tar_round_trip_preserves_the_tree(tmp_path):
    source, copy = tmp_path / "source", tmp_path / "copy"
    copy.mkdir()
    build_sample_tree(str(source))
    apply(copy, tar_of(source))
    assert snapshot(copy) == snapshot(source)


def test_write_tar_stores_the_second_name_as_a_hard_link(tmp_path):
    build_sample_tree(str(tmp_path / "source"))
    members = names_in(tar_of(tmp_path / "source"))
    assert members["usr/bin/tool-link"].islnk()
    assert members["usr/bin/tool-link"].linkname == "usr/bin/tool"


def test_write_tar_records_numeric_owners_only(tmp_path):
    build_sample_tree(str(tmp_path / "source"))
    tool = names_in(tar_of(tmp_path / "source"))["usr/bin/tool"]
    assert (tool.uid, tool.gid, tool.uname, tool.gname) == (12345, 54321, "", "")


def test_write_tar_output_round_trips_its_diff_id(tmp_path):
    build_sample_tree(str(tmp_path / "source"))
    tar = tar_of(tmp_path / "source")
    (tmp_path / "copy").mkdir()
    assert apply(tmp_path / "copy", tar).diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_write_tar_overlay_turns_whiteout_devices_into_wh_files(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    os.mknod(str(upper / "etc/gone"), stat.S_IFCHR, 0)
    members = names_in(tar_of(upper, whiteout_mode="overlay"))
    assert "etc/gone" not in members
    assert members["etc/.wh.gone"].isreg() and members["etc/.wh.gone"].size == 0


def test_write_tar_overlay_turns_opaque_dirs_into_opq_markers(tmp_path):
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d/new").write_bytes(b"1")
    os.setxattr(str(upper / "d"), "trusted.overlay.opaque", b"y")
    tar = tar_of(upper, whiteout_mode="overlay")
    assert list(names_in(tar)) == ["d", "d/.wh..wh..opq", "d/new"]
    assert "trusted.overlay" not in str(names_in(tar)["d"].pax_headers)


def test_write_tar_overlay_output_applies_back_as_overlay(tmp_path):
    upper, copy = tmp_path / "upper", tmp_path / "copy"
    (upper / "d").mkdir(parents=True)
    os.setxattr(str(upper / "d"), "trusted.overlay.opaque", b"y")
    os.mknod(str(upper / "gone"), stat.S_IFCHR, 0)
    copy.mkdir()
    apply(copy, tar_of(upper, whiteout_mode="overlay"), mode="overlay")
    assert os.getxattr(str(copy / "d"), "trusted.overlay.opaque") == b"y"
    assert os.lstat(str(copy / "gone")).st_rdev == 0


def test_write_tar_delete_mode_keeps_devices_as_devices(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.mknod(str(root / "dev0"), stat.S_IFCHR, 0)
    assert names_in(tar_of(root))["dev0"].ischr()


def test_write_tar_aufs_mode_leaves_out_aufs_metadata(tmp_path):
    diff = tmp_path / "diff"
    (diff / ".wh..wh.plnk").mkdir(parents=True)
    (diff / ".wh..wh.aufs").write_bytes(b"")
    (diff / ".wh.gone").write_bytes(b"")
    assert list(names_in(tar_of(diff, whiteout_mode="aufs"))) == [".wh.gone"]


def test_write_tar_paths_limits_the_entries(tmp_path):
    build_sample_tree(str(tmp_path / "source"))
    members = names_in(tar_of(tmp_path / "source", paths=["usr/bin", "fifo"]))
    assert sorted(members) == ["fifo", "usr/bin", "usr/bin/tool", "usr/bin/tool-link"]


def test_write_tar_paths_climbing_out_are_refused(tmp_path):
    (tmp_path / "root").mkdir()
    with pytest.raises(archive.ArchiveError, match="outside"):
        tar_of(tmp_path / "root", paths=["../victim"])


def test_write_tar_does_not_follow_a_symlinked_directory(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/etc", str(root / "etc"))
    members = names_in(tar_of(root, paths=["etc/passwd", "etc"]))
    assert list(members) == ["etc"] and members["etc"].issym()


# --- changes and export_changes -------------------------------------------------------------

@pytest.fixture
def old_and_new(tmp_path):
    """`old` is the sample tree; `new` is a copy of it with one change of every kind."""
    old, new = tmp_path / "old", tmp_path / "new"
    build_sample_tree(str(old))
    new.mkdir()
    apply(new, tar_of(old))
    (new / "added-dir/sub").mkdir(parents=True)
    (new / "added-dir/sub/file").write_bytes(b"new")
    (new / "usr/bin/tool").write_bytes(b"changed content")
    os.utime(str(new / "usr/bin/tool"), (MTIME + 60, MTIME + 60))
    os.remove(str(new / "fifo"))
    shutil.rmtree(str(new / "tmp"))
    os.chmod(str(new / "empty"), 0o600)
    os.remove(str(new / "usr/relative"))
    os.symlink("bin/elsewhere", str(new / "usr/relative"))
    os.utime(str(new / "usr/relative"), (MTIME, MTIME), follow_symlinks=False)
    return old, new


def test_changes_against_nothing_lists_everything_as_added(tmp_path):
    build_sample_tree(str(tmp_path / "tree"))
    result = archive.changes(str(tmp_path / "tree"), None)
    assert {change.kind for change in result} == {archive.CHANGE_ADD}
    assert "/usr/bin/tool-link" in {change.path for change in result}
    assert len(result) == len(snapshot(tmp_path / "tree"))


def test_changes_lists_each_kind_of_change(old_and_new):
    old, new = old_and_new
    assert archive.changes(str(new), str(old)) == [
        archive.Change("/added-dir", archive.CHANGE_ADD),
        archive.Change("/added-dir/sub", archive.CHANGE_ADD),
        archive.Change("/added-dir/sub/file", archive.CHANGE_ADD),
        archive.Change("/empty", archive.CHANGE_MODIFY),
        archive.Change("/usr", archive.CHANGE_MODIFY),
        archive.Change("/usr/bin", archive.CHANGE_MODIFY),
        archive.Change("/usr/bin/tool", archive.CHANGE_MODIFY),
        archive.Change("/usr/bin/tool-link", archive.CHANGE_MODIFY),  # same inode as tool
        archive.Change("/usr/relative", archive.CHANGE_MODIFY),
        archive.Change("/fifo", archive.CHANGE_DELETE),
        archive.Change("/tmp", archive.CHANGE_DELETE),
    ]


def test_changes_ignores_a_directory_whose_mtime_alone_changed(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "d").mkdir(parents=True)
    (new / "d").mkdir(parents=True)
    os.utime(str(old / "d"), (1000, 1000))
    assert archive.changes(str(new), str(old)) == []


def test_changes_detects_a_capability_change(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for root in (old, new):
        root.mkdir()
        (root / "ping").write_bytes(b"")
        os.utime(str(root / "ping"), (MTIME, MTIME))
    os.setxattr(str(new / "ping"), "security.capability", CAPABILITY)
    assert archive.changes(str(new), str(old)) == [archive.Change("/ping", archive.CHANGE_MODIFY)]


def test_changes_accepts_whole_second_mtimes_from_a_tar(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for root, mtime_ns in ((old, MTIME * 10 ** 9 + 123456789), (new, MTIME * 10 ** 9)):
        root.mkdir()
        (root / "f").write_bytes(b"same")
        os.utime(str(root / "f"), ns=(mtime_ns, mtime_ns))
    assert archive.changes(str(new), str(old)) == []


def test_export_changes_writes_deletions_as_whiteouts(old_and_new):
    old, new = old_and_new
    out = io.BytesIO()
    archive.export_changes(str(new), archive.changes(str(new), str(old)), out)
    members = names_in(out.getvalue())
    assert members[".wh.tmp"].isreg() and members[".wh.fifo"].size == 0
    assert "tmp" not in members and "null" not in members


def test_export_changes_applied_to_old_gives_new(old_and_new, tmp_path):
    old, new = old_and_new
    copy = tmp_path / "copy"
    copy.mkdir()
    apply(copy, tar_of(old))
    out = io.BytesIO()
    archive.export_changes(str(new), archive.changes(str(new), str(old)), out)
    apply(copy, out.getvalue())
    assert snapshot(copy) == snapshot(new)


def test_changes_from_overlay_upper_reads_whiteouts_and_lowers(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for root in (lower, upper):
        (root / "etc").mkdir(parents=True)
        (root / "opaque").mkdir()
        (root / "etc/hosts").write_bytes(b"hosts of " + root.name.encode())
        os.utime(str(root / "etc"), (MTIME, MTIME))
    os.mknod(str(upper / "gone"), stat.S_IFCHR, 0)
    os.setxattr(str(upper / "opaque"), "trusted.overlay.opaque", b"y")
    (upper / "opaque/fresh").write_bytes(b"")
    (upper / "added").write_bytes(b"")
    assert archive.changes_from_overlay_upper(str(upper), [str(lower)]) == [
        archive.Change("/added", archive.CHANGE_ADD),
        archive.Change("/etc/hosts", archive.CHANGE_MODIFY),
        archive.Change("/gone", archive.CHANGE_DELETE),
        archive.Change("/opaque", archive.CHANGE_DELETE),
        archive.Change("/opaque/fresh", archive.CHANGE_ADD),
    ]


def test_changes_from_overlay_upper_without_lowers_lists_additions(tmp_path):
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d/f").write_bytes(b"")
    assert archive.changes_from_overlay_upper(str(upper)) == [
        archive.Change("/d", archive.CHANGE_ADD), archive.Change("/d/f", archive.CHANGE_ADD)]
