# cython: language_level=3, boundscheck=False, wraparound=False
"""A listener's accept path and its connections' transports: the compiled twin of
``_streams_py`` (the contract is there, and the same here).

How it runs: the streams of a loop share one epoll set of their own (``Poller``), which
the loop watches as a single descriptor (``loop.add_reader``). When it is readable, the
poller takes up to ``EVENTS`` ready descriptors (``epoll_wait`` with no timeout) and
calls each one's C method: the acceptor ``accept4``s, a stream ``recv``s or ``send``s.
Registration is level-triggered and changes only when what a stream waits for changes
(reading paused, a write buffered): a connection that is read and answered costs one
``epoll_ctl`` (its ``ADD``) in all. Closing the descriptor takes it out of the set
(it is never duplicated), so a close is one ``close``.

What this saves against a uvloop server, per connection (callgrind, the bench's close
scenario): uvloop's transport, its handle, its pseudo-socket, the ``call_soon`` handles
that run ``connection_made`` and ``connection_lost``, the peer's address formatted with
``inet_ntop``/``snprintf``. Here ``connection_made`` is called at once, the peer's
address is written out from ``accept4``'s, and the ``connection_lost`` calls of a
wake-up run at its end (a loop callback only for a stream closed from elsewhere:
a timer, another connection).

Writes made while the poller dispatches a batch are held to the batch's end (or until
they have waited ``HOLD_LIMIT_NS``, checked after each event: an expensive event, a
full handshake, does not delay the others' answers), then sent one stream after the
other (``Poller.send_unsent``), as haproxy sends after its tasks ran rather than as
each event is handled: a peer woken by the first of them finds the
next ones ready instead of going back to sleep between two, and each wake-up of a
sleeping peer costs the sender an inter-processor interrupt (on this project's VMs,
+10% keep-alive requests per CPU-second, bench/results/PROFILE.md). A write from
outside a batch (a timer) is sent at once.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EBADF, EINTR, errno
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, strerror
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from lbcore._fastpath._ipv4 cimport ipv4_text
from lbcore._fastpath._clock cimport hold_now, release_now

import logging
import weakref

import socket

from lbcore._fastpath._streams_common import ACCEPT_BATCH, ACCEPT_RETRY_DELAY, READ_SIZE, RESOURCE_ERRNOS, \
    default_limits, ip_family, ipv4_number, nodelay_each

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        unsigned short sa_family
    struct sockaddr_storage:
        unsigned short ss_family
    int accept4(int sockfd, sockaddr *addr, socklen_t *addrlen, int flags)
    ssize_t recv(int sockfd, void *buf, size_t len, int flags)
    ssize_t send(int sockfd, const void *buf, size_t len, int flags)
    int shutdown(int sockfd, int how)
    int setsockopt(int sockfd, int level, int optname, const void *optval, socklen_t optlen)
    enum:
        AF_INET
        AF_INET6
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        MSG_DONTWAIT
        MSG_NOSIGNAL
        MSG_MORE
        SHUT_WR

cdef extern from "<netinet/in.h>" nogil:
    int IPPROTO_TCP
    struct in_addr:
        unsigned int s_addr
    struct sockaddr_in:
        unsigned short sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct in6_addr:
        pass
    struct sockaddr_in6:
        unsigned short sin6_family
        unsigned short sin6_port
        unsigned int sin6_flowinfo
        in6_addr sin6_addr
        unsigned int sin6_scope_id
    unsigned short ntohs(unsigned short)
    unsigned int ntohl(unsigned int)

cdef extern from "<netinet/tcp.h>" nogil:
    int TCP_NODELAY

cdef extern from "<arpa/inet.h>" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

__all__ = ["IMPLEMENTATION", "ACCEPT_BATCH", "Acceptor", "Stream", "StreamSocket", "connect", "ip_family", "serve"]

IMPLEMENTATION = "compiled"

log = logging.getLogger("lbcore.streams")

cdef enum:
    EVENTS = 64  # ready descriptors taken per epoll_wait
    # A batch's writes wait at most this long (ns) for the batch's end: past it, they
    # leave after the event being handled (one full RSA handshake takes ~1 ms).
    HOLD_LIMIT_NS = 100000
    _READ_SIZE = 256 * 1024

assert READ_SIZE == _READ_SIZE
cdef char read_buffer[_READ_SIZE]  # one read at a time per process: the loop's thread
cdef Py_ssize_t accept_batch = ACCEPT_BATCH
cdef double accept_retry_delay = ACCEPT_RETRY_DELAY
cdef frozenset resource_errnos = RESOURCE_ERRNOS


cdef inline long long _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)  # the vDSO: no system call
    return ts.tv_sec * 1000000000LL + ts.tv_nsec


cdef OSError _os_error(int code):
    return OSError(code, strerror(code).decode("utf-8", "replace"))


# -- the loop's epoll set -------------------------------------------------------------
cdef class _Watched:
    """What the poller calls when a descriptor in its set is ready."""

    cdef int ready(self, uint32_t events) except -1:
        return 0


_pollers = weakref.WeakKeyDictionary()  # loop -> its Poller, while it has users


cdef Poller poller_of(loop):
    cdef Poller poller = _pollers.get(loop)
    if poller is None or poller.epfd < 0:
        poller = Poller(loop)
        _pollers[loop] = poller
    return poller


cdef class Poller:
    """One loop's epoll set of acceptors and streams, read by the loop as one descriptor.

    ``users`` counts the acceptors serving and the streams whose ``connection_lost`` has
    not run; at none the set is closed and the loop stops watching it (tests make many
    loops; a worker keeps its one while it listens)."""

    def __cinit__(self, loop):
        self.epfd = -1
        self.loop = loop
        self.watched = {}
        self.retired = []
        self.due = []
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise _os_error(errno)
        try:
            loop.add_reader(self.epfd, self.run)
        except BaseException:
            close(self.epfd)
            self.epfd = -1
            raise

    def __dealloc__(self):
        if self.epfd >= 0:
            close(self.epfd)

    cdef int ctl(self, int op, _Watched watched, uint32_t events) except -1:
        # The event carries the object itself: no lookup by descriptor per event. It is
        # alive while in the set (watched), and to the end of the batch once out (retired).
        cdef epoll_event event
        event.events = events
        event.data.ptr = <void *>watched
        if epoll_ctl(self.epfd, op, watched.fd, &event) < 0:
            raise _os_error(errno)
        return 0

    cdef int forget(self, _Watched watched) except -1:
        """Out of ``watched`` (its descriptor is, or is about to be, out of the set)."""
        self.watched.pop(watched.fd, None)
        if self.running:
            self.retired.append(watched)  # an event of this batch may still name it
        return 0

    def run(self):
        """The loop's reader callback: dispatch what is ready, then the due connection_lost calls."""
        cdef epoll_event events[EVENTS]
        cdef int count, i
        cdef _Watched watched
        if self.epfd < 0:
            return
        self.running = True
        hold_now()  # one clock read for the batch (_clock_py's module doc)
        try:
            count = epoll_wait(self.epfd, events, EVENTS, 0)
            for i in range(count):
                # An object taken out by an earlier event of this batch is still alive
                # (retired) and ignores the event (closed, or no longer serving).
                watched = <_Watched>events[i].data.ptr
                try:
                    watched.ready(events[i].events)
                except Exception:
                    log.exception("streams: event on descriptor %d", watched.fd)
                if self.unsent is not None and _now_ns() - self.held_since > HOLD_LIMIT_NS:
                    self.send_unsent()
            while self.due or self.unsent is not None:
                self.send_unsent()
                self.run_due()
        finally:
            release_now()
            self.running = False
            if self.retired:
                self.retired = []
        if self.users == 0:
            self.dispose()

    cdef int watch(self, _Watched watched, uint32_t events) except -1:
        self.ctl(EPOLL_CTL_ADD, watched, events)
        self.watched[watched.fd] = watched
        self.users += 1
        return 0

    cdef int defer_lost(self, Stream stream) except -1:
        self.due.append(stream)
        if not self.running and not self.due_scheduled:
            self.due_scheduled = True
            self.loop.call_soon(self.run_due_soon)
        return 0

    def run_due_soon(self):
        self.due_scheduled = False
        while self.due:
            self.run_due()
        if self.users == 0:
            self.dispose()

    cdef int queue(self, Stream stream) except -1:
        """``stream`` was written to during the batch: send it at the batch's end."""
        stream.queued = True
        if self.unsent is None:
            self.unsent = stream
            self.held_since = _now_ns()
        else:
            self.unsent_last.next_unsent = stream
        self.unsent_last = stream
        return 0

    cdef int send_unsent(self) except -1:
        # A chain through the streams themselves: no list made and freed per batch.
        cdef Stream stream = self.unsent
        cdef Stream following
        self.unsent = self.unsent_last = None
        while stream is not None:
            following = stream.next_unsent
            stream.next_unsent = None
            try:
                stream.send_held()
            except Exception:
                log.exception("streams: sending on descriptor %d", stream.fd)
            stream = following
        return 0

    cdef int run_due(self) except -1:
        cdef list due = self.due
        cdef Stream stream
        self.due = []
        for stream in due:
            self.users -= 1
            stream.call_connection_lost()
        return 0

    cdef int release(self) except -1:
        self.users -= 1
        if self.users == 0 and not self.running and not self.due_scheduled:
            self.dispose()
        return 0

    cdef int dispose(self) except -1:
        if self.epfd < 0:
            return 0
        try:
            self.loop.remove_reader(self.epfd)
        except Exception:  # the loop is closed: it watches nothing any more
            pass
        close(self.epfd)
        self.epfd = -1
        if _pollers.get(self.loop) is self:
            del _pollers[self.loop]
        return 0


