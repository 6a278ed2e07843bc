"""Tests for drivers/graphdriver.py: one suite every graph driver must pass (Docker keeps the same
idea in daemon/graphdriver/graphtest), run against vfs and overlay, then driver selection
(graphdriver.New): -s, prior state, the priority walk and its fallbacks, --storage-opt.

Everything happens under pytest's tmp_path on the real filesystem with real overlay mounts; the
`root` fixture unmounts whatever a test left mounted under it, even when the test fails.
"""
import hashlib
import io
import logging
import os
import shutil
import subprocess
import tarfile

import pytest

from drivers import graphdriver, linux

DRIVERS = ["vfs", "overlay"]
LOGGER = "pydockerd.graphdriver"


def mounts_under(path):
    """Mount points at or below `path`, in the order they were mounted."""
    top = os.path.realpath(str(path))
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = linux.unescape_mount_path(line.split()[4])
            if point == top or point.startswith(top + "/"):
                found.append(point)
    return found


def unmount_everything_under(path):
    for point in reversed(mounts_under(path)):
        linux.umount(point, linux.MNT_DETACH)


@pytest.fixture
def root(tmp_path):
    """A daemon root; nothing stays mounted under it after the test."""
    yield str(tmp_path)
    unmount_everything_under(tmp_path)


@pytest.fixture(params=DRIVERS)
def driver(request, root):
    driver = graphdriver.new(root, request.param)
    yield driver
    driver.cleanup()


def layer_tar(*entries):
    """A layer tar from (name, content) pairs: str content is a file, None a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1600000000
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = content.encode()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def make_layer(driver, layer_id, parent, *entries):
    driver.create(layer_id, parent)
    return driver.apply_diff(layer_id, parent, layer_tar(*entries))


def tree(driver, layer_id):
    """{path: content} of the layer's stacked view; directories map to None."""
    top = driver.get(layer_id)
    try:
        found = {}
        for directory, dirs, files in os.walk(top):
            for name in dirs:
                found[os.path.relpath(os.path.join(directory, name), top)] = None
            for name in files:
                with open(os.path.join(directory, name)) as f:
                    found[os.path.relpath(os.path.join(directory, name), top)] = f.read()
        return found
    finally:
        driver.put(layer_id)


