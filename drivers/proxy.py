"""The userland proxy (docker-proxy's job), run inside a container's monitor.

dockerd starts one docker-proxy process per published host ip, port and proto. pydockerd
runs one UserlandProxy per container instead, inside the container's monitor
(drivers/monitor.py): the daemon opens the listeners (portmapper.open_listener) and passes
them to the monitor, so published ports keep answering while the daemon restarts and close
exactly when the container stops (the monitor stops its proxy, then exits).

A proxy serves all its listeners from one background thread with a selector of its own:

  TCP   every accepted client gets a non-blocking connect to container_ip:container_port; if
        that fails the client is closed (docker-proxy closed it when its dial failed). Then
        bytes are copied both ways, at most READ_SIZE per read. A side is not read again
        until its peer has taken the last read, so a slow reader slows the writer down
        instead of growing a buffer. An EOF is a half-close: the other side gets
        shutdown(SHUT_WR) and may still answer; the flow ends when both directions have
        ended, or at the first error (a reset, a broken pipe), which closes both sockets.
  UDP   a datagram from a new client address opens a flow: a socket connected to the
        container's port, whose replies go back to that client from the listener. A flow
        silent both ways for UDP_CONNTRACK_TIMEOUT (docker-proxy's 90 s) is closed. What
        cannot be sent at once is dropped, as UDP allows.

Sockets get TCP_NODELAY, as in Go: a proxy must not add Nagle's delays to a request/response
protocol that the client and the server both run without them.

A listener whose accept fails for want of descriptors or memory is not polled again until a
flow closes, instead of waking the loop over and over.

stop() closes every listener and every flow. The fork server imports this module (through
drivers.monitor) into every monitor, so it uses the standard library only and allocates
nothing until a proxy is made.
"""
import errno
import selectors
import socket
import threading
import time

READ_SIZE = 64 * 1024

# docker-proxy's UDPConnTrackTimeout: a UDP flow silent this long is forgotten.
UDP_CONNTRACK_TIMEOUT = 90.0

# How often idle UDP flows are looked for.
_SWEEP_INTERVAL = 1.0

# Accepts, or datagrams, handled per wake-up of one socket: a busy port must not starve the
# others.
_BATCH = 64