# -- accepting ------------------------------------------------------------------------
cdef class Acceptor(_Watched):
    """Accepts on one listening socket (owned) until ``close()``."""

    def __init__(self, loop, sock, protocol_factory):
        sock.setblocking(False)
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.protocol_factory = protocol_factory
        self.nodelay_each = nodelay_each(sock)
        self.poller = poller_of(loop)
        self.poller.watch(self, EPOLLIN)
        self.registered = True
        self.serving = True

    def is_serving(self):
        return self.serving

    def close(self):
        """Stop accepting and close the listening socket (accepted connections go on)."""
        if not self.serving:
            return
        self.serving = False
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        self.unregister()
        self.sock.close()
        self.poller.release()

    cdef int unregister(self) except -1:
        if self.registered:
            self.registered = False
            self.poller.forget(self)
            if self.poller.epfd >= 0:
                self.poller.ctl(EPOLL_CTL_DEL, self, 0)
        return 0

    def _resume(self):
        self.retry = None
        if self.serving and not self.registered:
            self.poller.ctl(EPOLL_CTL_ADD, self, EPOLLIN)
            self.poller.watched[self.fd] = self
            self.registered = True

    cdef int ready(self, uint32_t events) except -1:
        cdef sockaddr_storage address
        cdef socklen_t size
        cdef int fd, code, one = 1
        cdef Py_ssize_t i
        for i in range(accept_batch):
            if not self.registered:  # closed, or paused (out of descriptors)
                return 0
            size = sizeof(address)
            fd = accept4(self.fd, <sockaddr *>&address, &size, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                code = errno
                if code == EAGAIN:  # EWOULDBLOCK is EAGAIN on Linux
                    return 0
                if code == EINTR:
                    continue
                if code in resource_errnos:
                    log.error("listener %s: cannot accept (%s): pausing %.0f s", _name(self.sock),
                              _os_error(code), accept_retry_delay)
                    self.unregister()
                    self.retry = self.loop.call_later(accept_retry_delay, self._resume)
                    return 0
                # ECONNABORTED and the like: that connection is gone, the next may not be.
                log.debug("listener %s: accept: %s", _name(self.sock), _os_error(code))
                continue
            if self.nodelay_each:
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
            if address.ss_family == AF_INET:
                # The address stays a number: its tuple is made if asked for (peername).
                _start(self.poller, self.loop, fd, AF_INET, None, self.protocol_factory,
                       False, ntohl((<sockaddr_in *>&address).sin_addr.s_addr),
                       ntohs((<sockaddr_in *>&address).sin_port))
                continue
            _start(self.poller, self.loop, fd, address.ss_family, _peer(&address, size, fd),
                   self.protocol_factory)
        return 0


def _name(sock):
    try:
        return sock.getsockname()
    except OSError:
        return "?"


cdef object _peer(sockaddr_storage *address, socklen_t size, int fd):
    """The peer's address as ``socket.getpeername()`` gives it, from ``accept4``'s (an IPv6
    one: an IPv4 peer is kept as a number, ``_v4_peer``)."""
    cdef sockaddr_in6 *v6
    cdef char text[64]
    if address.ss_family == AF_INET6 and inet_ntop(AF_INET6, &(<sockaddr_in6 *>address).sin6_addr, text, 64) != NULL:
        v6 = <sockaddr_in6 *>address
        if v6.sin6_scope_id == 0:
            return (text.decode("ascii"), ntohs(v6.sin6_port), ntohl(v6.sin6_flowinfo), 0)
    return None  # another family, or a scoped address: asked of the socket when wanted


cdef tuple _v4_peer(long long number, int port):
    """An IPv4 peer's ``getpeername()`` tuple, from its number and port."""
    cdef unsigned char octets[4]
    octets[0] = (number >> 24) & 0xff
    octets[1] = (number >> 16) & 0xff
    octets[2] = (number >> 8) & 0xff
    octets[3] = number & 0xff
    return (ipv4_text(octets), port)


cdef class StreamProtocol:
    """The base of the compiled protocols (see _streams.pxd): a stream calls their
    ``data_received`` in C. Compiled-only: the pure twin calls every protocol's method."""

    cpdef connection_made(self, transport):
        pass

    cpdef data_received(self, data):
        raise NotImplementedError

    cpdef connection_lost(self, exc):
        pass


cdef class ProtocolMaker:
    """The base of a compiled protocol factory (see _streams.pxd): an acceptor calls
    its ``make()`` in C. Compiled-only, as StreamProtocol."""

    cpdef make(self):
        raise NotImplementedError

    def __call__(self):
        return self.make()


cdef Stream _start(Poller poller, loop, int fd, int family, peer, protocol_factory, bint outgoing=False,
                   long long peer_v4=-1, int peer_port=0):
    """The stream of a connected descriptor (accepted; or connected, ``outgoing``: then a
    failure is the caller's to raise, not logged here); None when it could not be made.
    An accepted IPv4 peer comes as ``peer_v4`` and ``peer_port`` (``peer`` None), any
    other as ``peer``, the tuple."""
    cdef Stream stream = Stream.__new__(Stream)
    try:
        if isinstance(protocol_factory, ProtocolMaker):
            protocol = (<ProtocolMaker>protocol_factory).make()  # a C call
        else:
            protocol = protocol_factory()
        stream.bind(protocol)
    except Exception:
        close(fd)
        if outgoing:
            raise
        log.exception("protocol factory failed; connection from %s closed",
                      _v4_peer(peer_v4, peer_port) if peer_v4 >= 0 else peer)
        return None
    stream.poller = poller
    stream.loop = loop
    stream.fd = fd
    stream.family = family
    stream._peername = peer
    if peer_v4 < 0 and family == AF_INET and peer is not None:  # a connect's peer (accepts give the number)
        peer_v4 = ipv4_number(family, peer)
        if peer_v4 >= 0:
            peer_port = peer[1]
    stream.peer_v4 = peer_v4
    stream.peer_port = peer_port
    stream.high = 64 * 1024
    stream.low = 16 * 1024
    stream.reading = True
    try:
        poller.watch(stream, EPOLLIN)
    except OSError as exc:
        close(fd)
        if outgoing:
            raise
        log.error("streams: cannot watch a connection from %s: %s", stream.peername, exc)
        return None
    stream.mask = EPOLLIN
    try:
        if stream.typed_protocol is not None:
            stream.typed_protocol.connection_made(stream)  # a C call (a compiled protocol)
        else:
            protocol.connection_made(stream)
    except Exception as exc:
        if not outgoing:
            log.exception("connection_made failed; connection from %s aborted", stream.peername)
        stream.force_close(exc)
    return stream


def serve(loop, sock, protocol_factory):
    """Accept connections on ``sock`` (listening; owned by the Acceptor from now on)."""
    return Acceptor(loop, sock, protocol_factory)


async def connect(loop, protocol_factory, host, port):
    """Connect to ``host`` (an IP address) and ``port``: (stream, protocol) once
    ``connection_made`` ran. The connect itself is the loop's ``sock_connect`` (a member
    connection is made once and reused); the stream is this module's."""
    cdef Stream stream
    family = ip_family(host)
    if not family:
        raise ValueError(f"not an IP address: {host!r}")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, (host, port))
        peer = sock.getpeername()
    except BaseException:
        sock.close()
        raise
    stream = _start(poller_of(loop), loop, sock.detach(), family, peer, protocol_factory, True)
    if stream.lost_exc is not None:
        raise stream.lost_exc
    return stream, stream.protocol


