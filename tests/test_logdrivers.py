"""The remote log drivers against real receivers (tests/logreceivers.py), field by field, and
the machinery they share: LogInfo's tag templates and attributes, option checks with dockerd's
words, the Sender's blocking and non-blocking modes, and the dual-logging cache.

The end-to-end half, through the docker CLI and a daemon, is tests/test_logdrivers_cli.py.
"""
import json
import os
import socket
import threading
import time

import msgpack
import pytest

from drivers import fluentd, gelf, journald, local, logger, syslog
from drivers.logger import LogDriverError, LogInfo, Message
from logreceivers import (JournalSocket, StreamReceiver, event_time, forward,  # noqa: F401
                          forward_events, free_port, gelf_tcp_messages, gelf_udp, rsyslog,
                          wait_for)

CONTAINER_ID = "0123456789ab" + "c" * 52
IMAGE_ID = "sha256:" + "f" * 64
INFO = LogInfo(container_id=CONTAINER_ID, container_name="/web", entrypoint="sh",
               args=["-c", "echo hi"], image_id=IMAGE_ID, image_name="busybox:latest",
               created="2026-01-02T03:04:05.123456789Z", env=["PATH=/bin", "APP=shop", "TIER=web"],
               labels={"team": "ops", "com.example.site": "eu"})
# 2015-09-10T10:00:00.123456789Z
T0 = 1441879200 * 10 ** 9 + 123456789


def line(text, source="stdout", partial=False, timestamp=T0):
    return Message(text, source, timestamp, partial)


# -- LogInfo: tags and attributes ---------------------------------------------------------------

def test_default_tag_is_the_short_id():
    assert INFO.tag({}) == "0123456789ab"


def test_tag_template_fields_are_dockerds():
    template = "{{.ID}} {{.FullID}} {{.Name}} {{.ImageID}} {{.ImageFullID}} {{.ImageName}} " \
               "{{.DaemonName}} {{ .Command }}"
    assert INFO.tag({"tag": template}).split(" ", 8) == [
        "0123456789ab", CONTAINER_ID, "web", "f" * 12, IMAGE_ID, "busybox:latest", "docker",
        "sh", "-c echo hi"]


def test_tag_template_with_text_around_fields():
    assert INFO.tag({"tag": "app.{{.Name}}/{{.ID}}"}) == "app.web/0123456789ab"


def test_unknown_template_field_is_a_template_error():
    with pytest.raises(LogDriverError, match=r'executing "log-tag" at <.Nope>: can\'t evaluate '
                                             r'field Nope in type \*logger.Info'):
        INFO.tag({"tag": "{{.Nope}}"})


def test_unclosed_template_action_is_refused():
    with pytest.raises(LogDriverError, match="unclosed action"):
        INFO.tag({"tag": "{{.ID"})


def test_extra_attributes_pick_labels_and_env_by_name_and_regex():
    opts = {"labels": "team,missing", "env": "APP", "env-regex": "^TI"}
    assert INFO.extra_attributes(opts) == {"team": "ops", "APP": "shop", "TIER": "web"}
    assert INFO.extra_attributes({"labels-regex": r"^com\."}) == {"com.example.site": "eu"}


# -- the common options ----------------------------------------------------------------------------

