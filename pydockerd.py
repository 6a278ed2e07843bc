#!/usr/bin/env python3
"""pydockerd: the Docker daemon, rewritten in plain Python.

Run it as root: `sudo python3 pydockerd.py`. The real `docker` CLI then talks to it on
/var/run/docker.sock, exactly as it talks to dockerd.

This file reads top to bottom, in the order Docker 1.8.2's daemon does things:

  1. Config        dockerd's flags and /etc/docker/daemon.json          (docker/daemon.go, daemon/config.go)
  2. NewDaemon     the boot, one function per step, in the seed's order (daemon/daemon.go NewDaemon)
  3. The stores    events, linkgraph.db, containers, truncindex, sysinfo
  4. Containers    create, start, stop, kill, wait, rm, restart policy  (daemon/create.go, start.go, ...)
  5. The Engine API  routes, versioning, errors, streams and hijack     (api/server/server.go)
  6. main()        parse flags, boot, serve, shut down cleanly          (docker/daemon.go mainDaemon)

The lower layers live in drivers/, one module per Docker package: linux (the syscalls),
trust (libtrust), graphdriver with vfs/overlay/aufs, archive, graph and tags (the image store),
registry and distribution (pull and push), execdriver (the container process), monitor (the
process that owns a running container), logger (the log drivers), network (the network
controller), volume (the local volume driver and a container's mount points), cgroups and
stats (limits and the stats collector), dockerfile, buildcontext, builder and commit
(`docker build` and `docker commit`), containerarchive (`docker cp`) and top (`docker top`).
"""
import argparse
import contextlib
import base64
import bisect
import copy
import errno
import functools
import grp
import http.client
import ipaddress
import json
import logging
import os
import platform
import queue
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import ssl
import stat
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

from drivers import (archive, builder, cgroups, commit, containerarchive, distribution, errdefs,
                     execdriver, graph as graph_store, graphdriver, health, httpserver, ioutils,
                     iptables, jsontypes, linux, links, logger, monitor as monitor_module, netlink,
                     network as libnetwork, portmapper, reconcile, reference, registry, resolver,
                     runconfig, seccomp, stats as stats_module, tags, top, trust, volume)
from drivers.errdefs import InvalidParameter, NotFound

VERSION = "0.1.0"
API_VERSION = "1.41"          # the Engine API version served (dockerd 20.10's)
MIN_API_VERSION = "1.12"      # the oldest versioned path accepted, like dockerd 20.10
SERVER_HEADER = "Docker/%s-pydockerd (linux)" % VERSION

log = logging.getLogger("pydockerd")


# ------------------------------------------------------------------------------------------
# 1. Config: dockerd's flags (1.8 names and their modern aliases) and daemon.json
# ------------------------------------------------------------------------------------------

class ConfigError(Exception):
    """A configuration the daemon refuses to boot with; the message is Docker's."""


# One row per flag: (flags, dest, kind, default, daemon.json key, help). `kind` is how the
# value is parsed: string, bool, int, list (repeatable) or map (repeatable key=value).
# The table drives the parser, --help, and the daemon.json merge, so a flag exists once.
FLAGS = [
    (("--config-file",), "config_file", "string", "/etc/docker/daemon.json", None,
     "Daemon configuration file"),
    (("-b", "--bridge"), "bridge", "string", "", "bridge",
     "Attach containers to a network bridge"),
    (("--cgroup-parent",), "cgroup_parent", "string", cgroups.DEFAULT_PARENT, "cgroup-parent",
     "Set parent cgroup for all containers"),
    (("--bip",), "bip", "string", "", "bip",
     "Specify network bridge IP"),
    (("-D", "--debug"), "debug", "bool", False, "debug",
     "Enable debug mode"),
    (("--data-root",), "root", "string", "/var/lib/docker", "data-root",
     "Root directory of persistent Docker state"),
    (("-g", "--graph"), "graph", "string", "", "graph",
     "Root of the Docker runtime (deprecated: use --data-root)"),
    (("--default-ulimit",), "default_ulimits", "list", [], "default-ulimits",
     "Default ulimits for containers"),
    (("--dns",), "dns", "list", [], "dns",
     "DNS server to use"),
    (("--dns-opt",), "dns_opts", "list", [], "dns-opts",
     "DNS options to use"),
    (("--dns-search",), "dns_search", "list", [], "dns-search",
     "DNS search domains to use"),
    (("--exec-opt",), "exec_opts", "list", [], "exec-opts",
     "Runtime execution options"),
    (("--exec-root",), "exec_root", "string", "/var/run/docker", "exec-root",
     "Root directory for execution state files"),
    (("--fixed-cidr",), "fixed_cidr", "string", "", "fixed-cidr",
     "IPv4 subnet for fixed IPs"),
    (("-G", "--group"), "group", "string", "docker", "group",
     "Group for the unix socket"),
    (("-H", "--host"), "hosts", "list", [], "hosts",
     "Daemon socket(s) to connect to"),
    (("--icc",), "icc", "bool", True, "icc",
     "Enable inter-container communication"),
    (("-i", "--identity"), "trust_key_path", "string", "/etc/docker/key.json", None,
     "Path to libtrust key file"),
    (("--insecure-registry",), "insecure_registries", "list", [], "insecure-registries",
     "Enable insecure registry communication"),
    (("--ip",), "ip", "string", "0.0.0.0", "ip",
     "Default IP when binding container ports"),
    (("--ip-forward",), "ip_forward", "bool", True, "ip-forward",
     "Enable net.ipv4.ip_forward"),
    (("--ip-masq",), "ip_masq", "bool", True, "ip-masq",
     "Enable IP masquerading"),
    (("--iptables",), "iptables", "bool", True, "iptables",
     "Enable addition of iptables rules"),
    (("--label",), "labels", "list", [], "labels",
     "Set key=value labels to the daemon"),
    (("--log-driver",), "log_driver", "string", "json-file", "log-driver",
     "Default driver for container logs"),
    (("-l", "--log-level"), "log_level", "string", "info", "log-level",
     'Set the logging level ("debug"|"info"|"warn"|"error"|"fatal")'),
    (("--log-opt",), "log_opts", "map", {}, "log-opts",
     "Default log driver options for containers"),
    (("--mtu",), "mtu", "int", 0, "mtu",
     "Set the containers network MTU"),
    (("-p", "--pidfile"), "pidfile", "string", "/var/run/docker.pid", "pidfile",
     "Path to use for daemon PID file"),
    (("--registry-mirror",), "registry_mirrors", "list", [], "registry-mirrors",
     "Preferred registry mirror"),
    (("--selinux-enabled",), "selinux_enabled", "bool", False, "selinux-enabled",
     "Enable selinux support"),
    (("-s", "--storage-driver"), "storage_driver", "string", "", "storage-driver",
     "Storage driver to use"),
    (("--storage-opt",), "storage_opts", "list", [], "storage-opts",
     "Storage driver options"),
    (("--tls",), "tls", "bool", False, "tls",
     "Use TLS; implied by --tlsverify"),
    (("--tlscacert",), "tlscacert", "string", "~/.docker/ca.pem", "tlscacert",
     "Trust certs signed only by this CA"),
    (("--tlscert",), "tlscert", "string", "~/.docker/cert.pem", "tlscert",
     "Path to TLS certificate file"),
    (("--tlskey",), "tlskey", "string", "~/.docker/key.pem", "tlskey",
     "Path to TLS key file"),
    (("--tlsverify",), "tlsverify", "bool", False, "tlsverify",
     "Use TLS and verify the remote"),
    (("--userland-proxy",), "userland_proxy", "bool", True, "userland-proxy",
     "Use userland proxy for loopback traffic"),
]

LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "warning": logging.WARNING, "error": logging.ERROR, "fatal": logging.CRITICAL,
              "panic": logging.CRITICAL}

DEFAULT_UNIX_SOCKET = "unix:///var/run/docker.sock"


class Config(object):
    """The daemon's configuration: one attribute per FLAGS row, plus what the boot derives."""

    def __init__(self, **values):
        for _, dest, _, default, _, _ in FLAGS:
            setattr(self, dest, _copy_default(default))
        self.disable_bridge = False
        self.daemon_id = ""
        self.__dict__.update(values)


def _copy_default(default):
    """Lists and dicts in the table are shared templates: give each Config its own."""
    return type(default)(default) if isinstance(default, (list, dict)) else default