# -- a connection ---------------------------------------------------------------------
cdef class StreamSocket:
    """A stream's socket as ``get_extra_info("socket")`` gives it (``_streams_common``'s, as
    an extension type: the engine asks for it once per connection)."""

    def __cinit__(self, Stream stream):
        self._stream = stream
        self.family = stream.family
        self.type = socket.SOCK_STREAM
        self.proto = 0

    cpdef int fileno(self):
        return self._stream.fileno()

    def _call(self, name, *args):
        cdef int fd = self._stream.fileno()
        if fd < 0:
            raise OSError(EBADF, "the stream is closed")
        sock = socket.socket(self.family, self.type, self.proto, fileno=fd)
        try:
            return getattr(sock, name)(*args)
        finally:
            sock.detach()  # the descriptor stays the stream's

    def getsockopt(self, *args):
        return self._call("getsockopt", *args)

    def setsockopt(self, *args):
        self._call("setsockopt", *args)

    def getpeername(self):
        return self._call("getpeername")

    def getsockname(self):
        return self._call("getsockname")

    def __repr__(self):
        return f"<StreamSocket fd={self._stream.fileno()} family={self.family!r}>"


cdef class Stream(_Watched):
    """One accepted connection's transport (the contract: ``_streams_py``)."""

    def __init__(self):
        raise TypeError("streams are made by an Acceptor")

    def __repr__(self):
        return f"<Stream fd={self.fd if not self.lost else -1} peer={self.peername!r}>"

    @property
    def peername(self):
        """The peer's address as ``getpeername()`` gives it, from the accept (None: not known)."""
        if self._peername is None and self.peer_v4 >= 0:
            self._peername = _v4_peer(self.peer_v4, self.peer_port)
        return self._peername

    # -- asyncio.BaseTransport ---------------------------------------------------
    def get_extra_info(self, name, default=None):
        if name == "peername":
            peer = self.peername
            if peer is None and not self.lost:
                try:
                    peer = self._peername = self.get_extra_info("socket").getpeername()
                except OSError:
                    return default
            return peer if peer is not None else default
        if name == "sockname":
            if self.lost:
                return default
            try:
                return self.get_extra_info("socket").getsockname()
            except OSError:
                return default
        if name == "socket":
            if self.view is None:
                self.view = StreamSocket.__new__(StreamSocket, self)
            return self.view
        return default

    cpdef int fileno(self):
        return -1 if self.lost else self.fd

    cpdef bint is_closing(self):
        return self.closing

    def get_protocol(self):
        return self.protocol

    def set_protocol(self, protocol):
        self.bind(protocol)

    cdef int bind(self, protocol) except -1:
        """``protocol`` is what this stream reads into: a compiled one (StreamProtocol)
        is called in C, any other by name, its data_received bound once (as uvloop
        does). Nothing changes if it has no data_received."""
        cdef StreamProtocol typed = as_stream_protocol(protocol)
        self.on_data = protocol.data_received if typed is None else None
        self.typed_protocol = typed
        self.protocol = protocol
        return 0

    cpdef close(self):
        if self.closing:
            return
        self.closing = True
        self.reading = False
        if not self.get_write_buffer_size():
            self.finish(None)
        elif not self.queued:
            self.update()
        # else: the end of the batch sends what it holds and closes it (send_held), or
        # registers it for the socket to drain: no epoll_ctl for the reads it stopped
        # (an event for them in the meantime is ignored: not reading).

    cpdef abort(self):
        self.force_close(None)

    # -- reading -----------------------------------------------------------------
    def is_reading(self):
        return self.reading

    def pause_reading(self):
        if self.closing or self.paused:
            return
        self.paused = True
        self.reading = False
        self.update()

    def resume_reading(self):
        if self.closing or not self.paused:
            return
        self.paused = False
        if not self.read_eof:
            self.reading = True
            self.update()

    cdef int ready(self, uint32_t events) except -1:
        if self.reading and events & (EPOLLIN | EPOLLERR | EPOLLHUP):
            self.read_ready()
        if self.writing and not self.lost and events & (EPOLLOUT | EPOLLERR | EPOLLHUP):
            self.write_ready()
        return 0

    cdef int read_ready(self) except -1:
        cdef ssize_t got = recv(self.fd, read_buffer, _READ_SIZE, 0)
        cdef int code
        if got > 0:
            data = PyBytes_FromStringAndSize(read_buffer, got)
            try:
                if self.typed_protocol is not None:
                    self.typed_protocol.data_received(data)  # a C call (a compiled protocol)
                else:
                    self.on_data(data)
            except Exception as exc:
                log.exception("data_received failed; connection from %s aborted", self.peername)
                self.force_close(exc)
            return 0
        if got < 0:
            code = errno
            if code != EAGAIN and code != EINTR:
                self.force_close(_os_error(code))
            return 0
        self.read_eof = True
        self.reading = False
        self.update()
        try:
            keep_open = self.protocol.eof_received()
        except Exception as exc:
            log.exception("eof_received failed; connection from %s aborted", self.peername)
            self.force_close(exc)
            return 0
        if not keep_open:
            self.close()
        return 0

    # -- writing -----------------------------------------------------------------
    cpdef write(self, data):
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
            data = bytes(data)
        self.put(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), data)

    cdef int write_bytes(self, const char *data, Py_ssize_t size) except -1:
        """``write`` of the ``size`` bytes at ``data``, for compiled callers whose bytes
        are in C memory (the TLS connections' ciphertext, _tlsconn)."""
        return self.put(data, size, None)

    cdef int put(self, const char *data, Py_ssize_t size, bytes owner) except -1:
        """What ``write`` and ``write_bytes`` do with the ``size`` bytes at ``data``
        (``owner``: the bytes object they are in, or None for C memory): held to the end
        of the batch when written during one, else sent at once if nothing waits; what
        the kernel does not take is copied into the buffer."""
        cdef ssize_t sent
        if self.eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self.lost or size == 0:
            return 0
        if self.poller.running and not self.writing:
            # In a batch: held to its end, when the poller sends every stream's bytes
            # one after the other (Poller.send_unsent).
            if self.held is None and (self.buffer is None or not PyByteArray_GET_SIZE(self.buffer)):
                # The stream's only write so far: kept as a bytes object (``owner``
                # itself, no copy, when there is one).
                self.hold(owner if owner is not None else PyBytes_FromStringAndSize(data, size))
                return 0
            if self.held is not None:  # a second write: both wait in the buffer, in order
                self.append(PyBytes_AS_STRING(self.held), PyBytes_GET_SIZE(self.held))
                self.held = None
            self.append(data, size)
            if not self.queued:
                self.poller.queue(self)
            self.maybe_pause_protocol()
            return 0
        if self.buffer is None or not PyByteArray_GET_SIZE(self.buffer):
            sent = self.send_now(data, size)
            if sent < 0 or sent == size:
                return 0
            self.append(data + sent, size - sent)
            self.writing = True
            self.update()
        else:
            self.append(data, size)
        self.maybe_pause_protocol()
        return 0

    cdef ssize_t send_now(self, const char *data, Py_ssize_t size) except -2:
        """One send: what the socket took (0 when it takes nothing now), or -1 after an
        error, which closed the stream."""
        # After write_eof (and not closing), shutdown(SHUT_WR) follows the last byte:
        # at once when the send takes it all (send_held, write_ready), else once the
        # socket has taken the rest. MSG_MORE keeps the tail in the kernel until the
        # FIN, which leaves with it in one segment (a TLS connection's response and
        # close_notify): one segment and one wake-up of the peer fewer.
        cdef int flags = MSG_DONTWAIT | MSG_NOSIGNAL
        if self.eof and not self.closing:
            flags |= MSG_MORE
        cdef ssize_t sent = send(self.fd, data, size, flags)
        cdef int code
        if sent < 0:
            code = errno
            if code != EAGAIN and code != EINTR:
                self.force_close(_os_error(code))
                return -1
            return 0
        return sent

    cdef int hold(self, bytes data) except -1:
        self.held = data
        if not self.queued:
            self.poller.queue(self)
        if PyBytes_GET_SIZE(data) > self.high:
            self.maybe_pause_protocol()
        return 0

    cdef int append(self, const char *data, Py_ssize_t size) except -1:
        cdef Py_ssize_t had
        if self.buffer is None:
            self.buffer = bytearray()
        had = PyByteArray_GET_SIZE(self.buffer)
        PyByteArray_Resize(self.buffer, had + size)
        memcpy(PyByteArray_AS_STRING(self.buffer) + had, data, size)
        return 0

    def writelines(self, list_of_data):
        self.write(b"".join(list_of_data))

    def can_write_eof(self):
        return True

    cpdef write_eof(self):
        if self.closing or self.eof:
            return
        self.eof = True
        if not self.get_write_buffer_size():
            self.shutdown_write()

    cpdef Py_ssize_t get_write_buffer_size(self):
        cdef Py_ssize_t size = 0 if self.buffer is None else PyByteArray_GET_SIZE(self.buffer)
        return size if self.held is None else size + PyBytes_GET_SIZE(self.held)

    def get_write_buffer_limits(self):
        return self.low, self.high

    def set_write_buffer_limits(self, high=None, low=None):
        self.high, self.low = default_limits(high, low)
        self.maybe_pause_protocol()

    cdef int write_ready(self) except -1:
        cdef ssize_t sent
        cdef Py_ssize_t size = 0 if self.buffer is None else PyByteArray_GET_SIZE(self.buffer)
        if size:
            sent = self.send_now(PyByteArray_AS_STRING(self.buffer), size)
            if sent <= 0:  # nothing taken (the socket is full), or an error closed the stream
                return 0
            if sent == size:
                PyByteArray_Resize(self.buffer, 0)
            else:
                del self.buffer[:sent]
            self.maybe_resume_protocol()
            if self.lost or PyByteArray_GET_SIZE(self.buffer):
                return 0
        self.writing = False
        self.update()
        if self.closing:
            self.finish(None)
        elif self.eof:
            self.shutdown_write()
        return 0

    cdef int send_held(self) except -1:
        """What was written during the batch, sent at its end (as write_ready would
        once the socket can take it); the rest waits for the socket as any other."""
        cdef bytes held = self.held
        cdef ssize_t sent
        cdef Py_ssize_t size
        self.queued = False
        if self.lost or self.writing:
            return 0
        if held is None:  # several writes, or a C caller's: in the buffer
            self.write_ready()
        else:
            self.held = None
            size = PyBytes_GET_SIZE(held)
            sent = self.send_now(PyBytes_AS_STRING(held), size)
            if sent < 0:
                return 0
            if sent < size:
                self.append(PyBytes_AS_STRING(held) + sent, size - sent)
            else:
                if self.protocol_paused:
                    self.maybe_resume_protocol()
                if self.closing:
                    self.finish(None)
                elif self.eof:
                    self.shutdown_write()
                return 0
        if not self.lost and self.buffer is not None and PyByteArray_GET_SIZE(self.buffer) and not self.writing:
            self.writing = True
            self.update()
        return 0

    cdef int shutdown_write(self) except -1:
        if shutdown(self.fd, SHUT_WR) < 0:
            self.force_close(_os_error(errno))
        return 0

    cdef int maybe_pause_protocol(self) except -1:
        if not self.protocol_paused and self.get_write_buffer_size() > self.high:
            self.protocol_paused = True
            try:
                self.protocol.pause_writing()
            except Exception:
                log.exception("pause_writing failed")
        return 0

    cdef int maybe_resume_protocol(self) except -1:
        if self.protocol_paused and self.get_write_buffer_size() <= self.low:
            self.protocol_paused = False
            try:
                self.protocol.resume_writing()
            except Exception:
                log.exception("resume_writing failed")
        return 0

    # -- the poller's set --------------------------------------------------------
    cdef int update(self) except -1:
        """Register what the stream waits for now, if it changed."""
        cdef uint32_t want = 0
        cdef int op
        if self.lost:
            return 0
        if self.reading:
            want |= EPOLLIN
        if self.writing:
            want |= EPOLLOUT
        if want == self.mask:
            return 0
        # Nothing wanted: out of the set, or it would report the peer's hang-up forever.
        op = EPOLL_CTL_ADD if self.mask == 0 else (EPOLL_CTL_DEL if want == 0 else EPOLL_CTL_MOD)
        try:
            self.poller.ctl(op, self, want)
        except OSError as exc:
            self.force_close(exc)
            return 0
        self.mask = want
        return 0

    # -- the end -----------------------------------------------------------------
    cdef int force_close(self, exc) except -1:
        if self.lost:
            return 0
        self.closing = True
        self.held = None
        if self.buffer is not None:
            PyByteArray_Resize(self.buffer, 0)
        self.finish(exc)
        return 0

    cdef int finish(self, exc) except -1:
        """Close the descriptor now (which takes it out of the set: it is ours alone) and
        have connection_lost called from the loop, once."""
        if self.lost:
            return 0
        self.lost = True
        self.reading = self.writing = False
        self.mask = 0
        self.poller.forget(self)
        close(self.fd)
        self.lost_exc = exc
        self.poller.defer_lost(self)
        return 0

    cdef int call_connection_lost(self) except -1:
        cdef StreamProtocol typed = self.typed_protocol
        protocol, self.protocol = self.protocol, None
        self.on_data = None  # it holds the protocol too
        self.typed_protocol = None
        exc, self.lost_exc = self.lost_exc, None
        try:
            if typed is not None:
                typed.connection_lost(exc)  # a C call (a compiled protocol)
            else:
                protocol.connection_lost(exc)
        except Exception:
            log.exception("connection_lost failed")
        return 0
