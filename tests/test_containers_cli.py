"""Containers end to end: the real docker CLI against a real pydockerd (issue 5).

run/create/start/attach/wait/stop/kill/restart/rm/rename/logs/exec/ps/events, `run -it` on a
pseudo-terminal, bind mounts and the network files, restart policies, and live restore after
a `kill -9` of the daemon. One daemon per module (every container is removed after each test);
the tests that kill the daemon get one of their own.
"""
import json
import os
import re
import signal
import socket
import time

import pytest

import pydockerd

# Fixtures: pytest finds them by name in this module (the module's daemon, cleaned after each test).
from containers_support import busybox_archive, daemon, no_containers_left  # noqa: F401
from containers_support import (api_create, docker_popen, err, inspect, logs_of, out, parse_timestamp,
                                pty_docker, retire_daemon, run, run_detached, start_busybox_daemon,
                                wait_for, wait_until_exited, wait_until_restarted,
                                wait_until_restarts_end)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

LOOP = "while true; do sleep 0.1; done"


# -- run: output, exit codes, stdin -------------------------------------------------------

def test_run_rm_echo_prints_hi_and_removes_the_container(daemon):
    result = run(daemon, "--rm", "busybox", "echo", "hi")
    assert result.stdout == b"hi\n"
    assert out(daemon.docker("ps", "-aq")) == ""


def test_run_exit_code_is_the_containers(daemon):
    result = run(daemon, "--rm", "busybox", "sh", "-c", "exit 3", check=False)
    assert result.returncode == 3


def test_run_keeps_stdout_and_stderr_apart(daemon):
    result = run(daemon, "--rm", "busybox", "sh", "-c", "echo o; echo e >&2")
    assert result.stdout == b"o\n"
    assert result.stderr == b"e\n"


def test_run_uses_the_image_cmd_when_none_is_given(daemon):
    result = run(daemon, "--rm", "-i", "busybox", input=b"echo from-image-cmd\n")
    assert result.stdout == b"from-image-cmd\n"


def test_run_i_feeds_piped_stdin_then_eof(daemon):
    result = run(daemon, "-i", "--rm", "busybox", "sh", "-c", "cat; echo done",
                 input=b"line1\nline2\n")
    assert result.stdout == b"line1\nline2\ndone\n"