class HelpFormatter(argparse.HelpFormatter):
    """Print --help the way dockerd does: `Usage: dockerd [OPTIONS]`, then the option table."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=44, width=120)

    def _format_usage(self, usage, actions, groups, prefix):
        return "Usage:\t%s [OPTIONS]\n\nA self-sufficient runtime for containers.\n\n" % self._prog

    def start_section(self, heading):
        super().start_section("Options" if heading in ("options", "optional arguments") else heading)

    def _format_action_invocation(self, action):
        """`-b, --bridge string`, long-only flags indented under the long column."""
        names = ", ".join(action.option_strings)
        if action.option_strings[0].startswith("--"):
            names = "    " + names
        return names + (" " + action.metavar if action.metavar else "")


def build_flag_parser():
    """The command line, built from FLAGS (dockerd's cobra flag set)."""
    parser = argparse.ArgumentParser(prog="pydockerd.py", formatter_class=HelpFormatter,
                                     add_help=False, allow_abbrev=False)
    for names, dest, kind, default, _, help_text in FLAGS:
        shown = default if default not in ("", [], {}) else None
        text = help_text + (" (default %s)" % json.dumps(shown) if shown is not None and
                            not isinstance(shown, bool) else "")
        if kind == "bool":
            parser.add_argument(*names, dest=dest, nargs="?", const=True, default=None,
                                type=parse_bool, metavar="", help=help_text + (
                                    " (default true)" if default else ""))
        elif kind in ("list", "map"):
            parser.add_argument(*names, dest=dest, action="append", default=None,
                                metavar=kind, help=text)
        else:
            parser.add_argument(*names, dest=dest, default=None, metavar=kind,
                                type=int if kind == "int" else str, help=text)
    parser.add_argument("-h", "--help", action="help", help="Print usage")
    parser.add_argument("-v", "--version", action="version",
                        version="Docker version %s-pydockerd, API %s" % (VERSION, API_VERSION),
                        help="Print version information and quit")
    return parser


def parse_bool(text):
    """Go's strconv.ParseBool, which dockerd uses for --flag=value."""
    value = str(text).lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError("invalid boolean value %r" % text)


def parse_flags(argv):
    """Flags, then daemon.json, into one Config (dockerd's loadDaemonCliConfig)."""
    args = build_flag_parser().parse_args(argv)
    given = {dest: value for dest, value in vars(args).items() if value is not None}
    config = Config()
    file_values = load_config_file(given.get("config_file", config.config_file),
                                   explicit="config_file" in given)
    check_flag_file_conflicts(given, file_values)
    for dest, value in list(file_values.items()) + list(given.items()):
        setattr(config, dest, normalise_flag_value(dest, value))
    if config.graph:
        config.root = config.graph
    if not config.hosts:
        config.hosts = [DEFAULT_UNIX_SOCKET]
    validate_config(config)
    return config


def normalise_flag_value(dest, value):
    """--log-opt k=v pairs become a dict; every other value is used as given."""
    if dest == "log_opts" and isinstance(value, list):
        return dict(_split_key_value(item, "--log-opt") for item in value)
    return value


def _split_key_value(item, flag):
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError("invalid value %r for %s: must be key=value" % (item, flag))
    return key, value


def load_config_file(path, explicit):
    """Read daemon.json; its keys are dockerd's. A missing default file is not an error."""
    try:
        with open(path) as config_file:
            text = config_file.read()
    except FileNotFoundError:
        if explicit:
            raise ConfigError("unable to configure the Docker daemon with file %s: open %s: "
                              "no such file or directory" % (path, path))
        return {}
    except OSError as err:
        raise ConfigError("unable to configure the Docker daemon with file %s: %s" % (path, err))
    try:
        raw = json.loads(text, parse_constant=_reject_json_constant) if text.strip() else {}
    except (ValueError, RecursionError) as err:
        raise ConfigError("unable to configure the Docker daemon with file %s: %s" % (path, err))
    if not isinstance(raw, dict):
        raise ConfigError("unable to configure the Docker daemon with file %s: "
                          "json: cannot unmarshal into a configuration object" % path)
    return translate_config_file_keys(raw, path)


def translate_config_file_keys(raw, path):
    """Map daemon.json keys to Config attributes; unknown keys are refused like dockerd."""
    by_key = {row[4]: row for row in FLAGS if row[4]}
    values, unknown = {}, []
    for key, value in raw.items():
        if key not in by_key:
            unknown.append(key)
            continue
        _, dest, kind, _, _, _ = by_key[key]
        values[dest] = check_config_file_type(key, kind, value, path)
    if unknown:
        raise ConfigError("unable to configure the Docker daemon with file %s: the following "
                          "directives don't match any configuration option: %s"
                          % (path, ", ".join(sorted(unknown))))
    return values


def check_config_file_type(key, kind, value, path):
    expected = {"string": str, "bool": bool, "int": int, "list": list, "map": dict}[kind]
    if key == "default-ulimits" and isinstance(value, dict):
        return ["%s=%s:%s" % (name, v.get("Soft"), v.get("Hard")) for name, v in value.items()]
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError("unable to configure the Docker daemon with file %s: json: cannot "
                          "unmarshal %s into Go struct field Config.%s of type %s"
                          % (path, type(value).__name__, key, kind))
    return value


def check_flag_file_conflicts(given, file_values):
    """A directive set both as a flag and in daemon.json is an error (findConfigurationConflicts)."""
    both = sorted(set(given) & set(file_values) - {"config_file"})
    if both:
        flag_names = {row[1]: row[0][-1].lstrip("-") for row in FLAGS}
        details = ", ".join("%s: (from flag: %s, from file: %s)"
                            % (flag_names[dest], _flag_text(given[dest]), _flag_text(file_values[dest]))
                            for dest in both)
        raise ConfigError("unable to configure the Docker daemon with file %s: the following "
                          "directives are specified both as a flag and in the configuration file: %s"
                          % (given.get("config_file", "/etc/docker/daemon.json"), details))


def _flag_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[%s]" % " ".join(str(item) for item in value)
    return str(value)


def validate_config(config):
    """Check each value's syntax now, so a bad flag stops the daemon before it touches the host.

    The subsystems that use a value (network controller, registry, log driver) come in later
    issues; validating here means a typo is reported at boot, as dockerd does, not at first use.
    """
    if config.log_level.lower() not in LOG_LEVELS:
        raise ConfigError('Unable to parse logging level: %s' % config.log_level)
    for host in config.hosts:
        parse_host(host)
    for address in config.dns:
        _check_ip(address, "%s is not an ip address" % address)
    if config.ip:
        _check_ip(config.ip, "invalid IP address: %s" % config.ip)
    if config.bip:
        _check_network(config.bip, "invalid value %s for --bip: must be a CIDR address" % config.bip,
                       strict=False)
    if config.fixed_cidr:
        _check_network(config.fixed_cidr, "invalid CIDR address: %s" % config.fixed_cidr)
    if config.mtu < 0:
        raise ConfigError("invalid MTU %d: must be a positive number" % config.mtu)
    for label in config.labels:
        if "=" not in label:
            raise ConfigError("bad attribute format: %s" % label)
    for ulimit in config.default_ulimits:
        parse_ulimit(ulimit)
    for entry in config.insecure_registries:
        if "://" in entry:
            raise ConfigError("insecure registry %s should not contain '://'" % entry)
    for mirror in config.registry_mirrors:
        try:
            registry.validate_mirror(mirror)
        except errdefs.InvalidParameter as err:
            raise ConfigError(str(err))


def _check_ip(text, message):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(message) from None


def _check_network(text, message, strict=True):
    try:
        ipaddress.ip_network(text, strict=strict)
        if "/" not in text:
            raise ValueError(text)
    except ValueError:
        raise ConfigError(message) from None


ULIMIT_NAMES = tuple(sorted(execdriver.RLIMITS))


def parse_ulimit(text):
    """--default-ulimit name=soft[:hard] (pkg/ulimit.Parse)."""
    name, sep, limits = text.partition("=")
    if not sep:
        raise ConfigError("invalid ulimit argument: %s" % text)
    if name not in ULIMIT_NAMES:
        raise ConfigError("invalid ulimit type: %s" % name)
    soft, _, hard = limits.partition(":")
    try:
        soft_value, hard_value = int(soft), int(hard or soft)
    except ValueError:
        raise ConfigError("invalid ulimit argument: %s" % text) from None
    if soft_value > hard_value:
        raise ConfigError("ulimit soft limit must be less than or equal to hard limit: %d > %d"
                          % (soft_value, hard_value))
    return name, soft_value, hard_value


def parse_host(text):
    """-H unix:///path or tcp://host:port (opts.ParseHost) -> ("unix", path) or ("tcp", (host, port))."""
    if text.startswith("unix://"):
        path = text[len("unix://"):] or "/var/run/docker.sock"
        return "unix", path
    if text.startswith("tcp://"):
        parsed = urllib.parse.urlsplit(text)
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not port or parsed.path not in ("", "/"):
            raise ConfigError("Invalid bind address format: %s" % text)
        return "tcp", (parsed.hostname or "0.0.0.0", port)
    raise ConfigError("Invalid bind address format: %s" % text)


# ------------------------------------------------------------------------------------------
# 2. NewDaemon: the boot, step by step, in Docker 1.8.2's order
# ------------------------------------------------------------------------------------------

def boot_step(func):
    """Every boot step logs its name and how long it took under --debug."""
    @functools.wraps(func)
    def timed(*args, **kwargs):
        started = time.monotonic()
        try:
            return func(*args, **kwargs)
        finally:
            log.debug("boot step %s done in %.1f ms", func.__name__, (time.monotonic() - started) * 1000)
    return timed


class Daemon(object):
    """What NewDaemon builds: the stores and drivers every API handler reaches through."""

    def __init__(self, config):
        self.config = config
        self.id = ""
        self.repository = ""       # <root>/containers
        self.driver = None
        self.graph = None
        self.tagstore = None
        self.registry = None
        self.distribution = None
        self.events = None
        self.netcontroller = None  # drivers.network.Controller
        self.volumes = None        # drivers.volume.VolumeService
        self.linkgraph = None
        self.containers = None
        self.execs = ExecStore()
        self.builds = set()        # the working directories of the builds running now
        self.fork_server = None
        self.sysinfo = None
        self.cgroups = None        # cgroups.Driver: where containers' cgroups go
        self.stats = None          # stats.Collector: one thread sampling watched containers
        self.shutting_down = False

    def shutdown(self):
        """Daemon.Shutdown: release what the boot acquired, newest first; safe on a half boot."""
        self.shutting_down = True
        if self.events is not None:
            self.events.close()
        if self.netcontroller is not None:
            self.netcontroller.shutdown(bool(self.running_containers()))
        if self.linkgraph is not None:
            self.linkgraph.close()
        if self.driver is not None and not self.running_containers():
            try:
                self.driver.cleanup()
            except OSError as err:
                log.error("Error during graph storage driver.Cleanup(): %s", err)

    def running_containers(self):
        """Live restore: running containers outlive the daemon, so their mounts must stay."""
        return [c for c in self.containers.all() if c.running] if self.containers else []


def new_daemon(config, registry_service, fork_server):
    """NewDaemon (daemon/daemon.go): bring the daemon up, step by step, in Docker 1.8.2's order.

    The registry service is made by main() and handed in, as Docker 1.8.2's mainDaemon does;
    so is the fork server: a small thread-free process that main() starts first and from
    which every container's monitor is forked, so a start costs a fork, not an interpreter.

    If a step fails, what was already built is shut down again (the seed's deferred
    d.Shutdown()) and the error travels up to main(), which prints it and exits non-zero.
    """
    set_default_mtu(config)
    check_config_options(config)
    config.disable_bridge = is_bridge_network_disabled(config)
    check_platform_supported()
    check_system()
    setup_dump_stack_trap(config)
    daemon = Daemon(config)
    daemon.fork_server = fork_server
    try:
        setup_daemon_root(config)
        setup_tmp_dir(config)
        daemon.driver = init_graph_driver(config)
        verify_log_driver(config)
        configure_kernel_security_support(config, daemon.driver.name)
        daemon.repository = make_containers_dir(config)
        daemon.graph = init_graph(config, daemon)
        daemon.volumes = configure_volumes(config, daemon)
        daemon.id = load_daemon_id(config)
        init_trust_store(config)
        daemon.events = init_events()
        init_tag_store(config, daemon, registry_service)
        daemon.netcontroller = init_network_controller(config, daemon)
        daemon.linkgraph = open_linkgraph(config)
        daemon.sysinfo = check_sysinfo()
        daemon.cgroups = init_exec_driver(config, daemon.sysinfo)
        daemon.stats = init_stats_collector()
        daemon.containers = ContainerStore(daemon.linkgraph)
        restore(daemon)
    except BaseException:
        daemon.shutdown()
        raise
    return daemon


@boot_step
def set_default_mtu(config):
    """setDefaultMtu: containers get a 1500-byte MTU unless --mtu says otherwise."""
    if not config.mtu:
        config.mtu = 1500


@boot_step
def check_config_options(config):
    """checkConfigOptions: refuse flag pairs that cannot work together.

    -b names an existing bridge while --bip asks the daemon to create and address its own,
    so both at once is ambiguous. ICC off and IP masquerading are iptables rules, so turning
    iptables off while asking for either is a contradiction; masquerading quietly follows
    --iptables=false, as in Docker 1.8.
    """
    if config.bridge and config.bip:
        raise ConfigError("You specified -b & --bip, mutually exclusive options. "
                          "Please specify only one.")
    if not config.iptables and not config.icc:
        raise ConfigError("You specified --iptables=false with --icc=false. ICC uses iptables "
                          "to function. Please set --icc or --iptables to true.")
    if not config.iptables:
        config.ip_masq = False


@boot_step
def is_bridge_network_disabled(config):
    """isBridgeNetworkDisabled: `-b none` means containers get no default bridge at all."""
    return config.bridge == "none"


@boot_step
def check_platform_supported():
    """platformSupported: namespaces and cgroups make the daemon Linux-only."""
    if not sys.platform.startswith("linux"):
        raise ConfigError("The Docker daemon is not supported on this platform.")


MIN_KERNEL = (3, 10, 0)


@boot_step
def check_system():
    """checkSystem: the daemon mounts, makes namespaces and writes iptables rules: root only.

    Docker 1.8 only warned below kernel 3.10 (issue #407: older kernels panicked under
    containers); modern dockerd refuses, and so does pydockerd.
    """
    if os.geteuid() != 0:
        raise ConfigError("The Docker daemon needs to be run as root")
    if linux.kernel_version() < MIN_KERNEL:
        raise ConfigError("Your Linux kernel version %s is not supported for running docker. "
                          "Please upgrade your kernel to 3.10.0 or newer." % os.uname().release)


@boot_step
def setup_dump_stack_trap(config):
    """setupDumpStackTrap: SIGUSR1 dumps every thread's stack and the daemon keeps serving.

    A hung daemon is diagnosed from outside with `kill -USR1 <pid>`; the dump goes to the
    log and to a file under the exec root, where it outlives a scrolled-away terminal.
    """
    signal.signal(signal.SIGUSR1, lambda signum, frame: dump_stacks(config.exec_root))


def dump_stacks(directory):
    """Write the stack of every live thread to the log and to thread-stacks-<time>.log."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        parts.append("Thread %s (%s):\n%s" % (names.get(ident, "?"), ident,
                                              "".join(traceback.format_stack(frame))))
    dump = "=== BEGIN thread stack dump ===\n%s=== END thread stack dump ===" % "\n".join(parts)
    log.info(dump)
    path = os.path.join(directory, "thread-stacks-%s.log" % time.strftime("%Y-%m-%dT%H%M%S"))
    try:
        os.makedirs(directory, 0o700, exist_ok=True)
        with open(path, "w") as out:
            out.write(dump + "\n")
        log.info("thread stacks written to %s", path)
    except OSError as err:
        log.error("could not write thread stacks to %s: %s", path, err)


@boot_step
def setup_daemon_root(config):
    """The root dir: resolved through symlinks, created 0700, never wider than 0710.

    Image layers hold setuid binaries and world-writable dirs; a root that other users can
    traverse lets them reach those (CVE-2021-41091), hence the narrow modes.
    """
    root = os.path.realpath(config.root) if os.path.exists(config.root) else config.root
    try:
        os.makedirs(root, 0o700, exist_ok=True)
        if stat.S_IMODE(os.stat(root).st_mode) & 0o067:
            os.chmod(root, 0o700)
    except OSError as err:
        raise ConfigError("Unable to get the full path to root (%s): %s" % (config.root, err))
    config.root = root


@boot_step
def setup_tmp_dir(config):
    """tempDir: $DOCKER_TMPDIR or <root>/tmp, exported as TMPDIR.

    Uploads (import, load, build contexts) spill to temporary files; keeping them on the same
    filesystem as the graph lets a finished layer be renamed into place instead of copied.
    Whatever is in <root>/tmp at boot was left by a daemon killed mid-operation (a load's
    staging directory, a pull's downloads): it is removed, and logged. A $DOCKER_TMPDIR is
    the user's, and left alone (prepareTempDir).
    """
    tmp = os.environ.get("DOCKER_TMPDIR") or os.path.join(config.root, "tmp")
    try:
        if not os.environ.get("DOCKER_TMPDIR"):
            remove_leftover_temp_files(tmp)
        os.makedirs(tmp, 0o700, exist_ok=True)
        real_tmp = os.path.realpath(tmp)
    except OSError as err:
        raise ConfigError("Unable to get the TempDir under %s: %s" % (config.root, err))
    os.environ["TMPDIR"] = real_tmp
    import tempfile
    tempfile.tempdir = real_tmp


def remove_leftover_temp_files(tmp):
    """Empty the daemon's own temporary directory at boot, saying what goes. An entry with a
    mount below it is kept: rmtree would reach through the mount."""
    if not os.path.isdir(tmp):
        return
    with open("/proc/self/mountinfo") as mountinfo:
        mounts = [linux.unescape_mount_path(line.split()[4]) for line in mountinfo]
    for name in sorted(os.listdir(tmp)):
        path = os.path.join(os.path.realpath(tmp), name)
        if any(mount == path or mount.startswith(path + "/") for mount in mounts):
            log.warning("keeping %s, left by an interrupted operation: something is mounted there", path)
            continue
        log.warning("removing %s, left by an interrupted operation", path)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


@boot_step
def init_graph_driver(config):
    """graphdriver.New: -s or $DOCKER_DRIVER, else the prior driver, else the priority list."""
    name = config.storage_driver or os.environ.get("DOCKER_DRIVER") or None
    try:
        driver = graphdriver.new(config.root, name, config.storage_opts)
    except graphdriver.GraphDriverError as err:
        raise ConfigError(str(err))
    except OSError as err:
        raise ConfigError("error initializing graphdriver: %s" % err)
    log.debug("Using graph driver %s", driver.name)
    return driver


@boot_step
def verify_log_driver(config):
    """logger.GetLogDriver: the default log driver must exist and accept its --log-opt keys."""
    try:
        logger.validate_log_opts(config.log_driver, config.log_opts)
    except logger.LogDriverError as err:
        raise ConfigError("error finding the logging driver: %s" % err
                          if "no log driver" in str(err) else str(err))
    log.debug("Using default logging driver %s", config.log_driver)


@boot_step
def configure_kernel_security_support(config, driver_name):
    """configureKernelSecuritySupport: SELinux labels need a kernel with SELinux enabled.

    pydockerd applies no SELinux labels yet, so asking for them is refused rather than
    silently ignored: a user who wants labels must not believe they have them.
    """
    if config.selinux_enabled:
        if not os.path.exists("/sys/fs/selinux/enforce"):
            log.warning("Docker could not enable SELinux on the host system")
            config.selinux_enabled = False
        else:
            raise ConfigError("SELinux labelling is not supported by pydockerd yet; "
                              "start without --selinux-enabled")


@boot_step
def make_containers_dir(config):
    """<root>/containers: one directory per container, its config and logs (daemonRepo)."""
    path = os.path.join(config.root, "containers")
    os.makedirs(path, 0o710, exist_ok=True)
    return path


@boot_step
def init_graph(config, daemon):
    """graph.NewGraph: the image store under <root>/graph, on top of the graph driver.

    Images and layers are loaded from disk here; tags and events are joined to the graph
    later in the boot (init_tag_store), in the order Docker 1.8.2 built them. The graph asks
    the daemon's containers which images they use, so `docker rmi` and `image prune` never
    delete an image under a container (the containers are loaded later, before any request).
    """
    return graph_store.Graph(config.root, daemon.driver, None,
                             image_in_use=functools.partial(container_using_image, daemon),
                             image_running=functools.partial(container_using_image, daemon,
                                                             running=True),
                             docker_version=VERSION)


def container_using_image(daemon, image_id, running=False):
    """containers.First(using): the ID of a container made from the image (with `running`, of
    one that runs or is about to run again), or None."""
    for container in daemon.containers.all():
        if container.image_id == image_id and (not running or container.running or
                                               container.restarting):
            return container.id
    return None


@boot_step
def configure_volumes(config, daemon):
    """configureVolumes: the local volume driver's volumes under <root>/volumes, loaded from
    disk; drivers/volume.py owns them from here on. Which containers use each is learnt in
    restore(), once the containers are loaded; events go through the daemon's event service,
    made later in the boot."""
    try:
        return volume.VolumeService(config.root, lambda *event: daemon.events.log(*event))
    except OSError as err:
        raise ConfigError("Error initializing volumes: %s" % err) from None


@boot_step
def load_daemon_id(config):
    """api.LoadOrCreateTrustKey: the libtrust key in key.json; its KeyID is the daemon ID.

    The ID is stable across restarts and identical to what dockerd reports for the same
    key.json, so a host keeps its identity when it moves between the two daemons.
    """
    try:
        key = trust.load_or_create_trust_key(config.trust_key_path)
    except trust.TrustKeyError as err:
        raise ConfigError(str(err))
    config.daemon_id = key.key_id
    return key.key_id


@boot_step
def init_trust_store(config):
    """<root>/trust: where Docker 1.8 kept the trust graph for signed images."""
    os.makedirs(os.path.join(config.root, "trust"), 0o700, exist_ok=True)


@boot_step
def init_events():
    """events.New: the service behind `docker events`, fed by every image and container change."""
    return Events()


@boot_step
def init_tag_store(config, daemon, registry_service):
    """graph.NewTagStore: `repositories-<driver>`, joined to the graph, events and registry.

    In Docker 1.8.2 the tag store is also the image service (import, load, save, pull, push):
    it is where the graph, the tags, the events and the registry meet. The file carries the
    driver's name because layers made by one driver are unreadable by another: a new driver
    starts with no images.
    """
    graph = daemon.graph
    path = os.path.join(config.root, "repositories-" + graph.driver.name)
    try:
        daemon.tagstore = tags.TagStore(path)
    except (OSError, ValueError) as err:
        raise ConfigError("Couldn't create Tag store repositories-%s: %s" % (graph.driver.name, err))
    graph.join_tag_store(daemon.tagstore)
    graph.events = daemon.events.log
    daemon.registry = registry_service
    metadata = distribution.V2MetadataService(os.path.join(graph.root, "distribution"))
    daemon.distribution = distribution.Config(registry_service, graph, daemon.tagstore, metadata,
                                              events=daemon.events.log)


@boot_step
def init_network_controller(config, daemon):
    """initNetworkController: the default bridge (docker0), dockerd's iptables chains and NAT,
    ip_forward, and the predefined networks; drivers/network.py owns them from here on.

    The controller reaches containers and events through the daemon: containers are looked
    up only when a request or a start needs them, after the boot has made the store.
    """
    if config.fixed_cidr and config.bip:
        bip = ipaddress.ip_network(config.bip, strict=False)
        if not ipaddress.ip_network(config.fixed_cidr).subnet_of(bip):
            raise ConfigError("Error initializing network controller: fixed-cidr %s is not in "
                              "the bridge network %s" % (config.fixed_cidr, bip))
    settings = libnetwork.NetworkConfig(
        bridge="none" if config.disable_bridge else config.bridge, bip=config.bip,
        fixed_cidr=config.fixed_cidr, mtu=config.mtu, icc=config.icc, ip_masq=config.ip_masq,
        iptables=config.iptables, ip_forward=config.ip_forward, default_bind_ip=config.ip,
        userland_proxy=config.userland_proxy, dns=config.dns, dns_search=config.dns_search,
        dns_opts=config.dns_opts)
    handle = None
    try:
        ipt = iptables.Iptables() if config.iptables else None
        handle = netlink.Handle()
        controller = libnetwork.Controller(
            settings, config.root, handle, ipt,
            resolver.Resolver(lambda *query: controller.resolve(*query)),
            portmapper.PortAllocator(), lambda name: daemon.containers.get(name), daemon.events.log)
        controller.init()
    except (OSError, errdefs.DockerError, iptables.IptablesError) as err:
        if handle is not None:
            handle.close()
        raise ConfigError("Error initializing network controller: %s" % err) from None
    return controller


@boot_step
def open_linkgraph(config):
    """graphdb.NewSqliteConn: <root>/linkgraph.db, container names and --link edges."""
    try:
        return LinkGraph(os.path.join(config.root, "linkgraph.db"))
    except sqlite3.Error as err:
        raise ConfigError("Error opening %s: %s" % (os.path.join(config.root, "linkgraph.db"), err))


@boot_step
def check_sysinfo():
    """sysinfo.New: which cgroup controllers this host offers; a device filter is required.

    Without the v1 devices controller (or cgroup v2, whose filter is an eBPF program) a
    container keeping CAP_MKNOD could create and open the host's disks, so Docker refuses to
    start rather than run containers without it.
    """
    info = SysInfo.probe()
    if not info.devices:
        raise ConfigError("Devices cgroup isn't mounted")
    for warning in info.warnings:
        log.warning(warning.replace("WARNING: ", ""))
    return info


EXEC_OPTS = {"native.cgroupdriver": ("cgroupfs",)}


@boot_step
def init_exec_driver(config, sysinfo):
    """execdrivers.NewDriver: the native exec driver, its --exec-opt settings, and the
    cgroupfs driver that places and limits every container's cgroups.

    Containers keep CAP_MKNOD, so only the device filter (v1 devices controller, or the v2
    eBPF program) stops one from making a node for the host's disk and reading it. Where
    neither can be had, containers lose CAP_MKNOD instead (container_command).
    """
    for option in config.exec_opts:
        key, sep, value = option.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in EXEC_OPTS:
            raise ConfigError("Unknown option %s" % key)
        if key == "native.cgroupdriver" and value == "systemd":
            raise ConfigError("native.cgroupdriver=systemd is not supported by pydockerd: it "
                              "manages cgroups itself through cgroupfs (leave the option out, "
                              "or use native.cgroupdriver=cgroupfs)")
        if value not in EXEC_OPTS[key]:
            raise ConfigError("%s=%s is not supported by pydockerd (supported: %s)"
                              % (key, value, ", ".join(EXEC_OPTS[key])))
    try:
        runconfig.ulimits({}, [parse_ulimit(text) for text in config.default_ulimits])
        parent = cgroups.check_parent(config.cgroup_parent or cgroups.DEFAULT_PARENT)
    except (errdefs.InvalidParameter, cgroups.CgroupError) as err:
        raise ConfigError(str(err)) from None
    os.makedirs(os.path.join(config.exec_root, "execdriver", "native"), 0o700, exist_ok=True)
    return cgroups.Driver(sysinfo.hierarchies, sysinfo.cgroup, parent)


@boot_step
def init_stats_collector():
    """newStatsCollector(1 * time.Second): its thread starts with the first `docker stats`."""
    return stats_module.Collector(stats_module.INTERVAL)


@boot_step
def restore(daemon):
    """daemon.restore: load every container, repair what a crash left (drivers/reconcile.py
    says what and how, step by step), re-adopt the running ones, finish removals, apply
    restart policies."""
    found = reconcile.scan_repository(daemon.repository, Container.from_disk)
    loaded = found.containers
    for container in loaded:
        if container.network_settings is None:
            container.network_settings = migrate_network_settings(daemon, container)
        if container.mount_points is None:
            container.mount_points = migrate_mount_points(container)
        daemon.containers.add(container)
    reconcile.reconcile_names(daemon.linkgraph, found)
    state_root = os.path.dirname(monitor_state_dir(daemon, "-"))
    reconcile.reap_state_dirs(state_root, found, daemon.cgroups.load, lambda c, settings:
                              daemon.netcontroller.forget(c, link_children(daemon, c), settings))
    reconcile.reap_exec_dirs(exec_state_root(daemon), found)
    roots = [restore_container(daemon, container) for container in loaded]
    daemon.volumes.restore([(c.id, c.running, c.mount_points) for c in loaded])
    reconcile.undo_creates(found.creating, Container.from_disk, daemon.graph.release_rw_layer,
                           lambda c: volume.remove_mount_points(daemon.volumes, c.id,
                                                                c.mount_points, True))
    reconcile.unmount_strays(daemon.driver.home, [root for root in roots if root], state_root, found)
    for container in loaded:
        if container.removing:
            log.warning("Finishing the removal of container %s", container.id[:12])
            with contextlib.suppress(errdefs.DockerError):  # logged; removed again by hand
                finish_removal(daemon, container)
        elif container.host_config.get("AutoRemove") and container.has_been_started \
                and not container.running:
            remove_container(daemon, container, force=True, remove_volumes=True)
        else:
            restart_after_boot(daemon, container)
    log.debug("Loaded %d containers", len(loaded))


# ------------------------------------------------------------------------------------------
# 3. The stores: events, linkgraph.db, containers, truncindex, sysinfo
# ------------------------------------------------------------------------------------------

class Events(object):
    """daemon/events: a bounded history of events plus live subscribers.

    `docker events --since` replays the history; a subscriber gets every later event on its
    own queue. The history is bounded so a busy daemon's memory stays flat.
    """

    LIMIT = 256

    def __init__(self):
        self.lock = threading.Lock()
        self.history = []
        self.subscribers = []
        self.closed = False

    def log(self, type_, action, actor_id, attributes=None):
        """Record one event and hand it to every subscriber (the `Log` method)."""
        now = time.time_ns()
        message = {"Type": type_, "Action": action,
                   "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
                   "scope": "local", "time": now // 10 ** 9, "timeNano": now}
        if type_ in ("container", "image"):
            message.update(status=action, id=actor_id)
            if type_ == "container" and "image" in message["Actor"]["Attributes"]:
                message["from"] = message["Actor"]["Attributes"]["image"]
        with self.lock:
            self.history.append(message)
            del self.history[:-self.LIMIT]
            for subscriber in self.subscribers:
                subscriber.put(message)
        return message

    def subscribe(self):
        """Return (past events, a queue of future ones); call unsubscribe(queue) when done."""
        with self.lock:
            if self.closed:
                raise errdefs.Unavailable("the daemon is shutting down")
            live = queue.Queue()
            self.subscribers.append(live)
            return list(self.history), live

    def unsubscribe(self, live):
        with self.lock:
            if live in self.subscribers:
                self.subscribers.remove(live)

    def close(self):
        """Shutdown: wake every subscriber with None so its stream ends."""
        with self.lock:
            self.closed = True
            for subscriber in self.subscribers:
                subscriber.put(None)

    @property
    def listener_count(self):
        with self.lock:
            return len(self.subscribers)


class EventStream(object):
    """What one `docker events` client gets: the history between since and until (replayed
    only when one of them is given, as dockerd does), then live events until `until`, the
    daemon's shutdown or the client's departure. Subscribed from the start, so nothing logged
    after the request is missed; close() unsubscribes."""

    def __init__(self, events, since, until, filters):
        self.events = events
        self.since, self.until, self.filters = since, until, filters
        self.history, self.live = events.subscribe()

    def wanted(self, message):
        seconds = message["timeNano"] / 1e9
        return ((self.since is None or seconds >= self.since) and
                (self.until is None or seconds <= self.until) and event_matches(message, self.filters))

    def messages(self, cancelled):
        if self.since is not None or self.until is not None:
            for message in self.history:
                if self.wanted(message):
                    yield message
        while self.until is None or time.time() <= self.until:
            wait = 1.0 if self.until is None else max(0.0, min(1.0, self.until - time.time()))
            try:
                message = self.live.get(timeout=wait)
            except queue.Empty:
                if cancelled():
                    return
                continue
            if message is None:
                return
            if self.wanted(message):
                yield message

    def close(self):
        self.events.unsubscribe(self.live)


def event_matches(message, filters):
    """events.Filter: type, event, container, image, label, network and volume filters; values OR (but
    every label must match), keys AND."""
    attributes = message["Actor"]["Attributes"]
    checks = {
        "type": lambda values: message["Type"] in values,
        "event": lambda values: message["Action"] in values or message["Action"].split(":")[0] in values,
        "container": lambda values: message["Type"] == "container" and _matches_id_or_name(
            message["Actor"]["ID"], attributes.get("name"), values),
        "image": lambda values: _matches_image(message, values),
        "label": lambda values: all(_matches_label(attributes, value) for value in values),
        "network": lambda values: message["Type"] == "network" and _matches_id_or_name(
            message["Actor"]["ID"], attributes.get("name"), values),
        "volume": lambda values: message["Type"] == "volume" and _matches_id_or_name(
            message["Actor"]["ID"], attributes.get("name"), values),
    }
    for key, values in filters.items():
        check = checks.get(key)
        if check is not None and values and not check(values):
            return False
    return True


def _matches_id_or_name(actor_id, name, values):
    return any(actor_id.startswith(value) or value == name for value in values)


def _matches_image(message, values):
    attributes = message["Actor"]["Attributes"]
    candidates = {attributes.get("image"), attributes.get("name")}
    if message["Type"] == "image":
        candidates.add(message["Actor"]["ID"])
    candidates.discard(None)
    for value in values:
        for candidate in candidates:
            if candidate == value or candidate.split(":")[0] == value or \
                    candidate.replace("sha256:", "").startswith(value.replace("sha256:", "")):
                return True
    return False


def _matches_label(attributes, value):
    key, sep, wanted = value.partition("=")
    return key in attributes and (not sep or attributes[key] == wanted)


class LinkGraph(object):
    """pkg/graphdb: container names and links as a graph in SQLite (linkgraph.db).

    Every container is an entity; a name is an edge from the root entity "0" ("/"), and a
    --link is an edge from one container to another, named <parent name>/<alias>. The schema
    is Docker 1.8's, so an old linkgraph.db opens unchanged.
    """

    SCHEMA = [
        "CREATE TABLE IF NOT EXISTS entity (id text NOT NULL PRIMARY KEY)",
        "CREATE TABLE IF NOT EXISTS edge ("
        "entity_id text NOT NULL, parent_id text NULL, name text NOT NULL, "
        "CONSTRAINT \"parent_fk\" FOREIGN KEY (\"parent_id\") REFERENCES \"entity\" (\"id\"), "
        "CONSTRAINT \"entity_fk\" FOREIGN KEY (\"entity_id\") REFERENCES \"entity\" (\"id\"))",
        "CREATE UNIQUE INDEX IF NOT EXISTS \"name_parent_ix\" ON \"edge\" (parent_id, name)",
    ]

    def __init__(self, path):
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        os.chmod(path, 0o600)
        with self.lock:
            # Every name is also in its container's config.v2.json (restore re-registers a
            # missing one), so a name may reach the disk a little late: write-ahead logging
            # without an fsync per container create saves a few ms on every `docker run`.
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN")
            for statement in self.SCHEMA:
                self.db.execute(statement)
            if not self.db.execute("SELECT 1 FROM entity WHERE id = '0'").fetchone():
                self.db.execute("INSERT INTO entity (id) VALUES ('0')")
                self.db.execute("INSERT INTO edge (entity_id, name) VALUES ('0', '/')")
            self.db.execute("COMMIT")

    def set(self, name, entity_id):
        """Set: register `name` (e.g. "/web") for the entity; a taken name raises Conflict."""
        with self.lock:
            try:
                self.db.execute("BEGIN")
                self.db.execute("INSERT OR IGNORE INTO entity (id) VALUES (?)", (entity_id,))
                self.db.execute("INSERT INTO edge (entity_id, parent_id, name) VALUES (?, '0', ?)",
                                (entity_id, name.lstrip("/")))
                self.db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self.db.execute("ROLLBACK")
                raise errdefs.Conflict(name) from None

    def get(self, name):
        """Get: the entity a name points at, or None."""
        with self.lock:
            row = self.db.execute("SELECT entity_id FROM edge WHERE parent_id = '0' AND name = ?",
                                  (name.lstrip("/"),)).fetchone()
        return row[0] if row else None

    def delete(self, name):
        """Delete: drop one name (the entity stays while other edges point at it)."""
        with self.lock:
            self.db.execute("DELETE FROM edge WHERE parent_id = '0' AND name = ?", (name.lstrip("/"),))

    def link(self, parent_id, alias, child_id):
        """A --link: the edge <parent>/<alias> -> child; a taken alias raises Conflict."""
        with self.lock:
            try:
                self.db.execute("BEGIN")
                self.db.execute("INSERT OR IGNORE INTO entity (id) VALUES (?)", (child_id,))
                self.db.execute("INSERT INTO edge (entity_id, parent_id, name) VALUES (?, ?, ?)",
                                (child_id, parent_id, alias))
                self.db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self.db.execute("ROLLBACK")
                raise errdefs.Conflict("Conflict, The name %s is already assigned" % alias) from None

    def children(self, parent_id):
        """Children: the (alias, child entity) pairs a container links to."""
        with self.lock:
            return self.db.execute("SELECT name, entity_id FROM edge WHERE parent_id = ? "
                                   "ORDER BY name", (parent_id,)).fetchall()

    def unlink(self, parent_id, alias):
        """Delete one link edge; whether there was one."""
        with self.lock:
            cursor = self.db.execute("DELETE FROM edge WHERE parent_id = ? AND name = ?",
                                     (parent_id, alias))
            return cursor.rowcount > 0

    def names(self):
        """Every (name, entity) pair: the names containers hold ("/web")."""
        with self.lock:
            return [("/" + name, entity) for name, entity in self.db.execute(
                "SELECT name, entity_id FROM edge WHERE parent_id = '0'").fetchall()]

    def entities(self):
        """Every entity but the root: the containers that hold a name or a link."""
        with self.lock:
            return [row[0] for row in self.db.execute("SELECT id FROM entity WHERE id != '0'")]

    def purge(self, entity_id):
        """Purge: remove an entity and every edge to or from it (a removed container)."""
        with self.lock:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM edge WHERE entity_id = ? OR parent_id = ?",
                            (entity_id, entity_id))
            self.db.execute("DELETE FROM entity WHERE id = ?", (entity_id,))
            self.db.execute("COMMIT")

    def close(self):
        with self.lock:
            self.db.close()


class TruncIndex(object):
    """pkg/truncindex: find a container by any unambiguous prefix of its ID.

    The IDs are kept sorted, so every ID starting with a prefix sits in one run found by
    binary search: looking at the first two of that run tells "none", "one" or "ambiguous".
    """

    def __init__(self):
        self.ids = []
        self.lock = threading.Lock()

    def add(self, identifier):
        with self.lock:
            bisect.insort(self.ids, identifier)

    def delete(self, identifier):
        with self.lock:
            index = bisect.bisect_left(self.ids, identifier)
            if index < len(self.ids) and self.ids[index] == identifier:
                del self.ids[index]

    def get(self, prefix):
        """The one ID starting with `prefix`, None if there is none."""
        if not prefix:
            raise InvalidParameter("prefix can't be empty")
        with self.lock:
            index = bisect.bisect_left(self.ids, prefix)
            matches = [i for i in self.ids[index:index + 2] if i.startswith(prefix)]
        if len(matches) > 1:
            raise InvalidParameter("multiple IDs found with provided prefix: %s" % prefix)
        return matches[0] if matches else None


ZERO_TIME = "0001-01-01T00:00:00Z"


class Container(object):
    """daemon/container.go: one container's configuration and state.

    `config` and `host_config` are the Config and HostConfig JSON objects of the create
    request (merged with the image's config); the rest is the state the daemon tracks. Both
    are written to <root>/containers/<id>/ (config.v2.json, hostconfig.json) on every change,
    so a daemon that dies loses nothing. `cond` guards the state and wakes `docker wait`.
    """

    def __init__(self, root, container_id):
        self.root = root
        self.id = container_id
        self.name = ""
        self.created = ""
        self.path = ""
        self.args = []
        self.config = {}
        self.host_config = {}
        self.image_id = ""
        self.driver = ""
        self.network_settings = {}  # NetworkSettings, kept by the network controller
        self.mount_points = {}      # destination -> drivers.volume.MountPoint
        self.running = False
        self.paused = False       # frozen by `docker pause` (its cgroup's freezer) while running
        self.restarting = False
        self.removing = False
        self.remove_volumes = False  # while removing: `rm -v`, for a removal finished at boot
        self.pid = 0
        self.exit_code = 0
        self.error = ""
        self.health = None        # State.Health while it has a healthcheck: Status, FailingStreak, Log
        self.started_at = ZERO_TIME
        self.finished_at = ZERO_TIME
        self.restart_count = 0
        self.restart_delay = 0.0  # the restart manager's current backoff, in seconds
        self.has_been_started = False
        self.manually_stopped = False
        self.exits = 0            # how many times the process has exited: `wait next-exit`
        self.failed_starts = 0    # wakes attaches that wait for a start which failed
        self.removed = False
        self.monitor = None       # the drivers.monitor.Monitor while the process lives
        self.cgroup = None        # its cgroups.Manager while the process lives
        self.oom_killed = False   # the OOM killer struck during the last run
        self.pending_attaches = 0
        self.cond = threading.Condition()

    STATE_KEYS = ("running", "paused", "restarting", "pid", "exit_code", "error", "health",
                  "started_at", "finished_at", "has_been_started", "manually_stopped", "oom_killed",
                  "removing", "remove_volumes")

    @property
    def status(self):
        """State.StateString: created, running, paused, restarting, removing or exited (no
        removal leaves a container dead here)."""
        if self.running:
            return "paused" if self.paused else "running"
        if self.removing:
            return "removing"
        if self.restarting:
            return "restarting"
        return "exited" if self.has_been_started else "created"

    @property
    def config_path(self):
        return os.path.join(self.root, reconcile.CONFIG_FILE)

    @property
    def log_path(self):
        return os.path.join(self.root, self.id + "-json.log")

    def to_disk(self):
        """ToDisk: config.v2.json, the config and the state, written atomically, mode 0600.

        The state changes at every start and exit; the host config only at create, so
        write_host_config() is called once rather than on every state change.
        """
        state = {key: getattr(self, key) for key in self.STATE_KEYS}
        document = {"ID": self.id, "Name": self.name, "Created": self.created, "Path": self.path,
                    "Args": self.args, "Config": self.config, "Image": self.image_id,
                    "Driver": self.driver, "RestartCount": self.restart_count, "State": state,
                    "NetworkSettings": self.network_settings,
                    "MountPoints": {destination: mount_point.to_dict()
                                    for destination, mount_point in self.mount_points.items()}}
        ioutils.atomic_write_file(self.config_path, json.dumps(document).encode(), 0o600)

    def write_host_config(self):
        """WriteHostConfig: hostconfig.json, atomically, mode 0600."""
        ioutils.atomic_write_file(os.path.join(self.root, "hostconfig.json"),
                                  json.dumps(self.host_config).encode(), 0o600)

    @classmethod
    def from_disk(cls, root):
        """FromDisk: read a container back; a missing or torn file raises ValueError/OSError."""
        with open(os.path.join(root, "config.v2.json")) as config_file:
            document = json.load(config_file)
        with open(os.path.join(root, "hostconfig.json")) as host_config_file:
            host_config = json.load(host_config_file)
        check_stored_container(document, host_config)
        container = cls(root, document["ID"])
        container.name, container.created = document["Name"], document["Created"]
        container.path, container.args = document["Path"], document["Args"]
        container.config, container.host_config = document["Config"], host_config
        container.image_id, container.driver = document["Image"], document["Driver"]
        container.restart_count = document.get("RestartCount", 0)
        container.network_settings = document.get("NetworkSettings")  # None: made before networking
        if document.get("MountPoints") is None:  # made before volumes
            container.mount_points = None
        else:
            container.mount_points = {destination: volume.MountPoint.from_dict(data)
                                      for destination, data in document["MountPoints"].items()}
        for key, value in (document.get("State") or {}).items():
            if key in cls.STATE_KEYS and value is not None:
                default = getattr(container, key)  # health: None or a dict; the rest typed
                if not isinstance(value, dict if default is None else type(default)):
                    raise ValueError("config.v2.json: State.%s has the wrong type" % key)
                setattr(container, key, value)
        return container

    def event_attributes(self, **extra):
        """What every container event carries: its labels, image and name."""
        attributes = dict(self.config.get("Labels") or {})
        attributes.update(image=self.config.get("Image", ""), name=self.name.lstrip("/"))
        attributes.update(extra)
        return attributes


def check_stored_container(document, host_config):
    """What from_disk reads must have the types the daemon gave it: a file written by an older
    daemon that took `"NetworkMode": 5`, or edited by hand, raises ValueError, and restore
    skips that one container (and logs why) rather than failing every listing later."""
    for key, kind in (("ID", str), ("Name", str), ("Created", str), ("Path", str),
                      ("Args", list), ("Config", dict), ("Image", str), ("Driver", str),
                      ("State", (dict, type(None))), ("RestartCount", (int, type(None))),
                      ("NetworkSettings", (dict, type(None))), ("MountPoints", (dict, type(None)))):
        if not isinstance(document.get(key), kind):
            raise ValueError("config.v2.json: %s has the wrong type" % key)
    try:
        jsontypes.check_struct(document["Config"], "runconfig.ContainerConfigWrapper")
        jsontypes.check_struct(host_config, "container.HostConfig")
    except errdefs.InvalidParameter as error:
        raise ValueError(error.message) from None


# namesgenerator: a random "adjective_scientist" name for containers created without --name.
NAME_LEFT = ["admiring", "amazing", "awesome", "bold", "brave", "busy", "clever", "cool",
             "eager", "elegant", "epic", "festive", "focused", "friendly", "gallant", "happy",
             "hopeful", "jolly", "keen", "kind", "laughing", "loving", "lucid", "modest",
             "nifty", "optimistic", "peaceful", "quirky", "relaxed", "sharp", "stoic", "vibrant"]
NAME_RIGHT = ["albattani", "babbage", "bohr", "curie", "darwin", "dijkstra", "einstein",
              "euclid", "fermat", "feynman", "galileo", "goldberg", "hopper", "hypatia", "kepler",
              "knuth", "lamport", "liskov", "lovelace", "mccarthy", "meitner", "newton", "noether",
              "pascal", "ritchie", "shannon", "thompson", "torvalds", "turing", "wozniak"]


def random_name(attempt=0):
    """GetRandomName: left_right, with a digit added after the first collisions."""
    name = "%s_%s" % (secrets.choice(NAME_LEFT), secrets.choice(NAME_RIGHT))
    if name == "boring_wozniak":  # Steve Wozniak is not boring (Docker's own rule)
        return random_name(attempt)
    return name + (str(secrets.randbelow(10)) if attempt else "")


VALID_CONTAINER_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def generate_container_id():
    """stringid.GenerateRandomID: 64 hex characters whose first 12 are not all digits.

    The short ID becomes the hostname, and a hostname of only digits confuses resolvers.
    """
    while True:
        candidate = secrets.token_hex(32)
        if not candidate[:12].isdigit():
            return candidate


class SysInfo(object):
    """pkg/sysinfo: what the kernel's cgroups can enforce (cgroups.Features), the hierarchies
    they come from, and the warnings `docker info` shows."""

    def __init__(self, hierarchies, cgroup):
        self.hierarchies = hierarchies
        self.cgroup = cgroup
        self.cgroup_version = cgroup.version
        self.devices = bool(cgroup.devices) or cgroup.version == "2"
        self.ip_forward = _read_sysctl("net/ipv4/ip_forward") == "1"
        self.bridge_nf_iptables = _read_sysctl("net/bridge/bridge-nf-call-iptables") == "1"
        self.bridge_nf_ip6tables = _read_sysctl("net/bridge/bridge-nf-call-ip6tables") == "1"

    @classmethod
    def probe(cls):
        """Read the mounted cgroup hierarchies and what each offers."""
        hierarchies = cgroups.find_hierarchies()
        return cls(hierarchies, cgroups.probe_features(hierarchies))

    @property
    def warnings(self):
        """The same WARNING lines dockerd's `docker info` prints for missing features."""
        wanted = [(self.ip_forward, "WARNING: IPv4 forwarding is disabled"),
                  (self.bridge_nf_iptables, "WARNING: bridge-nf-call-iptables is disabled"),
                  (self.bridge_nf_ip6tables, "WARNING: bridge-nf-call-ip6tables is disabled")]
        return self.cgroup.warnings + [text for present, text in wanted if not present]


def _read_sysctl(name):
    try:
        with open("/proc/sys/" + name) as value:
            return value.read().strip()
    except OSError:
        return ""


# ------------------------------------------------------------------------------------------
# 4. Containers: create, start, stop, kill, wait, remove, the restart policy and restore
# ------------------------------------------------------------------------------------------

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RESTART_POLICIES = ("", "no", "always", "on-failure", "unless-stopped")
FIRST_RESTART_DELAY = 0.1     # restartmanager: 100 ms, doubling while the container keeps dying
MAX_RESTART_DELAY = 60.0
RESTART_RESET_AFTER = 10.0    # a container that ran this long starts again from the first delay


class ContainerStore(object):
    """The daemon's containers: by ID, by name (linkgraph.db) and by ID prefix (truncindex).

    Lookups follow dockerd's order: a full ID, then a name, then a unique ID prefix.
    """

    def __init__(self, linkgraph):
        self.by_id = {}
        self.names = linkgraph
        self.index = TruncIndex()
        self.lock = threading.Lock()

    def add(self, container):
        with self.lock:
            self.by_id[container.id] = container
        self.index.add(container.id)

    def remove(self, container):
        with self.lock:
            self.by_id.pop(container.id, None)
        self.index.delete(container.id)
        self.names.purge(container.id)

    def get(self, name_or_id):
        """GetContainer: 404 `No such container: x` when nothing matches."""
        if not name_or_id:
            raise InvalidParameter("No container name or ID supplied")
        with self.lock:
            found = self.by_id.get(name_or_id)
        if found is None:
            found = self.by_id.get(self.names.get("/" + name_or_id.lstrip("/")) or "")
        if found is None:
            found = self.by_id.get(self.index.get(name_or_id) or "")
        if found is None:
            raise NotFound("No such container: %s" % name_or_id)
        return found

    def all(self):
        with self.lock:
            return list(self.by_id.values())

    def reserve_name(self, name, container_id):
        """ReserveName: names are unique; the 409 text is dockerd's."""
        try:
            self.names.set(name, container_id)
        except errdefs.Conflict:
            owner = self.names.get(name)
            raise errdefs.Conflict(
                'Conflict. The container name "%s" is already in use by container "%s". You have '
                'to remove (or rename) that container to be able to reuse that name.'
                % (name, owner)) from None


def validate_container_name(name):
    if not VALID_CONTAINER_NAME.match(name):
        raise InvalidParameter("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                               "are allowed" % name)
    return "/" + name.lstrip("/")


def create_container(daemon, config, host_config, name, networking_config):
    """daemon.ContainerCreate: check the request, merge the image, make the rw layer, save.

    Nothing runs yet; the container is a directory, a writable layer on its image, a name,
    the networks it will join, its links and its volumes. Returns it with the warnings for
    the client.
    """
    if not isinstance(config, dict) or not isinstance(host_config, dict):
        raise InvalidParameter("config cannot be empty in order to create a container")
    host_config["LogConfig"] = merge_log_config(daemon.config, host_config.get("LogConfig"))
    validate_host_config(host_config)
    runconfig.verify_config(config, parse_signal)
    health.validate(config)
    check_namespace_containers(daemon, host_config)
    resource_warnings = verify_container_settings(daemon, host_config)
    image = daemon.graph.lookup(config.get("Image") or "")
    config = merge_image_config(config, image.container_config or {})
    mount_points = volume.plan_mount_points(host_config, config.get("Volumes"),
                                            lambda other: daemon.containers.get(other).mount_points)
    network_settings, warnings = daemon.netcontroller.settings_for_create(
        config, host_config, networking_config)
    warnings = resource_warnings + list(warnings or [])
    children = link_children_for_create(daemon, host_config)
    container = Container(None, generate_container_id())
    container.root = os.path.join(daemon.repository, reconcile.CREATE_PREFIX + container.id)
    container.network_settings = network_settings
    name = validate_container_name(name) if name else unique_random_name(daemon)
    daemon.containers.reserve_name(name, container.id)
    try:
        register_links(daemon, container.id, name, host_config, children)
        build_container(daemon, container, config, host_config, image, name, mount_points)
    except BaseException:
        daemon.containers.names.purge(container.id)
        volume.remove_mount_points(daemon.volumes, container.id, container.mount_points,
                                   remove_anonymous=True)
        try:
            daemon.graph.release_rw_layer(container.id)
        except NotFound:
            pass  # it failed before the layer was made
        shutil.rmtree(container.root, ignore_errors=True)
        raise
    daemon.containers.add(container)
    daemon.events.log("container", "create", container.id, container.event_attributes())
    return container, warnings


def check_namespace_containers(daemon, host_config):
    """--ipc and --pid container:<name> name a container that exists (dockerd: 400 at create;
    whether it runs is asked at start); --network container: names one (ValidateNetMode)."""
    parts = (host_config.get("NetworkMode") or "").split(":")
    if parts[0] == "container" and not (parts + [""])[1]:
        raise InvalidParameter("Invalid network mode: invalid container format container:<name|id>")
    for key in ("IpcMode", "PidMode"):
        mode = host_config.get(key) or ""
        if mode.startswith("container:"):
            try:
                daemon.containers.get(mode.partition(":")[2])
            except NotFound as error:
                raise InvalidParameter(error.message) from None


def link_children_for_create(daemon, host_config):
    """registerLinks' checks: every --link names an existing container that has a network of
    its own to be reached on. Returns (alias, child) pairs."""
    children = []
    for text in host_config.get("Links") or []:
        try:
            name, alias = links.parse_link(str(text))
            child = daemon.containers.get(name)
        except (ValueError, NotFound) as err:
            raise InvalidParameter("could not get container for %s: %s" % (text, err)) from None
        if child.host_config.get("NetworkMode") == "host":
            raise InvalidParameter("conflicting options: host type networking can't be used with "
                                   "links. This would result in undefined behavior")
        children.append((alias, child))
    return children


def register_links(daemon, parent_id, parent_name, host_config, children):
    """The links as linkgraph.db edges, and HostConfig.Links in dockerd's stored form
    (/child:/parent/alias)."""
    for alias, child in children:
        daemon.containers.names.link(parent_id, alias, child.id)
    if children:
        host_config["Links"] = ["%s:%s/%s" % (child.name, parent_name, alias) for alias, child in children]


def link_children(daemon, container):
    """The (alias, child container) pairs of a container's links whose child still exists."""
    children = []
    for alias, child_id in daemon.containers.names.children(container.id):
        try:
            children.append((alias, daemon.containers.get(child_id)))
        except NotFound:
            pass
    return children


def remove_link(daemon, parent_name, alias):
    """`docker rm --link /parent/alias`: drop one link edge and its HostConfig.Links entry."""
    parent = daemon.containers.get(parent_name)
    if not daemon.containers.names.unlink(parent.id, alias):
        raise NotFound("Could not find entity for %s/%s" % (parent.name, alias))
    with parent.cond:
        parent.host_config["Links"] = [entry for entry in parent.host_config.get("Links") or []
                                       if not entry.endswith("%s/%s" % (parent.name, alias))] or None
        parent.write_host_config()


def unique_random_name(daemon):
    for attempt in range(10):
        name = "/" + random_name(attempt)
        if daemon.containers.names.get(name) is None:
            return name
    raise errdefs.System("could not find a free random container name")


def build_container(daemon, container, config, host_config, image, name, mount_points):
    """newContainer + setRWLayer + registerMountPoints + ToDisk: the container's directory,
    writable layer and volumes, built under a .create- name, config first (drivers/reconcile.py)."""
    entrypoint = config.get("Entrypoint") or []
    command = entrypoint + (config.get("Cmd") or [])
    container.name, container.created = name, logger.format_time(time.time_ns())
    container.path, container.args = command[0], command[1:]
    container.config, container.host_config = config, with_host_config_defaults(host_config)
    container.image_id, container.driver = image.id, daemon.driver.name
    config.setdefault("Hostname", container.id[:12])
    config["Hostname"] = config["Hostname"] or container.id[:12]
    container.mount_points = mount_points
    os.makedirs(container.root, 0o710)
    container.write_host_config()
    container.to_disk()
    daemon.graph.create_rw_layer(container.id, image.id, init_func=setup_init_layer)
    container.mount_points = register_volumes(daemon, container.id, mount_points)
    container.to_disk()
    staging, container.root = container.root, os.path.join(daemon.repository, container.id)
    os.rename(staging, container.root)
    ioutils.fsync_dir(daemon.repository)


def register_volumes(daemon, container_id, mount_points):
    """The container's volumes made and referenced, and the image's content copied into new
    ones from its root, mounted for the moment (createContainerOSSpecificSettings)."""
    if not volume.needs_rootfs(mount_points):
        return volume.register_mount_points(daemon.volumes, container_id, mount_points, None)
    rootfs = daemon.graph.mount_rw_layer(container_id)
    try:
        return volume.register_mount_points(daemon.volumes, container_id, mount_points, rootfs)
    finally:
        daemon.graph.unmount_rw_layer(container_id)


def validate_host_config(host_config):
    """verifyContainerSettings: refuse what cannot work before anything is made."""
    policy = (host_config.get("RestartPolicy") or {})
    if policy.get("Name", "") not in RESTART_POLICIES:
        raise InvalidParameter("invalid restart policy '%s'" % policy.get("Name"))
    if policy.get("MaximumRetryCount", 0) and policy.get("Name") != "on-failure":
        raise InvalidParameter("maximum retry count cannot be used with restart policy '%s'"
                               % policy.get("Name"))
    if host_config.get("AutoRemove") and policy.get("Name", "") not in ("", "no"):
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    for name, value in (("ShmSize", host_config.get("ShmSize")), ("Memory", host_config.get("Memory"))):
        if value is not None and (not isinstance(value, int) or value < 0 or value > 2 ** 62):
            raise InvalidParameter("invalid %s: %r" % (name, value))
    try:
        logger.validate_log_opts(host_config["LogConfig"]["Type"], host_config["LogConfig"]["Config"])
    except logger.LogDriverError as err:
        raise InvalidParameter(str(err)) from None


def verify_container_settings(daemon, host_config):
    """verifyPlatformContainerSettings: the limits, devices and hardening options, checked
    against what this host can do, with dockerd's defaults filled in. Returns the warnings."""
    if host_config.get("CgroupParent"):
        try:
            cgroups.check_parent(host_config["CgroupParent"])
        except cgroups.CgroupError as err:
            raise InvalidParameter(str(err)) from None
    warnings = runconfig.adapt(host_config, daemon.sysinfo.cgroup)
    warnings += runconfig.verify(host_config, daemon.sysinfo.cgroup)
    runconfig.verify_devices(host_config)
    runconfig.verify_hardening(host_config, daemon_ulimits(daemon))
    return warnings


def daemon_ulimits(daemon):
    """--default-ulimit as (name, soft, hard)."""
    return [parse_ulimit(text) for text in daemon.config.default_ulimits]


def merge_log_config(daemon_config, log_config):
    """mergeAndVerifyLogConfig: the daemon's driver when none is named, and its --log-opt
    values under the container's own when the drivers agree. Fixed at create, like dockerd."""
    log_config = dict(log_config or {})
    log_config["Type"] = log_config.get("Type") or daemon_config.log_driver
    options = dict(log_config.get("Config") or {})
    if log_config["Type"] == daemon_config.log_driver:
        options = dict(daemon_config.log_opts, **options)
    for key in logger.CACHE_OPTIONS & set(daemon_config.log_opts):  # cache.MergeDefaultLogConfig
        options.setdefault(key, daemon_config.log_opts[key])
    log_config["Config"] = options
    return log_config


def merge_image_config(config, image_config):
    """runconfig.Merge + mergeAndVerifyConfig: the image supplies what the request leaves out."""
    merged = dict(config)
    for key in ("User", "WorkingDir", "StopSignal"):
        if not merged.get(key):
            merged[key] = image_config.get(key) or ""
    merged["Env"] = merge_env(image_config.get("Env") or [], merged.get("Env") or [])
    merged["Labels"] = dict(image_config.get("Labels") or {}, **(merged.get("Labels") or {}))
    for key in ("ExposedPorts", "Volumes"):
        union = dict(image_config.get(key) or {}, **(merged.get(key) or {}))
        merged[key] = union or None
    if not merged.get("Entrypoint"):
        if not merged.get("Cmd"):
            merged["Cmd"] = image_config.get("Cmd")
        merged["Entrypoint"] = image_config.get("Entrypoint")
    if merged.get("Entrypoint") == [""]:
        merged["Entrypoint"] = None  # `--entrypoint ""` (and a build's RUN): no entrypoint at all
    if not (merged.get("Entrypoint") or merged.get("Cmd")):
        raise InvalidParameter("No command specified")
    merged["Healthcheck"] = health.merge(merged.get("Healthcheck"),
                                         image_config.get("Healthcheck"))
    return merged


HOST_CONFIG_DEFAULTS = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
    "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None, "CapDrop": None,
    "CgroupnsMode": "host", "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None,
    "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0,
    "PidMode": "", "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False,
    "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": execdriver.DEFAULT_SHM_SIZE,
    "Runtime": "pydockerd", "ConsoleSize": [0, 0], "Isolation": "", "Memory": 0, "Tmpfs": None,
    "Mounts": None, "CpuShares": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
    "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
    "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0,
    "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
    "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemory": 0,
    "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
    "OomKillDisable": False, "PidsLimit": None, "Ulimits": None, "CpuCount": 0, "CpuPercent": 0,
    "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
}


def with_host_config_defaults(host_config):
    """The HostConfig as dockerd stores it: every key present, defaults where unset."""
    merged = copy.deepcopy(HOST_CONFIG_DEFAULTS)
    merged.update({key: value for key, value in host_config.items() if value is not None})
    if not (merged.get("RestartPolicy") or {}).get("Name"):
        merged["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
    if not merged.get("ShmSize"):
        merged["ShmSize"] = execdriver.DEFAULT_SHM_SIZE
    if merged.get("NetworkMode") in ("", None):
        merged["NetworkMode"] = "default"
    unconfined = merged.get("Privileged") or runconfig.security_opt(merged, "systempaths=unconfined")
    merged["MaskedPaths"] = [] if unconfined else list(execdriver.DEFAULT_MASKED_PATHS)
    merged["ReadonlyPaths"] = [] if unconfined else list(execdriver.DEFAULT_READONLY_PATHS)
    return merged


def setup_init_layer(root):
    """setupInitLayer: the files and mount points every container needs, in the -init layer.

    The exec driver bind-mounts hostname, hosts and resolv.conf and mounts /proc, /sys and
    /dev over these; creating them here keeps the image's own layers untouched.
    """
    for directory in ("dev/pts", "dev/shm", "proc", "sys", "etc"):
        if not passes_a_symlink(root, directory):
            os.makedirs(os.path.join(root, directory), 0o755, exist_ok=True)
    for name in ("etc/hosts", "etc/hostname", "etc/resolv.conf", "dev/console"):
        path = os.path.join(root, name)
        if not passes_a_symlink(root, name) and not os.path.lexists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o755))


def passes_a_symlink(root, relative):
    """Whether a path inside an image goes through a symlink: the daemon never follows one,
    because an image's `/dev -> /tmp/x` would otherwise make it write on the host (vfs
    layers are plain copies of the image). The exec driver refuses such images later."""
    path = root
    for part in relative.split("/"):
        path = os.path.join(path, part)
        if os.path.islink(path):
            return True
    return False


def start_container(daemon, container, restart=False):
    """daemon.containerStart: mount the root, write the network files, hand it to a monitor.

    The monitor sets the process up and holds it before execve until the attach streams that
    were waiting (docker run attaches before it starts) are connected, so no output is lost.
    A start that fails after these checks is undone by failed_start, whoever asked for it (the
    API, `docker restart`, a restart policy, the boot).
    """
    with container.cond:
        if container.running:
            raise errdefs.NotModified("container already started")
        if container.removing or container.removed:
            raise errdefs.Conflict("Container %s is marked for removal and cannot be started"
                                   % container.id)
        volume.check_bind_sources(container.mount_points)
        container.manually_stopped = False
        rootfs = daemon.graph.mount_rw_layer(container.id)
        try:
            monitor = spawn_container_monitor(daemon, container, rootfs)
        except Exception as err:
            raise failed_start(daemon, container, None, err) from None
        container.monitor = monitor
        container.cond.notify_all()
    try:
        connect_waiting_attaches(container)
        set_console_size(monitor, container.config.get("Tty"),
                         container.host_config.get("ConsoleSize"))
        monitor.start()
    except Exception as err:
        raise failed_start(daemon, container, monitor, err) from None
    mark_running(daemon, container, monitor, restart)


def failed_start(daemon, container, monitor, err):
    """Undo a start that never reached execve, record why, and return the error to raise.

    Whatever failed (the image's command, the monitor, the disk), the container is left as
    dockerd leaves it: not running, its root unmounted, the reason in State.Error; and gone,
    if it was created with --rm (`wait?condition=removed` then answers 128).
    """
    if monitor is not None:
        kill_at_gate(monitor)
    with container.cond:
        container.monitor = None
        daemon.netcontroller.release(container)
        container.cond.notify_all()
    daemon.netcontroller.wait_released(container.id)  # a failed start leaves nothing behind
    start_finished(daemon, container)
    try:
        daemon.graph.unmount_rw_layer(container.id)
    except (OSError, KeyError, errdefs.DockerError) as unmount_error:
        log.error("Error unmounting container %s: %s", container.id[:12], unmount_error)
    volume.unmount_volumes(daemon.volumes, container.id, container.mount_points)
    # A typed error keeps its status (a network that does not exist is a 404, as in dockerd).
    typed = err if isinstance(err, errdefs.DockerError) else None
    if not isinstance(err, execdriver.ExecdriverError):
        log.error("Error starting container %s: %s", container.id[:12], err)
        err = execdriver.ExecdriverError(errdefs.go_error_text(err) or err.__class__.__name__, 128)
    record_start_failure(daemon, container, err)
    if container.host_config.get("AutoRemove"):
        try:
            remove_container(daemon, container, force=True, remove_volumes=True)
        except errdefs.DockerError as remove_error:
            log.error("can't remove container %s: %s", container.id[:12], remove_error)
    return typed or start_error(err)


def spawn_container_monitor(daemon, container, rootfs):
    """The monitor for one run of the container, its process set up and held at the gate.

    The network comes in two halves around the process's birth: addresses, host ports and
    the /etc files before it (allocate), its interfaces, rules, DNS and userland proxy once
    its namespace exists (join), so its command never runs without its network. On a
    failure, failed_start gives the network back; a crash, the next boot (starting.json,
    drivers/reconcile.py).
    """
    log_config = container.host_config["LogConfig"]
    state_dir = monitor_state_dir(daemon, container.id)
    shutil.rmtree(state_dir, ignore_errors=True)
    os.makedirs(state_dir, 0o700)
    sandbox = daemon.netcontroller.allocate(container, link_children(daemon, container))
    ioutils.atomic_write_file(os.path.join(state_dir, reconcile.STARTING_FILE), json.dumps(
        daemon.netcontroller.allocated_settings(container)).encode(), 0o600)
    container.cgroup = create_cgroups(daemon, container, state_dir)
    local_log = container_log(container)
    monitor = daemon.fork_server.spawn_monitor(
        state_dir, start_command(daemon, container, rootfs, sandbox), log_driver=log_config["Type"],
        log_opts=log_config.get("Config") or {}, log_path=local_log.path if local_log else "",
        log_info=container_log_info(container), start=False)
    try:
        daemon.netcontroller.join(container, monitor)
    except BaseException:
        kill_at_gate(monitor)
        raise
    return monitor


def start_finished(daemon, container):
    """The start committed (config.v2.json says running) or was undone: its record goes."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(monitor_state_dir(daemon, container.id), reconcile.STARTING_FILE))


def container_log_info(container):
    """logger.Info: what the log driver may tell of the container (tags, GELF fields...)."""
    return logger.LogInfo(
        container_id=container.id, container_name=container.name, entrypoint=container.path,
        args=container.args, image_id=container.image_id,
        image_name=container.config.get("Image") or "", created=container.created,
        env=container.config.get("Env") or [], labels=container.config.get("Labels") or {})


def create_cgroups(daemon, container, state_dir):
    """The container's cgroups with its limits and device filter, made before its process
    exists. Their paths are recorded in the state directory first, so that a restarted daemon
    finds them whatever --cgroup-parent it runs with then (libcontainer's state.json did this),
    even when it was killed while making them."""
    host = container.host_config
    manager = daemon.cgroups.manager(container.id, host.get("CgroupParent") or "")
    ioutils.atomic_write_file(os.path.join(state_dir, reconcile.CGROUPS_FILE),
                              json.dumps(manager.paths).encode(), 0o600)
    manager.create(runconfig.resources(host), runconfig.device_rules(host))
    return manager


def load_cgroups(daemon, container):
    """The cgroups of a container that ran while the daemon was away (None if unrecorded)."""
    try:
        with open(os.path.join(monitor_state_dir(daemon, container.id), reconcile.CGROUPS_FILE)) as f:
            return daemon.cgroups.load(json.load(f))
    except (OSError, ValueError):
        return None


def join_cgroups(container, monitor):
    """Move a process waiting at the exec gate into the container's cgroups, before it runs
    any code of the image: each `docker exec` process (the container's init joins them in its
    monitor, as soon as its pid is known: execdriver.Command.cgroup_dirs)."""
    if container.cgroup is not None:
        container.cgroup.apply(monitor.init_pid)


def kill_at_gate(monitor):
    """A start that failed after the process was made: it still waits before execve."""
    try:
        monitor.signal(signal.SIGKILL)
    except (OSError, monitor_module.MonitorError):
        pass


def remove_cgroups(container, manager):
    """The process has exited: remove its cgroups (the caller, who took the manager off the
    container, holds no lock: the last processes may take a moment to leave)."""
    if manager is not None:
        try:
            manager.destroy()
        except cgroups.CgroupError as err:
            log.error("Error removing the cgroups of %s: %s", container.id[:12], err)


def set_console_size(monitor, tty, size):
    """ConsoleSize [rows, cols]: the terminal's size before the first program reads it (the
    CLI's resize request that follows the start could come too late for it). Returns whether
    there was a size to set."""
    if tty and size and len(size) == 2 and all(isinstance(n, int) and 0 < n < 65536 for n in size):
        monitor.resize(size[0], size[1])
        return True
    return False


# How long an attached `docker exec -it` may wait for the CLI's first resize (it follows the
# 101 within milliseconds; a client that never sends one pays this much).
EXEC_RESIZE_WAIT = 1.0


def await_exec_resize(exec_config):
    """Hold an attached `docker exec -it` process at its gate until the CLI has sized its pty.

    At API 1.41 an exec carries no ConsoleSize: the CLI sends POST /exec/<id>/resize once it
    has read the 101, and a process let go before that starts on a 0x0 terminal (busybox's
    `stty size` fails, `ls` lays out for 80 columns). The CLI refuses -it without a terminal
    of its own, so with a tty and stdin attached that resize is on its way.
    """
    if exec_config.process.tty and exec_config.process.open_stdin:
        exec_config.resized.wait(EXEC_RESIZE_WAIT)


def exec_state_root(daemon):
    """Where the monitors of `docker exec` processes keep their state, one directory each."""
    return os.path.join(daemon.config.exec_root, "exec")


def monitor_state_dir(daemon, container_id):
    """Where the container's monitor keeps its pid, state and attach socket (1.8's libcontainer
    state lived in <exec-root>/execdriver/native/<id> too)."""
    return os.path.join(daemon.config.exec_root, "execdriver", "native", container_id)


def connect_waiting_attaches(container, timeout=5.0):
    """Give attach requests that arrived before start a moment to connect to the monitor."""
    deadline = time.monotonic() + timeout
    with container.cond:
        while container.pending_attaches > 0 and time.monotonic() < deadline:
            container.cond.wait(deadline - time.monotonic())


def start_error(err):
    """The API error for a failed start: the message the CLI maps to exit codes 125-127."""
    return errdefs.InvalidParameter(err.message) if err.exit_code in (126, 127) else \
        errdefs.System(err.message)


def record_start_failure(daemon, container, err):
    with container.cond:
        manager, container.cgroup = container.cgroup, None
    remove_cgroups(container, manager)
    with container.cond:
        container.exit_code, container.error = err.exit_code, err.message
        container.failed_starts += 1
        container.finished_at = logger.format_time(time.time_ns())
        container.to_disk()
        container.cond.notify_all()
    log.debug("container %s failed to start: %s", container.id[:12], err.message)


def mark_running(daemon, container, monitor, restart):
    """The process runs: record it (a restart counts in RestartCount), say so, watch it."""
    with container.cond:
        container.restart_count += 1 if restart else 0
        container.running, container.restarting, container.oom_killed = True, False, False
        container.pid, container.exit_code, container.error = monitor.init_pid, 0, ""
        container.started_at = logger.format_time(time.time_ns())
        container.has_been_started = True
        container.to_disk()
        container.cond.notify_all()
    start_finished(daemon, container)
    daemon.events.log("container", "start", container.id, container.event_attributes())
    watch_container(daemon, container, monitor)
    start_health_monitor(daemon, container, monitor)


def watch_container(daemon, container, monitor):
    """daemon/monitor.go: a thread that waits for the process to exit, then acts on it."""
    threading.Thread(target=container_exited, args=(daemon, container, monitor),
                     name="monitor " + container.id[:12], daemon=True).start()


def container_exited(daemon, container, monitor):
    """The process is gone: record it, release its root, then restart or remove per policy."""
    state = monitor.wait(timeout=None)
    if state.get("exit_code") is None:  # the monitor itself died: its process must not linger
        monitor_module.kill_orphan(monitor.state_dir)
    # The cgroups go before anyone can see the container stopped: a start that follows at
    # once (docker restart) makes the same directories again.
    oom_killed = cgroup_oom_killed(container)
    daemon.stats.stop_collection(container.id)
    remove_cgroups(container, container.cgroup)
    with container.cond:
        ran_for = time.time() - unix_seconds(container.started_at)
        container.running, container.monitor, container.pid = False, None, 0
        container.paused, container.oom_killed, container.cgroup = False, oom_killed, None
        container.exit_code = state.get("exit_code")
        container.exit_code = 255 if container.exit_code is None else container.exit_code
        container.finished_at = logger.format_time(time.time_ns())
        container.exits += 1
        restart = should_restart(container) and not daemon.shutting_down
        container.restarting = restart
        daemon.netcontroller.release(container)
        try:
            container.to_disk()
        except OSError as err:  # a full disk: the exit stands in memory, as dockerd's checkpointErr
            log.error("container %s: failed to checkpoint container state: %s", container.id[:12], err)
        container.cond.notify_all()
    try:
        daemon.graph.unmount_rw_layer(container.id)
    except (OSError, KeyError, errdefs.DockerError) as err:
        log.error("Error unmounting container %s: %s", container.id[:12], err)
    volume.unmount_volumes(daemon.volumes, container.id, container.mount_points)
    if oom_killed:
        daemon.events.log("container", "oom", container.id, container.event_attributes())
    daemon.events.log("container", "die", container.id,
                      container.event_attributes(exitCode=str(container.exit_code)))
    if restart:
        schedule_restart(daemon, container, ran_for)
    elif container.host_config.get("AutoRemove") and not container.removing:  # rm -f: on its way
        remove_container(daemon, container, force=True, remove_volumes=True)


def cgroup_frozen(container):
    """Whether the container's freezer holds it (a restarted daemon asks: dockerd asked
    containerd)."""
    try:
        return container.cgroup is not None and container.cgroup.frozen()
    except (OSError, cgroups.CgroupError):
        return False


def cgroup_oom_killed(container):
    """Whether the OOM killer took a process of the container (dockerd's OOMKilled)."""
    manager = container.cgroup
    try:
        return manager is not None and manager.oom_kills() > 0
    except OSError:
        return False


def should_restart(container):
    """restartmanager.ShouldRestart: the policy, the exit code and a manual stop decide."""
    policy = container.host_config.get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if container.manually_stopped or name == "no":
        return False
    if name == "on-failure":
        limit = policy.get("MaximumRetryCount") or 0
        return container.exit_code != 0 and (limit == 0 or container.restart_count < limit)
    return True


def schedule_restart(daemon, container, ran_for):
    """Restart after the backoff: 100 ms doubling per quick death, reset after 10 s of life."""
    previous = container.restart_delay
    if ran_for >= RESTART_RESET_AFTER or not previous:
        container.restart_delay = FIRST_RESTART_DELAY
    else:
        container.restart_delay = min(previous * 2, MAX_RESTART_DELAY)

    def restart():
        with container.cond:
            if not container.restarting or container.removing or container.removed:
                return
        try:
            start_container(daemon, container, restart=True)
        except errdefs.DockerError as err:
            log.error("failed to restart container %s: %s", container.id[:12], err)
            with container.cond:
                container.restarting = False
                container.to_disk()
                container.cond.notify_all()

    timer = threading.Timer(container.restart_delay, restart)
    timer.daemon = True
    timer.start()


def unix_seconds(timestamp):
    """An API timestamp as Unix seconds; Go's zero time ("never") counts as 0."""
    if not timestamp or timestamp == ZERO_TIME:
        return 0.0
    return logger.parse_time(timestamp) / 1e9


# How long `docker kill` waits for the exit that SIGKILL brings (dockerd: twice 2 s).
KILL_TIMEOUT = 10.0
STOP_SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


def kill_container(daemon, container, signum):
    """daemon.ContainerKill (`docker kill`): signal the process. With SIGKILL, the default, it
    returns only once the process is gone, as dockerd's Kill does: an inspect right after says
    not running, exit code 137, and a `docker rm` right after succeeds."""
    kill_with_signal(daemon, container, signum)
    if signum == signal.SIGKILL and not wait_stopped(container, KILL_TIMEOUT):
        raise errdefs.System("tried to kill container, but did not receive an exit event")


def kill_with_signal(daemon, container, signum):
    """daemon.killWithSignal: signal the process through its monitor.

    A stop signal (KILL, TERM, INT) is a manual stop: the restart policy leaves the container
    down. A container waiting out its restart delay has no process to signal; a stop signal
    just cancels the restart.
    """
    with container.cond:
        monitor = container.monitor
        if container.restarting and not container.running and signum in STOP_SIGNALS:
            container.manually_stopped, container.restarting = True, False
            container.to_disk()
            container.cond.notify_all()
            return
        if not container.running or monitor is None:
            raise errdefs.Conflict("Container %s is not running" % container.id)
        if signum in STOP_SIGNALS:
            container.manually_stopped = True
            container.restarting = False
        # A frozen process only gets the signal once thawed: dockerd resumes a paused
        # container for the signals that end it (SIGKILL, or its stop signal).
        resume = container.paused and signum in (
            signal.SIGKILL, parse_signal(container.config.get("StopSignal") or "SIGTERM"))
    try:
        monitor.signal(signum)
    except monitor_module.MonitorError as err:
        raise errdefs.System("Cannot kill container %s: %s" % (container.id, err)) from None
    if resume:
        try:
            set_paused(daemon, container, False)
        except errdefs.DockerError as err:
            log.warning("Cannot unpause container %s: %s", container.id[:12], err)
    daemon.events.log("container", "kill", container.id,
                      container.event_attributes(signal=str(int(signum))))


def wait_stopped(container, timeout):
    """Wait up to `timeout` seconds (None: forever) for the process to exit; True if it did."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with container.cond:
        while container.running:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            # a wait of centuries is a wait the OS cannot express: take it in pieces
            container.cond.wait(None if left is None else min(left, threading.TIMEOUT_MAX))
    return True


def stop_container(daemon, container, timeout=10):
    """daemon.containerStop: the stop signal, `timeout` seconds of grace (a negative one:
    as long as it takes), then SIGKILL. A container waiting to restart is stopped by
    cancelling the restart."""
    if not (container.running or container.restarting):
        raise errdefs.NotModified("container already stopped")
    container.manually_stopped = True
    stop_signal = parse_signal(container.config.get("StopSignal") or "SIGTERM")
    try:
        kill_with_signal(daemon, container, stop_signal)
    except errdefs.Conflict:
        pass  # it exited meanwhile
    if not wait_stopped(container, timeout if timeout >= 0 else None):
        log.info("Container %s failed to exit within %d seconds of signal %d - using the force",
                 container.id[:12], timeout, stop_signal)
        try:
            kill_with_signal(daemon, container, signal.SIGKILL)
        except errdefs.Conflict:
            pass
        wait_stopped(container, None)
    daemon.events.log("container", "stop", container.id, container.event_attributes())


def restart_container(daemon, container, timeout=10):
    """daemon.ContainerRestart: stop it if it runs, start it again, say so."""
    try:
        stop_container(daemon, container, timeout)
    except errdefs.NotModified:
        pass
    start_container(daemon, container)
    daemon.events.log("container", "restart", container.id, container.event_attributes())


WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


def container_wait(container, condition):
    """daemon.ContainerWait (container/state.go Wait): returns result(cancelled), which blocks
    until `condition` holds and gives the exit code then (None if cancelled() came first).

    The condition is taken from the moment of this call, as dockerd does:
      not-running  at once if the container neither runs nor waits to restart, else at its
                   next exit -- a restart policy may start it again, the wait is over anyway;
      next-exit    at its next exit (`docker run` waits so before it starts the container);
      removed      once it is removed (`docker run --rm`).
    Every condition also ends when the container is removed.
    """
    if condition not in WAIT_CONDITIONS:
        raise InvalidParameter("invalid condition: %s" % condition)
    with container.cond:
        exits = container.exits
        stopped = not (container.running or container.restarting)

    def result(cancelled):
        with container.cond:
            while not (container.removed or (condition == "not-running" and stopped) or
                       (condition != "removed" and container.exits > exits)):
                container.cond.wait(1.0)
                if cancelled():
                    return None
            return container.exit_code
    return result


def resize_container(daemon, container, height, width):
    """ContainerResize: the size of the container's terminal. A container without one has
    nothing to resize; dockerd answers 200 all the same, and so does this."""
    with container.cond:
        monitor = container.monitor
        if not container.running or monitor is None:
            raise errdefs.Conflict("Container %s is not running" % container.id)
    if container.config.get("Tty"):
        monitor.resize(*terminal_size(height, width))
    daemon.events.log("container", "resize", container.id, container.event_attributes(
        height=str(height), width=str(width)))


def remove_container(daemon, container, force=False, remove_volumes=False):
    """daemon.ContainerRm: refuse a running container unless forced; then drop every trace
    (with remove_volumes, `rm -v`, its anonymous volumes too).

    The removal is recorded first: a daemon killed after that finishes it at boot. If a step
    fails (a busy mount, a full disk), the container stays registered and may be removed again
    later, rather than being stuck "in removal" for good.
    """
    with container.cond:
        if container.removing or container.removed:
            raise errdefs.Conflict("removal of container %s is already in progress" % container.id)
        if container.running and not force:
            raise errdefs.Conflict("You cannot remove a running container %s. Stop the container "
                                   "before attempting removal or force remove" % container.id)
        container.removing, container.remove_volumes = True, remove_volumes
        container.restarting = False
    finish_removal(daemon, container)


def finish_removal(daemon, container):
    """The removal from its durable mark on: every step may have been done already by a
    removal that a crash cut short."""
    try:
        with container.cond:
            mark_removing(container)
        release_container(daemon, container, container.remove_volumes)
    except Exception as err:
        with container.cond:
            container.removing = False
            with contextlib.suppress(OSError):
                container.to_disk()
            container.cond.notify_all()
        log.error("Error removing container %s: %s", container.id[:12], err)
        raise errdefs.System("unable to remove container %s: %s"
                             % (container.id, errdefs.go_error_text(err))) from None
    with container.cond:
        container.removing, container.removed = False, True
        container.cond.notify_all()
    daemon.events.log("container", "destroy", container.id, container.event_attributes())


def mark_removing(container):
    """Record the removal before undoing anything. On a full disk the mark cannot be written;
    like dockerd ("Error saving dying container to disk") the removal goes on, since removing
    is how a user frees space."""
    try:
        container.to_disk()
    except OSError as err:
        log.error("Error saving dying container to disk: %s", errdefs.go_error_text(err))


def release_container(daemon, container, remove_volumes):
    """Stop the process if it runs, then delete the layer, cgroup, name, files and state, and
    give back its volumes."""
    if container.running:
        container.manually_stopped = True
        try:
            kill_with_signal(daemon, container, signal.SIGKILL)
        except errdefs.Conflict:
            pass
        wait_stopped(container, None)
    try:
        daemon.graph.release_rw_layer(container.id)
    except NotFound:
        pass  # an earlier attempt released it before failing further on
    manager, container.cgroup = container.cgroup, None
    remove_cgroups(container, manager)
    shutil.rmtree(monitor_state_dir(daemon, container.id), ignore_errors=True)
    reconcile.remove_exec_dirs(exec_state_root(daemon), container.id)
    volume.remove_mount_points(daemon.volumes, container.id, container.mount_points, remove_volumes)
    daemon.netcontroller.wait_released(container.id)  # its veth pairs, deleted since its exit
    daemon.containers.remove(container)
    trash = os.path.join(daemon.repository, reconcile.REMOVE_PREFIX + container.id)
    os.rename(container.root, trash)
    shutil.rmtree(trash, ignore_errors=True)


def rename_container(daemon, container, new_name):
    """daemon.ContainerRename: a new unique name; the old one is released once config.v2.json
    carries the new one (a crash before leaves the old name, after it the new one)."""
    new_name = validate_container_name(new_name)
    old_name = container.name
    if new_name == old_name:
        raise errdefs.Conflict("Renaming a container with the same name as its current name")
    daemon.containers.reserve_name(new_name, container.id)
    with container.cond:
        container.name = new_name
        try:
            container.to_disk()
        except OSError:
            container.name = old_name
            daemon.containers.names.delete(new_name)
            raise
        daemon.containers.names.delete(old_name)
        daemon.netcontroller.rename(container)
    daemon.events.log("container", "rename", container.id,
                      container.event_attributes(oldName=old_name))


def running_cgroup(daemon, container, action):
    """The cgroups of a running container, for pause, unpause and stats; 409 otherwise."""
    if not container.running or container.cgroup is None:
        raise errdefs.Conflict("Container %s is not running" % container.id)
    if container.restarting:
        raise errdefs.Conflict("Container %s is restarting, wait until the container is running"
                               % container.id)
    if action in ("pause", "unpause") and not daemon.cgroups.features.freezer:
        raise errdefs.System("Cannot %s container %s: the freezer cgroup is not available"
                             % (action, container.id))
    return container.cgroup


def set_paused(daemon, container, paused):
    """daemon.containerPause and containerUnpause: freeze every process of the container
    where it stands (v1 freezer, or v2 cgroup.freeze), or thaw them again."""
    action = "pause" if paused else "unpause"
    with container.cond:
        manager = running_cgroup(daemon, container, action)
        if container.paused == paused:
            raise errdefs.Conflict(("Container %s is already paused" if paused else
                                    "Container %s is not paused") % container.id)
        try:
            manager.freeze() if paused else manager.thaw()
        except cgroups.CgroupError as err:
            raise errdefs.System("Cannot %s container %s: %s" % (action, container.id, err)) \
                from None
        container.paused = paused
        container.to_disk()
        container.cond.notify_all()
    daemon.events.log("container", action, container.id, container.event_attributes())


def update_container(daemon, container, update):
    """daemon.ContainerUpdate: new limits and restart policy, running or not.

    The new HostConfig is checked like a create; a running container's cgroups are changed
    first, and if the kernel refuses a value (a memory limit below what it uses), the old
    values are written back and nothing is saved: the container is as it was.
    """
    if not isinstance(update, dict):
        raise InvalidParameter("json: cannot unmarshal into Go value of type container.UpdateConfig")
    with container.cond:
        if container.removing or container.removed:
            raise errdefs.Conflict("Container %s is marked for removal and cannot be updated"
                                   % container.id)
        merged = runconfig.merge_update(container.host_config, update)
        warnings = runconfig.verify(merged, daemon.sysinfo.cgroup, update=True)
        if container.running and container.cgroup is not None:
            try:
                container.cgroup.update(runconfig.resources(merged))
            except cgroups.CgroupError as err:
                raise InvalidParameter("Cannot update container %s: %s" % (container.id, err)) \
                    from None
        container.host_config = merged
        container.write_host_config()
    daemon.events.log("container", "update", container.id, container.event_attributes())
    return warnings


def container_stats(daemon, container, stream, one_shot, cancelled):
    """daemon.ContainerStats: the samples to send, from the one stats collector.

    stream=0 waits for a second sample (so precpu_stats is filled) unless one-shot; a
    container that is not running gives one empty sample then, and ends a stream.
    """
    if stream and one_shot:
        raise InvalidParameter("cannot have stream=true and one-shot=true")
    if not stream and (not container.running or container.restarting):
        return iter([stats_module.empty(container.name, container.id)])
    watcher = daemon.stats.subscribe(container.id, stats_sampler(daemon, container))

    def samples():
        skip_first = not stream and not one_shot
        try:
            while True:
                try:
                    sample = watcher.next(timeout=1.0)
                except queue.Empty:
                    if cancelled():
                        return
                    continue
                if sample is None:  # the container stopped
                    if not stream:
                        yield stats_module.empty(container.name, container.id)
                    return
                if skip_first:
                    skip_first = False  # precpu_stats comes from this one
                    continue
                yield sample
                if not stream:
                    return
        finally:
            watcher.close()
    return samples()


def stats_sampler(daemon, container):
    """What the stats collector calls once a second for this container."""
    own_network = container.host_config.get("NetworkMode") != "host"

    def sample():
        with container.cond:
            manager, pid = container.cgroup, container.pid
            if not container.running or manager is None:
                return None
        return stats_module.sample(manager, pid, container.name, container.id, memory_total(),
                                   own_network)
    return sample


SIGNALS = {name[3:]: getattr(signal, name) for name in dir(signal)
           if name.startswith("SIG") and not name.startswith("SIG_") and
           isinstance(getattr(signal, name), signal.Signals)}


def parse_signal(text):
    """signal.ParseSignal: a number, or a name with or without SIG (KILL, SIGKILL, kill)."""
    text = str(text).strip()
    if text.isdigit():
        number = int(text)
        if 0 < number < 65:
            return number
    else:
        name = text.upper()
        name = name[3:] if name.startswith("SIG") else name
        if name in SIGNALS:
            return int(SIGNALS[name])
    raise InvalidParameter("Invalid signal: %s" % text)


def container_command(daemon, container, rootfs):
    """What the exec driver needs (execdriver.Command), from the container's config.

    `docker exec` uses it too, for the user, capabilities and working directory; an exec
    joins the running process's namespaces, so the namespace modes are resolved only when
    the container itself starts (start_command).
    """
    config, host = container.config, container.host_config
    return execdriver.Command(
        id=container.id, rootfs=rootfs, args=[container.path] + container.args,
        env=container_env(config), cwd=config.get("WorkingDir") or "/", user=config.get("User") or "",
        group_add=list(host.get("GroupAdd") or []), hostname=config.get("Hostname", ""),
        domainname=config.get("Domainname") or "", tty=bool(config.get("Tty")),
        open_stdin=bool(config.get("OpenStdin")), privileged=bool(host.get("Privileged")),
        read_only=bool(host.get("ReadonlyRootfs")),
        shm_size=host.get("ShmSize") or execdriver.DEFAULT_SHM_SIZE,
        cap_add=list(host.get("CapAdd") or []),
        cap_drop=list(host.get("CapDrop") or []) + ([] if daemon.cgroups.features.devices
                                                     else ["MKNOD"]),
        container_dir=container.root,
        masked_paths=host.get("MaskedPaths"), readonly_paths=host.get("ReadonlyPaths"),
        no_new_privileges=runconfig.security_opt(host, "no-new-privileges"),
        seccomp=runconfig.seccomp_profile(host),
        ulimits=runconfig.ulimits(host, daemon_ulimits(daemon)),
        oom_score_adj=host.get("OomScoreAdj") or 0)


def start_command(daemon, container, rootfs, sandbox):
    """The Command for the container's own start: its namespaces resolved (a container:<id>
    mode needs that container running now), the --link variables added, and its mounts:
    volumes mounted, missing -v sources created (drivers/volume.py setup_mounts)."""
    command = container_command(daemon, container, rootfs)
    host = container.host_config
    command.env = merge_env(sandbox.env, command.env)
    command.network = sandbox.mode
    command.devices = runconfig.devices(host)
    command.sysctls = runconfig.sysctls(host)
    command.init = bool(host.get("Init"))
    command.cgroup_paths = container.cgroup.mount_view()
    command.cgroup_dirs = list(container.cgroup.directories)  # the init joins them in the monitor
    command.ipc = namespace_mode(daemon, host.get("IpcMode"), "ipc")
    command.pid = namespace_mode(daemon, host.get("PidMode"), "pid")
    command.uts = namespace_mode(daemon, host.get("UTSMode"), "uts")
    command.mounts = volume.setup_mounts(daemon.volumes, container.id, container.mount_points,
                                         host.get("Tmpfs") or {})
    return command


def container_env(config):
    """createDaemonEnvironment: PATH, HOSTNAME and TERM, then the container's own variables."""
    defaults = [DEFAULT_PATH_ENV, "HOSTNAME=" + config.get("Hostname", "")]
    if config.get("Tty"):
        defaults.append("TERM=xterm")
    return merge_env(defaults, config.get("Env") or [])


def merge_env(base, overrides):
    """ReplaceOrAppendEnvValues: `overrides` win over `base` entries of the same name."""
    names = {entry.split("=", 1)[0] for entry in overrides}
    return [entry for entry in base if entry.split("=", 1)[0] not in names] + list(overrides)


def namespace_mode(daemon, mode, kind):
    """IpcMode/PidMode/UTSMode -> the exec driver's "" (new), "host" or a namespace path.
    (The network namespace is the network controller's: see Sandbox.mode.)"""
    mode = mode or ""
    if mode == "host":
        return "host"
    if mode.startswith("container:"):
        other = daemon.containers.get(mode.split(":", 1)[1])
        if not other.running:
            raise errdefs.Conflict("cannot join %s namespace of a non running container: %s"
                                   % (kind, other.id))
        return "/proc/%d/ns/%s" % (other.pid, kind)
    return ""


class ExecConfig(object):
    """daemon/exec.go ExecConfig: one `docker exec` instance, from create to its exit code."""

    def __init__(self, container, request):
        self.id = generate_container_id()
        self.container = container
        self.process = execdriver.ProcessConfig(
            args=list(request.get("Cmd") or []),
            env=merge_env(container_env(container.config), request.get("Env") or []),
            cwd=request.get("WorkingDir") or "", user=request.get("User") or "",
            tty=bool(request.get("Tty")), open_stdin=bool(request.get("AttachStdin")),
            privileged=bool(request.get("Privileged")))
        self.attach_stdout = bool(request.get("AttachStdout"))
        self.attach_stderr = bool(request.get("AttachStderr"))
        self.detach_keys = request.get("DetachKeys") or ""
        self.console_size = request.get("ConsoleSize")
        self.resized = threading.Event()  # the client has sent its terminal's size
        self.exited = threading.Event()   # the exit code is recorded
        self.running = False
        self.exit_code = None
        self.pid = 0
        self.monitor = None
        self.can_remove = False           # marked by the garbage collector (ExecStore.collect)
        self.lock = threading.Lock()

    @property
    def description(self):
        """The action suffix of exec events: `exec_start: sh -c true`."""
        return " ".join(self.process.args)

    @property
    def listed(self):
        """Whether its container still lists it (ExecIDs): until it exits, or the container stops."""
        return self.exit_code is None and self.container.running and not self.container.removed


class ExecStore(object):
    """The daemon's exec instances by ID (daemon/exec.go execStore), with execCommandGC.

    A record outlives its process, so that `docker exec` can read the exit code afterwards
    (GET /exec/<id>/json). Docker 1.8.2 collects them every five minutes: a record its
    container no longer lists (it exited, or the container stopped or went) is marked
    CanRemove on one pass and dropped on the next, so it stays readable for 5 to 10 minutes.
    The collector runs only while there are records to look at.
    """

    GC_INTERVAL = 300.0

    def __init__(self):
        self.lock = threading.Lock()
        self.by_id = {}
        self.collector = None

    def add(self, exec_config):
        with self.lock:
            self.by_id[exec_config.id] = exec_config
            if self.collector is None:
                self.schedule_collection()

    def get(self, exec_id):
        with self.lock:
            found = self.by_id.get(exec_id)
        if found is None:
            raise NotFound("No such exec instance: %s" % exec_id)
        return found

    def listed(self, container):
        """Container.ExecIDs: the exec instances the container lists now."""
        with self.lock:
            return [e.id for e in self.by_id.values() if e.container is container and e.listed]

    def collect(self):
        """One pass of execCommandGC."""
        with self.lock:
            for exec_id, exec_config in list(self.by_id.items()):
                if exec_config.can_remove:
                    del self.by_id[exec_id]
                elif not exec_config.listed:
                    exec_config.can_remove = True
            self.collector = None
            if self.by_id:
                self.schedule_collection()

    def schedule_collection(self):
        self.collector = threading.Timer(self.GC_INTERVAL, self.collect)
        self.collector.daemon = True
        self.collector.start()


def create_exec(daemon, container, request):
    """daemon.ContainerExecCreate (`docker exec`, first half): record what to run in the
    running container; nothing runs until start_exec."""
    if not isinstance(request, dict) or not request.get("Cmd"):
        raise InvalidParameter("No exec command specified")
    if not container.running:
        raise errdefs.Conflict("Container %s is not running" % container.id)
    if container.paused:
        raise errdefs.Conflict("Container %s is paused, unpause the container before exec"
                               % container.id)
    try:
        parse_detach_keys(request.get("DetachKeys") or "")
    except InvalidParameter:
        raise InvalidParameter("Invalid escape keys (%s) provided" % request["DetachKeys"]) from None
    exec_config = ExecConfig(container, request)
    daemon.execs.add(exec_config)
    daemon.events.log("container", "exec_create: " + exec_config.description, container.id,
                      container.event_attributes(execID=exec_config.id))
    return exec_config


# What dockerd 20.10 writes into an exec stream when the detach keys end it: the escape error,
# wrapped twice on its way up (copyEscapable, then ContainerExecStart).
EXEC_DETACHED_MESSAGE = b"exec attach failed: error on attach stdin: read escape sequence\r\n"


def start_exec(daemon, exec_config, detach, tty, hijack):
    """daemon.ContainerExecStart (`docker exec`, second half): run the process.

    Detached, it starts and the call returns. Attached, hijack() takes over the client's
    connection and the process's stdio is proxied over it until its output ends; its exit
    code is recorded before the connection closes, so the client's next inspect sees it.

    The stream's framing follows `tty` of this start request, not the exec's own Tty, as in
    dockerd: raw bytes with a tty, stdcopy frames without, and clients read it the way they
    asked. When the process has a terminal, the detach keys (ctrl-p,ctrl-q or the exec's
    DetachKeys) end the stream with dockerd's escape error and leave the process running.
    """
    keys = parse_detach_keys(exec_config.detach_keys) if exec_config.process.tty else None
    try:
        monitor = spawn_exec(daemon, exec_config)
        watch_exec(daemon, exec_config, monitor)
        if detach:
            set_console_size(monitor, exec_config.process.tty, exec_config.console_size)
            monitor.start()
            return
    except execdriver.ExecdriverError as err:
        if detach:
            raise start_error(err) from None
        hijack().sendall(stream_frame(exec_failure_message(err), tty))
        return
    client = hijack()
    process = exec_config.process
    upstream = monitor.attach(stdin=process.open_stdin, stdout=exec_config.attach_stdout,
                              stderr=exec_config.attach_stderr, stdin_once=True,
                              multiplexed=not tty)
    try:
        if not set_console_size(monitor, process.tty, exec_config.console_size):
            await_exec_resize(exec_config)
        monitor.start()
    except execdriver.ExecdriverError as err:
        upstream.close()
        client.sendall(stream_frame(exec_failure_message(err), tty))
        return
    outcome = proxy_streams(client, upstream, process.open_stdin, keys)
    if outcome == DETACHED:
        client.sendall(stream_frame(EXEC_DETACHED_MESSAGE, tty))
    elif outcome == OUTPUT_ENDED:
        exec_config.exited.wait()


def spawn_exec(daemon, exec_config):
    """A monitor for the exec's process, in every namespace of the container, held at its
    gate; an exec that cannot be set up gets its exit code (126, 127) at once."""
    container = exec_config.container
    with exec_config.lock:
        if exec_config.running or exec_config.exit_code is not None:
            raise errdefs.Conflict("Error: Exec command %s is already running" % exec_config.id)
        if not container.running or container.monitor is None:
            raise errdefs.Conflict("Container %s is not running" % container.id)
        state_dir = os.path.join(exec_state_root(daemon), exec_config.id)
        os.makedirs(state_dir, 0o700, exist_ok=True)
        command = container_command(daemon, container, "/")
        try:
            reconcile.record_exec_container(state_dir, container.id)
            monitor = daemon.fork_server.spawn_exec_monitor(state_dir, command, exec_config.process,
                                                            container.pid, start=False)
            join_cgroups(container, monitor)
        except execdriver.ExecdriverError as err:
            exec_config.exit_code = err.exit_code
            exec_config.exited.set()
            shutil.rmtree(state_dir, ignore_errors=True)
            raise
        except BaseException:
            shutil.rmtree(state_dir, ignore_errors=True)
            raise
        exec_config.monitor, exec_config.running, exec_config.pid = monitor, True, monitor.init_pid
    daemon.events.log("container", "exec_start: " + exec_config.description, container.id,
                      container.event_attributes(execID=exec_config.id))
    return monitor


def watch_exec(daemon, exec_config, monitor):
    """A thread that records the exec's exit code when its process ends (exec_die)."""
    threading.Thread(target=finish_exec, args=(daemon, exec_config, monitor),
                     name="exec " + exec_config.id[:12], daemon=True).start()


def finish_exec(daemon, exec_config, monitor):
    state = monitor.wait(timeout=None)
    with exec_config.lock:
        exec_config.monitor = None  # the record outlives its process (ExecStore): keep it small
        exec_config.running = False
        exec_config.exit_code = 126 if state.get("exit_code") is None else state["exit_code"]
    exec_config.exited.set()
    shutil.rmtree(monitor.state_dir, ignore_errors=True)
    container = exec_config.container
    daemon.events.log("container", "exec_die", container.id,
                      container.event_attributes(execID=exec_config.id,
                                                 exitCode=str(exec_config.exit_code)))


def connect_network(daemon, network, name, endpoint_config):
    """NetworkConnect: the controller makes the endpoint (at once if the container runs)."""
    container = daemon.containers.get(name)
    with container.cond:
        if container.removing or container.removed:
            raise errdefs.Conflict("container %s is marked for removal" % container.id)
        daemon.netcontroller.connect(container, network, endpoint_config)
        container.to_disk()


def disconnect_network(daemon, network, name, force):
    """NetworkDisconnect: the container leaves the network (at once if it runs)."""
    container = daemon.containers.get(name)
    with container.cond:
        daemon.netcontroller.disconnect(container, network, force)
        container.to_disk()


def terminal_size(height, width):
    """A window size as the kernel's struct winsize holds it: Go converts the query's ints
    to uint16, wrapping (-1 is 65535), where Python's struct.pack would raise."""
    return height & 0xFFFF, width & 0xFFFF


def resize_exec(exec_config, height, width):
    """ContainerExecResize: the size of the exec's terminal (the first one lets it start)."""
    if exec_config.monitor is None or not exec_config.running:
        raise errdefs.Conflict("Exec %s is not running" % exec_config.id)
    if exec_config.process.tty:  # as a container's, a resize without a tty is a no-op
        exec_config.monitor.resize(*terminal_size(height, width))
    exec_config.resized.set()


def inspect_exec(exec_config):
    """GET /exec/{id}/json (ContainerExecInspect); clients read ProcessConfig.tty to choose
    how to read a stream, and ExitCode once it has ended."""
    process = exec_config.process
    process_config = {"tty": process.tty, "entrypoint": process.args[0],
                      "arguments": process.args[1:], "privileged": process.privileged}
    if process.user:
        process_config["user"] = process.user
    return {"ID": exec_config.id, "Running": exec_config.running,
            "ExitCode": exec_config.exit_code, "ProcessConfig": process_config,
            "OpenStdin": process.open_stdin, "OpenStderr": exec_config.attach_stderr,
            "OpenStdout": exec_config.attach_stdout, "CanRemove": exec_config.can_remove,
            "ContainerID": exec_config.container.id, "DetachKeys": exec_config.detach_keys,
            "Pid": exec_config.pid}


# -- the healthcheck's probes (drivers/health.py runs them) ------------------------------------

def run_health_probe(daemon, container, probe):
    """cmdProbe.run: the probe as an exec of the container (its exec events included), its
    stdout and stderr kept together, up to 4 KiB; past Timeout it is killed (exit code -1)."""
    timeout = health.setting(container.config, "Timeout")
    started = logger.format_time(time.time_ns())
    output, code = b"", -1
    try:
        exec_config = create_exec(daemon, container, {"Cmd": probe, "AttachStdout": True,
                                                      "AttachStderr": True})
    except errdefs.DockerError as err:
        output = err.message.encode()
    else:
        output, finished = read_probe_output(daemon, exec_config, timeout / 1e9)
        if not finished:
            output = health.timeout_message(timeout).encode()
            kill_exec(exec_config)
        elif exec_config.exited.wait(HEALTH_EXIT_WAIT):
            code = exec_config.exit_code
    return health.result(started, logger.format_time(time.time_ns()), code, output)


# How long a probe whose output has ended may take to report its exit code.
HEALTH_EXIT_WAIT = 5.0


def read_probe_output(daemon, exec_config, timeout):
    """Start the probe's exec on one end of a socket pair and read its stdcopy frames from
    the other until they end or `timeout` seconds pass; (output, whether they ended)."""
    ours, theirs = socket.socketpair()
    threading.Thread(target=start_probe_exec, args=(daemon, exec_config, theirs),
                     daemon=True).start()
    deadline = time.monotonic() + timeout
    data = b""
    with ours:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not httpserver.readable([ours], left):
                return health.stdcopy_payloads(data), False
            chunk = ours.recv(65536)
            if not chunk:
                return health.stdcopy_payloads(data), True
            data += chunk


def start_probe_exec(daemon, exec_config, sock):
    with sock:
        try:
            start_exec(daemon, exec_config, False, False, lambda: sock)
        except errdefs.DockerError as err:   # e.g. the container stopped meanwhile
            sock.sendall(stdcopy_frame(1, err.message.encode()))


def kill_exec(exec_config):
    if exec_config.monitor is not None:
        try:
            exec_config.monitor.signal(signal.SIGKILL)
        except monitor_module.MonitorError:
            pass   # it ended meanwhile


def start_health_monitor(daemon, container, monitor):
    """initHealthMonitor, with this daemon's exec as the probe runner and its events."""
    health.start_monitor(container, monitor, lambda probe: run_health_probe(daemon, container, probe),
                         daemon.events.log)


def restore_container(daemon, container):
    """daemon.restore for one container: re-adopt a live monitor, or record the death.

    A monitor that survived the daemon (live restore) keeps its container running; the daemon
    reconnects and watches it again. A container whose monitor is gone died while the daemon
    was away: its exit code is what the monitor recorded (255 if it could not), and its
    restart policy decides whether it starts again. Returns the mounted root of a re-adopted
    container, None otherwise.
    """
    if not container.running:
        return None
    state_dir = monitor_state_dir(daemon, container.id)
    monitor = monitor_module.adopt(state_dir)
    container.cgroup = load_cgroups(daemon, container)
    if monitor is not None:
        container.monitor, container.pid = monitor, monitor.init_pid
        container.paused = cgroup_frozen(container)
        rootfs = daemon.graph.mount_rw_layer(container.id)
        daemon.netcontroller.restore(container, monitor, link_children(daemon, container))
        watch_container(daemon, container, monitor)
        start_health_monitor(daemon, container, monitor)
        log.debug("re-adopted running container %s", container.id[:12])
        return rootfs
    monitor_module.kill_orphan(state_dir)
    state = monitor_module.read_state(state_dir)
    daemon.netcontroller.forget(container, link_children(daemon, container))
    container.oom_killed = cgroup_oom_killed(container)
    manager, container.cgroup = container.cgroup, None
    remove_cgroups(container, manager)
    container.running, container.pid, container.paused = False, 0, False
    container.exit_code = state.get("exit_code") if state.get("exit_code") is not None else 255
    container.finished_at = logger.format_time(time.time_ns())
    container.to_disk()
    return None


def migrate_network_settings(daemon, container):
    """A container made before networking existed gets the NetworkSettings its NetworkMode
    means now; a mode that no longer resolves leaves it on no network (start says why)."""
    try:
        settings, _warnings = daemon.netcontroller.settings_for_create(
            container.config, container.host_config, None)
    except errdefs.DockerError as err:
        log.warning("container %s: %s", container.id[:12], err)
        settings = {"Networks": {}}
    return settings


def migrate_mount_points(container):
    """A container made before volumes existed had only binds and tmpfs mounts: its mount
    points are those its HostConfig names (one that no longer parses is dropped, and said)."""
    try:
        return volume.plan_mount_points(container.host_config, None, lambda other: {})
    except errdefs.DockerError as err:
        log.warning("container %s: %s", container.id[:12], err)
        return {}


def restart_after_boot(daemon, container):
    """Containers that are not running but whose policy says so start with the daemon.

    This is where `always` and `unless-stopped` differ: a container stopped by hand stays
    stopped until the daemon restarts under `always`, and for good under `unless-stopped`.
    A container that was only created never starts by itself (HasBeenStartedBefore).
    """
    policy = (container.host_config.get("RestartPolicy") or {}).get("Name") or "no"
    if container.running or not container.has_been_started or policy == "no":
        return
    if policy == "unless-stopped" and container.manually_stopped:
        return
    if policy == "on-failure" and not should_restart(container):
        return
    try:
        start_container(daemon, container)
    except errdefs.DockerError as err:
        log.error("Failed to start container %s: %s", container.id[:12], err)


# ------------------------------------------------------------------------------------------
# 4b. Images from containers: commit, diff, export, and the builder (POST /build)
# ------------------------------------------------------------------------------------------

def commit_container(daemon, name, config, changes, author="", comment="", repo="", tag="",
                     pause=True):
    """daemon.CreateImageFromContainer (`docker commit`): the container's changes as a new
    layer on its image, with its config (or `config`) edited by `changes` (Dockerfile lines,
    BuildFromConfig) and completed from the container's own; tagged `repo`:`tag` if given.

    A running container is paused for the commit (`pause`, the default), so that its layer is
    not copied while its processes write to it; one paused already stays paused.
    """
    container = daemon.containers.get(name)
    if container.removing:
        raise errdefs.Conflict("You cannot commit container %s which is being removed" % container.id)
    pause = pause and container.running and not container.paused
    if pause:
        set_paused(daemon, container, True)
    try:
        return commit_paused(daemon, container, config, changes, author, comment, repo, tag)
    finally:
        if pause:
            set_paused(daemon, container, False)


def commit_paused(daemon, container, config, changes, author, comment, repo, tag):
    """The commit itself, while the container's processes stand still."""
    new_config = builder.build_from_config(config or container.config, changes)
    new_config = merge_image_config(new_config, container.config)
    refs = [daemon.graph.tag_reference(repo, tag)] if repo else []
    with daemon.graph.tagging(refs) as pending:
        image_id = commit.commit_layer(daemon.graph, container.id, container.image_id, new_config,
                                       container.config, author=author, comment=comment,
                                       container_id=container.id, pending=pending)
        image_ref = daemon.graph.tag(image_id, repo, tag) if repo else ""
    daemon.events.log("container", "commit", container.id, container.event_attributes(
        comment=comment, imageID=image_id, imageRef=image_ref))
    return image_id


def container_changes(daemon, name):
    """ContainerChanges (`docker diff`): what the container added (1), changed (0) and
    deleted (2) on top of its image; null when nothing, as dockerd sends it."""
    container = daemon.containers.get(name)
    changes = daemon.graph.rw_layer_changes(container.id)
    return [{"Path": change.path, "Kind": change.kind} for change in changes] or None


def export_container(daemon, name, out):
    """ContainerExport (`docker export`): the container's whole root, its image's layers
    and its own changes merged, as one uncompressed tar written to `out`."""
    container = daemon.containers.get(name)
    root = daemon.graph.mount_rw_layer(container.id)
    try:
        archive.write_tar(root, out)
    finally:
        daemon.graph.unmount_rw_layer(container.id)
    daemon.events.log("container", "export", container.id, container.event_attributes())


# ------------------------------------------------------------------------------------------
# 4c. Into a running or stopped container from the host: docker top (drivers/top) and
#     docker cp, the archive verbs on its files (drivers/containerarchive)
# ------------------------------------------------------------------------------------------

def container_top(daemon, name, ps_args):
    """ContainerTop (`docker top`): the host's ps, keeping the processes of the container's
    cgroup (409 when it is not running)."""
    container = daemon.containers.get(name)
    return top.container_top(running_cgroup(daemon, container, "top").pids(), ps_args)


PATH_STAT_HEADER = containerarchive.PATH_STAT_HEADER  # what head_container_archive sends


def container_stat_path(daemon, name, path):
    """ContainerStatPath (HEAD archive): the X-Docker-Container-Path-Stat value of `path`."""
    return containerarchive.container_stat_path(daemon.graph, daemon.containers.get(name),
                                                name, path)


def container_archive_path(daemon, name, path, open_out):
    """ContainerArchivePath (GET archive): the tar of `path` into what open_out(headers)
    returns, which it returns."""
    return containerarchive.container_archive_path(
        daemon.graph, daemon.events, daemon.containers.get(name), name, path, open_out)


def container_extract_to_dir(daemon, name, path, stream, copy_uid_gid, no_overwrite_dir_non_dir):
    """ContainerExtractToDir (PUT archive): the tar `stream` unpacked into directory `path`."""
    containerarchive.container_extract_to_dir(
        daemon.graph, daemon.events, daemon.containers.get(name), name, path, stream,
        copy_uid_gid, no_overwrite_dir_non_dir)


BUILD_DIR_PREFIX = "docker-builder"


def build_image(daemon, options, body, auth_configs, send, client_gone):
    """The build backend (api/server/backend/build): run the legacy builder on this daemon's
    containers and images, writing its messages through `send`.

    With -q (options.quiet) the transcript is held back: on success the client gets only the
    image ID, on failure the transcript and then the error. Each build works in a directory
    of its own under <root>/tmp (the unpacked context, downloads), removed when it ends;
    while it exists it is the build cache `docker system df` reports. A client that goes away
    cancels the build: the running step's container is killed and removed.
    """
    client = BuildClient(send, client_gone)
    transcript = []
    output = builder.Output(transcript.append if options.quiet else client.send)
    work_dir = tempfile.mkdtemp(prefix=BUILD_DIR_PREFIX, dir=tempfile.gettempdir())
    daemon.builds.add(work_dir)
    try:
        image_id = builder.Builder(options, BuildBackend(daemon, auth_configs), daemon.graph, work_dir,
                                   output, client.cancelled).build(body)
    except BaseException:
        for message in transcript:
            client.send(message)
        raise
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
        daemon.builds.discard(work_dir)
    if options.quiet:
        client.send({"stream": image_id + "\n"})


class BuildClient(object):
    """The client end of a build: a write that fails means the client has gone, which
    cancels the build instead of failing it half way through a step."""

    def __init__(self, send, client_gone):
        self._send = send
        self._client_gone = client_gone
        self.gone = False

    def send(self, message):
        if self.gone:
            return
        try:
            self._send(message)
        except OSError:
            self.gone = True

    def cancelled(self):
        self.gone = self.gone or self._client_gone()
        return self.gone


class BuildBackend(object):
    """What the builder may ask of the daemon (builder.Backend): containers made, run and
    removed by the operations `docker run` uses, and images pulled as `docker pull` does."""

    def __init__(self, daemon, auth_configs):
        self.daemon = daemon
        self.auth_configs = auth_configs

    def create_container(self, config, host_config):
        container, warnings = create_container(self.daemon, config, host_config, None, None)
        return container.id, warnings

    def run_container(self, container_id, stdout, stderr, cancelled):
        return run_attached(self.daemon, self.daemon.containers.get(container_id),
                            {1: stdout, 2: stderr}, cancelled)

    def remove_container(self, container_id):
        remove_container(self.daemon, self.daemon.containers.get(container_id), force=True)

    def pull_image(self, name, platform, progress):
        """pullForBuilder: `name` (tag `latest` by default) with the credentials the client
        gave for its registry in X-Registry-Config."""
        ref = reference.parse_normalized_named(name).with_default_tag()
        auth = next((config for server, config in self.auth_configs.items()
                     if registry.normalize_index_name(registry.convert_to_hostname(server))
                     == ref.domain), {})
        distribution.pull(self.daemon.distribution, ref, auth, platform, progress)
        return self.daemon.graph.lookup(str(ref))


def run_attached(daemon, container, streams, cancelled):
    """containerManager.Run: start the container with its output attached from the first
    byte (attach, then start, as `docker run` does), hand each chunk to `streams[1]`
    (stdout) or `streams[2]` (stderr), and return the exit code once it has stopped.
    `cancelled()` is asked every half second; when it says yes the container is killed and
    BuildCancelled raised."""
    failure = []

    def start():
        try:
            start_container(daemon, container)
        except errdefs.DockerError as err:
            failure.append(err)

    with container.cond:
        container.pending_attaches += 1
    starter = threading.Thread(target=start, name="build start " + container.id[:12], daemon=True)
    starter.start()
    upstream = None
    try:
        with container.cond:
            while container.monitor is None and starter.is_alive():
                container.cond.wait(0.1)
            if container.monitor is not None:
                upstream = container.monitor.attach(stdout=True, stderr=True)
    finally:
        with container.cond:
            container.pending_attaches -= 1
            container.cond.notify_all()
        starter.join()
    if failure:
        if upstream is not None:
            upstream.close()
        raise failure[0]
    killed = copy_attached_output(daemon, container, upstream, streams, cancelled)
    wait_stopped(container, None)
    if killed:
        raise builder.BuildCancelled("Build cancelled")
    return container.exit_code


def copy_attached_output(daemon, container, upstream, streams, cancelled):
    """Read the multiplexed stream until the monitor ends it; returns whether the container
    was killed because the build was cancelled."""
    buffered, killed = b"", False
    with upstream:
        while True:
            if not httpserver.readable([upstream], 0.5):
                if not killed and cancelled():
                    killed = True
                    try:
                        kill_container(daemon, container, signal.SIGKILL)
                    except errdefs.Conflict:
                        pass
                continue
            data = upstream.recv(65536)
            if not data:
                return killed
            buffered += data
            while len(buffered) >= 8 and len(buffered) >= 8 + int.from_bytes(buffered[4:8], "big"):
                size = int.from_bytes(buffered[4:8], "big")
                streams.get(buffered[0], streams[1])(buffered[8:8 + size])
                buffered = buffered[8 + size:]


def build_cache_records(daemon):
    """The build cache of `docker system df`, as (path, BuildCache record) pairs, oldest
    first. The legacy builder caches steps in the image store (intermediate images, which
    df counts as images); what it keeps outside it is each build's working directory -- in
    use while the build runs, reclaimable when a crash left it behind."""
    tmp = tempfile.gettempdir()
    paths = [os.path.join(tmp, name) for name in os.listdir(tmp) if name.startswith(BUILD_DIR_PREFIX)]
    records = []
    for path in sorted((path for path in paths if os.path.isdir(path) and not os.path.islink(path)),
                       key=lambda path: os.stat(path).st_mtime_ns):
        created = logger.format_time(os.stat(path).st_mtime_ns)
        records.append((path, {"ID": os.path.basename(path), "Parent": "", "Type": "source.local",
                               "Description": "build context (unpacked for a build)",
                               "InUse": path in daemon.builds, "Shared": False,
                               "Size": graphdriver.directory_size(path), "CreatedAt": created,
                               "LastUsedAt": created, "UsageCount": 1}))
    return records


def prune_build_cache(daemon, filters, keep_storage):
    """BuildCachePrune (`docker builder prune`): remove the build directories no build is
    using, oldest first, until at most `keep_storage` bytes are left."""
    if filters:
        raise InvalidParameter("filter %s is not supported by pydockerd's build cache"
                               % sorted(filters)[0])
    records = build_cache_records(daemon)
    left = sum(record["Size"] for _, record in records)
    deleted, reclaimed = [], 0
    for path, record in records:
        if record["InUse"]:
            continue
        if keep_storage and left <= keep_storage:
            break
        shutil.rmtree(path, ignore_errors=True)
        deleted.append(record["ID"])
        reclaimed += record["Size"]
        left -= record["Size"]
    daemon.events.log("builder", "prune", "", {"reclaimed": str(reclaimed)})
    return {"CachesDeleted": deleted or None, "SpaceReclaimed": reclaimed}


# ------------------------------------------------------------------------------------------
# 5. The Engine API: routes, versioning, errors, streams and the connection hijack
# ------------------------------------------------------------------------------------------

MAX_JSON_BODY = 16 * 1024 * 1024
JSON_CONTENT_TYPE = "application/json"
RAW_STREAM_TYPE = "application/vnd.docker.raw-stream"
# An exec stream's answer carries these after its own three headers; an attach's does not.
EXEC_STREAM_HEADERS = (("Api-Version", API_VERSION), ("Docker-Experimental", "false"),
                       ("Ostype", "linux"), ("Server", SERVER_HEADER))
VERSION_PATH = re.compile(r"^/v(?P<version>[0-9]+\.[0-9]+)(?P<rest>/.*)$")


def version_tuple(text):
    major, minor = text.split(".")
    return int(major), int(minor)


def _reject_json_constant(name):
    """json.loads accepts NaN and Infinity; Go's decoder (and so dockerd) does not."""
    raise ValueError("invalid character '%s' looking for beginning of value" % name[0])


def decode_json(body):
    """httputils.ReadJSON: one JSON value, nothing after it; every failure is a 400.

    Strings decode as Go decodes them: bytes that are not UTF-8, and lone surrogates
    ("\\ud800"), become U+FFFD. Numbers with a fraction keep their text for the messages.
    """
    try:
        text = body.decode("utf-8", errors="replace")
        decoder = json.JSONDecoder(parse_constant=_reject_json_constant,
                                   parse_float=jsontypes.Number)
        value, end = decoder.raw_decode(text.lstrip())
    except RecursionError:
        raise InvalidParameter("invalid JSON: exceeded max depth") from None
    except ValueError as err:
        raise InvalidParameter("invalid JSON: %s" % err) from None
    if text.lstrip()[end:].strip():
        raise InvalidParameter("unexpected content after JSON")
    return jsontypes.go_strings(value)


# How long a hijacked stream holds its first bytes for the client to read the headers.
HEADERS_READ_WAIT = 0.5


def await_headers_read(sock):
    """Hold a hijacked stream's first bytes until the client has read the answer's headers.

    Clients read the headers through a buffer and then the stream from the socket itself
    (docker-py does): stream bytes that come with the headers land in that buffer and are
    lost, and `attach?logs=1&stream=0` on an exited container has all of its bytes ready at
    once. A unix socket says how much its peer has yet to read; over TCP the stream starts at
    once, as dockerd's does.
    """
    if sock.family != socket.AF_UNIX:
        return
    deadline = time.monotonic() + HEADERS_READ_WAIT
    while linux.unread_bytes(sock) and time.monotonic() < deadline:
        time.sleep(0.001)


def stdcopy_frame(stream_id, data):
    """pkg/stdcopy: one multiplexed frame, [stream, 0, 0, 0, size (big-endian)] + payload.

    Without a TTY, stdout and stderr share one connection; the 8-byte header says which
    stream each payload belongs to (1 stdout, 2 stderr) so the client can split them again.
    """
    return bytes((stream_id, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


class Route(object):
    """One API route: a method, a path pattern with named groups, and the handler's name."""

    def __init__(self, method, pattern, handler):
        self.method = method
        self.pattern = re.compile("^" + pattern + "$")
        self.handler = handler


# The routes of api/server/router, first match wins: fixed paths come before the patterns
# that would also match them (`/images/json` before `/images/{name}/json`). Image names keep
# their `/` and `:` (`127.0.0.1:5000/x/push`), container names and IDs never contain a `/`.
ROUTES = [
    Route("GET", r"/_ping", "get_ping"),
    Route("HEAD", r"/_ping", "get_ping"),
    Route("GET", r"/version", "get_version"),
    Route("GET", r"/info", "get_info"),
    Route("GET", r"/events", "get_events"),
    Route("GET", r"/system/df", "get_system_df"),
    Route("POST", r"/build", "post_build"),
    Route("POST", r"/build/prune", "post_build_prune"),
    Route("POST", r"/commit", "post_commit"),
    Route("GET", r"/images/json", "get_images_json"),
    Route("POST", r"/images/create", "post_images_create"),
    Route("POST", r"/images/load", "post_images_load"),
    Route("GET", r"/images/get", "get_images_get"),
    Route("POST", r"/images/prune", "post_images_prune"),
    Route("GET", r"/images/(?P<name>.+)/get", "get_images_get"),
    Route("GET", r"/images/(?P<name>.+)/json", "get_image_json"),
    Route("GET", r"/images/(?P<name>.+)/history", "get_image_history"),
    Route("POST", r"/images/(?P<name>.+)/tag", "post_image_tag"),
    Route("POST", r"/images/(?P<name>.+)/push", "post_image_push"),
    Route("POST", r"/auth", "post_auth"),
    Route("GET", r"/distribution/(?P<name>.+)/json", "get_distribution_json"),
    Route("POST", r"/containers/create", "post_containers_create"),
    Route("GET", r"/containers/json", "get_containers_json"),
    Route("POST", r"/containers/prune", "post_containers_prune"),
    Route("GET", r"/containers/(?P<name>[^/]+)/json", "get_container_json"),
    Route("POST", r"/containers/(?P<name>[^/]+)/start", "post_container_start"),
    Route("POST", r"/containers/(?P<name>[^/]+)/stop", "post_container_stop"),
    Route("POST", r"/containers/(?P<name>[^/]+)/restart", "post_container_restart"),
    Route("POST", r"/containers/(?P<name>[^/]+)/kill", "post_container_kill"),
    Route("POST", r"/containers/(?P<name>[^/]+)/wait", "post_container_wait"),
    Route("POST", r"/containers/(?P<name>[^/]+)/rename", "post_container_rename"),
    Route("POST", r"/containers/(?P<name>[^/]+)/resize", "post_container_resize"),
    Route("POST", r"/containers/(?P<name>[^/]+)/pause", "post_container_pause"),
    Route("POST", r"/containers/(?P<name>[^/]+)/unpause", "post_container_unpause"),
    Route("POST", r"/containers/(?P<name>[^/]+)/update", "post_container_update"),
    Route("GET", r"/containers/(?P<name>[^/]+)/stats", "get_container_stats"),
    Route("POST", r"/containers/(?P<name>[^/]+)/attach", "post_container_attach"),
    Route("GET", r"/containers/(?P<name>[^/]+)/logs", "get_container_logs"),
    Route("GET", r"/containers/(?P<name>[^/]+)/changes", "get_container_changes"),
    Route("GET", r"/containers/(?P<name>[^/]+)/export", "get_container_export"),
    Route("GET", r"/containers/(?P<name>[^/]+)/top", "get_container_top"),
    Route("HEAD", r"/containers/(?P<name>[^/]+)/archive", "head_container_archive"),
    Route("GET", r"/containers/(?P<name>[^/]+)/archive", "get_container_archive"),
    Route("PUT", r"/containers/(?P<name>[^/]+)/archive", "put_container_archive"),
    Route("POST", r"/containers/(?P<name>[^/]+)/exec", "post_container_exec"),
    Route("DELETE", r"/containers/(?P<name>[^/]+)", "delete_container"),
    Route("DELETE", r"/containers/(?P<parent>[^/]+)/(?P<alias>[^/]+)", "delete_container_link"),
    Route("POST", r"/exec/(?P<exec_id>[^/]+)/start", "post_exec_start"),
    Route("POST", r"/exec/(?P<exec_id>[^/]+)/resize", "post_exec_resize"),
    Route("GET", r"/exec/(?P<exec_id>[^/]+)/json", "get_exec_json"),
    Route("DELETE", r"/images/(?P<name>.+)", "delete_image"),
    Route("GET", r"/networks", "get_networks"),
    Route("POST", r"/networks/create", "post_networks_create"),
    Route("POST", r"/networks/prune", "post_networks_prune"),
    Route("GET", r"/networks/(?P<name>[^/]+)", "get_network"),
    Route("DELETE", r"/networks/(?P<name>[^/]+)", "delete_network"),
    Route("POST", r"/networks/(?P<name>[^/]+)/connect", "post_network_connect"),
    Route("POST", r"/networks/(?P<name>[^/]+)/disconnect", "post_network_disconnect"),
    Route("GET", r"/volumes", "get_volumes"),
    Route("POST", r"/volumes/create", "post_volumes_create"),
    Route("POST", r"/volumes/prune", "post_volumes_prune"),
    Route("GET", r"/volumes/(?P<name>[^/]+)", "get_volume"),
    Route("DELETE", r"/volumes/(?P<name>[^/]+)", "delete_volume"),
]


class UnixAPIServer(httpserver.HTTPServer):
    """The API on a unix socket (listeners.Init, unix_socket.go).

    The socket is bound, made unreachable (mode 000), given to root:<group> and mode 0660,
    and only then listens: there is never a moment when a default umask lets anyone connect.
    Access to this socket is root on the host.
    """

    def __init__(self, path, group, daemon):
        self.group = group
        self.daemon = daemon
        super().__init__(socket.AF_UNIX, path, APIHandler)

    def server_bind(self):
        if os.path.lexists(self.server_address):
            if not stat.S_ISSOCK(os.lstat(self.server_address).st_mode):
                raise ConfigError("can't create unix socket %s: a file that is not a socket is "
                                  "in the way" % self.server_address)
            os.unlink(self.server_address)
        os.makedirs(os.path.dirname(self.server_address) or ".", exist_ok=True)
        self.socket.bind(self.server_address)
        os.chmod(self.server_address, 0)
        os.chown(self.server_address, 0, socket_group_id(self.group, self.server_address))
        os.chmod(self.server_address, 0o660)


def socket_group_id(name, path):
    """The gid of -G (default `docker`); without that group the socket stays root-only."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name != "docker":
            raise ConfigError("group %s not found" % name)
        log.warning("could not change group %s to docker: group docker not found", path)
        return 0


class TCPAPIServer(httpserver.HTTPServer):
    """The API on tcp://host:port, with TLS when --tls or --tlsverify is given; the TLS
    handshake happens in the connection's first pool thread, never in the selector."""

    def __init__(self, address, tls_context, daemon):
        self.tls_context = tls_context
        self.daemon = daemon
        super().__init__(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, address,
                         APIHandler)

    def get_request(self):
        sock, address = super().get_request()
        if self.tls_context is None:
            return sock, address
        try:
            return self.tls_context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False), address
        except OSError:
            sock.close()
            raise


def make_tls_context(config):
    """--tls serves TLS; --tlsverify also demands a client certificate signed by --tlscacert."""
    if not (config.tls or config.tlsverify):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(os.path.expanduser(config.tlscert), os.path.expanduser(config.tlskey))
        if config.tlsverify:
            context.load_verify_locations(os.path.expanduser(config.tlscacert))
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as err:
        raise ConfigError("Could not load X509 key pair: %s" % err)
    return context


class APIHandler(httpserver.RequestHandler):
    """One request, routed to a handler method (the connection is drivers/httpserver's).

    Handlers raise errdefs errors; dispatch turns them into dockerd's JSON error bodies.
    """

    # http.server's Server header is "<server_version> <sys_version>": "Docker/<version> (linux)".
    server_version, sys_version = SERVER_HEADER.split(" ")

    # -- dispatch ---------------------------------------------------------------------------

    def do_GET(self):
        self.dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def dispatch(self):
        """Strip the /vX.Y prefix, check the version, find the route, run the handler."""
        self.response_started = False
        self.body_reader = self.make_body_reader()
        self.server.count_request(1)
        try:
            route, params = self.route()
            jsontypes.check_query(self.operation, self.query)
            if any("\x00" in value for value in params.values()):
                raise InvalidParameter("invalid argument: NUL byte in the path")
            getattr(self, route.handler)(**params)
        except errdefs.DockerError as err:
            self.send_error_json(err.status, err.message)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client left mid-answer: nothing to tell it
        except Exception:  # a bug must cost one request, not the connection's thread
            # Python's text for a bug is for the log, never for the client.
            log.exception("Handler for %s returned error", self.requestline)
            self.send_error_json(500, "internal server error")
        finally:
            self.server.count_request(-1)
        self.drain_body()

    def route(self):
        """Routes match the path as sent, so an escaped `/` in a name (`..%2Fetc`) stays
        inside its parameter; the parameters are unescaped afterwards."""
        parsed = urllib.parse.urlsplit(self.path)
        self.query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        path = parsed.path
        versioned = VERSION_PATH.match(path)
        if versioned:  # every version in range is served the same (1.41) way
            check_api_version(versioned.group("version"))
            path = versioned.group("rest")
        self.operation = jsontypes.operation(self.command, path)  # the spec's key: typed input
        for route in ROUTES:
            match = route.pattern.match(path)
            if match and route.method == self.command:
                return route, {key: urllib.parse.unquote(value)
                               for key, value in match.groupdict().items()}
        raise NotFound("page not found")

    # -- request bodies ---------------------------------------------------------------------

    def read_json(self):
        """The request body as JSON, or None when there is none (CheckForJSON + ReadJSON)."""
        content_type = self.headers.get("Content-Type", "")
        body = self.body_reader.read(MAX_JSON_BODY + 1)
        if len(body) > MAX_JSON_BODY:
            raise InvalidParameter("request body is too large")
        if not body.strip():
            return None
        media_type = content_type.split(";")[0].strip().lower()
        if media_type and media_type != JSON_CONTENT_TYPE:
            raise InvalidParameter("Content-Type specified (%s) must be 'application/json'"
                                   % content_type)
        return jsontypes.check_body(self.operation, decode_json(body))

    # -- query parameters -------------------------------------------------------------------

    def query_value(self, name, default=""):
        values = self.query.get(name)
        return values[-1] if values else default

    def query_bool(self, name, default=False):
        """httputils.BoolValue: 1/true/True/yes are true; 0/false/no/empty are false."""
        value = self.query_value(name, None)
        if value is None:
            return default
        return value.strip().lower() not in ("", "0", "false", "no", "none")

    def query_int(self, name, default=0):
        """An integer parameter; dispatch has checked it against the spec (check_query)."""
        value = self.query_value(name, "")
        return int(value) if value else default

    def query_filters(self):
        """`filters` in both forms clients send: {"k":{"v":true}} (CLI) and {"k":["v"]} (docker-py)."""
        raw = self.query_value("filters")
        if not raw:
            return {}
        parsed = decode_json(raw.encode())
        if not isinstance(parsed, dict):
            raise InvalidParameter("invalid filter: %s" % raw)
        filters = {}
        for key, value in parsed.items():
            if isinstance(value, dict):
                filters[key] = [item for item, enabled in value.items() if enabled]
            elif isinstance(value, list) and all(isinstance(item, str) for item in value):
                filters[key] = list(value)
            else:
                raise InvalidParameter("invalid filter '%s'" % key)
        return filters

    def query_time(self, name):
        """since/until as Unix seconds, maybe with a fraction ("1795843383.000000000")."""
        value = self.query_value(name, "")
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            raise InvalidParameter("invalid value for %s: %s" % (name, value)) from None

    # -- responses --------------------------------------------------------------------------

    def send_standard_headers(self, status, content_type=None):
        """The headers dockerd puts on every normal answer (wire.md §1)."""
        self.response_started = True
        self.send_response(status)
        self.send_header("Api-Version", API_VERSION)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")

    def send_json(self, value, status=200):
        body = json.dumps(value, separators=(",", ":")).encode() + b"\n"
        self.send_standard_headers(status, JSON_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_no_content(self, status=204, headers=()):
        self.send_standard_headers(status)
        for header, value in headers:
            self.send_header(header, value)
        if status not in (204, 304):
            self.send_header("Content-Length", "0")
        self.end_headers()

    def send_error_json(self, status, message):
        """Every error is {"message": ...} with dockerd's status code."""
        if self.response_started:
            log.error("error after the response started (%s %s): %s", self.command, self.path, message)
            self.close_connection = True
            return
        if status == 304:
            self.send_no_content(304)
            return
        self.send_json({"message": message}, status)

    def send_error(self, code, message=None, explain=None):
        """The server's own refusal of a request it has read (an unknown method) as JSON too."""
        self.close_connection = True
        self.send_json({"message": message}, code)

    def start_stream(self, content_type=JSON_CONTENT_TYPE, status=200, headers=()):
        """Begin a chunked response and flush its headers at once (events, progress, logs)."""
        self.send_standard_headers(status, content_type)
        for header, value in headers:
            self.send_header(header, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def write_json_message(self, message, terminator=b"\r\n"):
        """One progress message: a JSON object + CRLF per chunk (jsonmessage), so bars redraw."""
        self.write_chunk(json.dumps(message, separators=(",", ":")).encode() + terminator)

    def hijack(self, extra_headers=()):
        """Take over the connection as a raw stream (attach, exec start).

        With `Upgrade: tcp` the answer is `101 UPGRADED`; without it dockerd still streams,
        after a plain 200. Either way the HTTP framing ends here: the socket carries raw (tty)
        or multiplexed (stdcopy) bytes until one side closes it.
        """
        self.response_started = True
        self.close_connection = True
        if "upgrade" in self.headers.get("Connection", "").lower():
            self.wfile.write(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\n"
                             b"Connection: Upgrade\r\nUpgrade: tcp\r\n" % RAW_STREAM_TYPE.encode())
        else:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\n" % RAW_STREAM_TYPE.encode())
        for name, value in extra_headers:
            self.wfile.write(("%s: %s\r\n" % (name, value)).encode())
        self.wfile.write(b"\r\n")
        self.wfile.flush()
        await_headers_read(self.connection)
        return self.connection

    def client_gone(self):
        """Whether the client closed its end: a readable socket that yields no bytes."""
        try:
            readable = httpserver.readable([self.connection], 0)
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True

    # -- system routes ----------------------------------------------------------------------

    @property
    def daemon(self):
        return self.server.daemon

    def get_ping(self):
        """/_ping: the CLI's first request; Api-Version in its headers sets the version it uses."""
        self.send_standard_headers(200, "text/plain; charset=utf-8")
        self.send_header("Cache-Control", "no-cache, no-store, must-revalidate")
        self.send_header("Pragma", "no-cache")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else "2")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(b"OK")

    def get_version(self):
        self.send_json(version_info())

    def get_info(self):
        self.send_json(system_info(self.daemon, self.server))

    def get_system_df(self):
        self.send_json(system_df(self.daemon))

    def get_events(self):
        """GET /events: the replay since..until, then live events until `until`."""
        stream = EventStream(self.daemon.events, self.query_time("since"), self.query_time("until"),
                             self.query_filters())
        try:
            self.start_stream()
            for message in stream.messages(self.client_gone):
                self.write_json_message(message, b"\n")
            self.end_stream()
        except OSError:
            self.close_connection = True
        finally:
            stream.close()

    # -- images: the graph and the tag store (graph/service.go, api/server/router/image) ------

    def get_images_json(self):
        self.send_json(self.daemon.graph.images(all=self.query_bool("all"),
                                                filters=self.query_filters(),
                                                digests=self.query_bool("digests")))

    def get_image_json(self, name):
        self.send_json(self.daemon.graph.inspect(name))

    def get_image_history(self, name):
        self.send_json(self.daemon.graph.history(name))

    def post_image_tag(self, name):
        """`docker tag`: the CLI sends repo normalised (docker.io/library/x) and tag apart."""
        self.daemon.graph.tag(name, self.query_value("repo"), self.query_value("tag") or "latest")
        self.send_no_content(201)

    def delete_image(self, name):
        self.send_json(self.daemon.graph.delete(name, force=self.query_bool("force"),
                                                noprune=self.query_bool("noprune")))

    def post_images_prune(self):
        self.send_json(self.daemon.graph.prune(filters=self.query_filters()))

    def post_images_create(self):
        """`docker pull` (fromImage) and `docker import` (fromSrc)."""
        if self.query_value("fromImage"):
            return self.pull_image()
        source = self.query_value("fromSrc")
        if not source:
            raise InvalidParameter("fromSrc or fromImage is required")
        ref = import_reference(self.query_value("repo"), self.query_value("tag"))
        changes = [line for value in self.query.get("changes", []) for line in value.split("\n")]
        config = builder.build_from_config(graph_store.container_config_shape({}), changes)
        stream = self.body_reader if source == "-" else open_import_url(source)
        with self.progress_stream() as progress:
            image_id = self.daemon.graph.import_image(stream, ref, config,
                                                      self.query_value("message"))
            progress({"status": image_id})

    def pull_image(self):
        """`docker pull`: the tag (or a digest, which the CLI also sends as `tag`) from a registry."""
        ref = pull_reference(self.query_value("fromImage"), self.query_value("tag"))
        with self.progress_stream() as progress:
            # No tag anywhere is `docker pull --all-tags` (the CLI sends `latest` otherwise).
            distribution.pull(self.daemon.distribution, ref, self.registry_auth(),
                              self.query_value("platform") or None, progress, all_tags=True)

    def post_image_push(self, name):
        """`docker push`: one tag, or with none every tag of the repository."""
        ref = reference.parse_normalized_named(name)
        tag = self.query_value("tag")
        if tag:
            ref = reference.Reference(ref.domain, ref.path, reference.parse_tag(tag))
        with self.progress_stream() as progress:
            distribution.push(self.daemon.distribution, ref, self.registry_auth(), progress)

    def get_distribution_json(self, name):
        """What the registry serves for an image reference: its manifest's descriptor and
        platforms (a full image ID names no manifest: dockerd's 500)."""
        if reference.is_full_id(name) or name.startswith("sha256:"):
            raise errdefs.System("no manifest found for full image ID")
        self.send_json(distribution.inspect(self.daemon.distribution,
                                            reference.parse_normalized_named(name),
                                            self.registry_auth()))

    def post_auth(self):
        """`docker login`: check the credentials against the registry; nothing is stored."""
        self.send_json(self.daemon.registry.login(self.read_json() or {}))

    def registry_auth(self):
        """X-Registry-Auth: base64url JSON credentials; unreadable ones count as none, like dockerd."""
        header = self.headers.get("X-Registry-Auth", "")
        if not header:
            return {}
        try:
            decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
        except (ValueError, TypeError):
            return {}
        return decoded if isinstance(decoded, dict) else {}

    def post_images_load(self):
        """`docker load`: a docker-archive or OCI layout tar in the (chunked) request body.
        dockerd answers 200 at once, so even an upload that is no archive at all fails inside
        the stream, where clients look for the load's error."""
        quiet = self.query_bool("quiet")
        with self.progress_stream(started=True) as progress:
            for message in self.daemon.graph.load(self.body_reader,
                                                  progress=None if quiet else progress, quiet=quiet):
                progress(message)

    def get_images_get(self, name=None):
        """`docker save`: one tar holding every named image, streamed as it is written."""
        names = [name] if name else self.query.get("names", [])
        if not names:
            raise InvalidParameter("no images specified")
        out = ChunkedWriter(self, "application/x-tar")
        self.daemon.graph.save(names, out)
        out.close()
        self.end_stream()

    # -- build (api/server/router/build) -------------------------------------------------

    def post_build(self):
        """`docker build` (legacy builder): the context tar in the (chunked) body, the
        build's JSON stream back; errors before the first message are HTTP errors."""
        options = builder.BuildOptions.from_query(self.query)
        with self.progress_stream() as progress:
            build_image(self.daemon, options, self.body_reader, self.registry_configs(), progress,
                        self.client_gone)

    def registry_configs(self):
        """X-Registry-Config: base64url JSON {registry: credentials}; unreadable is none."""
        header = self.headers.get("X-Registry-Config", "")
        try:
            decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))) if header else {}
        except (ValueError, TypeError):
            return {}
        return {key: value for key, value in decoded.items() if isinstance(value, dict)} \
            if isinstance(decoded, dict) else {}

    def post_build_prune(self):
        keep = self.query_value("keep-storage") or "0"
        if not keep.isdigit():
            raise InvalidParameter("keep-storage is in bytes and expects an integer, got %s" % keep)
        self.send_json(prune_build_cache(self.daemon, self.query_filters(), int(keep)))

    def post_commit(self):
        """`docker commit`: `changes` repeated, the body an optional Config to start from."""
        config = self.read_json()
        pause = self.query_bool("pause", default=True)  # API 1.12 clients always send it
        changes = [line for value in self.query.get("changes", []) for line in value.split("\n")]
        image_id = commit_container(self.daemon, self.query_value("container"), config, changes,
                                    self.query_value("author"), self.query_value("comment"),
                                    self.query_value("repo"), self.query_value("tag"), pause)
        self.send_json({"Id": image_id}, 201)

    # -- containers (api/server/router/container) ------------------------------------------

    def container(self, name):
        return self.daemon.containers.get(name)

    def post_containers_create(self):
        """`docker create`: Config with HostConfig inside; unknown keys are ignored, as in Go."""
        body = self.read_json()
        if body is None:
            raise InvalidParameter("config cannot be empty in order to create a container")
        host_config = body.pop("HostConfig", None) or {}
        networking_config = body.pop("NetworkingConfig", None)
        container, warnings = create_container(self.daemon, body, host_config, self.query_value("name"),
                                               networking_config)
        self.send_json({"Id": container.id, "Warnings": warnings}, 201)

    def post_container_start(self, name):
        start_container(self.daemon, self.container(name))
        self.send_no_content()

    def post_container_stop(self, name):
        stop_container(self.daemon, self.container(name), self.query_int("t", 10))
        self.send_no_content()

    def post_container_restart(self, name):
        restart_container(self.daemon, self.container(name), self.query_int("t", 10))
        self.send_no_content()

    def post_container_kill(self, name):
        kill_container(self.daemon, self.container(name),
                       parse_signal(self.query_value("signal") or "KILL"))
        self.send_no_content()

    def post_container_pause(self, name):
        set_paused(self.daemon, self.container(name), True)
        self.send_no_content()

    def post_container_unpause(self, name):
        set_paused(self.daemon, self.container(name), False)
        self.send_no_content()

    def post_container_update(self, name):
        warnings = update_container(self.daemon, self.container(name), self.read_json())
        self.send_json({"Warnings": warnings})

    def get_container_stats(self, name):
        """`docker stats`: one sample (stream=0), or one a second until the client or the
        container goes."""
        stream = self.query_bool("stream", True)
        samples = container_stats(self.daemon, self.container(name), stream,
                                  self.query_bool("one-shot"), self.client_gone)
        if not stream:
            self.send_json(next(samples))
            return
        self.start_stream(content_type=None)
        try:
            for sample in samples:
                self.write_chunk(json.dumps(sample, separators=(",", ":")).encode() + b"\n")
            self.end_stream()
        except OSError:
            self.close_connection = True

    def post_container_rename(self, name):
        rename_container(self.daemon, self.container(name), self.query_value("name"))
        self.send_no_content()

    def delete_container(self, name):
        if self.query_bool("link"):
            raise errdefs.Conflict("Conflict, cannot remove the default link name of the container")
        remove_container(self.daemon, self.container(name), force=self.query_bool("force"),
                         remove_volumes=self.query_bool("v"))
        self.send_no_content()

    def delete_container_link(self, parent, alias):
        """`docker rm --link /parent/alias` (the CLI drops the leading slash)."""
        if not self.query_bool("link"):
            raise NotFound("No such container: %s/%s" % (parent, alias))
        remove_link(self.daemon, parent, alias)
        self.send_no_content()

    def post_container_wait(self, name):
        """`docker wait`: headers at once, the status code when the condition is met."""
        wait = container_wait(self.container(name), self.query_value("condition") or "not-running")
        self.start_stream()
        code = wait(self.client_gone)
        if code is None:
            result = {"Error": {"Message": "context canceled"}, "StatusCode": -1}
        else:
            result = {"Error": None, "StatusCode": code}
        self.write_json_message(result, b"\n")
        self.end_stream()

    def get_container_json(self, name):
        self.send_json(inspect_container(self.daemon, self.container(name), self.query_bool("size")))

    def get_containers_json(self):
        self.send_json(list_containers(self.daemon, self.query_bool("all"), self.query_int("limit", -1),
                                       self.query_bool("size"), self.query_filters()))

    def post_containers_prune(self):
        self.send_json(prune_containers(self.daemon, self.query_filters()))

    def post_container_resize(self, name):
        resize_container(self.daemon, self.container(name), self.query_int("h"), self.query_int("w"))
        self.send_no_content(200)

    def post_container_attach(self, name):
        """`docker attach` and the attach half of `docker run`: the connection is hijacked."""
        options = {key: self.query_bool(key) for key in ("stdin", "stdout", "stderr", "logs", "stream")}
        attach_container(self.daemon, self.container(name), options,
                         parse_detach_keys(self.query_value("detachKeys")), self.hijack)

    def get_container_logs(self, name):
        """`docker logs`: the container's log, framed like attach; with follow, until it stops."""
        streams = {"stdout": self.query_bool("stdout"), "stderr": self.query_bool("stderr")}
        frames = container_logs(self.container(name), streams, self.query_value("tail", "all"),
                                self.query_time("since"), self.query_time("until"),
                                self.query_bool("timestamps"), self.query_bool("follow"),
                                self.client_gone)
        self.start_stream(content_type=None)
        for frame in frames:
            self.write_chunk(frame)
        self.end_stream()

    def get_container_changes(self, name):
        self.send_json(container_changes(self.daemon, name))

    def get_container_top(self, name):
        self.send_json(container_top(self.daemon, name, self.query_value("ps_args", "")))

    def head_container_archive(self, name):
        header = container_stat_path(self.daemon, name, self.query_value("path"))
        self.send_no_content(200, [(PATH_STAT_HEADER, header)])

    def get_container_archive(self, name):
        out = container_archive_path(self.daemon, name, self.query_value("path"),
                                     lambda headers: ChunkedWriter(self, "application/x-tar", headers))
        out.close()
        self.end_stream()

    def put_container_archive(self, name):
        container_extract_to_dir(self.daemon, name, self.query_value("path"), self.body_reader,
                                 self.query_bool("copyUIDGID"),
                                 self.query_bool("noOverwriteDirNonDir"))
        self.send_no_content(200)

    def get_container_export(self, name):
        out = ChunkedWriter(self, "application/octet-stream")
        export_container(self.daemon, name, out)
        out.close()
        self.end_stream()

    # -- exec (api/server/router/container/exec.go) ----------------------------------------

    def post_container_exec(self, name):
        """`docker exec`, first half: record what to run; nothing starts until exec start."""
        exec_config = create_exec(self.daemon, self.container(name), self.read_json())
        self.send_json({"Id": exec_config.id}, 201)

    def post_exec_start(self, exec_id):
        """`docker exec`, second half: detached, a 200; attached, the hijacked stream."""
        exec_config = self.daemon.execs.get(exec_id)
        body = self.read_json() or {}
        start_exec(self.daemon, exec_config, bool(body.get("Detach")), bool(body.get("Tty")),
                   functools.partial(self.hijack, EXEC_STREAM_HEADERS))
        if body.get("Detach"):
            self.send_no_content(200)

    def post_exec_resize(self, exec_id):
        resize_exec(self.daemon.execs.get(exec_id), self.query_int("h"), self.query_int("w"))
        self.send_no_content(200)

    def get_exec_json(self, exec_id):
        self.send_json(inspect_exec(self.daemon.execs.get(exec_id)))

    # -- networks ---------------------------------------------------------------------------

    def get_networks(self):
        self.send_json(self.daemon.netcontroller.list_networks(self.query_filters()))

    def post_networks_create(self):
        body = self.read_json()
        if not isinstance(body, dict):
            raise InvalidParameter("network create needs a JSON object with the network's Name")
        self.send_json(self.daemon.netcontroller.create_network(body), 201)

    def get_network(self, name):
        if self.query_value("scope") not in ("", "local"):  # only local networks exist here
            raise NotFound("network %s not found" % name)
        self.send_json(self.daemon.netcontroller.inspect_network(name))

    def delete_network(self, name):
        self.daemon.netcontroller.delete_network(name)
        self.send_no_content()

    def post_networks_prune(self):
        self.send_json(self.daemon.netcontroller.prune_networks(self.query_filters()))

    def post_network_connect(self, name):
        body = self.read_json()
        if not isinstance(body, dict):
            raise InvalidParameter("network connect needs a JSON object naming the Container")
        connect_network(self.daemon, name, body.get("Container") or "", body.get("EndpointConfig"))
        self.send_no_content(200)

    def post_network_disconnect(self, name):
        body = self.read_json()
        if not isinstance(body, dict):
            raise InvalidParameter("network disconnect needs a JSON object naming the Container")
        disconnect_network(self.daemon, name, body.get("Container") or "", bool(body.get("Force")))
        self.send_no_content(200)

    # -- volumes (api/server/router/volume) -------------------------------------------------

    def get_volumes(self):
        self.send_json(self.daemon.volumes.list_volumes(self.query_filters()))

    def post_volumes_create(self):
        self.send_json(self.daemon.volumes.create_volume(self.read_json()), 201)

    def get_volume(self, name):
        self.send_json(self.daemon.volumes.inspect(name))

    def delete_volume(self, name):
        self.daemon.volumes.remove(name, force=self.query_bool("force"))
        self.send_no_content()

    def post_volumes_prune(self):
        self.send_json(self.daemon.volumes.prune(self.query_filters()))

    def progress_stream(self, started=False):
        return ProgressStream(self, started)


