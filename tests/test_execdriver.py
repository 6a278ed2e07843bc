"""drivers/execdriver.py: real containers (namespaces, mounts, pivot_root) from a busybox rootfs.

Run as root. Every container mount lives in the container's own mount namespace, so nothing
is left on the host; every test checks its own behaviour from inside the container or from
the host side of it. Needs busybox-static (apt-get install -y busybox-static).
"""
import os
import shutil
import time

import pytest

from drivers import execdriver
from drivers.execdriver import ExecdriverError, Mount, ProcessConfig
from fixtures import containers
from fixtures.containers import rootfs  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


@pytest.fixture
def cdir(tmp_path):
    return containers.container_dir(str(tmp_path / "container"))


@pytest.fixture
def run(rootfs, cdir):
    """run(args, **Command options) -> Result, in a fresh container on the shared rootfs."""
    def run_container(args, root=None, **options):
        options.setdefault("container_dir", cdir)
        return containers.run(containers.command(root or rootfs, args, **options))
    return run_container


@pytest.fixture
def background(rootfs, cdir):
    """A long-running container (`sleep 60`) for exec tests; killed afterwards."""
    started = []

    def start(**options):
        options.setdefault("container_dir", cdir)
        command = containers.command(rootfs, ["sleep", "60"], **options)
        runner = containers.start_background(command)
        started.append(runner)
        wait_for_exec(runner.pid, "sleep")
        return command, runner

    yield start
    for runner in started:
        runner.kill()
        runner.result()


