"""drivers/runconfig.py: a HostConfig's limits and hardening options, checked like dockerd.

Pure checks against a Features value the test chooses, so every refusal is seen whatever this
host has; the end-to-end tests (test_runtime_cli.py) see the same messages through the CLI.
"""
import os
import resource
import stat

import pytest

from drivers import cgroups, runconfig
from drivers.errdefs import InvalidParameter

MB = 1024 * 1024
EVERYTHING = cgroups.Features(
    "1", memory=True, swap=True, kernel_memory=True, kernel_memory_tcp=True,
    oom_kill_disable=True, swappiness=True, cpu_shares=True, cfs=True, cpuset=True, cpus="0-1",
    mems="0", pids=True, blkio_weight=True, blkio_weight_device=True, blkio_throttle=True,
    freezer=True, devices="v1")
NOTHING = cgroups.Features("2")


def refused(host_config, features=EVERYTHING, update=False):
    with pytest.raises(InvalidParameter) as error:
        runconfig.verify(host_config, features, update)
    return str(error.value)


@pytest.mark.parametrize("host_config,message", [
    ({"Memory": 4 * MB}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 32 * MB, "MemorySwap": 16 * MB}, "Minimum memoryswap limit should be larger"),
    ({"MemorySwap": 16 * MB}, "You should always set the Memory limit when using Memoryswap"),
    ({"MemorySwappiness": 101}, "Invalid value: 101, valid memory swappiness range is 0-100"),
    ({"Memory": 8 * MB, "MemoryReservation": 16 * MB}, "can not be less than memory reservation"),
    ({"MemoryReservation": MB}, "Minimum memory reservation allowed is 6MB"),
    ({"KernelMemory": MB}, "Minimum kernel memory limit allowed is 6MB"),
    ({"NanoCpus": 10 ** 9, "CpuPeriod": 100000}, "Nano CPUs and CPU Period cannot both be set"),
    ({"NanoCpus": 10 ** 6}, "Range of CPUs is from 0.01 to"),
    ({"NanoCpus": (os.cpu_count() + 1) * 10 ** 9}, "as there are only %d CPUs" % os.cpu_count()),
    ({"CpuQuota": 999}, "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    ({"CpusetCpus": "0-7"}, "Requested CPUs are not available - requested 0-7, available: 0-1"),
    ({"CpusetCpus": "a"}, "Invalid value a for cpuset cpus"),
    ({"CpusetMems": "3"}, "Requested memory nodes are not available"),
    ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
    ({"BlkioDeviceReadBps": [{"Path": "/dev/null", "Rate": 1}]}, "/dev/null is not a block device"),
    ({"CpuRealtimeRuntime": 10}, "pydockerd does not support real-time CPU scheduling"),
    ({"CpuCount": 2}, "Invalid QoS settings: linux does not support CPU count"),
    ({"IOMaximumIOps": 2}, "Maximum IO Bandwidth or Maximum IO IOps"),
])
def test_refusals_with_dockerd_words(host_config, message):
    assert message in refused(host_config)


@pytest.mark.parametrize("host_config,message", [
    ({"Memory": 32 * MB}, "does not support memory limit capabilities"),
    ({"KernelMemory": 32 * MB}, "kernel memory limit"),
    ({"OomKillDisable": True}, "Your kernel does not support OomKillDisable"),
    ({"PidsLimit": 5}, "pids limit"),
    ({"CpuShares": 512}, "CPU shares"),
    ({"NanoCpus": 10 ** 9}, "does not support CPU CFS scheduler"),
    ({"CpusetCpus": "0"}, "cpuset"),
    ({"BlkioWeight": 500}, "Block I/O weight"),
    ({"MemorySwappiness": 10}, "memory swappiness"),
])
def test_what_the_host_lacks_is_refused_not_ignored(host_config, message):
    assert message in refused(host_config, NOTHING)


def test_update_may_leave_memory_out():
    assert runconfig.verify({"MemorySwap": 64 * MB}, EVERYTHING, update=True) == []


def test_oom_kill_disable_without_a_limit_warns():
    warnings = runconfig.verify({"OomKillDisable": True}, EVERYTHING)
    assert warnings and "no memory limit is set" in warnings[0]


def test_adapt_doubles_swap_and_clamps_shares():
    host_config = {"Memory": 32 * MB, "CpuShares": 1}
    warnings = runconfig.adapt(host_config, EVERYTHING)
    assert (host_config["MemorySwap"], host_config["CpuShares"]) == (64 * MB, 2)
    assert warnings == ["Changing requested CPUShares of 1 to minimum allowed of 2"]
    untouched = {"Memory": 32 * MB}
    runconfig.adapt(untouched, cgroups.Features("1", memory=True))  # no swap accounting
    assert "MemorySwap" not in untouched


def test_resources_turn_cpus_into_a_quota():
    resources = runconfig.resources({"NanoCpus": 1500000000, "Memory": 32 * MB, "PidsLimit": None})
    assert (resources.cpu_quota, resources.cpu_period) == (150000, 100000)
    assert (resources.memory, resources.pids_limit, resources.memory_swappiness) == (32 * MB, 0, -1)


