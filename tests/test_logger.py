"""drivers/logger.py: the json-file format byte for byte, the copier, rotation and reading."""
import calendar
import json
import os

import pytest

from drivers import logger
from drivers.logger import Copier, Lines, LogDriverError, Message

# 2015-09-10T10:00:00Z plus 123456789 ns.
T0 = 1441879200 * 10 ** 9


def record(line, source="stdout", timestamp=T0 + 123456789, partial=False, attrs=""):
    return logger.marshal_message(Message(line, source, timestamp, partial), attrs)


def test_record_is_dockerds_json_file_line():
    assert record(b"hi") == \
        b'{"log":"hi\\n","stream":"stdout","time":"2015-09-10T10:00:00.123456789Z"}\n'


def test_time_drops_trailing_zeros_like_go_rfc3339nano():
    assert logger.format_time(T0 + 120000000) == "2015-09-10T10:00:00.12Z"


def test_time_on_a_whole_second_has_no_fraction():
    assert logger.format_time(T0) == "2015-09-10T10:00:00Z"


def test_parse_time_reads_back_what_format_time_wrote():
    assert logger.parse_time(logger.format_time(T0 + 5)) == T0 + 5


def test_parse_time_agrees_with_calendar_on_leap_days_and_centuries():
    for date in ((2000, 2, 29), (2100, 3, 1), (1970, 1, 1), (2024, 12, 31), (1600, 2, 29)):
        text = "%04d-%02d-%02dT01:02:03Z" % date
        assert logger.parse_time(text) == calendar.timegm(date + (1, 2, 3)) * 10 ** 9


def test_parse_time_honours_an_offset():
    assert logger.parse_time("2015-09-10T12:00:00+02:00") == T0


def test_stderr_records_name_their_stream():
    assert b'"stream":"stderr"' in record(b"x", source="stderr")


def test_partial_line_is_written_without_a_newline():
    assert record(b"abc", partial=True).startswith(b'{"log":"abc","stream"')


def test_empty_line_keeps_its_newline():
    assert record(b"").startswith(b'{"log":"\\n",')


def test_escapes_match_dockerd():
    # tab as \u0009, HTML characters escaped, quotes and backslashes, \r short.
    assert logger.encode_log_text(b'a\tb<c>&"\\\r') == \
        '"a\\u0009b\\u003cc\\u003e\\u0026\\"\\\\\\r"'


def test_invalid_utf8_becomes_replacement_escape_per_byte():
    assert logger.encode_log_text(b"\xff\xfe") == '"\\ufffd\\ufffd"'


def test_valid_non_ascii_is_written_raw():
    assert record("héllo".encode()).startswith('{"log":"héllo\\n"'.encode())


def test_line_separators_are_escaped():
    assert logger.encode_log_text("\u2028".encode()) == '"\\u2028"'


def test_attrs_come_between_stream_and_time():
    line = record(b"x", attrs='{"a":"b"}')
    assert b'"stream":"stdout","attrs":{"a":"b"},"time":' in line


def test_every_record_is_valid_json():
    decoded = json.loads(record(b"\x00\x1b[31mred\xff"))
    assert decoded["log"] == "\x00\x1b[31mred\ufffd\n"


# --- the copier ------------------------------------------------------------------------------

def messages(items):
    """What Copier.feed returned, one Message per line."""
    return [m for item in items for m in (item.messages() if isinstance(item, Lines) else [item])]


def test_copier_emits_one_message_per_line():
    lines = messages(Copier("stdout").feed(b"one\ntwo\nthr"))
    assert [(m.line, m.partial) for m in lines] == [(b"one", False), (b"two", False)]


def test_copier_hands_on_the_lines_of_one_read_as_one_run_with_one_time():
    items = Copier("stderr").feed(b"one\n\nthree\nfo")
    assert len(items) == 1 and isinstance(items[0], Lines)
    assert (items[0].data, items[0].source) == (b"one\n\nthree\n", "stderr")
    assert [(m.line, m.timestamp) for m in items[0].messages()] == [
        (b"one", items[0].timestamp), (b"", items[0].timestamp), (b"three", items[0].timestamp)]


def test_copier_joins_a_line_split_across_reads():
    copier = Copier("stdout")
    copier.feed(b"hel")
    assert [m.line for m in messages(copier.feed(b"lo\n"))] == [b"hello"]


def test_copier_cuts_a_long_line_into_partial_messages():
    lines = messages(Copier("stdout", buffer_size=4).feed(b"abcdefghij\n"))
    assert [(m.line, m.partial) for m in lines] == [
        (b"abcd", True), (b"efgh", True), (b"ij", False)]