@pytest.mark.parametrize("driver, opts, message", [
    ("syslog", {"foo": "1"}, "unknown log opt 'foo' for syslog log driver"),
    ("journald", {"max-size": "1m"}, "unknown log opt 'max-size' for journald log driver"),
    ("fluentd", {"foo": "1"}, "unknown log opt 'foo' for fluentd log driver"),
    ("gelf", {"gelf-address": "udp://h:1", "foo": "1"}, 'unknown log opt "foo" for gelf log driver'),
    ("json-file", {"mode": "fast"}, "logger: logging mode not supported: fast"),
    ("syslog", {"max-buffer-size": "1m"},
     "logger: max-buffer-size option is only supported with 'mode=non-blocking'"),
    ("syslog", {"mode": "non-blocking", "max-buffer-size": "lots"},
     "error parsing option max-buffer-size: invalid size: 'lots'"),
    ("gelf", {"gelf-address": "udp://h:1", "cache-disabled": "maybe"},
     "invalid value for option cache-disabled: maybe"),
    ("gelf", {"gelf-address": "udp://h:1", "cache-max-file": "0"}, "cache-max-file cannot be less than 1"),
    ("gelf", {}, "gelf-address is a required parameter"),
    ("gelf", {"gelf-address": "http://h:1"}, "gelf: endpoint needs to be TCP or UDP"),
    ("gelf", {"gelf-address": "udp://h"}, "gelf: please provide gelf-address as proto://host:port"),
    ("gelf", {"gelf-address": "tcp://h:1", "gelf-compression-type": "gzip"},
     "compression is only supported on UDP"),
    ("gelf", {"gelf-address": "udp://h:1", "gelf-compression-level": "10"},
     'unknown value "10" for log opt "gelf-compression-level" for gelf log driver'),
    ("gelf", {"gelf-address": "udp://h:1", "gelf-compression-type": "lz4"},
     'unknown value "lz4" for log opt "gelf-compression-type" for gelf log driver'),
    ("gelf", {"gelf-address": "udp://h:1", "gelf-tcp-max-reconnect": "2"},
     '"gelf-tcp-max-reconnect" is only valid for TCP'),
    ("gelf", {"gelf-address": "tcp://h:1", "gelf-tcp-reconnect-delay": "-1"},
     '"gelf-tcp-reconnect-delay" must be a positive integer'),
    ("syslog", {"syslog-address": "127.0.0.1:514"},
     "syslog-address should be in form proto://address, got 127.0.0.1:514"),
    ("syslog", {"syslog-address": "unix:///nonexistent/log"},
     "stat /nonexistent/log: no such file or directory"),
    ("syslog", {"syslog-facility": "local9"}, "invalid syslog facility"),
    ("syslog", {"syslog-format": "rfc9999"}, "Invalid syslog format"),
    ("fluentd", {"fluentd-retry-wait": "soon"}, 'time: invalid duration "soon"'),
    ("fluentd", {"fluentd-retry-wait": "5"}, 'time: missing unit in duration "5"'),
    ("fluentd", {"fluentd-max-retries": "-1"}, 'strconv.ParseUint: parsing "-1": invalid syntax'),
    ("fluentd", {"fluentd-async": "yes"}, 'strconv.ParseBool: parsing "yes": invalid syntax'),
    ("fluentd", {"fluentd-async": "true", "fluentd-async-connect": "true"},
     "conflicting options: cannot specify both 'fluentd-async' and 'fluentd-async-connect"),
    ("fluentd", {"fluentd-address": "a:b:c"}, "invalid fluentd-address a:b:c: address a:b:c: too many colons"),
    ("fluentd", {"fluentd-request-ack": "true"}, "unknown log opt 'fluentd-request-ack'"),
])
def test_bad_options_are_refused_with_dockerds_words(driver, opts, message):
    with pytest.raises(LogDriverError) as caught:
        logger.validate_log_opts(driver, opts)
    assert message in str(caught.value)


def test_common_and_cache_options_are_accepted_by_every_remote_driver():
    common = {"mode": "non-blocking", "max-buffer-size": "4m", "cache-disabled": "false",
              "cache-max-size": "1m", "cache-max-file": "2", "cache-compress": "false"}
    logger.validate_log_opts("syslog", common)
    logger.validate_log_opts("journald", common)
    logger.validate_log_opts("fluentd", dict(common, **{"fluentd-retry-wait": "1m30s"}))
    logger.validate_log_opts("gelf", dict(common, **{"gelf-address": "udp://127.0.0.1:1"}))