def exec_failure_message(err):
    return ("OCI runtime exec failed: exec failed: %s: unknown\r\n" % err.message).encode()


def stream_frame(data, tty):
    """Bytes for a hijacked stream: as they are with a tty, else one stdout frame."""
    return data if tty else stdcopy_frame(1, data)


DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q


def parse_detach_keys(text):
    """term.ToBytes: "ctrl-p,ctrl-q" -> b"\\x10\\x11"; a single byte stands for itself (a
    character that UTF-8 writes in several bytes is no key, as in Go)."""
    if not text:
        return DEFAULT_DETACH_KEYS
    keys = bytearray()
    for key in text.split(","):
        key = key.strip().lower()
        if len(key) == 1 and ord(key) < 0x80:
            keys.append(ord(key))
        elif key.startswith("ctrl-") and len(key) == 6 and key[5] in "abcdefghijklmnopqrstuvwxyz@[\\]^_":
            keys.append(ord(key[5].upper()) - 64)
        else:
            raise InvalidParameter("Invalid detach keys (%s) provided" % text)
    return bytes(keys)


# How a proxied stream ended: the process's output ended, the client typed the detach keys,
# or the client's connection broke.
OUTPUT_ENDED, DETACHED, CLIENT_GONE = "output ended", "detached", "client gone"


