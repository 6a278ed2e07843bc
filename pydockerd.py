#!/usr/bin/env python3
"""pydockerd: the Docker daemon, rewritten in plain Python.

Run it as root: `sudo python3 pydockerd.py`. The real `docker` CLI then talks to it on
/var/run/docker.sock, exactly as it talks to dockerd.

This file reads top to bottom, in the order Docker 1.8.2's daemon does things:

  1. Config        dockerd's flags and /etc/docker/daemon.json          (docker/daemon.go, daemon/config.go)
  2. NewDaemon     the boot, one function per step, in the seed's order (daemon/daemon.go NewDaemon)
  3. The stores    events, linkgraph.db and the other state the daemon keeps
  4. The Engine API  routes, versioning, errors, streams and hijack     (api/server/server.go)
  5. main()        parse flags, boot, serve, shut down cleanly          (docker/daemon.go mainDaemon)

The lower layers live in drivers/, one module per Docker package: linux (the syscalls),
trust (libtrust), graphdriver with vfs/overlay/aufs, archive, graph and tags (the image store).
"""
import argparse
import base64
import errno
import functools
import grp
import http.server
import ipaddress
import json
import logging
import os
import platform
import queue
import re
import select
import signal
import socket
import socketserver
import sqlite3
import ssl
import stat
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request

from drivers import (distribution, errdefs, graph as graph_store, graphdriver, linux, reference,
                     registry, tags, trust)
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


ULIMIT_NAMES = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


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
        self.root = config.root
        self.id = ""
        self.driver = None
        self.graph = None
        self.tagstore = None
        self.registry = None
        self.distribution = None
        self.events = None
        self.linkgraph = None
        self.containers = {}
        self.sysinfo = None
        self.shutting_down = False

    def shutdown(self):
        """Daemon.Shutdown: release what the boot acquired, newest first; safe on a half boot."""
        self.shutting_down = True
        if self.events is not None:
            self.events.close()
        if self.linkgraph is not None:
            self.linkgraph.close()
        if self.driver is not None:
            try:
                self.driver.cleanup()
            except OSError as err:
                log.error("Error during graph storage driver.Cleanup(): %s", err)


def new_daemon(config, registry_service):
    """NewDaemon (daemon/daemon.go): bring the daemon up, step by step, in Docker 1.8.2's order.

    The registry service is made by main() and handed in, as Docker 1.8.2's mainDaemon does.

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
    try:
        setup_daemon_root(config)
        setup_tmp_dir(config)
        daemon.driver = init_graph_driver(config)
        verify_log_driver(config)
        configure_kernel_security_support(config, daemon.driver.name)
        daemon.repository = make_containers_dir(config)
        daemon.graph = init_graph(config, daemon.driver)
        configure_volumes(config)
        daemon.id = load_daemon_id(config)
        init_trust_store(config)
        daemon.events = init_events()
        init_tag_store(config, daemon, registry_service)
        init_network_controller(config)
        daemon.linkgraph = open_linkgraph(config)
        daemon.sysinfo = check_sysinfo()
        init_exec_driver(config, daemon.sysinfo)
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
    """
    tmp = os.environ.get("DOCKER_TMPDIR") or os.path.join(config.root, "tmp")
    try:
        os.makedirs(tmp, 0o700, exist_ok=True)
        real_tmp = os.path.realpath(tmp)
    except OSError as err:
        raise ConfigError("Unable to get the TempDir under %s: %s" % (config.root, err))
    os.environ["TMPDIR"] = real_tmp
    import tempfile
    tempfile.tempdir = real_tmp


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


LOG_DRIVERS = {"json-file": ("max-size", "max-file", "labels", "env", "env-regex", "compress",
                             "tag"),
               "none": ()}


@boot_step
def verify_log_driver(config):
    """logger.GetLogDriver: the default log driver must exist and accept its --log-opt keys."""
    opts = LOG_DRIVERS.get(config.log_driver)
    if opts is None:
        raise ConfigError("error finding the logging driver: logger: no log driver named '%s' "
                          "is registered" % config.log_driver)
    for key in config.log_opts:
        if key not in opts:
            raise ConfigError("unknown log opt '%s' for %s log driver" % (key, config.log_driver))
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
def init_graph(config, driver):
    """graph.NewGraph: the image store under <root>/graph, on top of the graph driver.

    Images and layers are loaded from disk here; tags and events are joined to the graph
    later in the boot (init_tag_store), in the order Docker 1.8.2 built them.
    """
    return graph_store.Graph(config.root, driver, tagstore=None, docker_version=VERSION)