def wait_for_exec(pid, name, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if f.read().split(b"\0")[0].endswith(name.encode()):
                return
        time.sleep(0.01)
    raise AssertionError("pid %d never exec'd %s" % (pid, name))


def status_field(output, name):
    for line in output.splitlines():
        if line.startswith(name + ":"):
            return line.split()[1]
    raise AssertionError("%s not in %r" % (name, output))


def mount_line(output, mountpoint):
    for line in output.splitlines():
        if line.split(" ")[2:3] == [mountpoint]:
            return line
    raise AssertionError("%s is not mounted:\n%s" % (mountpoint, output))


def trap(rootfs, tmp_path, path_in_image, outside):
    """A private rootfs copy whose path_in_image is a symlink to `outside` on the host."""
    evil = containers.copy_rootfs(rootfs, str(tmp_path / "evil"))
    target = os.path.join(evil, path_in_image.lstrip("/"))
    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
    elif os.path.lexists(target):
        os.unlink(target)
    os.symlink(outside, target)
    return evil


# --- running a command --------------------------------------------------------------------

def test_echo_prints_to_stdout(run):
    assert run(["echo", "hi"]).stdout == "hi\n"


def test_exit_code_is_returned(run):
    assert run(["sh", "-c", "exit 3"]).exit_code == 3


def test_stderr_is_kept_apart_from_stdout(run):
    result = run(["sh", "-c", "echo out; echo err >&2"])
    assert (result.stdout, result.stderr) == ("out\n", "err\n")


def test_stdin_is_the_given_file(rootfs, cdir):
    command = containers.command(rootfs, ["cat"], container_dir=cdir)
    runner = containers.Runner(lambda stdio: execdriver.start(command, stdio), stdin=b"fed\n")
    assert runner.result().stdout == "fed\n"


def test_command_is_pid_1(run):
    assert run(["sh", "-c", "echo $$"]).stdout == "1\n"


def test_killed_container_reports_128_plus_signal(background):
    _, runner = background()
    runner.kill()
    assert runner.result().exit_code == 137


def test_hostname_is_set(run):
    assert run(["hostname"], hostname="web-1").stdout == "web-1\n"


def test_domainname_is_set(run):
    assert run(["cat", "/proc/sys/kernel/domainname"], domainname="example.org").stdout == \
        "example.org\n"


def test_environment_is_the_commands(run):
    result = run(["env"], env=["PATH=/bin", "GREETING=hello world"])
    assert sorted(result.stdout.splitlines()) == ["GREETING=hello world", "HOME=/root",
                                                  "PATH=/bin"]


def test_no_signal_is_ignored_in_the_container(run):
    # Python ignores SIGPIPE; an ignored disposition would survive execve.
    assert status_field(run(["cat", "/proc/self/status"]).stdout, "SigIgn") == "0" * 16


def test_namespaces_differ_from_the_hosts(run):
    result = run(["ls", "-l", "/proc/self/ns/"])
    theirs = {line.split()[-3]: line.split()[-1] for line in result.stdout.splitlines()[1:]}
    for name in ("mnt", "uts", "ipc", "pid", "net"):
        assert theirs[name] != os.readlink("/proc/self/ns/" + name), name


def test_network_host_shares_the_hosts_net_namespace(run):
    result = run(["readlink", "/proc/self/ns/net"], network="host")
    assert result.stdout.strip() == os.readlink("/proc/self/ns/net")


def test_uts_host_keeps_the_hosts_hostname(run):
    assert run(["hostname"], uts="host").stdout == os.uname().nodename + "\n"


def test_ipc_host_shares_the_hosts_ipc_namespace(run):
    result = run(["readlink", "/proc/self/ns/ipc"], ipc="host")
    assert result.stdout.strip() == os.readlink("/proc/self/ns/ipc")


def test_network_path_joins_another_containers_namespace(background, run):
    _, runner = background()
    path = "/proc/%d/ns/net" % runner.pid
    assert run(["readlink", "/proc/self/ns/net"], network=path).stdout.strip() == \
        os.readlink(path)


def test_command_survives_its_trip_through_json():
    command = containers.command("/r", ["sh"], mounts=[Mount(destination="/d", source="/s")])
    assert execdriver.Command.from_dict(command.to_dict()) == command


def test_loopback_is_up_with_network_none(run):
    assert "UP" in run(["ip", "link", "show", "lo"]).stdout.split(">")[0]


def test_no_mount_is_left_on_the_host(run, rootfs):
    run(["true"], mounts=[Mount(destination="/run/x", type="tmpfs")])
    with open("/proc/self/mountinfo") as mountinfo:
        assert rootfs not in mountinfo.read()


# --- the default mounts (security.md 1.3) -------------------------------------------------

def test_proc_is_mounted_nosuid_nodev_noexec(run):
    line = mount_line(run(["mount"]).stdout, "/proc")
    assert line.startswith("proc on /proc type proc (rw,nosuid,nodev,noexec")


def test_dev_is_a_tmpfs_with_mode_755(run):
    line = mount_line(run(["mount"]).stdout, "/dev")
    assert "tmpfs on /dev type tmpfs" in line and "mode=755" in line and "nosuid" in line


def test_devpts_is_a_new_instance_with_gid_5_mode_620(run):
    line = mount_line(run(["mount"]).stdout, "/dev/pts")
    assert "gid=5,mode=620,ptmxmode=666" in line and "nosuid,noexec" in line


def test_shm_is_64m_nosuid_nodev_noexec(run):
    line = mount_line(run(["mount"]).stdout, "/dev/shm")
    assert line.startswith("shm on /dev/shm type tmpfs (rw,nosuid,nodev,noexec")
    assert "size=65536k" in line


def test_shm_size_is_honoured(run):
    assert "size=1024k" in mount_line(run(["mount"], shm_size=1 << 20).stdout, "/dev/shm")


def test_mqueue_is_mounted(run):
    assert "mqueue on /dev/mqueue type mqueue" in run(["mount"]).stdout


def test_sysfs_is_read_only(run):
    assert mount_line(run(["mount"]).stdout, "/sys").startswith("sysfs on /sys type sysfs (ro,")


def test_init_joins_its_cgroups_before_it_is_ready(run, tmp_path):
    """Command.cgroup_dirs: the init is moved in while it builds its root, so it is inside
    when the gate opens (a v1 pids hierarchy, or the unified one)."""
    hierarchy = "/sys/fs/cgroup/pids" if os.path.isdir("/sys/fs/cgroup/pids") else "/sys/fs/cgroup"
    directory = os.path.join(hierarchy, "pydockerd-test-" + tmp_path.name)
    os.mkdir(directory)
    try:
        result = run(["cat", "/proc/self/cgroup"], cgroup_dirs=[directory])
        assert result.exit_code == 0, result
        assert "/" + os.path.basename(directory) + "\n" in result.stdout
    finally:
        os.rmdir(directory)


def test_init_that_cannot_join_its_cgroups_never_starts(run):
    result = run(["true"], cgroup_dirs=["/nonexistent-pydockerd-cgroup"])
    assert result.exit_code == 128
    assert result.error.startswith("cgroups: write ")
    assert result.error.endswith(" to /nonexistent-pydockerd-cgroup/cgroup.procs: no such file or directory")


def test_cgroup_view_is_read_only(run):
    assert "(ro," in mount_line(run(["mount"]).stdout, "/sys/fs/cgroup")


def test_network_files_are_bind_mounted_from_the_container_dir(run):
    result = run(["sh", "-c", "cat /etc/hostname /etc/resolv.conf"])
    assert result.stdout == "0123456789ab\nnameserver 192.0.2.53\n"


def test_default_devices_are_the_only_ones(run):
    names = set(run(["ls", "/dev"]).stdout.split())
    expected = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
                "mqueue", "fd", "stdin", "stdout", "stderr"}
    assert expected <= names and names - expected <= {"core"}