def proxy_streams(client, upstream, stdin, detach_keys):
    """Shuttle bytes between a hijacked client and a monitor's attach stream; how it ended.

    The client's EOF is the end of its stdin, not a hang-up (wire.md §3.1): output keeps
    flowing until the monitor ends it. Typing the detach keys (None: a process without a
    terminal, which has none) ends the attach only.
    """
    sources = [client, upstream]
    typed = b""
    try:
        while True:
            readable = httpserver.readable(sources)
            if client in readable:
                data = client.recv(65536)
                if not data:
                    sources.remove(client)
                    if stdin:
                        forward_stdin(upstream, b"")
                elif stdin:
                    if detach_keys:
                        typed = (typed + data)[-len(detach_keys):]
                        if typed == detach_keys:
                            return DETACHED
                    stdin = forward_stdin(upstream, data)
            if upstream in readable:
                data = upstream.recv(65536)
                if not data:
                    return OUTPUT_ENDED
                client.sendall(data)
    except OSError:
        return CLIENT_GONE
    finally:
        upstream.close()


def forward_stdin(upstream, data):
    """Pass the client's input (b"": its EOF) to the monitor; False once it takes no more.

    The monitor hangs up when the process's output has ended, and a short-lived process is
    often gone before the client's first keystroke (or the EOF byte a terminal sends for a
    closed input) arrives. The output the monitor sent before hanging up still waits in
    upstream: a refused input must not end the stream, or that output is lost.
    """
    try:
        if data:
            upstream.sendall(data)
        else:
            upstream.shutdown(socket.SHUT_WR)
        return True
    except OSError:
        return False


