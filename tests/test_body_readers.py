"""Request bodies read into the caller's buffer (drivers/httpserver ConnReader, LimitedReader,
ChunkedReader readinto), as `docker cp` into a container and `docker load` read their tars.

Over a socketpair whose writer sends the body in awkward pieces: chunk framing split across
receives, chunks of one byte and of 100 KB, a request pipelined behind the body. readinto
must give exactly the body's bytes (mixed with read() calls too), leave what follows the
body for the next request, refuse bad framing with net/http's words, and report a body cut
short; archive.untar fed by a ChunkedReader must write the file byte for byte.
"""
import io
import os
import socket
import tarfile
import threading

import pytest

from drivers import archive, errdefs, httpserver

NEXT_REQUEST = b"GET /_ping HTTP/1.1\r\n"


def chunked(payload, sizes):
    """`payload` framed as chunks of the given sizes (cycled), then the last chunk and a trailer."""
    out, pos, index = [], 0, 0
    while pos < len(payload):
        size = sizes[index % len(sizes)]
        piece = payload[pos:pos + size]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        pos, index = pos + size, index + 1
    out.append(b"0\r\nX-Trailer: t\r\n\r\n")
    return b"".join(out)


@pytest.fixture
def connection():
    """(a ConnReader, send(data, piece) that writes `data` in `piece`-byte sends and closes)."""
    server, client = socket.socketpair()
    reader = httpserver.ConnReader(server)
    reader.idle = 10
    threads = []

    def send(data, piece=7):
        def run():
            for pos in range(0, len(data), piece):
                client.sendall(data[pos:pos + piece])
            client.shutdown(socket.SHUT_WR)
        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)

    yield reader, send
    for thread in threads:
        thread.join()
    server.close()
    client.close()


def read_all_into(body, size):
    out, buffer = bytearray(), memoryview(bytearray(size))
    while True:
        count = body.readinto(buffer)
        if not count:
            return bytes(out)
        out += buffer[:count]


@pytest.mark.parametrize("piece", [1, 5, 4096, 1 << 20])
def test_chunked_readinto_gives_the_body_and_leaves_the_next_request(connection, piece):
    reader, send = connection
    payload = os.urandom(300000)
    send(chunked(payload, [1, 3, 100000, 2, 65536]) + NEXT_REQUEST, piece)
    body = httpserver.ChunkedReader(reader)
    assert read_all_into(body, 70000) == payload
    assert body.readinto(bytearray(10)) == 0
    assert reader.readline(4096) == NEXT_REQUEST


def test_chunked_read_and_readinto_mix(connection):
    reader, send = connection
    payload = os.urandom(5000)
    send(chunked(payload, [1000]))
    body = httpserver.ChunkedReader(reader)
    head = body.read(1500)  # across a chunk boundary
    buffer = bytearray(800)
    count = body.readinto(buffer)
    assert head + buffer[:count] + body.read() == payload


@pytest.mark.parametrize("framing, message", [
    (b"3\r\nabcXY0\r\n\r\n", "malformed chunked encoding"),
    (b"zz\r\nabc\r\n", "invalid byte in chunk length"),
    (b"10\r\nabc", "unexpected EOF"),
])
def test_chunked_readinto_refuses_bad_framing(connection, framing, message):
    reader, send = connection
    send(framing)
    with pytest.raises(errdefs.InvalidParameter, match=message):
        read_all_into(httpserver.ChunkedReader(reader), 4096)


def test_limited_readinto_stops_at_the_length(connection):
    reader, send = connection
    payload = os.urandom(10000)
    send(payload + NEXT_REQUEST, 999)
    assert read_all_into(httpserver.LimitedReader(reader, len(payload)), 3000) == payload
    assert reader.readline(4096) == NEXT_REQUEST


def test_limited_readinto_reports_a_short_body(connection):
    reader, send = connection
    send(b"x" * 100)
    with pytest.raises(errdefs.InvalidParameter, match="unexpected EOF"):
        read_all_into(httpserver.LimitedReader(reader, 200), 64)


def test_readline_across_receives_and_its_limit(connection):
    reader, send = connection
    send(b"first line\r\nsecond\r\n" + b"x" * 100, 3)
    assert reader.readline(100) == b"first line\r\n"
    assert reader.readline(100) == b"second\r\n"
    with pytest.raises(httpserver.HeaderTooLarge):
        reader.readline(50)


def test_untar_from_a_chunked_body_writes_the_file_exactly(connection, tmp_path):
    reader, send = connection
    payload = os.urandom(3 << 20)
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.GNU_FORMAT) as out:
        info = tarfile.TarInfo("dir/file")
        info.size = len(payload)
        out.addfile(info, io.BytesIO(payload))
    send(chunked(tar.getvalue(), [1000, 65536, 1]), 65536)
    archive.untar(str(tmp_path), httpserver.ChunkedReader(reader))
    assert (tmp_path / "dir" / "file").read_bytes() == payload