def test_dev_null_is_char_1_3_mode_666(run):
    assert run(["ls", "-l", "/dev/null"]).stdout.startswith("crw-rw-rw-    1 root     root "
                                                            "       1,   3")


def test_dev_ptmx_points_into_the_containers_devpts(run):
    assert run(["readlink", "/dev/ptmx"]).stdout == "pts/ptmx\n"


# --- masked and read-only paths (security.md 1.2) -----------------------------------------

@pytest.mark.skipif(not os.path.exists("/proc/kcore"), reason="this kernel has no /proc/kcore")
def test_proc_kcore_reads_zero_bytes(run):
    assert run(["sh", "-c", "wc -c < /proc/kcore"]).stdout.strip() == "0"


def test_masked_proc_keys_reads_zero_bytes(run):
    assert run(["sh", "-c", "wc -c < /proc/keys"]).stdout.strip() == "0"


def test_masked_file_is_the_null_device(run):
    assert run(["stat", "-c", "%F %t:%T", "/proc/keys"]).stdout == "character special file 1:3\n"


def test_masked_directory_is_empty_and_read_only(run):
    result = run(["sh", "-c", "ls -A /sys/firmware; touch /sys/firmware/x"])
    assert result.stdout == "" and "Read-only file system" in result.stderr


@pytest.mark.skipif(not os.path.exists("/proc/sysrq-trigger"), reason="no /proc/sysrq-trigger")
def test_sysrq_trigger_is_not_writable(run):
    result = run(["touch", "/proc/sysrq-trigger"])
    assert result.exit_code != 0 and "Read-only file system" in result.stderr


def test_proc_sys_is_read_only(run):
    result = run(["sh", "-c", "echo x > /proc/sys/kernel/domainname"])
    assert result.exit_code != 0 and "Read-only file system" in result.stderr


def test_privileged_has_no_masks_and_a_writable_sys(run):
    result = run(["mount"], privileged=True)
    assert "/proc/keys" not in result.stdout
    assert mount_line(result.stdout, "/sys").startswith("sysfs on /sys type sysfs (rw,")


# --- capabilities (security.md 1.1) ---------------------------------------------------------

def test_root_gets_dockers_default_capabilities(run):
    status = run(["cat", "/proc/self/status"]).stdout
    for field in ("CapPrm", "CapEff", "CapBnd"):
        assert status_field(status, field) == "00000000a80425fb", field
    assert status_field(status, "CapInh") == status_field(status, "CapAmb") == "0" * 16


def test_cap_drop_removes_a_capability(run):
    result = run(["chown", "100", "/tmp"], cap_drop=["chown"])
    assert result.exit_code != 0 and "Operation not permitted" in result.stderr


def test_cap_drop_all_then_cap_add_keeps_only_the_added(run):
    status = run(["cat", "/proc/self/status"], cap_drop=["ALL"], cap_add=["CAP_KILL"]).stdout
    assert status_field(status, "CapEff") == "%016x" % (1 << 5)


def test_privileged_keeps_every_capability(run):
    status = run(["cat", "/proc/self/status"], privileged=True).stdout
    assert status_field(status, "CapEff") == status_field(status, "CapBnd")
    assert int(status_field(status, "CapEff"), 16) & (1 << 21)  # CAP_SYS_ADMIN