def attach_container(daemon, container, options, detach_keys, hijack):
    """daemon.ContainerAttach: the container's log (options["logs"]), then its live stdio
    (options["stream"]), over the client's connection, which hijack() takes over.

    `options` are the booleans stdin, stdout, stderr, logs and stream. A live attach may
    come before the start (`docker run` attaches, and starts once it has the answer): it
    counts as pending from before that answer, so the start waits a moment for it to connect
    (connect_waiting_attaches). With a terminal, the detach keys end the attach only.
    """
    if container.paused:
        raise errdefs.Conflict("container %s is paused, unpause the container before attach"
                               % container.name.lstrip("/"))
    streams = {"stdout": options["stdout"], "stderr": options["stderr"]}
    with container.cond:
        container.pending_attaches += 1 if options["stream"] else 0
    try:
        client = hijack()
        if options["logs"]:
            for entry in read_container_log(container, streams):
                client.sendall(log_frame(container, entry, False))
        upstream = connect_to_monitor(container, options) if options["stream"] else None
    finally:
        with container.cond:
            container.pending_attaches -= 1 if options["stream"] else 0
            container.cond.notify_all()
    if upstream is None:
        return
    daemon.events.log("container", "attach", container.id, container.event_attributes())
    keys = detach_keys if container.config.get("Tty") else None
    if proxy_streams(client, upstream, options["stdin"], keys) == DETACHED:
        daemon.events.log("container", "detach", container.id, container.event_attributes())


