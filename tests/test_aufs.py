"""Tests for drivers/aufs.py. This kernel has no aufs, so beyond detection (in
test_graphdriver.py) only what needs no aufs mount is tested: the on-disk layout, and how the
branch list is split between the first mount and `append:` remounts when it outgrows a page
(with linux.mount recording the calls instead of making them).
"""
import os

import pytest

from drivers import aufs, linux


@pytest.fixture
def driver(tmp_path):
    home = tmp_path / "aufs"
    for sub in ("mnt", "diff", "layers"):
        (home / sub).mkdir(parents=True)
    return aufs.Driver(str(home), "extfs")


@pytest.fixture
def mount_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(linux, "mount", lambda *args: calls.append(args))
    return calls


def test_layers_file_lists_parents_nearest_first(driver):
    driver.create("base")
    driver.create("child", "base")
    driver.create("grandchild", "child")
    with open(os.path.join(driver.home, "layers", "grandchild")) as layers:
        assert layers.read() == "child\nbase\n"


def test_get_of_base_layer_returns_its_branch(driver):
    driver.create("base")
    assert driver.get("base") == os.path.join(driver.home, "diff", "base")


def test_get_of_child_mounts_branches(driver, mount_calls):
    driver.create("base")
    driver.create("child", "base")
    driver.get("child")
    home = driver.home
    assert mount_calls == [("none", home + "/mnt/child", "aufs", 0,
                            "br:%s/diff/child=rw:%s/diff/base=ro+wh,%s"
                            % (home, home, aufs.MOUNT_OPTIONS))]


def test_branches_beyond_a_page_are_appended(mount_calls):
    read_only = ["/var/lib/docker/aufs/diff/%064x" % n for n in range(100)]
    aufs.mount_branches("/var/lib/docker/aufs/diff/top", read_only, "/mnt/top")
    first = mount_calls[0][4]
    appended = [call[4][len("append:"):-len("=ro+wh")] for call in mount_calls[1:]]
    assert len(first) <= os.sysconf("SC_PAGESIZE")
    assert first.count("=ro+wh") + len(appended) == 100
    assert appended == read_only[first.count("=ro+wh"):]


def test_remove_deletes_layer_files(driver):
    driver.create("base")
    driver.remove("base")
    assert [os.listdir(os.path.join(driver.home, sub)) for sub in ("mnt", "diff", "layers")] == [
        [], [], []]
