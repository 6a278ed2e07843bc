"""drivers/volume.py on its own: mount-spec parsing, the local driver's rules, the volume
service's references, filters and prune, and a container's mount points from plan to removal.

Nothing here mounts anything (the CLI tests do, through a daemon): volumes without options are
plain directories under a temporary root.
"""
import os

import pytest

from drivers import errdefs, volume
from drivers.volume import MountPoint

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="copies keep owners: needs root")


class EventLog(list):
    def __call__(self, type_, action, actor, attributes):
        self.append((type_, action, actor, attributes))


@pytest.fixture
def service(tmp_path):
    return volume.VolumeService(str(tmp_path), EventLog())


def raises(kind, call, *args):
    with pytest.raises(kind) as info:
        call(*args)
    return str(info.value)


# -- -v, --mount, --volumes-from -------------------------------------------------------------

def test_parse_mount_raw_tells_binds_named_and_anonymous_volumes_apart():
    bind = volume.parse_mount_raw("/host/dir:/ctr:ro,rslave")
    assert (bind.type, bind.source, bind.destination, bind.rw, bind.mode, bind.propagation) == (
        "bind", "/host/dir", "/ctr", False, "ro,rslave", "rslave")
    named = volume.parse_mount_raw("pgdata:/var/lib/db/", "local")
    assert (named.type, named.name, named.destination, named.anonymous, named.copy_data) == (
        "volume", "pgdata", "/var/lib/db", False, True)
    assert named.spec["VolumeOptions"] == {"DriverConfig": {"Name": "local"}}
    anonymous = volume.parse_mount_raw("/scratch")
    assert anonymous.type == "volume" and anonymous.anonymous and len(anonymous.name) == 64
    assert not volume.parse_mount_raw("data:/d:nocopy").copy_data


@pytest.mark.parametrize("raw, message", [
    ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
    (":/d", "invalid volume specification: ':/d'"),
    ("/data:ro", "invalid volume specification: '/data:ro'"),
    ("/h:/d:ro,rw", "invalid mode: ro,rw"),
    ("/h:/d:bogus", "invalid mode: bogus"),
    ("/h:relative", "invalid volume specification: '/h:relative': invalid mount config for type "
                    "\"bind\": invalid mount path: 'relative' mount path must be absolute"),
    ("v:/", "invalid volume specification: 'v:/': invalid mount config for type \"volume\": "
            "invalid specification: destination can't be '/'"),
    ("/h:/d:nocopy", "invalid volume specification: '/h:/d:nocopy': invalid mount config for type "
                     "\"bind\": field VolumeOptions must not be specified"),
])
def test_parse_mount_raw_errors_are_dockerds(raw, message):
    assert raises(errdefs.InvalidParameter, volume.parse_mount_raw, raw) == message


def test_parse_mount_spec(tmp_path):
    bind = volume.parse_mount_spec({"Type": "bind", "Source": str(tmp_path), "Target": "/b"})
    assert bind.skip_mountpoint_creation and bind.propagation == "rprivate"
    tmpfs = volume.parse_mount_spec({"Type": "tmpfs", "Target": "/t", "ReadOnly": True,
                                     "TmpfsOptions": {"SizeBytes": 3 << 20, "Mode": 0o1777}})
    assert volume.tmpfs_options(tmpfs) == "ro,mode=1777,size=3m"
    assert raises(errdefs.InvalidParameter, volume.parse_mount_spec,
                  {"Type": "bind", "Source": str(tmp_path / "gone"), "Target": "/b"}) == (
        'invalid mount config for type "bind": bind source path does not exist: %s' % (tmp_path / "gone"))
    assert raises(errdefs.InvalidParameter, volume.parse_mount_spec,
                  {"Type": "npipe", "Target": "/p"}) == 'invalid mount config for type "npipe": mount type unknown'
    assert raises(errdefs.InvalidParameter, volume.parse_mount_spec,
                  {"Type": "tmpfs", "Source": "x", "Target": "/t"}) == (
        'invalid mount config for type "tmpfs": field Source must not be specified')