def test_copier_cuts_a_long_line_among_short_ones_of_the_same_read():
    lines = messages(Copier("stdout", buffer_size=4).feed(b"ab\nabcdefg\nabc\nx"))
    assert [(m.line, m.partial) for m in lines] == [
        (b"ab", False), (b"abcd", True), (b"efg", False), (b"abc", False)]


def test_copier_close_logs_the_unterminated_rest_as_partial():
    copier = Copier("stderr")
    copier.feed(b"no newline")
    assert [(m.line, m.partial, m.source) for m in copier.close()] == [
        (b"no newline", True, "stderr")]


def test_copier_close_with_nothing_left_logs_nothing():
    copier = Copier("stdout")
    copier.feed(b"done\n")
    assert copier.close() == []


# --- the json-file driver and rotation ---------------------------------------------------------

def write_lines(log, count, width=10):
    for index in range(count):
        log.log(Message(b"%0*d" % (width, index), "stdout", T0, False))


def test_log_file_is_created_mode_0600(tmp_path):
    path = str(tmp_path / "c-json.log")
    logger.new_logger("json-file", path).close()
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_log_appends_records(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = logger.new_logger("json-file", path)
    write_lines(log, 3)
    log.close()
    assert [json.loads(line)["log"] for line in open(path)] == [
        "0000000000\n", "0000000001\n", "0000000002\n"]


def test_rotation_keeps_max_file_files(tmp_path):
    path = str(tmp_path / "c-json.log")
    size = len(record(b"0" * 10, timestamp=T0))
    log = logger.new_logger("json-file", path, {"max-size": str(2 * size), "max-file": "3"})
    write_lines(log, 7)
    log.close()
    assert sorted(os.listdir(str(tmp_path))) == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    lines = [json.loads(line)["log"] for name in (path + ".2", path + ".1", path)
             for line in open(name)]
    assert lines == ["%010d\n" % i for i in range(2, 7)]


def test_rotation_happens_only_once_the_file_reached_max_size(tmp_path):
    path = str(tmp_path / "c-json.log")
    size = len(record(b"0" * 10, timestamp=T0))
    log = logger.new_logger("json-file", path, {"max-size": str(size + 1), "max-file": "2"})
    write_lines(log, 2)
    log.close()
    assert len(open(path).readlines()) == 2 and not os.path.exists(path + ".1")


def test_rotation_with_max_file_1_truncates(tmp_path):
    path = str(tmp_path / "c-json.log")
    size = len(record(b"0" * 10, timestamp=T0))
    log = logger.new_logger("json-file", path, {"max-size": str(size)})
    write_lines(log, 3)
    log.close()
    assert os.listdir(str(tmp_path)) == ["c-json.log"]
    assert [json.loads(line)["log"] for line in open(path)] == ["0000000002\n"]


def test_reopened_log_counts_its_existing_size(tmp_path):
    path = str(tmp_path / "c-json.log")
    size = len(record(b"0" * 10, timestamp=T0))
    opts = {"max-size": str(size), "max-file": "2"}
    write_lines(logger.new_logger("json-file", path, opts), 1)
    write_lines(logger.new_logger("json-file", path, opts), 1)
    assert os.path.exists(path + ".1")


# --- a run of lines in one write -------------------------------------------------------------

def test_a_run_of_lines_is_marshalled_as_each_of_its_lines(tmp_path):
    text = b'plain\n\ttab "q" \\ <a&b>\n\xff\xe2\x80\xa8caf\xc3\xa9\r\x00\x7f\n\n'
    expected = b"".join(record(line, "stderr", T0 + 5, attrs='{"tag":"t"}')
                        for line in text[:-1].split(b"\n"))
    assert logger.marshal_lines(Lines(text, "stderr", T0 + 5), '{"tag":"t"}') == expected


def test_a_run_of_lines_rotates_exactly_where_line_by_line_writes_would(tmp_path):
    lines = [b"%03d" % i for i in range(40)]
    one = len(record(lines[0], timestamp=T0))
    for max_size in (1, one - 1, one, 2 * one, 2 * one + 1, 5 * one + 7):
        trees = []
        for mode in ("one by one", "as a run"):
            directory = tmp_path / ("%d-%s" % (max_size, mode))
            directory.mkdir()
            log = logger.new_logger("json-file", str(directory / "c-json.log"),
                                    {"max-size": str(max_size), "max-file": "3"})
            if mode == "as a run":
                log.log_lines(Lines(b"".join(line + b"\n" for line in lines), "stdout", T0))
            else:
                for line in lines:
                    log.log(Message(line, "stdout", T0, False))
            log.close()
            trees.append({name: (directory / name).read_bytes() for name in os.listdir(str(directory))})
        assert trees[0] == trees[1] and len(trees[0]) == 3


def test_a_full_disk_keeps_the_whole_records_of_a_run(tmp_path, monkeypatch):
    path = str(tmp_path / "c-json.log")
    log = logger.new_logger("json-file", path)
    real_write, room = os.write, [len(record(b"line", timestamp=T0)) * 3 // 2]

    def full_after_one_and_a_half_records(fd, data):  # a short write, then ENOSPC
        if not room[0]:
            raise OSError(28, "No space left on device")
        written = real_write(fd, bytes(data[:room[0]]))
        room[0] -= written
        return written
    monkeypatch.setattr(os, "write", full_after_one_and_a_half_records)
    with pytest.raises(OSError, match="no space left on device"):
        log.log_lines(Lines(b"line\nline\nline\n", "stdout", T0))
    monkeypatch.undo()
    log.log_lines(Lines(b"next\n", "stdout", T0))
    log.close()
    assert [json.loads(line)["log"] for line in open(path)] == ["line\n", "next\n"]


def test_none_driver_writes_nothing(tmp_path):
    log = logger.new_logger("none", str(tmp_path / "c-json.log"))
    write_lines(log, 1)
    assert os.listdir(str(tmp_path)) == []


# --- options ---------------------------------------------------------------------------------

def test_max_size_uses_decimal_units():
    assert logger.parse_size("10m") == 10 * 1000 * 1000
    assert logger.parse_size("1.5k") == 1500


def test_unknown_log_opt_is_refused():
    with pytest.raises(LogDriverError, match="unknown log opt 'max-sise' for json-file log driver"):
        logger.validate_log_opts("json-file", {"max-sise": "1m"})


def test_max_file_below_1_is_refused():
    with pytest.raises(LogDriverError, match="max-file cannot be less than 1"):
        logger.validate_log_opts("json-file", {"max-file": "0"})


def test_bad_max_size_is_refused():
    with pytest.raises(LogDriverError, match="invalid size: 'lots'"):
        logger.validate_log_opts("json-file", {"max-size": "lots"})


def test_unknown_driver_is_refused():
    with pytest.raises(LogDriverError, match="no log driver named 'syslogx'"):
        logger.validate_log_opts("syslogx", {})


def test_none_driver_ignores_its_options_like_dockerd():
    # logger.ValidateLogOpts returns before any check when the driver is `none`.
    logger.validate_log_opts("none", {"max-size": "1m", "mode": "bogus"})


# --- reading back ----------------------------------------------------------------------------

def written_log(tmp_path, lines, opts=None):
    path = str(tmp_path / "c-json.log")
    log = logger.new_logger("json-file", path, opts)
    for index, line in enumerate(lines):
        log.log(Message(line, "stdout" if index % 2 == 0 else "stderr", T0 + index * 10 ** 9,
                        False))
    log.close()
    return path


def test_reader_returns_lines_streams_and_times(tmp_path):
    entries = logger.read_log(written_log(tmp_path, [b"a", b"b"]))
    assert [(e.line, e.stream, e.timestamp) for e in entries] == [
        (b"a\n", "stdout", T0), (b"b\n", "stderr", T0 + 10 ** 9)]


def test_reader_tail_keeps_the_last_records(tmp_path):
    path = written_log(tmp_path, [b"a", b"b", b"c"])
    assert [e.line for e in logger.read_log(path, tail=2)] == [b"b\n", b"c\n"]
    assert logger.read_log(path, tail=0) == []


def test_reader_since_and_until_filter_by_time(tmp_path):
    path = written_log(tmp_path, [b"a", b"b", b"c"])
    entries = logger.read_log(path, since=T0 + 1, until=T0 + 10 ** 9)
    assert [e.line for e in entries] == [b"b\n"]


def test_reader_follows_rotation_oldest_first(tmp_path):
    size = len(record(b"a", timestamp=T0))
    path = written_log(tmp_path, [b"a", b"b", b"c"], {"max-size": str(size), "max-file": "3"})
    assert [e.line for e in logger.read_log(path, max_file=3)] == [b"a\n", b"b\n", b"c\n"]


def test_reader_skips_a_torn_last_record(tmp_path):
    path = written_log(tmp_path, [b"a"])
    with open(path, "ab") as f:
        f.write(b'{"log":"b')
    assert [e.line for e in logger.read_log(path)] == [b"a\n"]