def connect_to_monitor(container, options):
    """The monitor's stream, once the process has one (attach may come before start); None
    if the container exits, fails to start or goes first.

    The client may already have half-closed its side (no -i): that is the end of its
    stdin, not a hang-up, so the wait is for the container, not for the client.
    """
    with container.cond:
        exits, failed_starts = container.exits, container.failed_starts
        while container.monitor is None:
            if container.removed or container.exits > exits or \
                    container.failed_starts > failed_starts:
                return None
            container.cond.wait()
        monitor = container.monitor
    try:
        return monitor.attach(stdin=options["stdin"], stdout=options["stdout"],
                              stderr=options["stderr"],
                              stdin_once=bool(container.config.get("StdinOnce")))
    except (OSError, monitor_module.MonitorError):
        return None


def container_logs(container, streams, tail, since, until, timestamps, follow, cancelled):
    """daemon.ContainerLogs (`docker logs`): the frames to send, after checking the request.

    The json-file or local log, or a remote driver's cache, framed like attach (raw with a tty, stdcopy otherwise); with `follow`,
    new lines until the container stops or cancelled() says the client left.
    """
    if not any(streams.values()):
        raise InvalidParameter("Bad parameters: you must choose at least one stream")
    if container_log(container) is None:
        raise errdefs.NotImplemented('configured logging driver does not support reading')
    try:
        tail = -1 if tail in ("all", "") else int(tail)
    except ValueError:
        raise InvalidParameter("invalid value for tail: %s" % tail) from None
    log_follower = LogFollower(container, streams, since, until, tail)

    def frames():
        for entry in log_follower.backlog():
            yield log_frame(container, entry, timestamps)
        if follow:
            for entry in log_follower.follow(cancelled):
                yield log_frame(container, entry, timestamps)
    return frames()