def test_unknown_capability_is_refused(rootfs):
    with pytest.raises(ExecdriverError, match='Unknown capability to add: "bogus"'):
        execdriver.start(containers.command(rootfs, ["true"], cap_add=["bogus"]), (0, 1, 2))


def test_default_capability_mask_is_a80425fb():
    assert execdriver.capability_mask(False, [], []) == 0xa80425fb


def test_no_new_privileges_is_off_by_default(run):
    assert status_field(run(["cat", "/proc/self/status"]).stdout, "NoNewPrivs") == "0"


def test_no_new_privileges_is_set_when_asked(run):
    status = run(["cat", "/proc/self/status"], no_new_privileges=True).stdout
    assert status_field(status, "NoNewPrivs") == "1"


# --- seccomp (security.md 1.6) ---------------------------------------------------------------

def test_seccomp_filter_is_on_by_default(run):
    assert status_field(run(["cat", "/proc/self/status"]).stdout, "Seccomp") == "2"


def test_seccomp_refuses_namespaces_to_the_container(run):
    result = run(["unshare", "-U", "true"])
    assert result.exit_code != 0 and "Operation not permitted" in result.stderr


def test_cap_sys_admin_unlocks_what_dockers_profile_gives_it(run):
    assert run(["unshare", "-m", "true"], cap_add=["SYS_ADMIN"]).exit_code == 0


def test_privileged_has_no_seccomp_filter(run):
    assert status_field(run(["cat", "/proc/self/status"], privileged=True).stdout,
                        "Seccomp") == "0"


def test_seccomp_unconfined_has_no_filter(run):
    assert status_field(run(["cat", "/proc/self/status"], seccomp="unconfined").stdout,
                        "Seccomp") == "0"


def test_no_fresh_proc_from_a_user_namespace_even_unconfined(run):
    # security.md check 12: every procfs left in view has masked parts (the host's went
    # with pivot_root), so the kernel finds a fresh one too revealing and refuses it.
    result = run(["unshare", "-mrpf", "sh", "-c", "mount -t proc none /proc && echo ESCAPED"],
                 seccomp="unconfined")
    assert "ESCAPED" not in result.stdout


def test_seccomp_filter_follows_the_containers_capabilities():
    default = execdriver.capability_mask(False, [], [])
    with_admin = execdriver.capability_mask(False, ["SYS_ADMIN"], [])
    assert execdriver.seccomp_filter("", default) != execdriver.seccomp_filter("", with_admin)


def test_seccomp_unconfined_compiles_no_filter():
    assert execdriver.seccomp_filter("unconfined", 0) is None


# --- user and groups, from the container's files ------------------------------------------

def test_user_nobody_gets_uid_65534_and_no_effective_capabilities(run):
    result = run(["sh", "-c", "id -u; grep -E '^Cap(Eff|Bnd)' /proc/self/status"], user="nobody")
    uid, effective, bounding = result.stdout.split("\n")[:3]
    assert uid == "65534"
    assert effective.split()[1] == "0" * 16 and bounding.split()[1] == "00000000a80425fb"


def test_user_name_gets_its_groups_from_the_containers_group_file(run):
    assert run(["id"], user="daemon").stdout == \
        "uid=1(daemon) gid=1(daemon) groups=29(audio),50(staff)\n"


def test_numeric_user_without_an_entry_gets_gid_0(run):
    assert run(["id"], user="1000").stdout == "uid=1000 gid=0(root)\n"


def test_user_and_group_with_group_add(run):
    assert run(["id"], user="1000:staff", group_add=["audio", "4242"]).stdout == \
        "uid=1000 gid=50(staff) groups=29(audio),4242\n"


def test_home_comes_from_the_containers_passwd(run):
    assert run(["sh", "-c", "echo $HOME"], user="nobody").stdout == "/home/nobody\n"


def test_unknown_user_is_an_error(run):
    result = run(["id"], user="bogus")
    assert result.error == "unable to find user bogus: no matching entries in passwd file"


def test_unknown_group_is_an_error(run):
    result = run(["id"], user="root:bogus")
    assert result.error == "unable to find group bogus: no matching entries in group file"