@boot_step
def configure_volumes(config):
    """configureVolumes: <root>/volumes holds the local volume driver's data."""
    os.makedirs(os.path.join(config.root, "volumes"), 0o700, exist_ok=True)


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
        daemon.tagstore = graph.tagstore = tags.TagStore(path)
    except (OSError, ValueError) as err:
        raise ConfigError("Couldn't create Tag store repositories-%s: %s" % (graph.driver.name, err))
    graph.events = daemon.events.log
    daemon.registry = registry_service
    metadata = distribution.V2MetadataService(os.path.join(graph.root, "distribution"))
    daemon.distribution = distribution.Config(registry_service, graph, daemon.tagstore, metadata,
                                              events=daemon.events.log)


@boot_step
def init_network_controller(config):
    """initNetworkController: check the bridge settings the default network will use.

    The default bridge, its iptables chains and ip_forward come with the networking issue;
    this step already parses and reports them so a bad value fails the boot here.
    """
    if config.disable_bridge:
        log.info("Default bridge (docker0) is disabled (-b none)")
        return
    if config.fixed_cidr and config.bip:
        bip = ipaddress.ip_network(config.bip, strict=False)
        if not ipaddress.ip_network(config.fixed_cidr).subnet_of(bip):
            raise ConfigError("Error initializing network controller: fixed-cidr %s is not in "
                              "the bridge network %s" % (config.fixed_cidr, bip))
    log.debug("Default bridge %s, bip %s, mtu %d", config.bridge or "docker0",
              config.bip or "(automatic)", config.mtu)


@boot_step
def open_linkgraph(config):
    """graphdb.NewSqliteConn: <root>/linkgraph.db, container names and --link edges."""
    try:
        return LinkGraph(os.path.join(config.root, "linkgraph.db"))
    except sqlite3.Error as err:
        raise ConfigError("Error opening %s: %s" % (os.path.join(config.root, "linkgraph.db"), err))