def container_log(container):
    """Where `docker logs` reads (a logger.LocalLog): the json-file or local log, or a remote
    driver's cache (dual logging); None when the driver keeps nothing readable."""
    config = container.host_config["LogConfig"]
    return logger.readable_log(config["Type"], config.get("Config") or {}, container.log_path,
                               container.root)


def read_container_log(container, streams, since=None, until=None, tail=-1):
    """The container's log records of the wanted streams, oldest first."""
    local_log = container_log(container)
    if local_log is None:
        return []
    entries = logger.read_log(local_log.path, local_log.max_file, since=since, until=until,
                              tail=tail, log_format=local_log.format)
    return [entry for entry in entries if streams.get(entry.stream)]


def log_frame(container, entry, timestamps):
    """One log record as `docker logs` sends it: raw with a tty, else a stdcopy frame."""
    line = (entry.time.encode() + b" " if timestamps else b"") + entry.line
    if container.config.get("Tty"):
        return line
    return stdcopy_frame(1 if entry.stream == "stdout" else 2, line)


class LogFollower(object):
    """`docker logs [-f]`: the backlog, then new records as the monitor appends them.

    The follow position is taken before the backlog is read, so nothing written in between
    is lost; a record that was already sent (same or older timestamp) is skipped.
    """

    POLL = 0.1

    def __init__(self, container, streams, since, until, tail):
        self.container = container
        self.streams = streams
        self.since = int(since * 1e9) if since else None
        self.until = int(until * 1e9) if until else None
        self.tail = tail
        self.last = 0
        self.log = container_log(container)
        self.split_records = logger.driver_class(self.log.format).split_records
        self.inode, self.offset = self._position()

    def _position(self):
        try:
            info = os.stat(self.log.path)
            return info.st_ino, info.st_size
        except OSError:
            return None, 0

    def backlog(self):
        entries = read_container_log(self.container, self.streams, self.since, self.until, self.tail)
        if entries:
            self.last = entries[-1].timestamp
        return entries

    def follow(self, client_gone):
        """New records until the container stops (and its log is drained) or the client goes."""
        while not client_gone():
            running = self.container.running or self.container.restarting
            for entry in self._new_records():
                if self.until is not None and entry.timestamp > self.until:
                    return
                yield entry
            if not running or (self.until is not None and time.time_ns() > self.until):
                return
            time.sleep(self.POLL)

    def _new_records(self):
        inode, size = self._position()
        if inode != self.inode or size < self.offset:  # rotated: start the new file
            self.inode, self.offset = inode, 0
        if inode is None or size == self.offset:
            return []
        with open(self.log.path, "rb") as log_file:
            log_file.seek(self.offset)
            data = log_file.read(size - self.offset)
        entries, consumed = self.split_records(data)
        self.offset += consumed
        records = []
        for entry in entries:
            if entry is None or entry.timestamp <= self.last or not self.streams.get(entry.stream):
                continue
            if self.since is not None and entry.timestamp < self.since:
                continue
            self.last = entry.timestamp
            records.append(entry)
        return records


