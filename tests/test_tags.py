"""Tests for drivers/tags.py: the tag store file `repositories-<driver>` and its references."""
import json
import os

import pytest

from drivers.errdefs import Conflict, InvalidParameter
from drivers.reference import parse_normalized_named
from drivers.tags import TagStore

IMAGE_A = "sha256:" + "a" * 64
IMAGE_B = "sha256:" + "b" * 64
DIGEST = "sha256:" + "d" * 64


def ref(text):
    return parse_normalized_named(text)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "repositories-vfs")


@pytest.fixture
def store(path):
    return TagStore(path)


def test_a_missing_file_is_an_empty_store(store):
    assert store.repositories() == [] and store.get(ref("busybox")) is None


def test_add_writes_1_8s_json_shape_with_normalised_names(store, path):
    store.add(ref("busybox"), IMAGE_A)
    store.add_digest(ref("busybox@" + DIGEST), IMAGE_A)
    with open(path) as saved:
        assert json.load(saved) == {"Repositories": {"docker.io/library/busybox": {
            "latest": IMAGE_A, DIGEST: IMAGE_A}}}


def test_the_file_is_private_and_no_temporary_file_is_left(store, path):
    store.add(ref("busybox"), IMAGE_A)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.listdir(os.path.dirname(path)) == ["repositories-vfs"]


def test_every_spelling_of_a_name_is_the_same_reference(store):
    store.add(ref("busybox"), IMAGE_A)
    for spelling in ("busybox:latest", "library/busybox", "docker.io/library/busybox:latest",
                     "index.docker.io/library/busybox"):
        assert store.get(ref(spelling)) == IMAGE_A


def test_a_new_store_reads_what_the_last_one_wrote(store, path):
    store.add(ref("localhost:5000/app:v1"), IMAGE_A)
    assert TagStore(path).get(ref("localhost:5000/app:v1")) == IMAGE_A


def test_moving_a_tag_needs_force(store):
    store.add(ref("app:v1"), IMAGE_A)
    with pytest.raises(Conflict, match="Conflict: Tag app:v1 is already set to image %s" % IMAGE_A):
        store.add(ref("app:v1"), IMAGE_B)
    store.add(ref("app:v1"), IMAGE_B, force=True)
    assert store.get(ref("app:v1")) == IMAGE_B


def test_adding_the_same_tag_again_is_fine(store):
    store.add(ref("app:v1"), IMAGE_A)
    store.add(ref("app:v1"), IMAGE_A)
    assert store.get(ref("app:v1")) == IMAGE_A


def test_add_refuses_a_digest(store):
    with pytest.raises(InvalidParameter, match="digest"):
        store.add(ref("app@" + DIGEST), IMAGE_A)


def test_add_refuses_the_name_sha256(store):
    with pytest.raises(InvalidParameter, match="ambiguous"):
        store.add(ref("sha256:v1"), IMAGE_A)


def test_a_digest_cannot_be_overwritten(store):
    store.add_digest(ref("app@" + DIGEST), IMAGE_A)
    with pytest.raises(Conflict, match="Cannot overwrite digest " + DIGEST):
        store.add_digest(ref("app@" + DIGEST), IMAGE_B)


def test_add_digest_needs_a_digest(store):
    with pytest.raises(InvalidParameter):
        store.add_digest(ref("app:v1"), IMAGE_A)


def test_delete_says_whether_the_reference_existed(store):
    store.add(ref("app:v1"), IMAGE_A)
    assert store.delete(ref("app:v1")) is True
    assert store.delete(ref("app:v1")) is False


def test_deleting_the_last_reference_drops_the_repository(store, path):
    store.add(ref("app:v1"), IMAGE_A)
    store.delete(ref("app:v1"))
    with open(path) as saved:
        assert json.load(saved) == {"Repositories": {}}


def test_references_are_sorted_by_full_name_like_dockerd(store):
    store.add(ref("busybox"), IMAGE_A)
    store.add(ref("alpine:3.10"), IMAGE_A)
    store.add_digest(ref("busybox@" + DIGEST), IMAGE_A)
    store.add(ref("other"), IMAGE_B)
    assert [r.familiar_string() for r in store.references(IMAGE_A)] == [
        "alpine:3.10", "busybox:latest", "busybox@" + DIGEST]


def test_by_repo_lists_every_tag_and_digest_of_one_repository(store):
    store.add(ref("app:v1"), IMAGE_A)
    store.add(ref("app:v2"), IMAGE_B)
    store.add_digest(ref("app@" + DIGEST), IMAGE_A)
    store.add(ref("other:v1"), IMAGE_A)
    assert [(str(r), image) for r, image in store.by_repo("docker.io/library/app")] == [
        ("docker.io/library/app:v1", IMAGE_A), ("docker.io/library/app:v2", IMAGE_B),
        ("docker.io/library/app@" + DIGEST, IMAGE_A)]


def test_repositories_is_a_snapshot_of_the_whole_store(store):
    store.add(ref("app:v1"), IMAGE_A)
    store.add(ref("quay.io/org/tool:2"), IMAGE_B)
    snapshot = store.repositories()
    snapshot[0][1]["v9"] = IMAGE_B
    assert store.repositories() == [("docker.io/library/app", {"v1": IMAGE_A}),
                                    ("quay.io/org/tool", {"2": IMAGE_B})]


def test_a_corrupt_file_is_reported_with_its_path(path):
    with open(path, "w") as broken:
        broken.write("{not json")
    with pytest.raises(ValueError, match="Error loading tag store " + path):
        TagStore(path)