def tar_names(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted(member.name.rstrip("/") for member in tar.getmembers())


def diff_bytes(driver, layer_id, parent):
    out = io.BytesIO()
    driver.diff(layer_id, parent, out)
    return out.getvalue()


# --- the shared driver suite ---------------------------------------------------------------

def test_created_layer_exists(driver):
    driver.create("base")
    assert driver.exists("base")


def test_unknown_layer_does_not_exist(driver):
    assert not driver.exists("never-created")


def test_home_is_named_after_driver(driver, root):
    assert driver.home == os.path.join(root, driver.name)


def test_base_layer_starts_empty(driver):
    driver.create("base")
    assert tree(driver, "base") == {}


def test_removed_layer_no_longer_exists(driver):
    driver.create("base")
    driver.remove("base")
    assert not driver.exists("base")


def test_creating_existing_layer_fails(driver):
    driver.create("base")
    with pytest.raises(graphdriver.GraphDriverError, match="already exists"):
        driver.create("base")


def test_creating_on_missing_parent_fails(driver):
    with pytest.raises(graphdriver.GraphDriverError, match="no such layer: ghost"):
        driver.create("child", "ghost")


def test_get_of_missing_layer_fails(driver):
    with pytest.raises(graphdriver.GraphDriverError, match="no such layer"):
        driver.get("ghost")


def test_layer_id_with_slash_is_refused(driver):
    with pytest.raises(graphdriver.GraphDriverError, match="invalid layer id"):
        driver.create("../escape")


def test_child_sees_parent_files(driver):
    make_layer(driver, "base", None, ("etc", None), ("etc/os-release", "base\n"))
    driver.create("child", "base")
    assert tree(driver, "child") == {"etc": None, "etc/os-release": "base\n"}


def test_child_writes_leave_parent_unchanged(driver):
    make_layer(driver, "base", None, ("a", "base"))
    driver.create("child", "base")
    with open(os.path.join(driver.get("child"), "a"), "w") as f:
        f.write("child")
    driver.put("child")
    assert tree(driver, "base") == {"a": "base"}


def test_container_layer_is_writable(driver):
    make_layer(driver, "base", None, ("a", "base"))
    driver.create_read_write("container", "base")
    with open(os.path.join(driver.get("container"), "new"), "w") as f:
        f.write("written")
    driver.put("container")
    assert tree(driver, "container") == {"a": "base", "new": "written"}


def test_whiteout_hides_parent_file_in_child(driver):
    make_layer(driver, "base", None, ("a", "1"), ("b", "2"))
    make_layer(driver, "child", "base", (".wh.a", ""))
    assert tree(driver, "child") == {"b": "2"}


def test_whiteout_stays_hidden_in_grandchild(driver):
    make_layer(driver, "base", None, ("a", "1"), ("b", "2"))
    make_layer(driver, "child", "base", (".wh.a", ""))
    make_layer(driver, "grandchild", "child", ("c", "3"))
    assert tree(driver, "grandchild") == {"b": "2", "c": "3"}


def test_opaque_directory_hides_parent_contents(driver):
    make_layer(driver, "base", None, ("d", None), ("d/old", "1"))
    make_layer(driver, "child", "base", ("d", None), ("d/.wh..wh..opq", ""), ("d/new", "2"))
    assert tree(driver, "child") == {"d": None, "d/new": "2"}


def test_apply_diff_reports_size_and_diff_id(driver):
    tar = layer_tar(("a", "12345"), ("b", "678"))
    expected_diff_id = "sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()
    driver.create("base")
    result = driver.apply_diff("base", None, tar)
    assert (result.diff_id, result.size) == (expected_diff_id, 8)


def test_diff_of_base_layer_recreates_it(driver):
    make_layer(driver, "base", None, ("etc", None), ("etc/hosts", "127.0.0.1 localhost\n"))
    driver.create("copy")
    driver.apply_diff("copy", None, io.BytesIO(diff_bytes(driver, "base", None)))
    assert tree(driver, "copy") == tree(driver, "base")


def test_diff_against_parent_holds_only_the_change(driver):
    make_layer(driver, "base", None, ("a", "1"), ("b", "2"))
    make_layer(driver, "child", "base", ("c", "3"))
    assert tar_names(diff_bytes(driver, "child", "base")) == ["c"]


def test_deletion_in_child_diffs_as_whiteout(driver):
    make_layer(driver, "base", None, ("a", "1"), ("b", "2"))
    driver.create("child", "base")
    os.unlink(os.path.join(driver.get("child"), "a"))
    driver.put("child")
    assert tar_names(diff_bytes(driver, "child", "base")) == [".wh.a"]


def test_diff_applied_on_parent_reproduces_child(driver):
    make_layer(driver, "base", None, ("a", "1"), ("b", "2"))
    make_layer(driver, "child", "base", (".wh.a", ""), ("b", "changed"), ("c", "3"))
    diff = diff_bytes(driver, "child", "base")
    driver.create("replay", "base")
    driver.apply_diff("replay", "base", io.BytesIO(diff))
    assert tree(driver, "replay") == {"b": "changed", "c": "3"}


def test_diff_against_grandparent_includes_both_layers(driver):
    make_layer(driver, "base", None, ("a", "1"))
    make_layer(driver, "middle", "base", ("b", "2"))
    make_layer(driver, "top", "middle", ("c", "3"))
    assert tar_names(diff_bytes(driver, "top", "base")) == ["b", "c"]


def test_changes_lists_added_modified_and_deleted(driver):
    make_layer(driver, "base", None, ("a", "1"), ("b", "2"))
    make_layer(driver, "child", "base", (".wh.a", ""), ("b", "changed"), ("c", "3"))
    found = sorted((change.path, change.kind) for change in driver.changes("child", "base"))
    assert found == [("/a", 2), ("/b", 0), ("/c", 1)]


def test_diff_size_counts_added_and_modified_bytes(driver):
    make_layer(driver, "base", None, ("a", "1"), ("b", "2"))
    make_layer(driver, "child", "base", ("b", "1234"), ("c", "123456"))
    assert driver.diff_size("child", "base") == 10


def test_two_gets_and_one_put_keep_layer_usable(driver):
    make_layer(driver, "base", None, ("a", "1"))
    driver.create("child", "base")
    path = driver.get("child")
    driver.get("child")
    driver.put("child")
    assert os.listdir(path) == ["a"]
    driver.put("child")


def test_cleanup_leaves_nothing_mounted(driver):
    make_layer(driver, "base", None, ("a", "1"))
    for name in ("one", "two"):
        driver.create(name, "base")
        driver.get(name)
    driver.cleanup()
    assert mounts_under(driver.home) == []


def test_remove_of_layer_in_use_unmounts_it(driver):
    make_layer(driver, "base", None, ("a", "1"))
    driver.create("child", "base")
    driver.get("child")
    driver.remove("child")
    assert (driver.exists("child"), mounts_under(driver.home)) == (False, [])


def test_remove_of_child_keeps_parent_files(driver):
    make_layer(driver, "base", None, ("a", "1"))
    driver.create("child", "base")
    driver.remove("child")
    assert tree(driver, "base") == {"a": "1"}


# --- selection: graphdriver.New ---------------------------------------------------------

def make_prior_state(root, name):
    os.makedirs(os.path.join(root, name, "some-layer"))


def test_named_driver_is_used(root):
    assert graphdriver.new(root, "vfs").name == "vfs"


def test_unknown_driver_name_fails(root):
    with pytest.raises(graphdriver.GraphDriverError) as failure:
        graphdriver.new(root, "bogus")
    assert str(failure.value).startswith(
        "error initializing graphdriver: driver not supported: bogus is not a storage driver")


def test_unimplemented_driver_name_fails(root):
    with pytest.raises(graphdriver.GraphDriverError, match="btrfs is not implemented by pydockerd"):
        graphdriver.new(root, "btrfs")


def test_prior_driver_state_chooses_driver(root):
    make_prior_state(root, "vfs")
    assert graphdriver.new(root).name == "vfs"


def test_empty_prior_directory_is_not_prior_state(root):
    os.mkdir(os.path.join(root, "vfs"))
    assert graphdriver.new(root).name == "overlay"


def test_two_prior_drivers_are_refused(root):
    make_prior_state(root, "overlay")
    make_prior_state(root, "vfs")
    with pytest.raises(graphdriver.GraphDriverError) as failure:
        graphdriver.new(root)
    assert str(failure.value) == (
        "error initializing graphdriver: %s contains several valid graphdrivers: overlay, vfs; "
        "Please cleanup or explicitly choose storage driver (-s <DRIVER>)" % root)


def test_unusable_prior_driver_is_fatal(root):
    make_prior_state(root, "devicemapper")
    with pytest.raises(graphdriver.GraphDriverError, match="devicemapper is not implemented"):
        graphdriver.new(root)


def test_priority_walk_picks_overlay_on_this_machine(root):
    assert graphdriver.new(root).name == "overlay"


@pytest.mark.parametrize("skipped", ["aufs", "btrfs", "zfs", "devicemapper"])
def test_priority_walk_logs_skipped_driver_with_reason(root, caplog, skipped):
    caplog.set_level(logging.INFO, logger=LOGGER)
    graphdriver.new(root)
    reasons = [record.getMessage() for record in caplog.records
               if record.getMessage().startswith("[graphdriver] skipping %s: " % skipped)]
    assert len(reasons) == 1 and "not supported" in reasons[0]


@pytest.fixture
def overlay_mounted_root(tmp_path):
    """A daemon root inside an overlay mount (docker-in-docker's situation)."""
    for name in ("lower", "upper", "work", "merged"):
        (tmp_path / name).mkdir()
    merged = str(tmp_path / "merged")
    linux.mount("overlay", merged, "overlay", 0, "lowerdir=%s,upperdir=%s,workdir=%s" % (
        tmp_path / "lower", tmp_path / "upper", tmp_path / "work"))
    yield os.path.join(merged, "docker")
    unmount_everything_under(tmp_path)


def test_overlay_on_overlay_falls_back_to_vfs(overlay_mounted_root):
    assert graphdriver.new(overlay_mounted_root).name == "vfs"


def test_overlay_on_overlay_is_skipped_with_reason(overlay_mounted_root, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    graphdriver.new(overlay_mounted_root)
    assert ("[graphdriver] skipping overlay: backing file system is unsupported for this graph "
            "driver: 'overlay' is not supported over overlayfs") in caplog.messages


def test_refused_overlay_leaves_no_home(overlay_mounted_root):
    graphdriver.new(overlay_mounted_root)
    assert not os.path.exists(os.path.join(overlay_mounted_root, "overlay"))


needs_loop_tools = pytest.mark.skipif(
    not (shutil.which("mkfs.ext4") and shutil.which("losetup")), reason="needs mkfs.ext4, losetup")


@pytest.fixture
def no_d_type_root(tmp_path):
    """A daemon root on an ext4 made without the filetype feature: readdir gives DT_UNKNOWN."""
    image, mountpoint = tmp_path / "fs.img", tmp_path / "mnt"
    mountpoint.mkdir()
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^filetype,^has_journal", str(image)], check=True)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                            stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
    try:
        linux.mount(device, str(mountpoint), "ext4")
        yield str(mountpoint / "docker")
    finally:
        unmount_everything_under(tmp_path)
        subprocess.run(["losetup", "-d", device], check=True)


@needs_loop_tools
def test_overlay_without_d_type_falls_back_to_vfs(no_d_type_root, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert graphdriver.new(no_d_type_root).name == "vfs"
    assert any(message.startswith("[graphdriver] skipping overlay: driver not supported: the "
                                  "backing extfs filesystem is formatted without d_type")
               for message in caplog.messages)


def test_aufs_is_reported_not_supported_here(root):
    if "aufs" in open("/proc/filesystems").read():
        pytest.skip("this kernel has aufs")
    with pytest.raises(graphdriver.ErrNotSupported, match="aufs not supported"):
        graphdriver.get_driver("aufs", root)


def test_named_aufs_fails_boot_with_reason(root):
    if "aufs" in open("/proc/filesystems").read():
        pytest.skip("this kernel has aufs")
    with pytest.raises(graphdriver.GraphDriverError,
                       match="^error initializing graphdriver: driver not supported: aufs not"):
        graphdriver.new(root, "aufs")


# --- --storage-opt ----------------------------------------------------------------------

def test_unknown_overlay_option_is_refused(root):
    with pytest.raises(graphdriver.GraphDriverError, match="overlay: unknown option overlay.size"):
        graphdriver.new(root, "overlay", ["overlay.size=10G"])


def test_vfs_takes_no_options(root):
    with pytest.raises(graphdriver.GraphDriverError, match="vfs: unknown option size"):
        graphdriver.new(root, "vfs", ["size=10G"])


def test_option_without_value_is_refused(root):
    with pytest.raises(graphdriver.GraphDriverError,
                       match="Unable to parse key/value option: overlay.override_kernel_check"):
        graphdriver.new(root, "overlay", ["overlay.override_kernel_check"])


def test_option_keys_are_case_insensitive(root):
    driver = graphdriver.new(root, "overlay", ["Overlay.Override_Kernel_Check=true"])
    assert driver.name == "overlay"


def test_non_boolean_override_is_refused(root):
    with pytest.raises(graphdriver.GraphDriverError, match="invalid boolean value 'maybe'"):
        graphdriver.new(root, "overlay", ["overlay.override_kernel_check=maybe"])


def test_option_for_another_driver_stops_priority_walk(root):
    # Options are per driver; the walk must not silently pick a driver that ignores them.
    with pytest.raises(graphdriver.GraphDriverError, match="overlay: unknown option dm.basesize"):
        graphdriver.new(root, options=["dm.basesize=20G"])