def test_parse_volumes_from():
    assert volume.parse_volumes_from("web") == ("web", "rw")
    assert volume.parse_volumes_from("web:ro") == ("web", "ro")
    for bad in ("web:shared", "web:nocopy", "web:bogus"):
        assert raises(errdefs.InvalidParameter, volume.parse_volumes_from, bad).startswith("invalid mode")
    assert raises(errdefs.InvalidParameter, volume.parse_volumes_from, "") == (
        "volumes-from specification cannot be an empty string")


def test_mount_points_round_trip_through_config_v2_json():
    mount_point = volume.parse_mount_raw("db:/data:ro")
    assert MountPoint.from_dict(mount_point.to_dict()) == mount_point
    assert set(mount_point.to_dict()) == {"Source", "Destination", "RW", "Name", "Driver", "Type",
                                          "Relabel", "Propagation", "Spec", "SkipMountpointCreation"}


# -- the local driver's rules ------------------------------------------------------------

def test_check_create_refuses_in_dockerds_order_and_words():
    assert raises(errdefs.NotFound, volume.check_create, "a/b", "x", {}) == (
        'create a/b: error looking up volume plugin x: plugin "x" not found')
    assert "includes invalid characters" in raises(errdefs.InvalidParameter, volume.check_create,
                                                   "../up", "local", {})
    assert raises(errdefs.InvalidParameter, volume.check_create, "ok", "", {"type": "tmpfs"}) == (
        'create ok: missing required option: "device"')
    assert raises(errdefs.InvalidParameter, volume.check_create, "ok", "", {"size": "big"}) == (
        "create ok: invalid size: 'big'")
    volume.check_create("ok", "local", {"type": "none", "device": "/x", "o": "bind", "size": "0"})


def test_network_filesystem_addresses_are_resolved_for_the_kernel():
    assert volume._resolve_address("vers=4,addr=localhost,soft") in (
        "vers=4,addr=127.0.0.1,soft", "vers=4,addr=::1,soft")
    assert volume._resolve_address("addr=10.0.0.1") == "addr=10.0.0.1"


# -- the service: create, references, remove, filters, prune, restore ---------------------------

def test_create_is_atomic_on_disk_and_reused(service, tmp_path):
    made, new = service.create("db", options=None, labels={"a": "1"}, reference="c1")
    assert new and made.references == {"c1"}
    again, new = service.create("db", reference="c2")
    assert again is made and not new and made.references == {"c1", "c2"}
    assert raises(errdefs.Conflict, service.create, "db", "", None, {"a": "2"}).startswith("create db:")
    reloaded = volume.VolumeService(str(tmp_path), EventLog())
    assert reloaded.inspect("db")["Labels"] == {"a": "1"} and not reloaded.volumes["db"].references
    assert service.log_event[0] == ("volume", "create", "db", {"driver": "local"})


def test_remove_refuses_a_referenced_volume_and_force_does_not_change_that(service):
    service.create("db", reference="c2")
    service.reference("db", "c1")
    assert raises(errdefs.Conflict, service.remove, "db", True) == "remove db: volume is in use - [c1, c2]"
    service.release("db", "c1")
    service.release("db", "c2")
    service.remove("db")
    assert not os.path.exists(os.path.join(service.directory, "db"))
    assert raises(errdefs.NotFound, service.remove, "db") == "get db: no such volume"
    service.remove("db", force=True)


def test_list_filters_and_prune(service):
    service.create("alpha", labels={"tier": "db"})
    service.create("beta", reference="c1")
    service.create("gamma", options={"type": "tmpfs", "device": "tmpfs"})
    names = lambda filters: [v["Name"] for v in service.list_volumes(filters)["Volumes"]]  # noqa: E731
    assert names({"dangling": ["true"]}) == ["alpha", "gamma"]
    assert names({"label": ["tier=db"]}) == ["alpha"]
    assert names({"name": ["^b"]}) == ["beta"]
    assert names({"driver": ["other"]}) == []
    assert raises(errdefs.InvalidParameter, service.list_volumes, {"dangling": ["maybe"]}) == (
        "Invalid filter 'dangling=[maybe]'")
    with open(os.path.join(service.path("alpha"), "f"), "wb") as data:
        data.write(b"x" * 10)
    assert service.prune({"label!": ["nothing"]}) == {"VolumesDeleted": ["alpha"], "SpaceReclaimed": 10}
    assert sorted(service.volumes) == ["beta", "gamma"]
    assert raises(errdefs.InvalidParameter, service.prune, {"dangling": ["true"]}) == "Invalid filter 'dangling'"


