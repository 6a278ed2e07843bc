"""Tests for drivers/overlay.py beyond the shared suite: the on-disk layout (own files only, the
lower chain, short links), the reference-counted mounts, adoption of a mount left by an earlier
daemon, and stacks deep enough that the mount options only fit thanks to the short links.
"""
import os
import stat

import pytest

from drivers import graphdriver, linux, overlay
from test_graphdriver import make_layer, mounts_under, root, tree  # noqa: F401 (root: fixture)


@pytest.fixture
def driver(root):  # noqa: F811 (the fixture imported above)
    driver = graphdriver.new(root, "overlay")
    yield driver
    driver.cleanup()


@pytest.fixture
def stack(driver):
    """base <- child <- grandchild, one file each."""
    make_layer(driver, "base", None, ("a", "1"))
    make_layer(driver, "child", "base", ("b", "2"))
    make_layer(driver, "grandchild", "child", ("c", "3"))
    return driver


def merged(driver, layer_id):
    return os.path.join(driver.home, layer_id, "merged")


def read(path):
    with open(path) as f:
        return f.read()


def test_layer_diff_holds_only_its_own_files(stack):
    assert os.listdir(os.path.join(stack.home, "child", "diff")) == ["b"]


def test_whiteout_is_stored_as_overlay_character_device(driver):
    make_layer(driver, "base", None, ("a", "1"))
    make_layer(driver, "child", "base", (".wh.a", ""))
    info = os.lstat(os.path.join(driver.home, "child", "diff", "a"))
    assert stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def test_lower_file_lists_parents_nearest_first(stack):
    links = [read(os.path.join(stack.home, name, "link")) for name in ("child", "base")]
    assert read(os.path.join(stack.home, "grandchild", "lower")) == "l/%s:l/%s" % tuple(links)


def test_base_layer_has_no_lower_file(stack):
    assert not os.path.exists(os.path.join(stack.home, "base", "lower"))


def test_short_link_points_at_layer_diff(stack):
    link = read(os.path.join(stack.home, "base", "link"))
    assert os.path.realpath(os.path.join(stack.home, "l", link)) == os.path.join(
        os.path.realpath(stack.home), "base", "diff")


def test_short_links_are_26_characters(stack):
    assert [len(name) for name in os.listdir(os.path.join(stack.home, "l"))] == [26, 26, 26]


def test_remove_deletes_short_link(stack):
    link = read(os.path.join(stack.home, "grandchild", "link"))
    stack.remove("grandchild")
    assert not os.path.lexists(os.path.join(stack.home, "l", link))


def test_support_probe_leaves_only_link_dir(driver):
    assert os.listdir(driver.home) == ["l"]


def test_get_of_child_mounts_merged_dir(stack):
    assert stack.get("grandchild") == merged(stack, "grandchild")
    assert linux.is_mountpoint(merged(stack, "grandchild"))


def test_get_of_base_layer_mounts_nothing(stack):
    assert stack.get("base") == os.path.join(stack.home, "base", "diff")
    assert mounts_under(stack.home) == []


def test_second_get_does_not_mount_again(stack):
    stack.get("child")
    stack.get("child")
    assert mounts_under(stack.home) == [merged(stack, "child")]


def test_two_gets_and_one_put_stay_mounted(stack):
    stack.get("child")
    stack.get("child")
    stack.put("child")
    assert linux.is_mountpoint(merged(stack, "child"))


def test_last_put_unmounts(stack):
    stack.get("child")
    stack.get("child")
    stack.put("child")
    stack.put("child")
    assert not linux.is_mountpoint(merged(stack, "child"))


def test_restarted_driver_adopts_existing_mount(stack, root):  # noqa: F811
    stack.get("child")
    restarted = graphdriver.new(root, "overlay")
    restarted.get("child")
    assert mounts_under(stack.home) == [merged(stack, "child")]


def test_restarted_driver_put_unmounts_adopted_mount(stack, root):  # noqa: F811
    stack.get("child")
    restarted = graphdriver.new(root, "overlay")
    restarted.put("child")
    assert mounts_under(stack.home) == []


def test_mounting_leaves_daemon_working_directory_alone(stack):
    before = os.getcwd()
    stack.get("grandchild")
    assert os.getcwd() == before


def test_mount_uses_paths_relative_to_home(stack):
    stack.get("grandchild")
    with open("/proc/self/mountinfo") as mountinfo:
        line = next(line for line in mountinfo if merged(stack, "grandchild") in line)
    assert "lowerdir=l/" in line and "upperdir=grandchild/diff" in line


def test_metadata_names_overlay_directories(stack):
    home = stack.home
    assert stack.get_metadata("grandchild") == {
        "LowerDir": "%s/child/diff:%s/base/diff" % (home, home),
        "MergedDir": home + "/grandchild/merged",
        "UpperDir": home + "/grandchild/diff",
        "WorkDir": home + "/grandchild/work",
    }


def test_metadata_of_base_layer_has_no_lower_dir(stack):
    assert "LowerDir" not in stack.get_metadata("base")


def test_status_reports_backing_filesystem_and_d_type(driver):
    assert driver.status() == [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]]


def build_chain(driver, depth):
    """`depth` layers, each on the one before, each adding one file; returns the top ID."""
    parent = None
    for index in range(depth):
        layer_id = "%064x" % index  # as long as real layer IDs
        driver.create(layer_id, parent)
        with open(os.path.join(driver.get_metadata(layer_id)["UpperDir"], "f%d" % index), "w"):
            pass
        parent = layer_id
    return parent


def test_chain_of_120_layers_mounts(driver):
    top = build_chain(driver, 120)
    assert len(os.listdir(driver.get(top))) == 120


def test_chain_deeper_than_max_depth_is_refused(driver):
    top = build_chain(driver, overlay.MAX_DEPTH + 1)
    with pytest.raises(graphdriver.GraphDriverError, match="max depth exceeded"):
        driver.create("too-deep", top)


def test_layer_id_l_is_refused(driver):
    with pytest.raises(graphdriver.GraphDriverError, match="invalid layer id"):
        driver.create("l")


def test_failed_create_leaves_nothing_behind(driver, monkeypatch):
    driver.create("base")
    links_before = os.listdir(os.path.join(driver.home, "l"))
    write_file = overlay._write_file

    def fail_on_lower_file(path, text):
        if os.path.basename(path) == "lower":
            raise OSError("simulated failure")
        write_file(path, text)

    monkeypatch.setattr(overlay, "_write_file", fail_on_lower_file)
    with pytest.raises(OSError, match="simulated failure"):
        driver.create("child", "base")
    assert (sorted(os.listdir(driver.home)), os.listdir(os.path.join(driver.home, "l"))) == (
        ["base", "l"], links_before)


def test_container_layer_sees_whole_stack(stack):
    stack.create_read_write("container", "grandchild")
    assert tree(stack, "container") == {"a": "1", "b": "2", "c": "3"}