def test_fluentd_address_forms():
    assert fluentd.parse_address("") == ("tcp", "127.0.0.1:24224")
    assert fluentd.parse_address("fluent.local") == ("tcp", "fluent.local:24224")
    assert fluentd.parse_address("tcp://10.0.0.1:2000") == ("tcp", "10.0.0.1:2000")
    assert fluentd.parse_address("unix:///run/fluent.sock") == ("unix", "/run/fluent.sock")


def test_readable_log_is_the_cache_for_remote_drivers_and_none_without_it():
    gelf_opts = {"gelf-address": "udp://127.0.0.1:1"}
    cache = os.path.join("/c", logger.CACHE_FILE)
    assert logger.readable_log("gelf", gelf_opts, "/c/j", "/c") == logger.LocalLog(cache, 5, "json-file")
    assert logger.readable_log("gelf", dict(gelf_opts, **{"cache-max-file": "2"}), "/c/j", "/c").max_file == 2
    assert logger.readable_log("gelf", dict(gelf_opts, **{"cache-disabled": "true"}), "/c/j", "/c") is None
    assert logger.readable_log("json-file", {"max-file": "3"}, "/c/j", "/c") == \
        logger.LocalLog("/c/j", 3, "json-file")
    assert logger.readable_log("local", {}, "/c/j", "/c") == \
        logger.LocalLog("/c/local-logs/container.log", 5, "local")
    assert logger.readable_log("none", {}, "/c/j", "/c") is None


# -- syslog, against rsyslogd ----------------------------------------------------------------------

def send_syslog(opts, messages):
    log = syslog.SyslogLogger(INFO, opts)
    for message in messages:
        log.log(message)
    log.close()


@pytest.mark.parametrize("scheme, syslog_format", [
    ("udp", "rfc5424"), ("udp", "rfc5424micro"), ("tcp", "rfc3164"), ("tcp", "rfc5424"),
    ("tcp+tls", "rfc5424micro"), ("unixgram", ""), ("udp", "")])