def inspect_container(daemon, container, size=False):
    """GET /containers/{id}/json: dockerd 20.10's shape (wire.md §19), from the container."""
    result = {
        "Id": container.id, "Created": container.created, "Path": container.path,
        "Args": container.args,
        "State": {"Status": container.status, "Running": container.running,
                  "Paused": container.paused, "Restarting": container.restarting,
                  "OOMKilled": container.oom_killed, "Dead": False, "Pid": container.pid,
                  "ExitCode": container.exit_code, "Error": container.error,
                  "StartedAt": container.started_at, "FinishedAt": container.finished_at},
        "Image": container.image_id,
        "ResolvConfPath": os.path.join(container.root, "resolv.conf"),
        "HostnamePath": os.path.join(container.root, "hostname"),
        "HostsPath": os.path.join(container.root, "hosts"),
        "LogPath": container.log_path if container.host_config["LogConfig"]["Type"] == "json-file"
        else "", "Name": container.name,
        "RestartCount": container.restart_count, "Driver": container.driver, "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": daemon.execs.listed(container) or None,
        "HostConfig": container.host_config,
        "GraphDriver": {"Name": container.driver,
                        "Data": daemon.graph.rw_layer_metadata(container.id)},
        "Mounts": volume.inspect_mounts(container.mount_points),
        "Config": container.config,
        "NetworkSettings": container.network_settings,
    }
    if container.health:
        result["State"]["Health"] = dict(container.health)
    if size:
        result.update(container_sizes(daemon, container))
    return result


def system_df(daemon):
    """GET /system/df (`docker system df`): images with the containers using each, every
    container with its sizes, the local volumes with theirs, and the build cache."""
    containers = daemon.containers.all()
    usage = daemon.graph.disk_usage([c.image_id for c in containers])
    build_cache = [record for _, record in build_cache_records(daemon)]
    return {"LayersSize": usage["LayersSize"], "Images": usage["Images"],
            "Containers": [container_summary(daemon, c, True) for c in containers],
            "Volumes": daemon.volumes.disk_usage(), "BuildCache": build_cache or None,
            "BuilderSize": sum(record["Size"] for record in build_cache)}


def container_sizes(daemon, container):
    """SizeRw and SizeRootFs, from the layers alone: the image may be gone (`rmi -f`)."""
    size_rw = daemon.graph.rw_layer_size(container.id)
    return {"SizeRw": size_rw,
            "SizeRootFs": size_rw + daemon.graph.rw_layer_parent_size(container.id)}


def container_ports(container):
    """The Ports of a `docker ps` row, from NetworkSettings.Ports: each host binding, and each
    exposed port that has none."""
    ports = []
    for key, bindings in sorted((container.network_settings.get("Ports") or {}).items()):
        number, _, proto = key.partition("/")
        if not bindings:
            ports.append({"PrivatePort": int(number), "Type": proto})
        for binding in bindings or []:
            ports.append({"IP": binding["HostIp"], "PrivatePort": int(number),
                          "PublicPort": int(binding["HostPort"]), "Type": proto})
    return ports


def human_duration(seconds):
    """go-units HumanDuration, as `docker ps` prints ages ("Up 5 seconds")."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return "%d seconds" % seconds
    minutes = seconds / 60
    if minutes < 2:
        return "About a minute"
    if minutes < 60:
        return "%d minutes" % minutes
    hours = round(seconds / 3600)
    for limit, unit, divisor in ((48, "hours", 1), (24 * 7 * 2, "days", 24),
                                 (24 * 30 * 2, "weeks", 24 * 7), (24 * 365 * 2, "months", 24 * 30)):
        if hours == 1 and unit == "hours":
            return "About an hour"
        if hours < limit:
            return "%d %s" % (hours // divisor, unit)
    return "%d years" % (hours // (24 * 365))


def container_status_text(container):
    """The Status column of `docker ps`."""
    now = time.time()
    if container.running:
        up = human_duration(now - unix_seconds(container.started_at))
        if container.paused:
            return "Up %s (Paused)" % up
        if container.health:   # Health.String: "health: starting", "healthy", "unhealthy"
            status = container.health["Status"]
            return "Up %s (%s)" % (up, "health: starting" if status == "starting" else status)
        return "Up %s" % up
    if container.removing:
        return "Removal In Progress"
    if container.restarting:
        return "Restarting (%d) %s ago" % (container.exit_code,
                                          human_duration(now - unix_seconds(container.finished_at)))
    if container.has_been_started:
        return "Exited (%d) %s ago" % (container.exit_code,
                                       human_duration(now - unix_seconds(container.finished_at)))
    return "Created"


def container_summary(daemon, container, size):
    """One row of GET /containers/json."""
    command = " ".join([container.path] + container.args)
    summary = {"Id": container.id, "Names": [container.name],
               "Image": container.config.get("Image", ""), "ImageID": container.image_id,
               "Command": command, "Created": int(unix_seconds(container.created)),
               "Ports": container_ports(container),
               "Labels": container.config.get("Labels") or {}, "State": container.status,
               "Status": container_status_text(container),
               "HostConfig": {"NetworkMode": container.host_config.get("NetworkMode", "default")},
               "NetworkSettings": {"Networks": container.network_settings.get("Networks") or {}},
               "Mounts": volume.inspect_mounts(container.mount_points)}
    if size:
        summary.update(container_sizes(daemon, container))
    return summary


PS_FILTERS = ("id", "name", "label", "status", "exited", "ancestor", "before", "since", "network",
              "health", "volume", "publish", "expose", "is-task")


def list_containers(daemon, all_containers, limit, size, filters):
    """daemon.Containers (`docker ps`): newest first, filtered like dockerd."""
    for key in filters:
        if key not in PS_FILTERS:
            raise InvalidParameter("Invalid filter '%s'" % key)
    for value in filters.get("health", []):
        if value not in ("starting", "healthy", "unhealthy", "none"):
            raise InvalidParameter("Unrecognised filter value for health: %s" % value)
    containers = sorted(daemon.containers.all(), key=lambda c: c.created, reverse=True)
    show_all = all_containers or limit > 0 or "status" in filters or "exited" in filters
    selected = [c for c in containers if (show_all or c.running) and
                container_matches(daemon, c, filters)]
    if limit > 0:
        selected = selected[:limit]
    return [container_summary(daemon, c, size) for c in selected]


def container_matches(daemon, container, filters):
    """The `docker ps --filter` test: every key must match, any of a key's values will do
    (but every `label` given, as in dockerd)."""
    checks = {
        "id": lambda v: container.id.startswith(v),
        "name": lambda v: re.search(v, container.name) is not None,
        "label": lambda v: _matches_label(container.config.get("Labels") or {}, v),
        "status": lambda v: container.status == v,
        "exited": lambda v: container.has_been_started and not container.running and
        str(container.exit_code) == v,
        "ancestor": lambda v: container.image_id == _image_id_or_none(daemon, v),
        "network": lambda v: any(v in (name, settings.get("NetworkID")) for name, settings in
                                 (container.network_settings.get("Networks") or {}).items()),
        "publish": lambda v: port_filter_matches(v, container.host_config.get("PortBindings")),
        "expose": lambda v: port_filter_matches(v, container.config.get("ExposedPorts")),
        "health": lambda v: health.status(container) == v,
        "volume": lambda v: volume.uses_volume(container.mount_points, v),
    }
    for key, values in filters.items():
        if key in ("before", "since"):
            other = daemon.containers.get(values[0])
            if (key == "before" and container.created >= other.created) or \
                    (key == "since" and container.created <= other.created):
                return False
        elif key in checks and values and not (all if key == "label" else any)(
                checks[key](value) for value in values):
            return False
    return True


def port_filter_matches(value, ports):
    """The publish and expose filters: <port>[/<proto>] or <first>-<last>[/<proto>] against
    the container's "80/tcp" keys."""
    spec, _, proto = value.partition("/")
    first, _, last = spec.partition("-")
    try:
        wanted = range(int(first), int(last or first) + 1)
    except ValueError:
        raise InvalidParameter("invalid port specification: %s" % value) from None
    return any(int(key.partition("/")[0]) in wanted and key.partition("/")[2] == (proto or "tcp")
               for key in (ports or {}))


def _image_id_or_none(daemon, name):
    try:
        return daemon.graph.lookup(name).id
    except errdefs.NotFound:
        return None


def prune_containers(daemon, filters):
    """`docker container prune`: remove every stopped container matching the filters."""
    until = filters.get("until")
    deleted, reclaimed = [], 0
    for container in daemon.containers.all():
        if container.running or container.restarting:
            continue
        if filters.get("label") and not all(_matches_label(container.config.get("Labels") or {}, v)
                                            for v in filters["label"]):
            continue
        if until and unix_seconds(container.created) >= float(until[0]):
            continue
        reclaimed += daemon.graph.rw_layer_size(container.id)
        remove_container(daemon, container)
        deleted.append(container.id)
    daemon.events.log("container", "prune", "", {"reclaimed": str(reclaimed)})
    return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}


class ProgressStream(object):
    """A JSON progress stream (jsonmessage) whose 200 is sent with the first message, or at
    once if `started`.

    An error before any message is still a real HTTP error with dockerd's status code; once
    the stream has begun, the status is spent, so the error travels as an errorDetail message,
    exactly how dockerd reports a pull or load that fails half way.
    """

    def __init__(self, handler, started=False):
        self.handler = handler
        self.started = started
        if started:
            handler.start_stream()

    def __enter__(self):
        return self.send

    def send(self, message):
        if not self.started:
            self.handler.start_stream()
            self.started = True
        self.handler.write_json_message(message)

    def __exit__(self, kind, error, tb):
        if error is not None and not self.started:
            return False
        if error is not None:
            if not isinstance(error, (errdefs.DockerError, OSError, ValueError)):
                log.error("stream failed", exc_info=(kind, error, tb))
            text = getattr(error, "message", None) or str(error)
            detail = {"message": text}
            if isinstance(getattr(error, "code", None), int) and error.code:
                detail = {"code": error.code, "message": text}  # a failed RUN's exit code
            self.send({"errorDetail": detail, "error": text})
        if not self.started:
            self.handler.start_stream()
            self.started = True
        self.handler.end_stream()
        return True


class ChunkedWriter(object):
    """A file-like writer that streams a chunked response, buffered into 64 KiB chunks.

    The headers go out with the first write, so a failure before any byte (an unknown image
    in `docker save`) is still an ordinary JSON error.
    """

    SIZE = 64 * 1024

    def __init__(self, handler, content_type, headers=()):
        self.handler = handler
        self.content_type = content_type
        self.headers = headers
        self.buffer = bytearray()
        self.started = False

    def write(self, data):
        self.buffer += data
        if len(self.buffer) >= self.SIZE:
            self.flush()
        return len(data)

    def flush(self):
        if not self.started:
            self.handler.start_stream(self.content_type, headers=self.headers)
            self.started = True
        if self.buffer:
            self.handler.write_chunk(bytes(self.buffer))
            del self.buffer[:]

    def close(self):
        self.flush()


def import_reference(repo, tag):
    """The repository an import is tagged into: `repo` may carry its own tag, `tag` wins."""
    if not repo:
        return None
    ref = reference.parse_normalized_named(repo)
    if tag:
        ref = reference.Reference(ref.domain, ref.path, reference.parse_tag(tag))
    return ref.with_default_tag()


def pull_reference(image, tag):
    """fromImage + tag: a tag with a colon is a digest (`docker pull x@sha256:...`)."""
    ref = reference.parse_normalized_named(image)
    if tag and ":" in tag:
        return reference.parse_normalized_named("%s@%s" % (ref.name, tag))
    if tag:
        return reference.Reference(ref.domain, ref.path, reference.parse_tag(tag), ref.digest)
    return ref


URL_RESERVED = ":/?#[]@!$&'()*+,;=~"  # RFC 3986's reserved characters, and `~`


def open_import_url(source):
    """fromSrc=<url>: dockerd fetches the tarball itself; a bare host gets http:// like dockerd."""
    if "://" not in source:
        source = "http://" + source
    if re.search(r"[\x00-\x1f\x7f]", source):  # url.Parse's refusal, before any request
        raise InvalidParameter('parse "%s": net/url: invalid control character in URL' % source)
    # What is left outside ASCII goes escaped, as Go's URL.String() sends it.
    source = urllib.parse.quote(source, safe=URL_RESERVED + "%")
    if urllib.parse.urlsplit(source).scheme not in ("http", "https"):
        raise InvalidParameter("unsupported import source %s: only http and https URLs" % source)
    # imported on first use: 0.4 MB and 3 ms at start that a daemon needs only for `docker import <url>`
    from urllib.request import urlopen
    try:
        return urlopen(source, timeout=60)
    except UnicodeError:  # a host name that has no ASCII form (IDNA, or its Host header)
        raise InvalidParameter("error downloading %s: dial tcp: lookup %s: no such host"
                               % (source, urllib.parse.unquote(urllib.parse.urlsplit(source).netloc)))
    except (OSError, ValueError, http.client.HTTPException) as err:
        raise InvalidParameter("error downloading %s: %s" % (source, err))


def check_api_version(text):
    """middleware/version.go: refuse a client speaking a version outside [MIN, API]."""
    requested = version_tuple(text)
    if requested > version_tuple(API_VERSION):
        raise InvalidParameter("client version %s is too new. Maximum supported API version is %s"
                               % (text, API_VERSION))
    if requested < version_tuple(MIN_API_VERSION):
        raise InvalidParameter("client version %s is too old. Minimum supported API version is %s, "
                               "please upgrade your client to a newer version"
                               % (text, MIN_API_VERSION))


def version_info():
    """GET /version: the engine's component list, as `docker version` prints it."""
    details = {"ApiVersion": API_VERSION, "Arch": linux.go_arch()[0],
               "BuildTime": "", "Experimental": "false", "GitCommit": "",
               "GoVersion": "python" + platform.python_version(),
               "KernelVersion": os.uname().release, "MinAPIVersion": MIN_API_VERSION, "Os": "linux"}
    info = {"Platform": {"Name": "pydockerd"},
            "Components": [{"Name": "Engine", "Version": VERSION, "Details": details}],
            "Version": VERSION}
    info.update((key, details[key]) for key in ("ApiVersion", "MinAPIVersion", "GitCommit",
                                                "GoVersion", "Os", "Arch", "KernelVersion",
                                                "BuildTime"))
    return info


def system_info(daemon, server):
    """GET /info: what `docker info` prints, every value read from this host and daemon."""
    config, sysinfo = daemon.config, daemon.sysinfo
    containers = daemon.containers.all()
    running = sum(1 for c in containers if c.running)
    return {
        "ID": daemon.id,
        "Containers": len(containers),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": len(containers) - running,
        "Images": daemon.graph.count(),
        "Driver": daemon.driver.name,
        "DriverStatus": daemon.driver.status(),
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
                    "Log": sorted(logger.DRIVERS)},
        "MemoryLimit": sysinfo.cgroup.memory,
        "SwapLimit": sysinfo.cgroup.swap,
        "KernelMemory": sysinfo.cgroup.kernel_memory,
        "KernelMemoryTCP": sysinfo.cgroup.kernel_memory_tcp,
        "CpuCfsPeriod": sysinfo.cgroup.cfs,
        "CpuCfsQuota": sysinfo.cgroup.cfs,
        "CPUShares": sysinfo.cgroup.cpu_shares,
        "CPUSet": sysinfo.cgroup.cpuset,
        "PidsLimit": sysinfo.cgroup.pids,
        "IPv4Forwarding": sysinfo.ip_forward,
        "BridgeNfIptables": sysinfo.bridge_nf_iptables,
        "BridgeNfIp6tables": sysinfo.bridge_nf_ip6tables,
        "Debug": config.debug,
        "NFd": len(os.listdir("/proc/self/fd")),
        "OomKillDisable": sysinfo.cgroup.oom_kill_disable,
        "NGoroutines": threading.active_count(),
        "SystemTime": logger.format_time(time.time_ns()),
        "LoggingDriver": config.log_driver,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": sysinfo.cgroup_version,
        "NEventsListener": daemon.events.listener_count,
        "KernelVersion": os.uname().release,
        "OperatingSystem": os_release().get("PRETTY_NAME", "Linux"),
        "OSVersion": os_release().get("VERSION_ID", ""),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": daemon.registry.info(),
        "NCPU": os.cpu_count(),
        "MemTotal": memory_total(),
        "GenericResources": None,
        "DockerRootDir": config.root,
        "HttpProxy": os.environ.get("HTTP_PROXY", os.environ.get("http_proxy", "")),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", os.environ.get("https_proxy", "")),
        "NoProxy": os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")),
        "Name": socket.gethostname(),
        "Labels": list(config.labels),
        "ExperimentalBuild": False,
        "ServerVersion": VERSION,
        "Runtimes": {"pydockerd": {"path": os.path.abspath(__file__)}},
        "DefaultRuntime": "pydockerd",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=default"] if seccomp.supported() else [],
        "Warnings": sysinfo.warnings or None,
    }


@functools.lru_cache(maxsize=1)
def os_release():
    """/etc/os-release as a dict (OperatingSystem and OSVersion in /info)."""
    values = {}
    try:
        with open("/etc/os-release") as release:
            for line in release:
                key, sep, value = line.strip().partition("=")
                if sep:
                    values[key] = value.strip('"')
    except OSError:
        pass
    return values


def memory_total():
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------------------------------------
# 6. main(): parse flags, boot, serve, shut down cleanly
# ------------------------------------------------------------------------------------------

class PidFile(object):
    """pkg/pidfile: one daemon per pidfile; a stale file from a dead daemon is replaced."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path) as existing:
                pid = int(existing.read().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid and pid != os.getpid() and process_alive(pid):
            raise ConfigError("pid file found, ensure docker is not running or delete %s" % path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as pidfile:
            pidfile.write("%d" % os.getpid())

    def remove(self):
        try:
            os.unlink(self.path)
        except OSError as err:
            if err.errno != errno.ENOENT:
                log.error("Error removing %s: %s", self.path, err)


def process_alive(pid):
    """A process that exists and is not a zombie: a killed daemon nobody has reaped yet (a
    minimal init may never reap it) must not hold the pidfile forever."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as stat_file:
            return stat_file.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


class LogFormatter(logging.Formatter):
    """logrus's text format, as dockerd prints it: INFO[2026-11-28T05:11:41.123Z] message."""

    def format(self, record):
        level = {"WARNING": "WARN", "CRITICAL": "FATA"}.get(record.levelname, record.levelname)[:4]
        stamp = logger.format_time(int(record.created * 1e9))
        text = "%s[%s] %s" % (level, stamp, record.getMessage())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(config):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if config.debug else LOG_LEVELS[config.log_level.lower()])


def start_listeners(daemon):
    """serveapi: one listener per -H, each served by its own selector thread (drivers/
    httpserver). If one cannot listen, those already bound are closed (their unix sockets
    removed) before the error goes up. The open-files limit is raised first: the connection
    cap of every listener is derived from it."""
    log.debug("open files limit: %d", httpserver.raise_nofile_limit())
    servers = []
    tls_context = make_tls_context(daemon.config)
    try:
        for host in daemon.config.hosts:
            servers.append(open_listener(daemon, host, tls_context))
            log.info("API listen on %s", host)
    except BaseException:
        close_listeners(servers)
        raise
    for server in servers:
        server.serving = True
        threading.Thread(target=server.serve_forever, name="api " + str(server.server_address),
                         daemon=True).start()
    return servers


def open_listener(daemon, host, tls_context):
    """The bound, listening server for one -H; ConfigError if it cannot be."""
    proto, address = parse_host(host)
    try:
        if proto == "unix":
            return UnixAPIServer(address, daemon.config.group, daemon)
        if tls_context is None:
            log.warning("Binding to IP address without --tlsverify is insecure and gives root "
                        "access on this machine to everyone who has access to your network.")
        return TCPAPIServer(address, tls_context, daemon)
    except OSError as err:
        raise ConfigError("Error starting daemon: can't listen on %s: %s" % (host, err)) from None


def stop_accepting(servers):
    """First step of a shutdown: listeners stop taking new connections."""
    for server in servers:
        if server.serving:
            server.shutdown()


def close_listeners(servers):
    """Last step: end what is still connected and remove the unix sockets."""
    for server in servers:
        server.server_close()
        server.close_connections()
        if isinstance(server, UnixAPIServer):
            try:
                os.unlink(server.server_address)
            except OSError:
                pass


def shutdown(daemon, servers):
    """Stop accepting, let streams end with their final chunk, then release the daemon.

    Closing the events service first wakes every `docker events` stream so it ends properly;
    a request still in flight gets a few seconds before its connection is cut.
    """
    stop_accepting(servers)
    if daemon is not None and daemon.events is not None:
        daemon.events.close()
    deadline = time.monotonic() + 5
    while any(server.busy for server in servers) and time.monotonic() < deadline:
        time.sleep(0.02)
    close_listeners(servers)
    if daemon is not None:
        daemon.shutdown()


class ShutdownSignals(object):
    """SIGTERM/SIGINT ask for a clean shutdown; a third one forces exit (trap.Trap)."""

    def __init__(self):
        self.requested = threading.Event()
        self.count = 0
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.handle)

    def handle(self, signum, frame):
        self.count += 1
        if self.count >= 3:
            log.info("Forcing docker daemon shutdown without cleanup; 3 interrupts received")
            os._exit(128 + signum)
        log.info("Processing signal '%s'", signal.Signals(signum).name)
        self.requested.set()

    def wait(self):
        """A signal delivered to another thread does not wake the main one from its wait, yet
        Python runs handlers only in the main thread: it looks again every second."""
        while not self.requested.wait(1):
            pass


def main(argv=None):
    """mainDaemon: flags, pidfile, NewDaemon, API listeners, wait for a signal, shut down."""
    try:
        config = parse_flags(sys.argv[1:] if argv is None else argv)
    except ConfigError as err:
        sys.stderr.write("%s\n" % err)
        return 1
    setup_logging(config)
    signals = ShutdownSignals()
    try:
        pidfile = PidFile(config.pidfile)
    except (ConfigError, OSError) as err:
        log.error("failed to start daemon: %s", err)
        return 1
    fork_server = monitor_module.start_fork_server()
    daemon, servers = None, []
    try:
        daemon = new_daemon(config, registry.RegistryService(config.registry_mirrors,
                                                             config.insecure_registries), fork_server)
        servers = start_listeners(daemon)
        log.info("Daemon has completed initialization")
        log.info("Docker daemon commit=pydockerd version=%s graphdriver=%s", VERSION, daemon.driver.name)
        signals.wait()
        return 0
    except (ConfigError, OSError) as err:
        log.error("failed to start daemon: %s", err)
        return 1
    finally:
        shutdown(daemon, servers)
        fork_server.close()
        pidfile.remove()
        log.info("Daemon shutdown complete")


if __name__ == "__main__":
    sys.exit(main())