@boot_step
def check_sysinfo():
    """sysinfo.New: which cgroup controllers this host offers; the devices cgroup is required.

    Without the devices controller a container keeping CAP_MKNOD could create and open the
    host's disks, so Docker refuses to start rather than run containers without it.
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
    """execdrivers.NewDriver: the native exec driver and its --exec-opt settings."""
    for option in config.exec_opts:
        key, sep, value = option.partition("=")
        key = key.strip().lower()
        if not sep or key not in EXEC_OPTS:
            raise ConfigError("Unknown option %s" % key)
        if value.strip() not in EXEC_OPTS[key]:
            raise ConfigError("%s=%s is not supported by pydockerd (supported: %s)"
                              % (key, value.strip(), ", ".join(EXEC_OPTS[key])))
    os.makedirs(os.path.join(config.exec_root, "execdriver", "native"), 0o700, exist_ok=True)


@boot_step
def restore(daemon):
    """daemon.restore: register the containers found on disk.

    A container directory whose config cannot be read is reported and skipped, so one
    corrupt file never stops the daemon from serving the rest.
    """
    for name in sorted(os.listdir(daemon.repository)):
        path = os.path.join(daemon.repository, name, "config.v2.json")
        try:
            with open(path) as config_file:
                daemon.containers[name] = json.load(config_file)
        except (OSError, ValueError) as err:
            log.error("Failed to load container %s: %s", name, err)
    log.debug("Loaded %d containers", len(daemon.containers))


# ------------------------------------------------------------------------------------------
# 3. The stores: events, linkgraph.db, sysinfo
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


def event_matches(message, filters):
    """events.Filter: type, event, container, image and label filters; values OR, keys AND."""
    attributes = message["Actor"]["Attributes"]
    checks = {
        "type": lambda values: message["Type"] in values,
        "event": lambda values: message["Action"] in values or message["Action"].split(":")[0] in values,
        "container": lambda values: message["Type"] == "container" and _matches_id_or_name(
            message["Actor"]["ID"], attributes.get("name"), values),
        "image": lambda values: _matches_image(message, values),
        "label": lambda values: any(_matches_label(attributes, value) for value in values),
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
            self.db.execute("BEGIN")
            for statement in self.SCHEMA:
                self.db.execute(statement)
            if not self.db.execute("SELECT 1 FROM entity WHERE id = '0'").fetchone():
                self.db.execute("INSERT INTO entity (id) VALUES ('0')")
                self.db.execute("INSERT INTO edge (entity_id, name) VALUES ('0', '/')")
            self.db.execute("COMMIT")

    def close(self):
        with self.lock:
            self.db.close()


class SysInfo(object):
    """pkg/sysinfo: what the kernel's cgroups can enforce, and the warnings `docker info` shows."""

    def __init__(self, version, controllers, swap, cfs):
        self.cgroup_version = version
        self.controllers = controllers
        self.memory = "memory" in controllers
        self.swap = swap
        self.cpu_shares = "cpu" in controllers
        self.cfs = cfs
        self.cpuset = "cpuset" in controllers
        self.pids = "pids" in controllers
        self.devices = "devices" in controllers or version == "2"
        self.ip_forward = _read_sysctl("net/ipv4/ip_forward") == "1"
        self.bridge_nf_iptables = _read_sysctl("net/bridge/bridge-nf-call-iptables") == "1"
        self.bridge_nf_ip6tables = _read_sysctl("net/bridge/bridge-nf-call-ip6tables") == "1"

    @classmethod
    def probe(cls):
        """Read the mounted cgroup hierarchies: v2 if /sys/fs/cgroup is cgroup2, else v1."""
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            with open("/sys/fs/cgroup/cgroup.controllers") as controllers:
                names = set(controllers.read().split())
            return cls("2", names, "memory" in names, "cpu" in names)
        mounts = cgroup_v1_mounts()
        memory = mounts.get("memory")
        swap = bool(memory) and os.path.exists(os.path.join(memory, "memory.memsw.limit_in_bytes"))
        cpu = mounts.get("cpu")
        cfs = bool(cpu) and os.path.exists(os.path.join(cpu, "cpu.cfs_quota_us"))
        return cls("1", set(mounts), swap, cfs)

    @property
    def warnings(self):
        """The same WARNING lines dockerd's `docker info` prints for missing features."""
        wanted = [(self.memory, "WARNING: No memory limit support"),
                  (self.swap, "WARNING: No swap limit support"),
                  (self.cfs, "WARNING: No cpu cfs quota support"),
                  (self.cfs, "WARNING: No cpu cfs period support"),
                  (self.cpu_shares, "WARNING: No cpu shares support"),
                  (self.cpuset, "WARNING: No cpuset support"),
                  (self.pids, "WARNING: No pids limit support"),
                  (self.ip_forward, "WARNING: IPv4 forwarding is disabled"),
                  (self.bridge_nf_iptables, "WARNING: bridge-nf-call-iptables is disabled"),
                  (self.bridge_nf_ip6tables, "WARNING: bridge-nf-call-ip6tables is disabled")]
        return [text for present, text in wanted if not present]


def cgroup_v1_mounts():
    """Each v1 controller's mount point, from /proc/self/mountinfo (cgroups.FindCgroupMountpoint)."""
    mounts = {}
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            separator = fields.index("-")
            if fields[separator + 1] != "cgroup":
                continue
            for option in fields[separator + 3].split(","):
                mounts.setdefault(option, linux.unescape_mount_path(fields[4]))
    return mounts


def _read_sysctl(name):
    try:
        with open("/proc/sys/" + name) as value:
            return value.read().strip()
    except OSError:
        return ""


# ------------------------------------------------------------------------------------------
# 4. The Engine API: routes, versioning, errors, streams and the connection hijack
# ------------------------------------------------------------------------------------------

MAX_JSON_BODY = 16 * 1024 * 1024
JSON_CONTENT_TYPE = "application/json"
RAW_STREAM_TYPE = "application/vnd.docker.raw-stream"
VERSION_PATH = re.compile(r"^/v(?P<version>[0-9]+\.[0-9]+)(?P<rest>/.*)$")


def version_tuple(text):
    major, minor = text.split(".")
    return int(major), int(minor)