def test_syslog_reaches_rsyslog_with_priority_tag_pid_and_text(rsyslog, scheme, syslog_format):
    marker = "%s-%s" % (scheme, syslog_format or "default")
    address = {"udp": "udp://127.0.0.1:%d" % rsyslog.udp_port,
               "tcp": "tcp://127.0.0.1:%d" % rsyslog.tcp_port,
               "tcp+tls": "tcp+tls://127.0.0.1:%d" % rsyslog.tls_port,
               "unixgram": "unixgram://" + rsyslog.socket}[scheme]
    opts = {"syslog-address": address, "syslog-format": syslog_format, "tag": "{{.Name}}",
            "syslog-facility": "local3"}
    if scheme == "tcp+tls":
        opts["syslog-tls-ca-cert"] = rsyslog.ca
    send_syslog(opts, [line(b"out " + marker.encode()), line(b""), line(b"err " + marker.encode(), "stderr")])
    out, err = rsyslog.messages_with(marker, 2)
    local3 = 19 * 8
    assert (out["pri"], err["pri"]) == (str(local3 + 6), str(local3 + 3))
    assert out["msg"].strip() == "out " + marker and err["msg"].strip() == "err " + marker
    assert out["procid"] == str(os.getpid())
    assert out["app_name"] == "web"
    if syslog_format.startswith("rfc5424"):
        assert out["hostname"] == socket.gethostname()
        assert out["msgid"] == "web"  # dockerd repeats the tag as MSGID
        assert out["time"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(T0 // 10 ** 9)))
        if syslog_format == "rfc5424micro":
            assert ".123456" in out["time"]


def test_syslog_rfc5424_frame_over_tls_is_octet_counted():
    log = syslog.SyslogLogger.__new__(syslog.SyslogLogger)
    log.network, log.format, log.facility, log.tag, log.pid, log.hostname = \
        "tcp+tls", "rfc5424", 3 << 3, "web", 42, "host"
    frame = log.frame(line(b"hi"))
    length, message = frame.split(b" ", 1)
    assert int(length) == len(message) and message.startswith(b"<30>1 ") and \
        message.endswith(b" host web 42 web - hi\n")


def test_syslog_default_format_is_srslogs_unix_formatter():
    log = syslog.SyslogLogger.__new__(syslog.SyslogLogger)
    log.network, log.format, log.facility, log.tag, log.pid, log.hostname = "udp", "", 3 << 3, "t", 7, "h"
    stamp = time.strftime("%b %e %H:%M:%S", time.localtime(T0 // 10 ** 9))
    assert log.frame(line(b"x", "stderr")) == ("<27>%s t[7]: x\n" % stamp).encode()


def test_syslog_over_a_unix_stream_socket(tmp_path):
    receiver = StreamReceiver(unix_path=str(tmp_path / "syslog.sock"))
    try:
        send_syslog({"syslog-address": "unix://%s" % (tmp_path / "syslog.sock"),
                     "syslog-format": "rfc3164"}, [line(b"one"), line(b"two")])
        data = wait_for(lambda: receiver.received().count(b"\n") >= 2 and receiver.received())
    finally:
        receiver.stop()
    first, second = data.decode().splitlines()
    assert first.startswith("<30>") and first.endswith(" %s 0123456789ab[%d]: one"
                                                       % (socket.gethostname(), os.getpid()))
    assert second.endswith(": two")


def test_syslog_without_an_address_uses_the_local_syslog_socket(rsyslog, monkeypatch):
    monkeypatch.setattr(syslog, "LOCAL_SOCKETS", ("/nonexistent/log", rsyslog.socket))
    send_syslog({}, [line(b"to the local syslog")])
    message, = rsyslog.messages_with("to the local syslog", 1)
    assert message["pri"] == "30" and message["syslogtag"] == "0123456789ab[%d]:" % os.getpid()


def test_syslog_without_a_local_syslog_fails_the_start(monkeypatch):
    monkeypatch.setattr(syslog, "LOCAL_SOCKETS", ("/nonexistent/log",))
    with pytest.raises(LogDriverError, match="^Unix syslog delivery error$"):
        syslog.SyslogLogger(INFO, {})


def test_syslog_start_fails_when_the_tcp_server_is_down():
    port = free_port(socket.SOCK_STREAM)
    with pytest.raises(LogDriverError, match="dial tcp 127.0.0.1:%d: connect: connection refused" % port):
        syslog.SyslogLogger(INFO, {"syslog-address": "tcp://127.0.0.1:%d" % port})


# -- journald -----------------------------------------------------------------------------------------

@pytest.fixture
def journal(tmp_path, monkeypatch):
    receiver = JournalSocket(str(tmp_path / "journal.sock"))
    monkeypatch.setenv(journald.TEST_SOCKET_ENV, receiver.path)
    yield receiver
    receiver.close()


def test_journald_entry_fields(journal):
    log = journald.JournaldLogger(INFO, {"tag": "{{.Name}}", "labels": "com.example.site", "env": "APP"})
    log.log(line(b"hello"))
    log.log(line(b"oops", "stderr", partial=True))
    log.close()
    out, err = journal.entries(2)
    assert out == {"PRIORITY": b"6", "MESSAGE": b"hello", "CONTAINER_ID": b"0123456789ab",
                   "CONTAINER_ID_FULL": CONTAINER_ID.encode(), "CONTAINER_NAME": b"web",
                   "CONTAINER_TAG": b"web", "SYSLOG_IDENTIFIER": b"web",
                   "IMAGE_NAME": b"busybox:latest", "COM_EXAMPLE_SITE": b"eu", "APP": b"shop"}
    assert err["PRIORITY"] == b"3" and err["MESSAGE"] == b"oops"
    assert err["CONTAINER_PARTIAL_MESSAGE"] == b"true"


def test_journald_value_with_a_newline_uses_the_binary_form(journal):
    log = journald.JournaldLogger(INFO, {})
    log.log(line(b"two\nlines"))
    assert journal.entries(1)[0]["MESSAGE"] == b"two\nlines"


def test_journald_large_entry_goes_through_a_sealed_memfd(journal):
    log = journald.JournaldLogger(INFO, {})
    big = bytes(range(256)) * 4096  # 1 MiB: more than a datagram can hold
    log.log(line(big))
    entry = journal.entries(1)[0]
    assert entry["MESSAGE"] == big and entry["CONTAINER_ID"] == b"0123456789ab"
    assert journal.memfd_seals == [journald.SEALS]


def test_journald_refuses_to_start_without_a_journal(tmp_path, monkeypatch):
    monkeypatch.setenv(journald.TEST_SOCKET_ENV, str(tmp_path / "nobody-here"))
    with pytest.raises(LogDriverError, match="^journald is not enabled on this host$"):
        journald.JournaldLogger(INFO, {})


def test_journald_key_sanitizing_matches_dockerd():
    assert journald.sanitize_key("com.example-Site_1") == "COM_EXAMPLE_SITE_1"
    assert journald.sanitize_key("_x") == "X" and journald.sanitize_key("..a") == "A"


# -- gelf ---------------------------------------------------------------------------------------------

def test_gelf_udp_message_fields(gelf_udp):
    opts = {"gelf-address": gelf_udp.address, "tag": "{{.Name}}", "labels": "team", "env": "APP"}
    log = gelf.GelfLogger(INFO, opts)
    log.log(line(b"hello <world>"))
    log.log(line(b"", "stdout"))  # empty lines are not sent
    log.log(line(b"bad", "stderr"))
    log.close()
    out, err = gelf_udp.messages(2)
    assert out == {"version": "1.1", "host": socket.gethostname(), "short_message": "hello <world>",
                   "timestamp": 1441879200.123, "level": 6, "_container_id": CONTAINER_ID,
                   "_container_name": "web", "_image_id": IMAGE_ID, "_image_name": "busybox:latest",
                   "_command": "sh -c echo hi", "_tag": "web", "_created": INFO.created,
                   "_team": "ops", "_APP": "shop"}
    assert err["level"] == 3 and err["short_message"] == "bad"
    assert gelf_udp.datagrams[0][:2] == b"\x1f\x8b"  # gzip by default


def test_gelf_json_is_gos_bytes():
    log = gelf.GelfLogger.__new__(gelf.GelfLogger)
    log.hostname, log._extra = "h", '"_tag":"t"'
    assert log.message(line(b"a\tb<\xff")) == (
        b'{"version":"1.1","host":"h","short_message":"a\\tb\\u003c\\ufffd",'
        b'"timestamp":1441879200.123,"level":6,"_tag":"t"}')


@pytest.mark.parametrize("compression, magic", [("zlib", b"\x78"), ("none", b"{")])
def test_gelf_udp_chunks_a_big_message_and_the_receiver_reassembles_it(gelf_udp, compression, magic):
    text = os.urandom(3000).hex().encode()  # 6000 bytes that do not compress much
    log = gelf.GelfLogger(INFO, {"gelf-address": gelf_udp.address, "gelf-compression-type": compression})
    log.log(line(text))
    log.close()
    message, = gelf_udp.messages(1)
    assert message["short_message"] == text.decode()
    assert gelf_udp.chunk_counts()[0] > 1
    assert all(len(d) <= gelf.CHUNK_SIZE and d[:2] == b"\x1e\x0f" for d in gelf_udp.datagrams)
    assert gelf_udp.datagrams[0][12:13] == magic


def test_gelf_tcp_frames_messages_with_nul():
    receiver = StreamReceiver()
    try:
        log = gelf.GelfLogger(INFO, {"gelf-address": "tcp://127.0.0.1:%d" % receiver.port})
        log.log(line(b"one"))
        log.log(line(b"two", "stderr"))
        data = wait_for(lambda: receiver.received().count(b"\0") >= 2 and receiver.received())
        log.close()
    finally:
        receiver.stop()
    assert data.endswith(b"\0")
    assert [(m["short_message"], m["level"]) for m in gelf_tcp_messages(data)] == [("one", 6), ("two", 3)]


def test_gelf_tcp_start_fails_when_nobody_listens():
    port = free_port(socket.SOCK_STREAM)
    with pytest.raises(LogDriverError) as caught:
        gelf.GelfLogger(INFO, {"gelf-address": "tcp://127.0.0.1:%d" % port})
    assert str(caught.value) == ("gelf: cannot connect to GELF endpoint: 127.0.0.1:%d dial tcp "
                                 "127.0.0.1:%d: connect: connection refused" % (port, port))


# -- fluentd ------------------------------------------------------------------------------------------

def test_msgpack_encoder_round_trips_through_the_msgpack_package():
    values = [None, 0, 127, 128, 255, 65536, 2 ** 40, -1, -33, -200, -70000, -(2 ** 40),
              "", "x" * 31, "y" * 32, "z" * 300, "w" * 70000, list(range(20)),
              fluentd.Map([("k%d" % i, "v") for i in range(20)])]
    for value in values:
        expected = dict(value) if isinstance(value, fluentd.Map) else value
        assert msgpack.unpackb(fluentd.pack(value), raw=False, strict_map_key=False) == expected


def test_fluentd_event_is_tag_time_record(forward):
    opts = {"fluentd-address": "127.0.0.1:%d" % forward.port, "tag": "docker.{{.Name}}",
            "labels": "team", "env-regex": "^APP$"}
    log = fluentd.FluentdLogger(INFO, opts)
    log.log(line(b"hello"))
    log.log(line(b"cut", "stderr", partial=True))
    events = wait_for(lambda: len(forward_events(forward.received())) == 2 and
                      forward_events(forward.received()))
    log.close()
    assert events[0] == ["docker.web", T0 // 10 ** 9,
                         {"container_id": CONTAINER_ID, "container_name": "/web", "source": "stdout",
                          "log": "hello", "team": "ops", "APP": "shop"}, None]
    assert events[1][2]["source"] == "stderr" and events[1][2]["partial_message"] == "true"


def test_fluentd_sub_second_precision_sends_an_event_time(forward):
    log = fluentd.FluentdLogger(INFO, {"fluentd-address": "tcp://127.0.0.1:%d" % forward.port,
                                       "fluentd-sub-second-precision": "true"})
    log.log(line(b"precise"))
    event, = wait_for(lambda: forward_events(forward.received()))
    log.close()
    assert event_time(event[1]) == (T0 // 10 ** 9, T0 % 10 ** 9)


def test_fluentd_over_a_unix_socket(tmp_path):
    receiver = StreamReceiver(unix_path=str(tmp_path / "fluent.sock"))
    try:
        log = fluentd.FluentdLogger(INFO, {"fluentd-address": "unix://%s" % (tmp_path / "fluent.sock")})
        log.log(line(b"via unix"))
        event, = wait_for(lambda: forward_events(receiver.received()))
        log.close()
    finally:
        receiver.stop()
    assert event[2]["log"] == "via unix"


def test_fluentd_start_fails_unless_async(forward):
    forward.stop()
    address = "127.0.0.1:%d" % forward.port
    with pytest.raises(LogDriverError, match="dial tcp %s: connect: connection refused" % address):
        fluentd.FluentdLogger(INFO, {"fluentd-address": address})
    fluentd.FluentdLogger(INFO, {"fluentd-address": address, "fluentd-async": "true"}).close()


def test_fluentd_async_delivers_once_fluentd_comes_up():
    port = free_port(socket.SOCK_STREAM)
    sender = logger.new_logger("fluentd", "", {"fluentd-address": "127.0.0.1:%d" % port,
                                               "fluentd-async": "true", "fluentd-retry-wait": "50ms",
                                               "cache-disabled": "true"}, INFO)
    sender.log(line(b"early"))
    time.sleep(0.3)  # a few failed connects first
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen(1)
    try:
        conn, _ = listener.accept()
        conn.settimeout(10)
        event, = forward_events(conn.recv(65536))
        conn.close()
    finally:
        listener.close()
        sender.close()
    assert event[2]["log"] == "early"


def test_fluentd_gives_up_after_max_retries():
    port = free_port(socket.SOCK_STREAM)
    log = fluentd.FluentdLogger(INFO, {"fluentd-address": "127.0.0.1:%d" % port, "fluentd-async": "true",
                                       "fluentd-retry-wait": "10ms", "fluentd-max-retries": "3"})
    started = time.monotonic()
    with pytest.raises(LogDriverError, match="fluent#write: failed to reconnect, max retry: 3"):
        log.log(line(b"lost"))
    assert time.monotonic() - started < 2


# -- the Sender: modes -----------------------------------------------------------------------------------

class StalledDriver(object):
    """A driver whose destination hangs until released; records what it got."""
    name = "stalled"
    buffer_limit = None

    def __init__(self):
        self.release = threading.Event()
        self.got = []
        self.closed = False

    def log(self, message):
        self.release.wait()
        self.got.append(message.line)

    def close(self):
        self.closed = True


def test_blocking_sender_reports_a_backlog_and_keeps_every_line():
    driver = StalledDriver()
    sender = logger.Sender(driver, blocking=True, max_bytes=100)
    for index in range(30):
        sender.log(line(b"%09d" % index))
    assert sender.backlogged() and sender.dropped == 0
    driver.release.set()
    wait_for(lambda: not sender.backlogged())
    sender.close()
    assert driver.got == [b"%09d" % i for i in range(30)] and driver.closed


def test_non_blocking_sender_drops_the_newest_lines_and_never_backs_up():
    driver = StalledDriver()
    sender = logger.Sender(driver, blocking=False, max_bytes=100)
    for index in range(30):
        sender.log(line(b"%09d" % index))
    assert not sender.backlogged() and sender.dropped > 0
    driver.release.set()
    sender.close()
    assert driver.got == [b"%09d" % i for i in range(len(driver.got))]
    assert len(driver.got) + sender.dropped == 30


def test_close_gives_up_on_a_stalled_destination():
    driver = StalledDriver()
    sender = logger.Sender(driver, blocking=False, max_bytes=1000)
    sender.log(line(b"stuck"))
    started = time.monotonic()
    sender.close(timeout=0.2)
    assert time.monotonic() - started < 1 and not driver.closed


# -- dual logging ----------------------------------------------------------------------------------------

def test_remote_driver_writes_the_cache_that_docker_logs_reads(tmp_path, gelf_udp):
    cache = str(tmp_path / logger.CACHE_FILE)
    log = logger.new_logger("gelf", cache, {"gelf-address": gelf_udp.address}, INFO)
    log.log(line(b"kept"))
    log.log(line(b"too", "stderr"))
    log.close()
    assert [m["short_message"] for m in gelf_udp.messages(2)] == ["kept", "too"]
    assert [(e.line, e.stream) for e in logger.read_log(cache, 5)] == [
        (b"kept\n", "stdout"), (b"too\n", "stderr")]


def test_cache_rotates_and_compresses_and_still_reads_back(tmp_path, gelf_udp):
    cache = str(tmp_path / logger.CACHE_FILE)
    opts = {"gelf-address": gelf_udp.address, "cache-max-size": "1k", "cache-max-file": "3"}
    log = logger.new_logger("gelf", cache, opts, INFO)
    for index in range(60):
        log.log(line(b"line %03d" % index + b"." * 40, timestamp=T0 + index))
    log.close()
    assert sorted(os.listdir(str(tmp_path))) == [
        logger.CACHE_FILE, logger.CACHE_FILE + ".1.gz", logger.CACHE_FILE + ".2.gz"]
    lines = [e.line[:8] for e in logger.read_log(cache, 3)]
    assert lines[-1] == b"line 059" and lines == sorted(lines) and len(lines) < 60


def test_cache_disabled_means_no_local_file(tmp_path, gelf_udp):
    cache = str(tmp_path / logger.CACHE_FILE)
    log = logger.new_logger("gelf", cache, {"gelf-address": gelf_udp.address, "cache-disabled": "1"}, INFO)
    log.log(line(b"remote only"))
    log.close()
    assert gelf_udp.messages(1)[0]["short_message"] == "remote only"
    assert not os.path.exists(cache)


def test_json_file_takes_the_tag_and_attributes_into_attrs(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = logger.new_logger("json-file", path, {"tag": "{{.Name}}", "labels": "team"}, INFO)
    log.log(line(b"x"))
    log.close()
    with open(path) as f:
        assert json.loads(f.read())["attrs"] == {"tag": "web", "team": "ops"}


# -- the local driver ----------------------------------------------------------------------------------

def test_local_record_is_a_length_framed_protobuf_log_entry():
    entry = b"\x0a\x06stdout" + b"\x10\x01" + b"\x1a\x02hi"
    assert local.frame(line(b"hi", timestamp=1)) == b"\x00\x00\x00\x0e" + entry + b"\x00\x00\x00\x0e"
    partial = local.encode_entry(line(b"", "stderr", partial=True, timestamp=300))
    assert partial == b"\x0a\x06stderr" + b"\x10\xac\x02" + b"\x20\x01"


def test_local_log_reads_back_lines_streams_and_times(tmp_path):
    path = str(tmp_path / "local-logs" / "container.log")
    log = logger.new_logger("local", path, {}, INFO)
    log.log(line(b"out", timestamp=T0))
    log.log(line(b"cut", "stderr", partial=True, timestamp=T0 + 1))
    log.close()
    assert [(e.line, e.stream, e.timestamp, e.time) for e in logger.read_log(path, 5, log_format="local")] == [
        (b"out\n", "stdout", T0, "2015-09-10T10:00:00.123456789Z"),
        (b"cut", "stderr", T0 + 1, "2015-09-10T10:00:00.12345679Z")]


def test_local_log_rotates_compressed_by_default(tmp_path):
    path = str(tmp_path / "local-logs" / "container.log")
    log = logger.new_logger("local", path, {"max-size": "1k", "max-file": "3"}, INFO)
    for index in range(100):
        log.log(line(b"line %03d" % index + b"." * 40, timestamp=T0 + index))
    log.close()
    assert sorted(os.listdir(os.path.dirname(path))) == ["container.log", "container.log.1.gz",
                                                         "container.log.2.gz"]
    lines = [e.line[:8] for e in logger.read_log(path, 3, log_format="local")]
    assert lines[-1] == b"line 099" and lines == sorted(lines) and 20 < len(lines) < 100


def test_local_split_records_stops_at_a_torn_record():
    data = local.frame(line(b"whole")) + local.frame(line(b"torn"))[:-3]
    entries, consumed = local.LocalLogger.split_records(data)
    assert [e.line for e in entries] == [b"whole\n"] and consumed == len(local.frame(line(b"whole")))


@pytest.mark.parametrize("opts, message", [
    ({"labels": "a"}, "unknown log opt 'labels' for log driver local"),
    ({"max-file": "1"}, "compression cannot be enabled when max file count is 1"),
    ({"max-file": "x"}, 'invalid value for max-file: x: strconv.Atoi: parsing "x": invalid syntax'),
    ({"max-size": "big"}, "invalid value for max-size: big: invalid size: 'big'"),
])
def test_local_driver_options_are_checked(opts, message):
    with pytest.raises(LogDriverError) as caught:
        logger.validate_log_opts("local", opts)
    assert message in str(caught.value)
    logger.validate_log_opts("local", {"max-file": "1", "compress": "false", "max-size": "10m"})