def test_run_without_rm_keeps_the_exited_container(daemon):
    run(daemon, "--name", "kept", "busybox", "sh", "-c", "exit 2", check=False)
    state = inspect(daemon, "kept")["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 2, False)
    assert parse_timestamp(state["FinishedAt"]) >= parse_timestamp(state["StartedAt"])


def test_run_detached_prints_the_full_id(daemon):
    cid = run_detached(daemon, "busybox", "true")
    assert re.match(r"^[0-9a-f]{64}$", cid)
    assert not cid[:12].isdigit()


def test_missing_entrypoint_exits_127_with_dockers_message(daemon):
    result = run(daemon, "--rm", "busybox", "nosuchcmd", check=False)
    assert result.returncode == 127
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in err(result)


def test_run_rm_removes_a_container_whose_start_failed(daemon):
    run(daemon, "--rm", "busybox", "nosuchcmd", check=False)
    assert out(daemon.docker("ps", "-aq")) == ""


def test_missing_image_is_a_404_on_create(daemon):
    status, body = api_create(daemon, {"Image": "nosuchimage:1", "Cmd": ["true"],
                                       "HostConfig": {"NetworkMode": "none"}})
    assert status == 404
    assert "No such image" in body["message"] and "nosuchimage:1" in body["message"]


def test_unknown_user_refuses_to_start(daemon):
    result = run(daemon, "--rm", "-u", "nosuchuser", "busybox", "true", check=False)
    assert result.returncode != 0
    assert "nosuchuser" in err(result)


def test_user_comes_from_the_containers_passwd_and_group(daemon):
    result = run(daemon, "--rm", "-u", "daemon", "busybox", "sh", "-c", "id -u; id -g; id -G")
    uid, gid, groups = out(result).splitlines()
    assert (uid, gid) == ("1", "1")
    assert set(groups.split()) == {"1", "29", "50"}


def test_numeric_user_and_group(daemon):
    result = run(daemon, "--rm", "-u", "1000:1000", "busybox", "sh", "-c", "id -u; id -g")
    assert out(result).splitlines() == ["1000", "1000"]


def test_workdir_is_created_when_missing(daemon):
    result = run(daemon, "--rm", "-w", "/made/by/docker", "busybox", "pwd")
    assert out(result) == "/made/by/docker"


def test_workdir_that_is_a_file_refuses_to_start(daemon):
    result = run(daemon, "--rm", "-w", "/etc/passwd", "busybox", "true", check=False)
    assert result.returncode != 0
    assert "not a directory" in err(result).lower()


def test_env_from_the_image_and_the_command_line(daemon):
    result = run(daemon, "--rm", "-e", "FOO=bar", "busybox", "sh", "-c", 'echo "$FOO $PATH"')
    assert out(result) == "bar /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# -- names, prefixes, unknown containers ------------------------------------------------

@pytest.mark.parametrize("name", ["x/y", "a", "-lead", "has space"])
def test_invalid_name_is_refused(daemon, name):
    result = daemon.docker("create", "--network", "none", "--name=" + name, "busybox", check=False)
    assert result.returncode != 0
    assert ("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed" % name
            in err(result))


def test_leading_slash_in_a_name_is_dropped(daemon):
    daemon.docker("create", "--network", "none", "--name", "/ok1", "busybox")
    assert inspect(daemon, "ok1")["Name"] == "/ok1"


def test_name_in_use_is_a_conflict(daemon):
    cid = out(daemon.docker("create", "--network", "none", "--name", "dup", "busybox"))
    result = daemon.docker("create", "--network", "none", "--name", "dup", "busybox", check=False)
    assert result.returncode != 0
    assert ('Conflict. The container name "/dup" is already in use by container "%s". You have '
            'to remove (or rename) that container to be able to reuse that name.' % cid
            in err(result))


def test_ambiguous_prefix_is_refused(daemon):
    seen = {}
    while True:  # 17 IDs always share a first hex digit; usually a handful will do
        cid = out(daemon.docker("create", "--network", "none", "busybox", "true"))
        if cid[0] in seen:
            break
        seen[cid[0]] = cid
    result = daemon.docker("container", "inspect", cid[0], check=False)
    assert result.returncode != 0
    assert "multiple ids found with provided prefix: %s" % cid[0] in err(result).lower()


def test_unique_prefix_finds_the_container(daemon):
    cid = out(daemon.docker("create", "--network", "none", "--name", "prefixed", "busybox"))
    assert out(daemon.docker("container", "inspect", "-f", "{{.Name}}", cid[:12])) == "/prefixed"


def test_unknown_container_is_no_such_container(daemon):
    result = daemon.docker("container", "inspect", "nosuch", check=False)
    assert result.returncode != 0
    assert "No such container: nosuch" in err(result)
    stop = daemon.docker("stop", "nosuch", check=False)
    assert stop.returncode == 1 and "No such container: nosuch" in err(stop)


def test_rm_force_of_an_unknown_container_succeeds_like_docker(daemon):
    assert daemon.docker("rm", "-f", "nosuch", check=False).returncode == 0


# -- run -d, ps, logs ---------------------------------------------------------------------

def test_ps_lists_running_and_ps_a_lists_exited(daemon):
    run_detached(daemon, "--name", "up1", "busybox", "sh", "-c", LOOP)
    run(daemon, "--name", "down1", "busybox", "sh", "-c", "exit 3", check=False)
    running = out(daemon.docker("ps", "--format", "{{.Names}}|{{.Status}}")).splitlines()
    assert [line.split("|")[0] for line in running] == ["up1"]
    assert running[0].split("|")[1].startswith("Up")
    every = dict(line.split("|") for line in
                 out(daemon.docker("ps", "-a", "--format", "{{.Names}}|{{.Status}}")).splitlines())
    assert every["down1"].startswith("Exited (3)")


def test_ps_q_no_trunc_prints_full_ids(daemon):
    cid = run_detached(daemon, "--name", "listed", "busybox", "sh", "-c", LOOP)
    assert out(daemon.docker("ps", "-q", "--no-trunc", "--filter", "name=listed")) == cid


def test_ps_filters_status_exited_label_and_ancestor(daemon):
    run_detached(daemon, "--name", "f-up", "--label", "team=a", "busybox", "sh", "-c", LOOP)
    run(daemon, "--name", "f-three", "busybox", "sh", "-c", "exit 3", check=False)
    run(daemon, "--name", "f-zero", "--label", "team=a", "busybox", "true")

    def names(*filters):
        args = ["ps", "-a", "--format", "{{.Names}}"]
        for item in filters:
            args += ["--filter", item]
        return sorted(out(daemon.docker(*args)).split())

    assert names("status=running") == ["f-up"]
    assert names("status=exited") == ["f-three", "f-zero"]
    assert names("exited=3") == ["f-three"]
    assert names("label=team=a") == ["f-up", "f-zero"]
    assert names("label=team=a", "status=exited") == ["f-zero"]
    assert names("ancestor=busybox") == ["f-three", "f-up", "f-zero"]
    assert names("name=f-t") == ["f-three"]


def test_inspect_describes_a_running_container(daemon):
    cid = run_detached(daemon, "--name", "described", "busybox", "sh", "-c", LOOP)
    container = inspect(daemon, "described")
    for key in ("Id", "Created", "Path", "Args", "State", "Image", "ResolvConfPath",
                "HostnamePath", "HostsPath", "LogPath", "Name", "RestartCount", "Driver",
                "Platform", "MountLabel", "ProcessLabel", "AppArmorProfile", "ExecIDs",
                "HostConfig", "GraphDriver", "Mounts", "Config", "NetworkSettings"):
        assert key in container, key
    assert (container["Id"], container["Name"]) == (cid, "/described")
    assert (container["Path"], container["Args"]) == ("sh", ["-c", LOOP])
    assert container["Image"].startswith("sha256:")
    assert container["Config"]["Image"] == "busybox"
    assert container["Config"]["Hostname"] == cid[:12]
    assert container["HostConfig"]["ShmSize"] == 67108864
    assert container["HostConfig"]["LogConfig"]["Type"] == "json-file"
    state = container["State"]
    assert (state["Status"], state["Running"], state["ExitCode"]) == ("running", True, 0)
    assert os.path.exists("/proc/%d" % state["Pid"])
    for path_key in ("ResolvConfPath", "HostnamePath", "HostsPath", "LogPath"):
        assert os.path.isfile(container[path_key]), path_key


def test_logs_keep_stdout_and_stderr_apart(daemon):
    run(daemon, "--name", "both", "busybox", "sh", "-c", "echo out; echo err >&2")
    result = daemon.docker("logs", "both")
    assert (result.stdout, result.stderr) == (b"out\n", b"err\n")


def test_logs_tail(daemon):
    run(daemon, "--name", "tailed", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo $i; done")
    assert logs_of(daemon, "tailed", "--tail", "2") == "4\n5"


def test_logs_timestamps_prefix_every_line(daemon):
    before = time.time()
    run(daemon, "--name", "stamped", "busybox", "sh", "-c", "echo a; echo b")
    lines = logs_of(daemon, "stamped", "--timestamps").splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["a", "b"]
    for line in lines:
        stamp = parse_timestamp(line.split(" ", 1)[0])
        assert before - 1 <= stamp.timestamp() <= time.time() + 1


def test_logs_since_leaves_out_older_lines(daemon):
    run_detached(daemon, "--name", "since", "busybox", "sh", "-c",
                 "echo early; sleep 3; echo late; " + LOOP)
    wait_for(lambda: "early" in logs_of(daemon, "since"), what="the first line")
    boundary = str(int(time.time()) + 1)  # after "early", before "late" (3 s later)
    wait_for(lambda: "late" in logs_of(daemon, "since"), timeout=10, what="the second line")
    assert logs_of(daemon, "since", "--since", boundary) == "late"


def test_logs_follow_streams_new_lines_and_ends_with_the_container(daemon):
    run_detached(daemon, "--name", "followed", "busybox", "sh", "-c",
                 "echo first; sleep 1; echo second; sleep 1; echo third")
    follower = docker_popen(daemon, "logs", "-f", "followed")
    try:
        stdout, _ = follower.communicate(timeout=20)
    finally:
        follower.kill()
    assert stdout == b"first\nsecond\nthird\n"
    assert follower.returncode == 0


def test_logs_follow_tail_starts_at_the_end(daemon):
    run_detached(daemon, "--name", "ftail", "busybox", "sh", "-c",
                 "echo old1; echo old2; sleep 1; echo new")
    wait_for(lambda: "old2" in logs_of(daemon, "ftail"), what="the old lines")
    follower = docker_popen(daemon, "logs", "-f", "--tail", "1", "ftail")
    try:
        stdout, _ = follower.communicate(timeout=20)
    finally:
        follower.kill()
    assert stdout == b"old2\nnew\n"


def test_log_opt_max_size_rotates_the_json_log(daemon):
    run(daemon, "--name", "rotated", "--log-opt", "max-size=1k", "--log-opt", "max-file=2",
        "busybox", "sh", "-c", "i=0; while [ $i -lt 100 ]; do echo line$i-%s; i=$((i+1)); done"
        % ("x" * 40))
    log_path = inspect(daemon, "rotated")["LogPath"]
    assert os.path.getsize(log_path) <= 1000 + 200
    assert os.path.exists(log_path + ".1")
    assert not os.path.exists(log_path + ".2")
    assert logs_of(daemon, "rotated").splitlines()[-1].startswith("line99-")


# -- exec ---------------------------------------------------------------------------------

def test_exec_runs_a_command_in_the_running_container(daemon):
    cid = run_detached(daemon, "--name", "ex1", "busybox", "sh", "-c", LOOP)
    result = daemon.docker("exec", "ex1", "sh", "-c", "hostname; echo err >&2")
    assert (result.stdout, result.stderr) == (cid[:12].encode() + b"\n", b"err\n")


def test_exec_exit_code_is_the_commands(daemon):
    run_detached(daemon, "--name", "ex2", "busybox", "sh", "-c", LOOP)
    assert daemon.docker("exec", "ex2", "sh", "-c", "exit 5", check=False).returncode == 5


def test_exec_sees_the_containers_processes(daemon):
    run_detached(daemon, "--name", "ex3", "busybox", "sh", "-c", LOOP)
    assert "1" in out(daemon.docker("exec", "ex3", "sh", "-c", "ls /proc | grep -x 1"))
    assert out(daemon.docker("exec", "ex3", "cat", "/proc/1/cmdline")).startswith("sh")


def test_exec_env_workdir_and_user(daemon):
    run_detached(daemon, "--name", "ex4", "busybox", "sh", "-c", LOOP)
    result = daemon.docker("exec", "-e", "X=1", "-w", "/tmp", "-u", "nobody", "ex4",
                           "sh", "-c", "echo $X; pwd; id -u")
    assert out(result).splitlines() == ["1", "/tmp", "65534"]


def test_exec_i_reads_stdin(daemon):
    run_detached(daemon, "--name", "ex5", "busybox", "sh", "-c", LOOP)
    result = daemon.docker("exec", "-i", "ex5", "sh", "-c", "cat; echo end", input=b"piped\n")
    assert result.stdout == b"piped\nend\n"


def test_exec_detached_runs_in_the_background(daemon):
    run_detached(daemon, "--name", "ex6", "busybox", "sh", "-c", LOOP)
    daemon.docker("exec", "-d", "ex6", "sh", "-c", "echo bg > /tmp/bg")
    wait_for(lambda: daemon.docker("exec", "ex6", "cat", "/tmp/bg", check=False).stdout == b"bg\n",
             what="the detached exec's file")


def test_exec_in_a_stopped_container_is_refused(daemon):
    run(daemon, "--name", "ex7", "busybox", "true")
    result = daemon.docker("exec", "ex7", "true", check=False)
    assert result.returncode != 0
    assert "is not running" in err(result)


def test_exec_missing_command_fails_with_dockers_message(daemon):
    run_detached(daemon, "--name", "ex8", "busybox", "sh", "-c", LOOP)
    result = daemon.docker("exec", "ex8", "nosuchcmd", check=False)
    assert result.returncode in (126, 127)
    # dockerd writes this error into the hijacked stream, so the CLI prints it on stdout
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in (
        result.stdout + result.stderr).decode()


# -- stop, start, restart, kill, wait, rename, rm -------------------------------------

def test_stop_sends_sigterm_first(daemon):
    run_detached(daemon, "--name", "term", "busybox", "sh", "-c",
                 "trap 'echo bye; exit 7' TERM; " + LOOP)
    began = time.monotonic()
    daemon.docker("stop", "-t", "10", "term")
    assert time.monotonic() - began < 5
    state = inspect(daemon, "term")["State"]
    assert (state["Running"], state["ExitCode"]) == (False, 7)
    assert logs_of(daemon, "term") == "bye"


def test_stop_kills_after_the_timeout(daemon):
    run_detached(daemon, "--name", "stubborn", "busybox", "sh", "-c", "trap '' TERM; " + LOOP)
    began = time.monotonic()
    daemon.docker("stop", "-t", "1", "stubborn")
    assert 0.9 <= time.monotonic() - began < 8
    assert inspect(daemon, "stubborn")["State"]["ExitCode"] == 137


def test_stop_of_a_stopped_container_succeeds(daemon):
    run(daemon, "--name", "stopped", "busybox", "true")
    assert daemon.docker("stop", "stopped", check=False).returncode == 0


def test_start_again_after_exit(daemon):
    run(daemon, "--name", "again", "busybox", "sh", "-c", "echo ran")
    daemon.docker("start", "-a", "again")
    assert logs_of(daemon, "again") == "ran\nran"


def test_start_of_a_running_container_succeeds(daemon):
    run_detached(daemon, "--name", "started", "busybox", "sh", "-c", LOOP)
    assert daemon.docker("start", "started", check=False).returncode == 0
    response = daemon.request("POST", "/containers/started/start")
    assert response.status == 304


def test_restart_starts_a_new_process(daemon):
    run_detached(daemon, "--name", "restarted", "busybox", "sh", "-c", LOOP)
    before = inspect(daemon, "restarted")["State"]
    daemon.docker("restart", "-t", "1", "restarted")
    after = inspect(daemon, "restarted")["State"]
    assert after["Running"] and after["Pid"] != before["Pid"]
    assert parse_timestamp(after["StartedAt"]) > parse_timestamp(before["StartedAt"])


def test_kill_s_winch_reaches_the_process_and_leaves_it_running(daemon):
    run_detached(daemon, "--name", "winch", "busybox", "sh", "-c",
                 "trap 'echo winched' WINCH; " + LOOP)
    daemon.docker("kill", "-s", "WINCH", "winch")
    wait_for(lambda: logs_of(daemon, "winch") == "winched", what="the trap's line")
    assert inspect(daemon, "winch")["State"]["Running"]


@pytest.mark.parametrize("signal_name", ["SIGUSR1", "10"])
def test_kill_accepts_signal_names_with_sig_and_numbers(daemon, signal_name):
    run_detached(daemon, "--name", "usr1", "busybox", "sh", "-c", "trap 'echo usr1' USR1; " + LOOP)
    daemon.docker("kill", "-s", signal_name, "usr1")
    wait_for(lambda: logs_of(daemon, "usr1") == "usr1", what="the trap's line")


def test_kill_s_9_exits_137(daemon):
    run_detached(daemon, "--name", "nine", "busybox", "sh", "-c", LOOP)
    daemon.docker("kill", "-s", "9", "nine")
    state = wait_until_exited(daemon, "nine")
    assert state["ExitCode"] == 137


def test_kill_of_a_stopped_container_is_a_conflict(daemon):
    run(daemon, "--name", "dead", "busybox", "true")
    result = daemon.docker("kill", "dead", check=False)
    assert result.returncode != 0
    assert "is not running" in err(result)


def test_wait_prints_the_exit_code(daemon):
    run_detached(daemon, "--name", "waited", "busybox", "sh", "-c", "sleep 1; exit 4")
    assert out(daemon.docker("wait", "waited")) == "4"


def test_wait_on_an_exited_container_returns_at_once(daemon):
    run(daemon, "--name", "waited2", "busybox", "sh", "-c", "exit 6", check=False)
    assert out(daemon.docker("wait", "waited2", timeout=10)) == "6"


def test_rename(daemon):
    cid = run_detached(daemon, "--name", "old-name", "busybox", "sh", "-c", LOOP)
    daemon.docker("rename", "old-name", "new-name")
    assert inspect(daemon, "new-name")["Id"] == cid
    assert inspect(daemon, "new-name")["Name"] == "/new-name"
    assert daemon.request("GET", "/containers/old-name/json").status == 404
    daemon.docker("create", "--network", "none", "--name", "old-name", "busybox")


def test_rename_to_a_name_in_use_is_a_conflict(daemon):
    daemon.docker("create", "--network", "none", "--name", "r1", "busybox")
    daemon.docker("create", "--network", "none", "--name", "r2", "busybox")
    result = daemon.docker("rename", "r1", "r2", check=False)
    assert result.returncode != 0 and "already in use" in err(result)


def test_rm_of_a_running_container_is_refused_then_forced(daemon):
    cid = run_detached(daemon, "--name", "busy", "busybox", "sh", "-c", LOOP)
    refused = daemon.docker("rm", "busy", check=False)
    assert refused.returncode != 0
    assert "You cannot remove a running container %s" % cid in err(refused)
    daemon.docker("rm", "-f", "busy")
    assert daemon.request("GET", "/containers/%s/json" % cid).status == 404


def test_rm_frees_the_name(daemon):
    daemon.docker("create", "--network", "none", "--name", "reused", "busybox")
    daemon.docker("rm", "reused")
    daemon.docker("create", "--network", "none", "--name", "reused", "busybox")


def test_rm_leaves_no_mounts_behind(daemon):
    cid = run_detached(daemon, "--name", "mounted", "busybox", "sh", "-c", LOOP)
    daemon.docker("rm", "-f", "mounted")
    with open("/proc/self/mounts") as mounts:
        assert cid not in mounts.read()


# -- mounts and the network files ----------------------------------------------------------

def test_bind_mount_reads_and_writes_the_host_directory(daemon, tmp_path):
    (tmp_path / "in").write_text("from host\n")
    result = run(daemon, "--rm", "-v", "%s:/data" % tmp_path, "busybox", "sh", "-c",
                 "cat /data/in; echo from container > /data/out")
    assert result.stdout == b"from host\n"
    assert (tmp_path / "out").read_text() == "from container\n"


def test_read_only_bind_mount_refuses_writes(daemon, tmp_path):
    result = run(daemon, "--rm", "-v", "%s:/data:ro" % tmp_path, "busybox", "touch", "/data/x",
                 check=False)
    assert result.returncode != 0
    assert "Read-only file system" in err(result)
    assert not (tmp_path / "x").exists()


def test_mount_flag_type_bind_readonly(daemon, tmp_path):
    (tmp_path / "in").write_text("via --mount\n")
    result = run(daemon, "--rm", "--mount", "type=bind,source=%s,target=/m,readonly" % tmp_path,
                 "busybox", "sh", "-c", "cat /m/in; touch /m/y", check=False)
    assert result.stdout == b"via --mount\n"
    assert "Read-only file system" in err(result)
    assert not (tmp_path / "y").exists()


def test_tmpfs_mount_is_a_writable_tmpfs(daemon):
    result = run(daemon, "--rm", "--tmpfs", "/scratch", "busybox", "sh", "-c",
                 "grep ' /scratch ' /proc/mounts; echo x > /scratch/f && cat /scratch/f")
    mount_line, written = out(result).splitlines()
    assert mount_line.split()[2] == "tmpfs"
    assert written == "x"


def test_hostname_flag_sets_the_hostname_and_etc_hostname(daemon):
    result = run(daemon, "--rm", "--hostname", "foo.bar", "busybox", "sh", "-c",
                 "hostname; cat /etc/hostname")
    assert out(result).splitlines() == ["foo.bar", "foo.bar"]


def test_default_hostname_is_the_short_id_and_in_etc_hosts(daemon):
    cid = run_detached(daemon, "--name", "named", "busybox", "sh", "-c", LOOP)
    hosts = out(daemon.docker("exec", "named", "cat", "/etc/hosts")).splitlines()
    assert out(daemon.docker("exec", "named", "hostname")) == cid[:12]
    assert any(line.split()[:1] == ["127.0.0.1"] and "localhost" in line.split()
               for line in hosts)


def test_dns_and_dns_search_are_in_resolv_conf(daemon):
    result = run(daemon, "--rm", "--dns", "10.1.2.3", "--dns-search", "example.org",
                 "--dns-opt", "ndots:2", "busybox", "cat", "/etc/resolv.conf")
    lines = [line.split() for line in out(result).splitlines()]
    assert ["nameserver", "10.1.2.3"] in lines
    assert ["search", "example.org"] in lines
    assert ["options", "ndots:2"] in lines
    assert [words for words in lines if words[:1] == ["nameserver"]] == [["nameserver", "10.1.2.3"]]


def test_add_host_is_in_etc_hosts(daemon):
    result = run(daemon, "--rm", "--add-host", "db.local:10.0.0.5", "busybox", "cat", "/etc/hosts")
    assert ["10.0.0.5", "db.local"] in [line.split() for line in out(result).splitlines()]


def test_network_files_are_bind_mounts_not_image_files(daemon):
    result = run(daemon, "--rm", "busybox", "sh", "-c",
                 "for f in hostname hosts resolv.conf; do grep -c \" /etc/$f \" /proc/mounts; done")
    assert out(result).splitlines() == ["1", "1", "1"]


# -- restart policies ---------------------------------------------------------------------

def test_restart_on_failure_3_restarts_three_times(daemon):
    run_detached(daemon, "--name", "flaky", "--restart", "on-failure:3", "busybox", "false")
    wait_until_restarts_end(daemon, "flaky", 3)
    time.sleep(0.5)
    assert inspect(daemon, "flaky")["RestartCount"] == 3
    assert out(daemon.docker("inspect", "-f", "{{.RestartCount}} {{.State.Running}}",
                             "flaky")) == "3 false"


def test_restart_on_failure_does_not_restart_a_success(daemon):
    run_detached(daemon, "--name", "fine", "--restart", "on-failure", "busybox", "true")
    wait_until_exited(daemon, "fine")
    time.sleep(0.5)
    assert inspect(daemon, "fine")["RestartCount"] == 0


def test_restart_always_brings_back_a_killed_container(daemon):
    run_detached(daemon, "--name", "phoenix", "--restart", "always", "busybox", "sh", "-c", LOOP)
    pid = inspect(daemon, "phoenix")["State"]["Pid"]
    assert pid > 0
    os.kill(pid, signal.SIGKILL)
    assert wait_until_restarted(daemon, "phoenix", pid)["RestartCount"] >= 1


def test_stop_cancels_restart_always(daemon):
    run_detached(daemon, "--name", "stayput", "--restart", "always", "busybox", "sh", "-c", LOOP)
    daemon.docker("stop", "-t", "1", "stayput")
    time.sleep(1)
    assert not inspect(daemon, "stayput")["State"]["Running"]


def test_default_restart_policy_is_no(daemon):
    daemon.docker("create", "--network", "none", "--name", "policy", "busybox")
    assert out(daemon.docker("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", "policy")) == "no"


def test_autoremove_with_a_restart_policy_is_refused(daemon):
    status, body = api_create(daemon, {"Image": "busybox", "Cmd": ["true"], "HostConfig": {
        "NetworkMode": "none", "AutoRemove": True, "RestartPolicy": {"Name": "always"}}})
    assert status == 400
    assert "can't create 'AutoRemove' container with restart policy" in body["message"]


# -- events -------------------------------------------------------------------------------

def test_events_for_create_start_die_and_destroy(daemon):
    since = str(int(time.time()) - 1)
    cid = out(daemon.docker("create", "--network", "none", "--name", "evented",
                            "busybox", "sh", "-c", "exit 3"))
    daemon.docker("start", "evented")
    daemon.docker("wait", "evented")
    daemon.docker("rm", "evented")
    until = str(int(time.time()) + 1)
    events = [json.loads(line) for line in out(daemon.docker(
        "events", "--since", since, "--until", until, "--filter", "container=%s" % cid,
        "--format", "{{json .}}", timeout=20)).splitlines()]
    actions = [event["Action"] for event in events]
    wanted = ["create", "start", "die", "destroy"]
    assert [action for action in actions if action in wanted] == wanted
    die = events[actions.index("die")]
    assert die["Actor"]["Attributes"]["exitCode"] == "3"
    assert die["Actor"]["Attributes"]["name"] == "evented"
    assert die["Actor"]["Attributes"]["image"] == "busybox"
    assert all(event["Type"] == "container" and event["Actor"]["ID"] == cid for event in events)


def test_events_for_kill_stop_and_rename(daemon):
    since = str(int(time.time()) - 1)
    cid = run_detached(daemon, "--name", "ev2", "busybox", "sh", "-c", "trap 'exit 0' USR1; " + LOOP)
    daemon.docker("kill", "-s", "USR1", "ev2")
    wait_until_exited(daemon, "ev2")
    daemon.docker("start", "ev2")
    daemon.docker("stop", "-t", "1", "ev2")
    daemon.docker("rename", "ev2", "ev3")
    until = str(int(time.time()) + 1)
    events = [json.loads(line) for line in out(daemon.docker(
        "events", "--since", since, "--until", until, "--filter", "container=%s" % cid,
        "--format", "{{json .}}", timeout=20)).splitlines()]
    actions = [event["Action"] for event in events]
    for wanted in ("kill", "stop", "rename"):
        assert wanted in actions, actions
    kill = events[actions.index("kill")]
    assert kill["Actor"]["Attributes"]["signal"] == "10"
    rename = events[actions.index("rename")]
    assert rename["Actor"]["Attributes"]["name"] == "ev3"
    assert rename["Actor"]["Attributes"]["oldName"] == "/ev2"


# -- hygiene: what containers leave behind ------------------------------------------------

def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append((int(entry), fields[0]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def test_exited_containers_leave_no_zombies(daemon):
    for code in range(3):
        run(daemon, "--rm", "busybox", "sh", "-c", "sleep 0.1 & exit %d" % code, check=False)
    wait_for(lambda: not [pid for pid, state in descendants(daemon.proc.pid) if state == "Z"],
             timeout=5, what="no zombie under the daemon")


def test_run_rm_leaves_no_mounts_in_the_host_namespace(daemon):
    def daemon_mounts():
        with open("/proc/self/mounts") as mounts:
            return sorted(line.split()[1] for line in mounts if daemon.dir in line.split()[1])

    before = daemon_mounts()
    run(daemon, "--rm", "busybox", "true")
    run(daemon, "--rm", "busybox", "nosuchcmd", check=False)
    assert daemon_mounts() == before


# -- run -it on a terminal ---------------------------------------------------------------

def test_run_it_gets_a_terminal(daemon):
    with pty_docker(daemon, "run", "-it", "--rm", "--network", "none", "busybox", "tty") as term:
        assert term.wait() == 0
    assert b"/dev/pts/0" in term.output


def test_run_it_shell_takes_typed_input_and_returns_its_exit_code(daemon):
    with pty_docker(daemon, "run", "-it", "--rm", "--network", "none", "busybox", "sh") as term:
        term.expect(rb"# ")
        term.send(b"echo hel''lo\r")
        term.expect(rb"hello\r\n")
        term.send(b"exit 5\r")
        assert term.wait() == 5


def test_run_it_has_the_terminal_size_and_follows_resizes(daemon):
    with pty_docker(daemon, "run", "-it", "--rm", "--network", "none", "busybox", "sh",
                    rows=40, cols=120) as term:
        term.expect(rb"# ")
        term.send(b"stty size\r")
        term.expect(rb"40 120\r\n")
        term.resize(30, 100)
        time.sleep(0.5)  # the CLI forwards the SIGWINCH as a resize request
        term.send(b"stty size\r")
        term.expect(rb"30 100\r\n")
        term.send(b"exit\r")
        assert term.wait() == 0


def test_ctrl_p_ctrl_q_detaches_and_attach_comes_back(daemon):
    with pty_docker(daemon, "run", "-it", "--name", "detached", "--network", "none",
                    "busybox", "sh") as term:
        term.expect(rb"# ")
        term.send(b"\x10\x11")
        assert term.wait() == 0
    assert inspect(daemon, "detached")["State"]["Running"]
    with pty_docker(daemon, "attach", "detached") as term:
        time.sleep(0.5)
        term.send(b"echo ba''ck\r")
        term.expect(rb"back\r\n")
        term.send(b"exit 3\r")
        assert term.wait() == 3
    assert inspect(daemon, "detached")["State"]["ExitCode"] == 3


def test_exec_it_gets_a_terminal(daemon):
    run_detached(daemon, "--name", "execit", "busybox", "sh", "-c", LOOP)
    with pty_docker(daemon, "exec", "-it", "execit", "sh", "-c", "tty; exit 7") as term:
        assert term.wait() == 7
    assert re.search(rb"/dev/pts/\d+", term.output)


def test_exec_it_process_starts_on_a_terminal_of_the_clis_size(daemon):
    # At API 1.41 the size comes only with the CLI's resize after the 101; a process let go
    # before it saw a 0x0 terminal (busybox's `stty size` then fails) about every other time.
    run_detached(daemon, "--name", "execsize", "busybox", "sh", "-c", LOOP)
    for _ in range(6):
        with pty_docker(daemon, "exec", "-it", "execsize", "stty", "size", rows=30, cols=100) as term:
            assert term.wait() == 0, term.output
        assert term.output == b"30 100\r\n"


def test_attach_output_outlives_input_that_the_ended_process_refuses():
    # A short-lived process's monitor hangs up once the output has ended; input arriving
    # after that (here the EOF byte `script` types for a closed stdin) must not make the
    # daemon drop the output still on its way to the client.
    client, cli = socket.socketpair()
    upstream, monitor_end = socket.socketpair()
    with client, cli, upstream, monitor_end:
        monitor_end.sendall(b"hi\r\n")
        monitor_end.close()
        cli.sendall(b"\0")
        pydockerd.proxy_streams(client, upstream, True, pydockerd.DEFAULT_DETACH_KEYS)
        client.shutdown(socket.SHUT_WR)
        assert cli.recv(100) == b"hi\r\n"


def test_logs_of_a_tty_container_are_raw(daemon):
    run_detached(daemon, "-t", "--name", "ttylog", "busybox", "sh", "-c", "echo on-a-tty")
    wait_until_exited(daemon, "ttylog")
    assert daemon.docker("logs", "ttylog").stdout == b"on-a-tty\r\n"


# -- live restore: the daemon is killed while containers run ------------------------------

@pytest.fixture
def own_daemon(busybox_archive):  # noqa: F811
    """A daemon of the test's own, which it may kill -9 and start again on the same dirs."""
    process = start_busybox_daemon(busybox_archive)
    yield process
    retire_daemon(process)


def kill_daemon(daemon):
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(10)


def numbered_lines(text):
    return [int(line[4:]) for line in text.splitlines() if line.startswith("line")]


def test_container_survives_a_daemon_kill_and_logs_every_line(own_daemon):
    daemon = own_daemon
    cid = run_detached(daemon, "--name", "survivor", "busybox", "sh", "-c",
                       "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.05; done")
    wait_for(lambda: len(numbered_lines(logs_of(daemon, "survivor"))) > 5, what="some lines")
    pid = inspect(daemon, "survivor")["State"]["Pid"]
    kill_daemon(daemon)
    time.sleep(1)  # lines written while no daemon runs must reach the log too
    daemon.start()
    state = inspect(daemon, "survivor")["State"]
    assert (state["Running"], state["Pid"]) == (True, pid)
    before = len(numbered_lines(logs_of(daemon, "survivor")))
    wait_for(lambda: len(numbered_lines(logs_of(daemon, "survivor"))) > before + 5,
             what="more lines after the restart")
    assert out(daemon.docker("ps", "-q", "--no-trunc")) == cid
    waiter = docker_popen(daemon, "wait", "survivor")
    daemon.docker("stop", "-t", "1", "survivor")
    stdout, _ = waiter.communicate(timeout=20)
    assert stdout.strip() == b"137"
    numbers = numbered_lines(logs_of(daemon, "survivor"))
    assert numbers == list(range(len(numbers)))


def test_exit_while_the_daemon_is_down_is_recorded(own_daemon):
    daemon = own_daemon
    run_detached(daemon, "--name", "quitter", "busybox", "sh", "-c", "sleep 1; exit 6")
    kill_daemon(daemon)
    time.sleep(2)
    daemon.start()
    assert out(daemon.docker("wait", "quitter", timeout=20)) == "6"
    state = inspect(daemon, "quitter")["State"]
    assert (state["Running"], state["ExitCode"]) == (False, 6)


def test_exec_works_after_a_daemon_restart(own_daemon):
    daemon = own_daemon
    run_detached(daemon, "--name", "readopted", "busybox", "sh", "-c", LOOP)
    kill_daemon(daemon)
    daemon.start()
    assert out(daemon.docker("exec", "readopted", "echo", "still here")) == "still here"


def test_daemon_restart_starts_always_but_not_stopped_unless_stopped(own_daemon):
    daemon = own_daemon
    for name, policy in (("alw", "always"), ("unl", "unless-stopped"), ("onl", "no")):
        run_detached(daemon, "--name", name, "--restart", policy, "busybox", "sh", "-c", LOOP)
        daemon.docker("stop", "-t", "1", name)
    daemon.docker("create", "--name", "created-only", "--restart", "always", "busybox", "true")
    daemon.stop()
    daemon.start()
    running = {name: inspect(daemon, name)["State"]["Running"]
               for name in ("alw", "unl", "onl", "created-only")}
    assert running == {"alw": True, "unl": False, "onl": False, "created-only": False}


def test_exec_works_after_the_container_whose_network_it_joined_stopped(daemon):
    run_detached(daemon, "--name", "netowner", "busybox", "sh", "-c", LOOP)
    daemon.docker("run", "-d", "--name", "netguest", "--network", "container:netowner",
                  "busybox", "sh", "-c", LOOP)
    daemon.docker("stop", "-t", "1", "netowner")
    assert out(daemon.docker("exec", "netguest", "echo", "still in")) == "still in"