def _reject_json_constant(name):
    """json.loads accepts NaN and Infinity; Go's decoder (and so dockerd) does not."""
    raise ValueError("invalid character '%s' looking for beginning of value" % name[0])


def decode_json(body):
    """httputils.ReadJSON: one JSON value, nothing after it; every failure is a 400."""
    try:
        text = body.decode("utf-8")
        decoder = json.JSONDecoder(parse_constant=_reject_json_constant)
        value, end = decoder.raw_decode(text.lstrip())
    except RecursionError:
        raise InvalidParameter("invalid JSON: exceeded max depth") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidParameter("invalid JSON: %s" % err) from None
    if text.lstrip()[end:].strip():
        raise InvalidParameter("unexpected content after JSON")
    return value


def stdcopy_frame(stream_id, data):
    """pkg/stdcopy: one multiplexed frame, [stream, 0, 0, 0, size (big-endian)] + payload.

    Without a TTY, stdout and stderr share one connection; the 8-byte header says which
    stream each payload belongs to (1 stdout, 2 stderr) so the client can split them again.
    """
    return bytes((stream_id, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


class ChunkedReader(object):
    """A file-like reader over an HTTP/1.1 chunked request body (the CLI streams uploads so)."""

    def __init__(self, rfile):
        self.rfile = rfile
        self.left = 0
        self.done = False

    def read(self, size=-1):
        out = []
        while not self.done and (size < 0 or size > 0):
            if self.left == 0:
                self._next_chunk()
                continue
            want = self.left if size < 0 else min(size, self.left)
            data = self.rfile.read(want)
            if not data:
                raise InvalidParameter("unexpected EOF in chunked request body")
            out.append(data)
            self.left -= len(data)
            if size > 0:
                size -= len(data)
            if self.left == 0:
                self.rfile.readline()
        return b"".join(out)

    def _next_chunk(self):
        line = self.rfile.readline(1024)
        try:
            self.left = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise InvalidParameter("malformed chunked encoding") from None
        if self.left == 0:
            while self.rfile.readline(65537).strip():
                pass
            self.done = True


class LimitedReader(object):
    """A file-like reader over a Content-Length request body."""

    def __init__(self, rfile, length):
        self.rfile = rfile
        self.left = length

    def read(self, size=-1):
        if self.left <= 0:
            return b""
        want = self.left if size < 0 else min(size, self.left)
        data = self.rfile.read(want)
        self.left -= len(data)
        if len(data) < want and (size < 0 or not data):
            self.left = 0
        return data


class Route(object):
    """One API route: a method, a path pattern with named groups, and the handler's name."""

    def __init__(self, method, pattern, handler):
        self.method = method
        self.pattern = re.compile("^" + pattern + "$")
        self.handler = handler


ROUTES = [
    Route("GET", r"/_ping", "get_ping"),
    Route("HEAD", r"/_ping", "get_ping"),
    Route("GET", r"/version", "get_version"),
    Route("GET", r"/info", "get_info"),
    Route("GET", r"/events", "get_events"),
    Route("GET", r"/system/df", "get_system_df"),
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
    Route("DELETE", r"/images/(?P<name>.+)", "delete_image"),
]


class APIServerMixin(object):
    """What every listener shares: the daemon, one thread per connection, tracked connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def setup_api(self, daemon):
        self.daemon = daemon
        self.serving = False
        self.busy = 0
        self.connections = set()
        self.connections_lock = threading.Lock()

    def track(self, sock, active):
        with self.connections_lock:
            (self.connections.add if active else self.connections.discard)(sock)

    def count_request(self, delta):
        """Requests in flight (not idle keep-alive connections): shutdown waits for these."""
        with self.connections_lock:
            self.busy += delta

    def close_connections(self):
        """Shutdown: end idle keep-alive and streaming connections so their threads exit."""
        with self.connections_lock:
            for sock in list(self.connections):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class UnixAPIServer(APIServerMixin, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The API on a unix socket (listeners.Init, unix_socket.go).

    The socket is bound, made unreachable (mode 000), given to root:<group> and mode 0660,
    and only then listens: there is never a moment when a default umask lets anyone connect.
    Access to this socket is root on the host.
    """

    def __init__(self, path, group, daemon):
        self.group = group
        self.setup_api(daemon)
        socketserver.UnixStreamServer.__init__(self, path, APIHandler)

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

    def get_request(self):
        request, _ = self.socket.accept()
        return request, ("unix", 0)


def socket_group_id(name, path):
    """The gid of -G (default `docker`); without that group the socket stays root-only."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name != "docker":
            raise ConfigError("group %s not found" % name)
        log.warning("could not change group %s to docker: group docker not found", path)
        return 0


class TCPAPIServer(APIServerMixin, socketserver.ThreadingMixIn, socketserver.TCPServer):
    """The API on tcp://host:port, with TLS when --tls or --tlsverify is given."""

    def __init__(self, address, tls_context, daemon):
        self.tls_context = tls_context
        self.setup_api(daemon)
        socketserver.TCPServer.__init__(self, address, APIHandler)

    def get_request(self):
        request, address = self.socket.accept()
        if self.tls_context is not None:
            request = self.tls_context.wrap_socket(request, server_side=True,
                                                   do_handshake_on_connect=False)
        return request, address


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


class APIHandler(http.server.BaseHTTPRequestHandler):
    """One connection: HTTP/1.1 keep-alive, every request routed to a handler method.

    Handlers raise errdefs errors; dispatch turns them into dockerd's JSON error bodies.
    """

    protocol_version = "HTTP/1.1"
    server_version = SERVER_HEADER
    sys_version = ""
    timeout = None

    # -- connection setup -------------------------------------------------------------------

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError) as err:
                log.debug("TLS handshake failed: %s", err)
                self.request.close()
                raise
            self.request.settimeout(None)
        super().setup()
        self.server.track(self.request, True)

    def finish(self):
        self.server.track(self.request, False)
        try:
            super().finish()
        except OSError:
            pass

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, socket.timeout):
            pass

    def log_message(self, fmt, *args):
        log.debug("%s - " + fmt, self.address_string(), *args)

    def address_string(self):
        return str(self.client_address[0]) if self.client_address else "unix"

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
            getattr(self, route.handler)(**params)
        except errdefs.DockerError as err:
            self.send_error_json(err.status, err.message)
        except Exception as err:  # a bug must cost one request, not the connection's thread
            log.exception("Handler for %s %s returned error", self.command, self.path)
            self.send_error_json(500, str(err) or err.__class__.__name__)
        finally:
            self.server.count_request(-1)
        self.drain_body()

    def route(self):
        parsed = urllib.parse.urlsplit(self.path)
        self.query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        path = urllib.parse.unquote(parsed.path)
        self.api_version = API_VERSION
        versioned = VERSION_PATH.match(path)
        if versioned:
            self.api_version = versioned.group("version")
            path = versioned.group("rest")
            check_api_version(self.api_version)
        for route in ROUTES:
            match = route.pattern.match(path)
            if match and route.method == self.command:
                return route, match.groupdict()
        raise NotFound("page not found")

    # -- request bodies ---------------------------------------------------------------------

    def make_body_reader(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return ChunkedReader(self.rfile)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return LimitedReader(self.rfile, 0)
        return LimitedReader(self.rfile, length)

    def drain_body(self):
        """Keep-alive needs the rest of the request body read before the next request."""
        if self.close_connection:
            return
        try:
            for _ in range(64):
                if not self.body_reader.read(1 << 20):
                    return
        except (errdefs.DockerError, OSError):
            pass
        self.close_connection = True

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
        return decode_json(body)

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
        value = self.query_value(name, "")
        if value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidParameter("invalid value for %s: %s" % (name, value)) from None

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

    def send_no_content(self, status=204):
        self.send_standard_headers(status)
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
        """http.server's own errors (huge headers, bad request lines) as JSON too.

        A garbled request line reads as HTTP/0.9, which has no status line; answer in HTTP/1.1
        like Go's server, so every client sees a status code.
        """
        self.close_connection = True
        self.request_version = "HTTP/1.1"
        try:
            self.send_json({"message": message or self.responses.get(code, ("error",))[0]}, code)
        except OSError:
            pass

    def start_stream(self, content_type=JSON_CONTENT_TYPE, status=200):
        """Begin a chunked response and flush its headers at once (events, progress, logs)."""
        self.send_standard_headers(status, content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, data):
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_stream(self):
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

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
        return self.connection

    def client_gone(self):
        """Whether the client closed its end: a readable socket that yields no bytes."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
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
        usage = self.daemon.graph.disk_usage()
        self.send_json({"LayersSize": usage["LayersSize"], "Images": usage["Images"],
                        "Containers": [], "Volumes": [], "BuildCache": []})

    def get_events(self):
        """GET /events: replay since..until from the history, then stream until `until`."""
        since, until = self.query_time("since"), self.query_time("until")
        filters = self.query_filters()
        history, live = self.daemon.events.subscribe()
        try:
            self.start_stream()
            self.stream_events(history, live, since, until, filters)
            self.end_stream()
        except OSError:
            self.close_connection = True
        finally:
            self.daemon.events.unsubscribe(live)

    def stream_events(self, history, live, since, until, filters):
        def wanted(message):
            seconds = message["timeNano"] / 1e9
            return ((since is None or seconds >= since) and (until is None or seconds <= until)
                    and event_matches(message, filters))

        if since is not None or until is not None:
            for message in history:
                if wanted(message):
                    self.write_json_message(message, b"\n")
        while until is None or time.time() <= until:
            wait = 1.0 if until is None else max(0.0, min(1.0, until - time.time()))
            try:
                message = live.get(timeout=wait)
            except queue.Empty:
                if self.client_gone():
                    return
                continue
            if message is None:
                return
            if wanted(message):
                self.write_json_message(message, b"\n")

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
        filters = self.query_filters()
        dangling_only = filters.pop("dangling", ["true"]) != ["false"]
        self.send_json(self.daemon.graph.prune(dangling_only=dangling_only, filters=filters))

    def post_images_create(self):
        """`docker pull` (fromImage) and `docker import` (fromSrc)."""
        if self.query_value("fromImage"):
            return self.pull_image()
        source = self.query_value("fromSrc")
        if not source:
            raise InvalidParameter("fromSrc or fromImage is required")
        ref = import_reference(self.query_value("repo"), self.query_value("tag"))
        changes = [line for value in self.query.get("changes", []) for line in value.split("\n")
                   if line.strip()]
        stream = self.body_reader if source == "-" else open_import_url(source)
        with self.progress_stream() as progress:
            image_id = self.daemon.graph.import_image(stream, ref, changes,
                                                      self.query_value("message"))
            progress({"status": image_id})

    def pull_image(self):
        """`docker pull`: the tag (or a digest, which the CLI also sends as `tag`) from a registry."""
        ref = pull_reference(self.query_value("fromImage"), self.query_value("tag"))
        with self.progress_stream() as progress:
            distribution.pull(self.daemon.distribution, ref, self.registry_auth(),
                              self.query_value("platform") or None, progress)

    def post_image_push(self, name):
        """`docker push`: one tag, or with none every tag of the repository."""
        ref = reference.parse_normalized_named(name)
        tag = self.query_value("tag")
        if tag:
            ref = reference.Reference(ref.domain, ref.path, reference.parse_tag(tag))
        with self.progress_stream() as progress:
            distribution.push(self.daemon.distribution, ref, self.registry_auth(), progress)

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
        """`docker load`: a docker-archive or OCI layout tar in the (chunked) request body."""
        quiet = self.query_bool("quiet")
        with self.progress_stream() as progress:
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

    def progress_stream(self):
        return ProgressStream(self)


class ProgressStream(object):
    """A JSON progress stream (jsonmessage) whose 200 is sent with the first message.

    An error before any message is still a real HTTP error with dockerd's status code; once
    the stream has begun, the status is spent, so the error travels as an errorDetail message,
    exactly how dockerd reports a pull or load that fails half way.
    """

    def __init__(self, handler):
        self.handler = handler
        self.started = False

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
            self.send({"errorDetail": {"message": text}, "error": text})
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

    def __init__(self, handler, content_type):
        self.handler = handler
        self.content_type = content_type
        self.buffer = bytearray()
        self.started = False

    def write(self, data):
        self.buffer += data
        if len(self.buffer) >= self.SIZE:
            self.flush()
        return len(data)

    def flush(self):
        if not self.started:
            self.handler.start_stream(self.content_type)
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


def open_import_url(source):
    """fromSrc=<url>: dockerd fetches the tarball itself; a bare host gets http:// like dockerd."""
    if "://" not in source:
        source = "http://" + source
    if urllib.parse.urlsplit(source).scheme not in ("http", "https"):
        raise InvalidParameter("unsupported import source %s: only http and https URLs" % source)
    try:
        return urllib.request.urlopen(source, timeout=60)
    except (OSError, ValueError) as err:
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


GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
           "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
           "riscv64": "riscv64"}


