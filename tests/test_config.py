"""Flags, daemon.json and the config checks of the boot's first steps (unit tests)."""
import json
import os

import pytest

import pydockerd
from pydockerd import ConfigError


def parse(tmp_path, *argv, config_file=None):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(config_file or {}))
    return pydockerd.parse_flags(["--config-file", str(path)] + list(argv))


def test_defaults_are_dockerds(tmp_path):
    config = parse(tmp_path)
    assert config.root == "/var/lib/docker"
    assert config.exec_root == "/var/run/docker"
    assert config.pidfile == "/var/run/docker.pid"
    assert config.hosts == ["unix:///var/run/docker.sock"]
    assert config.group == "docker"
    assert config.log_driver == "json-file"
    assert config.icc and config.iptables and config.ip_masq and config.userland_proxy


def test_short_and_long_flags(tmp_path):
    config = parse(tmp_path, "-H", "unix:///tmp/a.sock", "-H", "tcp://127.0.0.1:2375", "-D",
                   "-g", "/srv/docker", "-p", "/tmp/x.pid", "-s", "vfs", "-b", "none",
                   "--log-opt", "max-size=10m", "--icc=false", "--iptables", "true")
    assert config.hosts == ["unix:///tmp/a.sock", "tcp://127.0.0.1:2375"]
    assert config.debug is True
    assert config.root == "/srv/docker"
    assert config.pidfile == "/tmp/x.pid"
    assert config.storage_driver == "vfs"
    assert config.bridge == "none"
    assert config.log_opts == {"max-size": "10m"}
    assert config.icc is False and config.iptables is True


def test_data_root_flag(tmp_path):
    assert parse(tmp_path, "--data-root", "/srv/d").root == "/srv/d"


def test_config_file_values_are_used(tmp_path):
    config = parse(tmp_path, config_file={"debug": True, "storage-driver": "vfs",
                                          "labels": ["a=b"], "log-opts": {"max-file": "3"}})
    assert config.debug and config.storage_driver == "vfs"
    assert config.labels == ["a=b"] and config.log_opts == {"max-file": "3"}