def test_restore_derives_references_and_mounts_from_the_containers(service):
    service.create("db")
    points = {"/d": MountPoint("volume", "/d", name="db")}
    service.restore([("stopped", False, points), ("running", True, points),
                     ("other", False, {"/x": MountPoint("volume", "/x", name="vanished")})])
    assert service.volumes["db"].references == {"stopped", "running"}
    assert service.volumes["db"].active == {("running", "/d")}
    assert service.unmount("db", ("running", "/d")) and not service.unmount("db", ("running", "/d"))


# -- a container's mount points -----------------------------------------------------------

def test_plan_takes_volumes_from_then_binds_then_image_volumes(tmp_path):
    theirs = {"/data": MountPoint("volume", "/data", name="shared", driver="local", rw=True,
                                  spec={"Type": "volume", "Source": "shared", "Target": "/data"})}
    host_config = {"VolumesFrom": ["src:ro"], "Binds": ["%s:/b" % tmp_path, "named:/n"],
                   "Tmpfs": {"/t": ""}}
    plan = volume.plan_mount_points(host_config, {"/n": {}, "/t": {}, "/img/": {}},
                                    lambda name: theirs)
    assert sorted(plan) == ["/b", "/data", "/img", "/n"]
    assert plan["/data"].inherited and not plan["/data"].rw and theirs["/data"].rw
    assert plan["/n"].mode == "z" and plan["/img"].copy_data and plan["/img"].anonymous

    def missing(name):
        raise errdefs.NotFound("No such container: %s" % name)
    assert raises(errdefs.InvalidParameter, volume.plan_mount_points,
                  {"VolumesFrom": ["gone"]}, None, missing) == "No such container: gone"
    assert raises(errdefs.InvalidParameter, volume.plan_mount_points,
                  {"Binds": ["aa:/d"], "Mounts": [{"Type": "volume", "Target": "/d"}]}, None,
                  missing) == "Duplicate mount point: /d"
    assert raises(errdefs.InvalidParameter, volume.plan_mount_points,
                  {"VolumeDriver": "flocker"}, None, missing) == (
        'error looking up volume plugin flocker: plugin "flocker" not found')


def test_register_copies_the_image_into_new_volumes_and_undoes_a_failure(service, tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "data/sub").mkdir(parents=True)
    (rootfs / "data/sub/f").write_text("image\n")
    os.chown(rootfs / "data", 7, 8)
    os.chmod(rootfs / "data", 0o710)
    (rootfs / "etc").mkdir()
    (rootfs / "etc/passwd").write_text("root:x:0:0::/:/bin/sh\n")
    plan = volume.plan_mount_points({"Binds": ["kept:/data"]}, {"/data": {}}, None)
    volume.register_mount_points(service, "c1", plan, str(rootfs))
    data = service.path("kept")
    with open(os.path.join(data, "sub/f")) as copied:
        assert copied.read() == "image\n"
    info = os.stat(data)
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (7, 8, 0o710)
    assert plan["/data"].source == data and service.volumes["kept"].active == set()
    bad = volume.plan_mount_points({"Binds": ["fresh:/data"]}, {"/etc/passwd": {}}, None)
    assert raises(errdefs.InvalidParameter, volume.register_mount_points, service, "c2", bad,
                  str(rootfs)).startswith("cannot mount volume over existing file")
    assert sorted(service.volumes) == ["kept"] and service.volumes["kept"].references == {"c1"}


def test_remove_mount_points_takes_anonymous_volumes_only_when_asked(service):
    plan = volume.plan_mount_points({"Binds": ["named:/n", "/anon"]}, None, None)
    volume.register_mount_points(service, "c1", plan, None)
    anonymous = plan["/anon"].name
    volume.remove_mount_points(service, "c1", plan, remove_anonymous=True)
    assert sorted(service.volumes) == ["named"] and not service.volumes["named"].references
    assert anonymous not in service.volumes