def version_info():
    """GET /version: the engine's component list, as `docker version` prints it."""
    details = {"ApiVersion": API_VERSION, "Arch": GO_ARCH.get(platform.machine(), platform.machine()),
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
    running = sum(1 for c in daemon.containers.values() if c.get("State", {}).get("Running"))
    paused = sum(1 for c in daemon.containers.values() if c.get("State", {}).get("Paused"))
    return {
        "ID": daemon.id,
        "Containers": len(daemon.containers),
        "ContainersRunning": running - paused,
        "ContainersPaused": paused,
        "ContainersStopped": len(daemon.containers) - running,
        "Images": daemon.graph.count(),
        "Driver": daemon.driver.name,
        "DriverStatus": daemon.driver.status(),
        "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Authorization": None,
                    "Log": sorted(LOG_DRIVERS)},
        "MemoryLimit": sysinfo.memory,
        "SwapLimit": sysinfo.swap,
        "KernelMemory": False,
        "KernelMemoryTCP": False,
        "CpuCfsPeriod": sysinfo.cfs,
        "CpuCfsQuota": sysinfo.cfs,
        "CPUShares": sysinfo.cpu_shares,
        "CPUSet": sysinfo.cpuset,
        "PidsLimit": sysinfo.pids,
        "IPv4Forwarding": sysinfo.ip_forward,
        "BridgeNfIptables": sysinfo.bridge_nf_iptables,
        "BridgeNfIp6tables": sysinfo.bridge_nf_ip6tables,
        "Debug": config.debug,
        "NFd": len(os.listdir("/proc/self/fd")),
        "OomKillDisable": sysinfo.memory,
        "NGoroutines": threading.active_count(),
        "SystemTime": rfc3339_nano(time.time_ns()),
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
        "SecurityOptions": [],
        "Warnings": sysinfo.warnings or None,
    }