def test_key_in_file_and_flag_is_a_conflict(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse(tmp_path, "--debug", config_file={"debug": False})
    assert "the following directives are specified both as a flag and in the configuration " \
           "file: debug: (from flag: true, from file: false)" in str(err.value)


def test_unknown_config_file_key_is_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse(tmp_path, config_file={"no-such-thing": 1})
    assert "the following directives don't match any configuration option: no-such-thing" \
        in str(err.value)


def test_malformed_config_file_is_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{bad")
    with pytest.raises(ConfigError) as err:
        pydockerd.parse_flags(["--config-file", str(path)])
    assert "unable to configure the Docker daemon with file %s" % path in str(err.value)


def test_wrong_type_in_config_file_is_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse(tmp_path, config_file={"debug": "yes"})
    assert "cannot unmarshal" in str(err.value)


def test_explicit_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        pydockerd.parse_flags(["--config-file", str(tmp_path / "missing.json")])
    assert "no such file or directory" in str(err.value)


@pytest.mark.parametrize("argv, message", [
    (["-H", "fd://"], "Invalid bind address format: fd://"),
    (["-H", "tcp://127.0.0.1"], "Invalid bind address format: tcp://127.0.0.1"),
    (["--dns", "not-an-ip"], "not-an-ip is not an ip address"),
    (["--bip", "10.0.0.1"], "invalid value 10.0.0.1 for --bip"),
    (["--fixed-cidr", "nonsense"], "invalid CIDR address: nonsense"),
    (["--log-level", "loud"], "Unable to parse logging level: loud"),
    (["--default-ulimit", "nofile=20:10"], "ulimit soft limit must be less than or equal to hard limit"),
    (["--default-ulimit", "bogus=1"], "invalid ulimit type: bogus"),
    (["--label", "nolabelvalue"], "bad attribute format: nolabelvalue"),
    (["--registry-mirror", "ftp://mirror"], "invalid mirror: unsupported scheme"),
    (["--insecure-registry", "http://r:5000"], "insecure registry http://r:5000 should not contain '://'"),
    (["--log-opt", "novalue"], "must be key=value"),
])
def test_flag_values_are_validated_at_parse_time(tmp_path, argv, message):
    with pytest.raises(ConfigError) as err:
        parse(tmp_path, *argv)
    assert message in str(err.value)


def test_help_reads_like_dockerds(capsys):
    with pytest.raises(SystemExit):
        pydockerd.parse_flags(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("Usage:\tpydockerd.py [OPTIONS]\n\nA self-sufficient runtime for containers.")
    for flag in ("-b, --bridge", "--bip", "-D, --debug", "-H, --host", "-s, --storage-driver",
                 "--tlsverify", "--insecure-registry", "--registry-mirror", "--config-file"):
        assert flag in out
    assert "Options:" in out


def test_bridge_and_bip_are_exclusive(tmp_path):
    config = parse(tmp_path, "-b", "br0", "--bip", "10.1.0.1/24")
    with pytest.raises(ConfigError) as err:
        pydockerd.check_config_options(config)
    assert str(err.value) == ("You specified -b & --bip, mutually exclusive options. "
                              "Please specify only one.")


def test_icc_false_needs_iptables(tmp_path):
    config = parse(tmp_path, "--icc=false", "--iptables=false")
    with pytest.raises(ConfigError) as err:
        pydockerd.check_config_options(config)
    assert "You specified --iptables=false with --icc=false" in str(err.value)


def test_iptables_false_turns_off_ip_masq(tmp_path):
    config = parse(tmp_path, "--iptables=false")
    assert config.ip_masq is True
    pydockerd.check_config_options(config)
    assert config.ip_masq is False


def test_bridge_none_disables_the_bridge(tmp_path):
    assert pydockerd.is_bridge_network_disabled(parse(tmp_path, "-b", "none")) is True
    assert pydockerd.is_bridge_network_disabled(parse(tmp_path)) is False


def test_default_mtu_is_1500_unless_given(tmp_path):
    config = parse(tmp_path)
    pydockerd.set_default_mtu(config)
    assert config.mtu == 1500
    config = parse(tmp_path, "--mtu", "9000")
    pydockerd.set_default_mtu(config)
    assert config.mtu == 9000


def test_non_root_is_refused(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ConfigError) as err:
        pydockerd.check_system()
    assert str(err.value) == "The Docker daemon needs to be run as root"


def test_old_kernel_is_refused(monkeypatch):
    monkeypatch.setattr(pydockerd.linux, "kernel_version", lambda: (3, 2, 0))
    with pytest.raises(ConfigError) as err:
        pydockerd.check_system()
    assert "is not supported for running docker. Please upgrade your kernel to 3.10.0" in str(err.value)


def test_unknown_log_driver_is_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        pydockerd.verify_log_driver(parse(tmp_path, "--log-driver", "carrier-pigeon"))
    assert "error finding the logging driver" in str(err.value)


def test_unknown_log_opt_is_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        pydockerd.verify_log_driver(parse(tmp_path, "--log-opt", "colour=blue"))
    assert "unknown log opt 'colour' for json-file log driver" == str(err.value)


def test_unknown_exec_opt_is_refused(tmp_path):
    config = parse(tmp_path, "--exec-opt", "native.bogus=1", "--exec-root", str(tmp_path / "exec"))
    with pytest.raises(ConfigError) as err:
        pydockerd.init_exec_driver(config, None)
    assert "Unknown option native.bogus" == str(err.value)


def test_fixed_cidr_must_be_inside_bip(tmp_path):
    config = parse(tmp_path, "--bip", "10.1.0.1/24", "--fixed-cidr", "10.2.0.0/24")
    with pytest.raises(ConfigError) as err:
        pydockerd.init_network_controller(config, None)
    assert "Error initializing network controller" in str(err.value)