# accept() failures that more waking cannot cure.
_SHORTAGES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class UserlandProxy(object):
    """One per container: forwards each published port's listener to its container port."""

    def __init__(self, mappings):
        """mappings: [(listener socket, "tcp"|"udp", container_ip, container_port)]; the
        proxy owns the listeners from now on."""
        self._frontends = [_Frontend(*mapping) for mapping in mappings]
        self._selector = selectors.DefaultSelector()
        self._tcp_flows = set()
        self._udp_flows = {}    # (frontend, client address) -> _UDPFlow
        self._paused = []       # frontends whose accept ran out of descriptors
        self._buffer = bytearray(READ_SIZE)
        self._view = memoryview(self._buffer)
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._stopping = False
        self._thread = None
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, (self._wake, None))
        for frontend in self._frontends:
            frontend.listener.setblocking(False)
            self._poll_listener(frontend)

    def start(self):
        """Serve in a background thread until stop()."""
        self._thread = threading.Thread(target=self._run, name="userland-proxy", daemon=True)
        self._thread.start()

    def stop(self):
        """Close every listener and every flow (the ports are free when this returns)."""
        self._stopping = True
        if self._thread is None:
            self._close_everything()
            return
        try:
            self._wakeup_w.send(b"\0")
        except OSError:  # the thread has ended already (a bug), and closed everything
            pass
        self._thread.join()

    # -- the loop -----------------------------------------------------------------------------

    def _run(self):
        next_sweep = time.monotonic() + _SWEEP_INTERVAL
        try:
            while not self._stopping:
                timeout = max(0.0, next_sweep - time.monotonic()) if self._udp_flows else None
                for key, events in self._selector.select(timeout):
                    callback, owner = key.data
                    callback(owner, key.fileobj, events)
                now = time.monotonic()
                if now >= next_sweep:
                    self._expire_udp_flows(now)
                    next_sweep = now + _SWEEP_INTERVAL
        finally:  # even after a bug: the ports must not stay open unserved
            self._close_everything()

    def _wake(self, owner, sock, events):
        sock.recv(16)

    def _poll_listener(self, frontend):
        callback = self._accept if frontend.proto == "tcp" else self._udp_from_client
        self._selector.register(frontend.listener, selectors.EVENT_READ, (callback, frontend))

    def _close_everything(self):
        for flow in list(self._tcp_flows):
            self._close_tcp_flow(flow)
        for flow in list(self._udp_flows.values()):
            self._close_udp_flow(flow)
        for frontend in self._frontends:
            frontend.listener.close()
        self._selector.close()
        self._wakeup_r.close()
        self._wakeup_w.close()

    # -- TCP ----------------------------------------------------------------------------------

    def _accept(self, frontend, listener, events):
        for _ in range(_BATCH):
            try:
                client, _ = listener.accept()
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno in _SHORTAGES:  # polled again when a flow closes
                    self._selector.unregister(listener)
                    self._paused.append(frontend)
                    return
                continue  # ECONNABORTED and the like: that client is gone
            self._connect(frontend, client)

    def _connect(self, frontend, client):
        """Start the connection to the container; the flow waits for it to complete."""
        try:
            backend = socket.socket(frontend.family, socket.SOCK_STREAM)
        except OSError:
            client.close()
            return
        flow = _TCPFlow(client, backend)
        self._tcp_flows.add(flow)
        try:
            for sock in (client, backend):
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            started = backend.connect_ex(frontend.backend_address) in (0, errno.EINPROGRESS)
        except OSError:  # the client is gone already
            started = False
        if started:
            self._update_tcp_flow(flow)
        else:
            self._close_tcp_flow(flow)

    def _tcp_event(self, flow, sock, events):
        if flow.closed:  # closed by an earlier event of the same round
            return
        events &= flow.wanted(sock)
        try:
            if flow.connecting:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self._close_tcp_flow(flow)
                    return
                flow.connecting = False
            else:
                if events & selectors.EVENT_WRITE:
                    flow.pending[sock] = _send_now(sock, memoryview(flow.pending[sock]))
                if events & selectors.EVENT_READ:
                    self._copy(flow, sock)
        except OSError:
            self._close_tcp_flow(flow)
            return
        if len(flow.ended) == 2:  # nothing can be owed: a side is read only when its peer is paid
            self._close_tcp_flow(flow)
        else:
            self._update_tcp_flow(flow)

    def _copy(self, flow, source):
        """One read from source, sent on to its peer as far as the peer takes it now."""
        peer = flow.peer(source)
        try:
            size = source.recv_into(self._buffer)
        except BlockingIOError:
            return
        if size == 0:
            flow.ended.add(source)
            peer.shutdown(socket.SHUT_WR)
            return
        flow.pending[peer] = _send_now(peer, self._view[:size])

    def _update_tcp_flow(self, flow):
        for sock in (flow.client, flow.backend):
            wanted = flow.wanted(sock)
            registered = flow.registered[sock]
            if wanted == registered:
                continue
            if registered and wanted:
                self._selector.modify(sock, wanted, (self._tcp_event, flow))
            elif registered:
                self._selector.unregister(sock)
            else:
                self._selector.register(sock, wanted, (self._tcp_event, flow))
            flow.registered[sock] = wanted

    def _close_tcp_flow(self, flow):
        flow.closed = True
        for sock in (flow.client, flow.backend):
            if flow.registered[sock]:
                self._selector.unregister(sock)
            sock.close()
        self._tcp_flows.discard(flow)
        self._resume_listeners()

    def _resume_listeners(self):
        """A descriptor came free: listeners paused for the want of one may accept again."""
        while self._paused:
            self._poll_listener(self._paused.pop())

    # -- UDP ----------------------------------------------------------------------------------

    def _udp_from_client(self, frontend, listener, events):
        for _ in range(_BATCH):
            try:
                size, address = listener.recvfrom_into(self._buffer)
            except OSError:  # BlockingIOError: all read
                return
            flow = self._udp_flows.get((frontend, address)) or self._open_udp_flow(frontend,
                                                                                  address)
            if flow is None:
                continue
            flow.last_active = time.monotonic()
            try:
                flow.backend.send(self._view[:size])
            except OSError:  # a full buffer, or an earlier datagram's ICMP error: dropped
                pass

    def _open_udp_flow(self, frontend, address):
        """A socket connected to the container for a new client; None if none can be had."""
        try:
            backend = socket.socket(frontend.family, socket.SOCK_DGRAM)
        except OSError:
            return None
        try:
            backend.setblocking(False)
            backend.connect(frontend.backend_address)
        except OSError:
            backend.close()
            return None
        flow = _UDPFlow(frontend, address, backend)
        self._udp_flows[(frontend, address)] = flow
        self._selector.register(backend, selectors.EVENT_READ, (self._udp_from_backend, flow))
        return flow

    def _udp_from_backend(self, flow, backend, events):
        for _ in range(_BATCH):
            try:
                size = backend.recv_into(self._buffer)
            except BlockingIOError:
                return
            except ConnectionRefusedError:  # an ICMP error for an earlier datagram: go on
                continue
            except OSError:
                self._close_udp_flow(flow)
                return
            flow.last_active = time.monotonic()
            try:
                flow.frontend.listener.sendto(self._view[:size], flow.client_address)
            except OSError:  # dropped, as UDP may
                pass

    def _expire_udp_flows(self, now):
        for flow in list(self._udp_flows.values()):
            if now - flow.last_active >= UDP_CONNTRACK_TIMEOUT:
                self._close_udp_flow(flow)

    def _close_udp_flow(self, flow):
        self._selector.unregister(flow.backend)
        flow.backend.close()
        del self._udp_flows[(flow.frontend, flow.client_address)]
        self._resume_listeners()