def test_get_exec_user_without_a_passwd_file_accepts_numeric_ids():
    user = execdriver.get_exec_user("1000:1000", None, None)
    assert (user.uid, user.gid, user.sgids, user.home) == (1000, 1000, [], "/")


# --- the executable and the working directory ---------------------------------------------

def test_missing_executable_exits_127_with_dockers_message(run):
    result = run(["nosuchcmd"])
    assert result.exit_code == 127
    assert result.error == 'exec: "nosuchcmd": executable file not found in $PATH'


def test_missing_absolute_executable_exits_127(run):
    result = run(["/nosuch"])
    assert (result.exit_code, result.error) == (
        127, 'exec: "/nosuch": stat /nosuch: no such file or directory')


def test_file_without_execute_permission_exits_126(run):
    assert run(["/etc/passwd"]).exit_code == 126


def test_missing_workdir_is_created(run):
    assert run(["pwd"], cwd="/new/work/dir").stdout == "/new/work/dir\n"


def test_workdir_that_is_a_file_is_an_error(run):
    result = run(["pwd"], cwd="/bin/busybox")
    assert result.error == "Cannot mkdir: /bin/busybox is not a directory"
    assert result.stdout == ""


def test_workdir_in_proc_self_fd_never_reaches_the_host_root(run):
    # CVE-2024-21626: a leaked host directory fd as the workdir was a way out.
    for fd in range(3, 21):
        result = run(["ls", "../../.."], cwd="/proc/self/fd/%d" % fd)
        assert "work" not in result.stdout.split(), (fd, result)


def test_init_holds_only_fds_0_to_2(background):
    _, runner = background()
    assert sorted(os.listdir("/proc/%d/fd" % runner.pid)) == ["0", "1", "2"]


# --- user mounts ------------------------------------------------------------------------------

def test_bind_mount_is_visible(run, tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "file").write_text("from host\n")
    mounts = [Mount(destination="/data", source=str(tmp_path / "shared"))]
    assert run(["cat", "/data/file"], mounts=mounts).stdout == "from host\n"


def test_read_only_bind_mount_refuses_writes(run, tmp_path):
    mounts = [Mount(destination="/data", source=str(tmp_path), readonly=True)]
    assert "Read-only file system" in run(["touch", "/data/x"], mounts=mounts).stderr
    assert not (tmp_path / "x").exists()


def test_tmpfs_mount_takes_its_options(run):
    mounts = [Mount(destination="/run/t", type="tmpfs", data="size=1m,noexec")]
    line = mount_line(run(["mount"], mounts=mounts).stdout, "/run/t")
    assert "noexec" in line and "size=1024k" in line


def test_mount_inside_proc_is_refused(run, tmp_path):
    result = run(["true"], mounts=[Mount(destination="/proc/x", source=str(tmp_path))])
    assert result.error == '"/proc/x" cannot be mounted because it is located inside "/proc"'


def test_read_only_rootfs_refuses_writes_but_keeps_dev_writable(run):
    result = run(["sh", "-c", "touch /x /etc/hosts; touch /dev/shm/ok && echo shm-ok"],
                 read_only=True)
    assert result.stderr.count("Read-only file system") == 2 and result.stdout == "shm-ok\n"


# --- images with booby-trapped symlinks (security.md check 13, CVE-2015-3629) -------------

def test_proc_symlinked_out_of_the_rootfs_is_refused(rootfs, tmp_path, run):
    outside = tmp_path / "outside-proc"
    outside.mkdir()
    result = run(["true"], root=trap(rootfs, tmp_path, "/proc", str(outside)))
    assert result.error == 'filesystem "proc" must be mounted on ordinary directory'
    assert list(outside.iterdir()) == []


def test_sys_symlinked_out_of_the_rootfs_is_refused(rootfs, tmp_path, run):
    outside = tmp_path / "outside-sys"
    outside.mkdir()
    result = run(["true"], root=trap(rootfs, tmp_path, "/sys", str(outside)))
    assert result.error == 'filesystem "sysfs" must be mounted on ordinary directory'


