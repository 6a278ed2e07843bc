"""The boot steps of NewDaemon, one behaviour each, on temporary directories."""
import os
import sqlite3
import stat
import tempfile

import pytest

import pydockerd
from drivers import cgroups
from pydockerd import ConfigError


def make_config(tmp_path, *argv):
    path = tmp_path / "daemon.json"
    path.write_text("{}")
    return pydockerd.parse_flags(["--config-file", str(path), "--data-root", str(tmp_path / "root"),
                                  "--exec-root", str(tmp_path / "exec")] + list(argv))


def test_root_dir_is_created_0700(tmp_path):
    config = make_config(tmp_path)
    pydockerd.setup_daemon_root(config)
    assert stat.S_IMODE(os.stat(config.root).st_mode) == 0o700


def test_root_dir_is_resolved_through_symlinks(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    config = make_config(tmp_path, "--data-root", str(tmp_path / "link"))
    pydockerd.setup_daemon_root(config)
    assert config.root == str(real)


def test_world_readable_root_dir_is_narrowed(tmp_path):
    root = tmp_path / "root"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    config = make_config(tmp_path)
    pydockerd.setup_daemon_root(config)
    assert stat.S_IMODE(os.stat(config.root).st_mode) == 0o700


def test_tmp_dir_is_exported_as_tmpdir(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", "/tmp")
    config = make_config(tmp_path)
    pydockerd.setup_daemon_root(config)
    try:
        pydockerd.setup_tmp_dir(config)
        assert os.environ["TMPDIR"] == os.path.join(config.root, "tmp")
        assert os.path.isdir(os.environ["TMPDIR"])
    finally:
        tempfile.tempdir = None


def test_docker_tmpdir_overrides_tmp(tmp_path, monkeypatch):
    wanted = tmp_path / "elsewhere"
    monkeypatch.setenv("DOCKER_TMPDIR", str(wanted))
    monkeypatch.setenv("TMPDIR", "/tmp")
    config = make_config(tmp_path)
    try:
        pydockerd.setup_tmp_dir(config)
        assert os.environ["TMPDIR"] == str(wanted)
    finally:
        tempfile.tempdir = None


def test_containers_dir_is_no_wider_than_0710(tmp_path):
    config = make_config(tmp_path)
    pydockerd.setup_daemon_root(config)
    path = pydockerd.make_containers_dir(config)
    assert stat.S_IMODE(os.stat(path).st_mode) & ~0o710 == 0


def test_linkgraph_has_docker_18_schema_and_root_entity(tmp_path):
    path = str(tmp_path / "linkgraph.db")
    pydockerd.LinkGraph(path).close()
    pydockerd.LinkGraph(path).close()  # reopening must not duplicate the root
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("select name from sqlite_master where type='table'")}
    assert {"entity", "edge"} <= tables
    assert db.execute("select id from entity").fetchall() == [("0",)]
    assert db.execute("select entity_id, parent_id, name from edge").fetchall() == [("0", None, "/")]
    indexes = {row[0] for row in db.execute("select name from sqlite_master where type='index'")}
    assert "name_parent_ix" in indexes
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_sysinfo_finds_the_devices_cgroup_here():
    info = pydockerd.SysInfo.probe()
    assert info.devices
    assert info.cgroup_version in ("1", "2")


def test_sysinfo_warns_for_each_missing_controller():
    hierarchies = cgroups.Hierarchies({"devices": "/sys/fs/cgroup/devices"}, "", {})
    info = pydockerd.SysInfo(hierarchies, cgroups.Features("1", devices="v1"))
    warnings = info.warnings
    for text in ("WARNING: No memory limit support", "WARNING: No swap limit support",
                 "WARNING: No cpu cfs quota support", "WARNING: No cpu shares support",
                 "WARNING: No cpuset support", "WARNING: No pids limit support"):
        assert text in warnings


def test_missing_devices_cgroup_stops_the_boot(monkeypatch):
    hierarchies = cgroups.Hierarchies({"memory": "/sys/fs/cgroup/memory"}, "", {})
    monkeypatch.setattr(pydockerd.SysInfo, "probe", classmethod(
        lambda cls: cls(hierarchies, cgroups.Features("1", memory=True))))
    with pytest.raises(ConfigError) as err:
        pydockerd.check_sysinfo()
    assert str(err.value) == "Devices cgroup isn't mounted"


def test_pidfile_of_a_live_process_refuses_the_start(tmp_path):
    path = tmp_path / "d.pid"
    path.write_text("1")
    with pytest.raises(ConfigError) as err:
        pydockerd.PidFile(str(path))
    assert str(err.value) == "pid file found, ensure docker is not running or delete %s" % path


def test_stale_pidfile_is_replaced(tmp_path):
    path = tmp_path / "d.pid"
    path.write_text("999999999")
    pidfile = pydockerd.PidFile(str(path))
    assert path.read_text() == str(os.getpid())
    pidfile.remove()
    assert not path.exists()


def test_events_replay_and_filters():
    events = pydockerd.Events()
    events.log("image", "tag", "sha256:abc", {"name": "busybox:latest"})
    events.log("container", "start", "c" * 64, {"image": "busybox", "name": "web", "env": "prod"})
    history, live = events.subscribe()
    assert [m["Action"] for m in history] == ["tag", "start"]
    start = history[1]
    assert start["status"] == "start" and start["from"] == "busybox" and start["id"] == "c" * 64
    assert pydockerd.event_matches(start, {"type": ["container"], "event": ["start"]})
    assert pydockerd.event_matches(start, {"container": ["web"]})
    assert pydockerd.event_matches(start, {"container": ["ccc"]})
    assert pydockerd.event_matches(start, {"label": ["env=prod"]})
    assert not pydockerd.event_matches(start, {"label": ["env=dev"]})
    assert not pydockerd.event_matches(start, {"type": ["image"]})
    assert pydockerd.event_matches(history[0], {"image": ["busybox"]})
    events.log("image", "untag", "sha256:abc")
    assert live.get(timeout=1)["Action"] == "untag"
    events.unsubscribe(live)


def test_event_history_is_bounded():
    events = pydockerd.Events()
    for number in range(pydockerd.Events.LIMIT + 10):
        events.log("image", "tag", str(number))
    history, live = events.subscribe()
    assert len(history) == pydockerd.Events.LIMIT
    assert history[-1]["Actor"]["ID"] == str(pydockerd.Events.LIMIT + 9)


def test_stack_dump_writes_every_thread(tmp_path):
    pydockerd.dump_stacks(str(tmp_path))
    dumps = list(tmp_path.glob("thread-stacks-*.log"))
    assert len(dumps) == 1
    text = dumps[0].read_text()
    assert "MainThread" in text and "test_stack_dump_writes_every_thread" in text


def test_decode_json_rejects_what_go_rejects():
    from drivers.errdefs import InvalidParameter
    for body in (b"{bad", b'{"Memory": NaN}', b"{} trailing", b"[" * 10000, b'{"a": Infinity}'):
        with pytest.raises(InvalidParameter):
            pydockerd.decode_json(body)
    assert pydockerd.decode_json(b' {"a": 1} \n') == {"a": 1}


def test_boot_step_is_timed_under_debug(caplog):
    caplog.set_level("DEBUG", logger="pydockerd")
    config = pydockerd.Config()
    pydockerd.set_default_mtu(config)
    assert any("boot step set_default_mtu done in" in r.getMessage() for r in caplog.records)