def test_merge_update_keeps_what_a_zero_leaves():
    old = {"Memory": 32 * MB, "MemorySwap": 64 * MB, "NanoCpus": 10 ** 9, "PidsLimit": 7,
           "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}}
    merged = runconfig.merge_update(old, {"Memory": 0, "CpuQuota": 50000, "PidsLimit": 0,
                                          "RestartPolicy": {"Name": "always"}})
    assert (merged["Memory"], merged["NanoCpus"], merged["CpuQuota"]) == (32 * MB, 0, 50000)
    assert merged["PidsLimit"] == -1 and merged["RestartPolicy"]["Name"] == "always"
    assert old["PidsLimit"] == 7  # the original is left alone


def test_merge_update_refuses_memory_above_the_old_swap():
    with pytest.raises(InvalidParameter, match="update the memoryswap at the same time"):
        runconfig.merge_update({"Memory": 32 * MB, "MemorySwap": 64 * MB}, {"Memory": 128 * MB})


def test_merge_update_refuses_a_restart_policy_with_autoremove():
    with pytest.raises(InvalidParameter, match="AutoRemove is enabled"):
        runconfig.merge_update({"AutoRemove": True}, {"RestartPolicy": {"Name": "always"}})


def test_device_rules_add_devices_and_cgroup_rules():
    rules = runconfig.device_rules({"Devices": [{"PathOnHost": "/dev/null",
                                                 "PathInContainer": "/dev/n2",
                                                 "CgroupPermissions": "r"}],
                                    "DeviceCgroupRules": ["c 42:* rmw"]})
    assert rules[:len(cgroups.DEFAULT_RULES)] == cgroups.DEFAULT_RULES
    assert rules[len(cgroups.DEFAULT_RULES):] == [(True, "c 1:3 r"), (True, "c 42:* rmw")]
    assert runconfig.device_rules({"Privileged": True}) == cgroups.PRIVILEGED_RULES


def test_devices_are_nodes_with_the_hosts_mode():
    [device] = runconfig.devices({"Devices": [{"PathOnHost": "/dev/null",
                                               "PathInContainer": "/dev/n2"}]})
    assert (device.path, device.type, device.major, device.minor) == ("/dev/n2", "c", 1, 3)
    assert device.mode == os.stat("/dev/null").st_mode & 0o7777


def test_a_device_directory_adds_the_devices_below_it(tmp_path):
    os.mknod(str(tmp_path / "null2"), 0o640 | stat.S_IFCHR, os.makedev(1, 3))
    (tmp_path / "plain").write_text("not a device")
    devices = runconfig.devices({"Devices": [{"PathOnHost": str(tmp_path),
                                              "PathInContainer": "/dev/mine"}]})
    assert [(d.path, d.major, d.minor, d.mode) for d in devices] == [("/dev/mine/null2", 1, 3, 0o640)]


@pytest.mark.parametrize("host_config,message", [
    ({"DeviceCgroupRules": ["c 1:3 rwx"]}, "invalid device cgroup rule format: 'c 1:3 rwx'"),
    ({"Devices": [{"PathOnHost": "/dev/null", "CgroupPermissions": "rwq"}]}, "invalid device mode"),
    ({"Devices": [{"PathOnHost": "/etc/hostname"}]}, "not a device node"),
    ({"DeviceRequests": [{"Count": -1}]}, "does not support device requests"),
])
def test_device_refusals(host_config, message):
    with pytest.raises(InvalidParameter, match=message):
        runconfig.verify_devices(host_config)


@pytest.mark.parametrize("host_config,message", [
    ({"CapAdd": ["NET_BOGUS"]}, 'unknown capability: "NET_BOGUS"'),
    ({"SecurityOpt": ["seccomp=/x.json"]}, "Decoding seccomp profile failed: "),
    ({"SecurityOpt": ["foo=bar"]}, 'Invalid --security-opt: "foo=bar"'),
    ({"OomScoreAdj": -1001}, "range for oom score adj is"),
    ({"ShmSize": -1}, "SHM size can not be less than 0"),
    ({"Sysctls": {"kernel.hostname": "x"}}, "sysctl 'kernel.hostname' is not whitelisted"),
    ({"Sysctls": {"kernel.shmmax": "1"}, "IpcMode": "host"}, "IPC namespace"),
    ({"Sysctls": {"net.../x": "1"}}, "is not valid"),
    ({"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}, "invalid ulimit type: bogus"),
    ({"Ulimits": [{"Name": "nofile", "Soft": 20, "Hard": 10}]}, "must be less than or equal"),
    ({"UsernsMode": "private"}, "does not support user namespaces"),
    ({"Isolation": "hyperv"}, "Invalid isolation"),
])
def test_hardening_refusals(host_config, message):
    with pytest.raises(InvalidParameter, match=message.replace(".", r"\.")):
        runconfig.verify_hardening(host_config, [])


def test_capability_names_are_normalised():
    assert [runconfig.normalize_capability(n) for n in ("net_admin", "CAP_KILL", "all", "x")] == \
        ["CAP_NET_ADMIN", "CAP_KILL", "ALL", None]


def test_ulimits_merge_the_daemons_defaults():
    merged = runconfig.ulimits({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 20}]},
                               [("nofile", 100, 200), ("core", 0, 0)])
    assert merged == [("core", 0, 0), ("nofile", 10, 20)]


def test_a_hard_limit_above_the_daemons_needs_cap_sys_resource():
    own = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if own == resource.RLIM_INFINITY:
        pytest.skip("this process has no hard limit on nofile")
    with pytest.raises(InvalidParameter, match="only CAP_SYS_RESOURCE may raise"):
        runconfig.ulimits({"Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": own + 1}]}, [])


def test_sysctls_become_proc_sys_paths():
    assert runconfig.sysctls({"Sysctls": {"net.ipv4.ip_forward": "1", "fs.mqueue.msg_max": "9"}}) \
        == {"net/ipv4/ip_forward": "1", "fs/mqueue/msg_max": "9"}


def test_security_opts():
    host_config = {"SecurityOpt": ["no-new-privileges:true", "seccomp:unconfined"]}
    assert runconfig.security_opt(host_config, "no-new-privileges")
    assert runconfig.security_opt(host_config, "seccomp=unconfined")
    assert not runconfig.security_opt({}, "no-new-privileges")