def rfc3339_nano(nanoseconds):
    """Go's time.RFC3339Nano in UTC, the timestamp format of every Docker API."""
    seconds, fraction = divmod(nanoseconds, 10 ** 9)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fraction:
        text += ("." + "%09d" % fraction).rstrip("0")
    return text + "Z"


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
# 5. main(): parse flags, boot, serve, shut down cleanly
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
        if pid and pid != os.getpid() and os.path.exists("/proc/%d" % pid):
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


class LogFormatter(logging.Formatter):
    """logrus's text format, as dockerd prints it: INFO[2026-11-28T05:11:41.123Z] message."""

    def format(self, record):
        level = {"WARNING": "WARN", "CRITICAL": "FATA"}.get(record.levelname, record.levelname)[:4]
        text = "%s[%s] %s" % (level, rfc3339_nano(int(record.created * 1e9)), record.getMessage())
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
    """serveapi: one listener per -H, each serving in its own thread."""
    servers = []
    tls_context = make_tls_context(daemon.config)
    try:
        for host in daemon.config.hosts:
            proto, address = parse_host(host)
            if proto == "unix":
                server = UnixAPIServer(address, daemon.config.group, daemon)
            else:
                if tls_context is None:
                    log.warning("Binding to IP address without --tlsverify is insecure and gives "
                                "root access on this machine to everyone who has access to your "
                                "network.")
                server = TCPAPIServer(address, tls_context, daemon)
            servers.append(server)
            log.info("API listen on %s", host)
    except OSError as err:
        close_listeners(servers)
        raise ConfigError("Error starting daemon: can't listen on %s: %s" % (host, err))
    for server in servers:
        server.serving = True
        threading.Thread(target=server.serve_forever, name="api " + str(server.server_address),
                         daemon=True).start()
    return servers


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
        while not self.requested.wait(3600):
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
    daemon, servers = None, []
    try:
        daemon = new_daemon(config, registry.RegistryService(config.registry_mirrors,
                                                             config.insecure_registries))
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
        pidfile.remove()
        log.info("Daemon shutdown complete")


if __name__ == "__main__":
    sys.exit(main())