def test_dev_symlinked_out_of_the_rootfs_leaves_the_host_untouched(rootfs, tmp_path, run):
    outside = tmp_path / "outside-dev"
    outside.mkdir()
    result = run(["ls", "/dev/"], root=trap(rootfs, tmp_path, "/dev", str(outside)))
    assert "null" in result.stdout.split()
    assert list(outside.iterdir()) == []


def test_etc_hosts_symlinked_out_of_the_rootfs_leaves_the_host_file_alone(rootfs, tmp_path,
                                                                          run):
    outside = tmp_path / "outside-hosts"
    outside.write_text("ORIGINAL\n")
    result = run(["cat", "/etc/hosts"], root=trap(rootfs, tmp_path, "/etc/hosts", str(outside)))
    assert result.stdout == "127.0.0.1\tlocalhost\n"
    assert outside.read_text() == "ORIGINAL\n"


def test_bind_destination_symlinked_out_lands_inside_the_rootfs(rootfs, tmp_path, run):
    outside = tmp_path / "outside-data"
    outside.mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x")
    evil = trap(rootfs, tmp_path, "/data", str(outside))
    mounts = [Mount(destination="/data", source=str(tmp_path / "src"))]
    assert run(["cat", "/data/f"], root=evil, mounts=mounts).stdout == "x"
    assert list(outside.iterdir()) == []


def test_secure_join_keeps_absolute_symlinks_and_dotdot_inside_root(tmp_path):
    root = str(tmp_path)
    os.symlink("/etc", os.path.join(root, "abs"))
    os.symlink("../../../../x", os.path.join(root, "up"))
    assert execdriver.secure_join(root, "/abs/hosts") == root + "/etc/hosts"
    assert execdriver.secure_join(root, "/up/y") == root + "/x/y"
    assert execdriver.secure_join(root, "/../../z") == root + "/z"


# --- a terminal ----------------------------------------------------------------------------

def test_tty_gives_dev_pts_0(run):
    assert run(["tty"], tty=True).stdout == "/dev/pts/0\r\n"


def test_tty_is_also_dev_console(run):
    assert run(["stat", "-c", "%t:%T", "/dev/console"], tty=True).stdout == "88:0\r\n"


# --- docker exec ---------------------------------------------------------------------------

def test_exec_joins_the_containers_namespaces(background):
    command, runner = background(hostname="exec-host")
    process = ProcessConfig(args=["sh", "-c", "hostname; readlink /proc/1/ns/pid; "
                                  "readlink /proc/self/ns/pid; cat /proc/1/cmdline"],
                            env=["PATH=/bin"])
    result = containers.run_exec(command, process, runner.pid)
    lines = result.stdout.split("\n")
    assert lines[0] == "exec-host"
    assert lines[1] == lines[2] == os.readlink("/proc/%d/ns/pid" % runner.pid)
    assert lines[3].startswith("sleep")


def test_exec_gets_the_containers_capabilities(background):
    command, runner = background(cap_drop=["chown"])
    result = containers.run_exec(command, ProcessConfig(args=["cat", "/proc/self/status"],
                                                        env=["PATH=/bin"]), runner.pid)
    assert status_field(result.stdout, "CapEff") == "00000000a80425fa"


def test_exec_runs_as_the_given_user(background):
    command, runner = background()
    result = containers.run_exec(command, ProcessConfig(args=["id", "-u"], user="nobody",
                                                        env=["PATH=/bin"]), runner.pid)
    assert result.stdout == "65534\n"


def test_exec_with_a_missing_workdir_is_an_error(background):
    command, runner = background()
    result = containers.run_exec(command, ProcessConfig(args=["pwd"], cwd="/nonexistent",
                                                        env=["PATH=/bin"]), runner.pid)
    assert result.exit_code == 127 and "chdir to cwd" in result.error


def test_exec_with_a_tty_gets_a_pty_of_the_container(background):
    command, runner = background()
    result = containers.run_exec(command, ProcessConfig(args=["tty"], tty=True,
                                                        env=["PATH=/bin"]), runner.pid)
    assert result.stdout == "/dev/pts/0\r\n", result


def test_exec_into_a_stopped_container_fails(background):
    command, runner = background()
    runner.kill()
    runner.result()
    result = containers.run_exec(command, ProcessConfig(args=["true"]), runner.pid)
    assert "is not running" in result.error