def _send_now(sock, view):
    """Send what a non-blocking socket takes now; the rest, as bytes (view's buffer is
    reused by the next read)."""
    try:
        while view:
            view = view[sock.send(view):]
    except BlockingIOError:
        pass
    return bytes(view)


class _Frontend(object):
    """One published port: its listener and where its traffic goes."""

    def __init__(self, listener, proto, container_ip, container_port):
        kind = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}.get(proto)
        if kind is None:
            raise ValueError("unknown protocol %r" % proto)
        # A socket of the wrong kind, or one not listening, would wake the loop forever.
        if listener.type != kind or (proto == "tcp" and not listener.getsockopt(
                socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
            raise ValueError("not a listening %s socket" % proto)
        self.listener = listener
        self.proto = proto
        self.family = socket.AF_INET6 if ":" in container_ip else socket.AF_INET
        self.backend_address = (container_ip, int(container_port))


class _TCPFlow(object):
    """One proxied connection: the client's socket and ours to the container."""

    def __init__(self, client, backend):
        self.client = client
        self.backend = backend
        self.connecting = True
        self.closed = False
        self.pending = {client: b"", backend: b""}  # read from one side, owed to the other
        self.ended = set()                          # the sides that sent their EOF
        self.registered = {client: 0, backend: 0}   # the selector events asked for each

    def peer(self, sock):
        return self.backend if sock is self.client else self.client

    def wanted(self, sock):
        """A side is read while it has not ended and its peer owes nothing to be sent on;
        it is written to while it is owed bytes. Until the connect completes, only the
        container's side is watched, for writability."""
        if self.connecting:
            return selectors.EVENT_WRITE if sock is self.backend else 0
        events = selectors.EVENT_WRITE if self.pending[sock] else 0
        if sock not in self.ended and not self.pending[self.peer(sock)]:
            events |= selectors.EVENT_READ
        return events


class _UDPFlow(object):
    """One UDP client of a published port and its socket to the container."""

    def __init__(self, frontend, client_address, backend):
        self.frontend = frontend
        self.client_address = client_address
        self.backend = backend
        self.last_active = time.monotonic()
