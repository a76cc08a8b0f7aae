# cython: language_level=3, boundscheck=False, wraparound=False
"""Socket calls the engine makes often: the compiled twin of ``_sockio_py``.

Same contract as the pure twin (read it there): ``send_datagrams(sock, datagrams,
start=0)`` returns how many of ``datagrams[start:]`` went out, in order, stopping at the
first the kernel refuses, and raises that one's ``OSError`` when it was the first.
This is what ``sendmmsg(2)`` itself does, so each call is one system call per BATCH
datagrams, not one per datagram: on this machine a syslog line costs ~2.3 µs of CPU
sent this way against ~3.4 µs through ``socket.send`` (``bench/micro/test_sockio.py``;
the access log sends one datagram per request, haproxy a ``sendmsg`` per line).

``encode_datagrams(messages, limit)``: an exact ``str`` that is ASCII (every access-log
line) becomes bytes by one copy of its data; anything else is encoded as the pure twin
does it.

``cork(sock)`` is one ``setsockopt`` on ``sock.fileno()``: uvloop's socket object makes a
``getsockname`` before each of its own ``setsockopt`` calls (one system call fewer per
connection that ends corked, see ``ClientConnection.write_last``).

``send_now(sock, data)`` is one ``send(MSG_DONTWAIT | MSG_NOSIGNAL)`` of a bytes object
on ``sock.fileno()`` (uvloop's socket object has no ``send``); ``DescriptorWriter().send_now(fd,
data)`` the same on a descriptor, a C method (``_sockio.pxd``).

``peer_name(sock)`` is one ``getpeername`` on ``sock.fileno()``; an IPv4 address is
written out here (four numbers: what ``inet_ntop`` makes through ``snprintf``, at a
tenth of the instructions), any other family is left to ``sock.getpeername()``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_1BYTE_DATA, PyUnicode_GET_LENGTH
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno
from libc.errno cimport EAGAIN, EBADF, EINTR, errno
from libc.string cimport memset
from posix.uio cimport iovec

from lbcore._fastpath._ipv4 cimport ipv4_text

import os

cdef extern from "<sys/socket.h>" nogil:
    struct msghdr:
        void *msg_name
        unsigned int msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags

    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len

    int sendmmsg(int sockfd, mmsghdr *msgvec, unsigned int vlen, int flags)
    int setsockopt(int sockfd, int level, int optname, const void *optval, unsigned int optlen)
    ctypedef unsigned int socklen_t
    struct sockaddr:
        unsigned short sa_family
    struct sockaddr_storage:
        unsigned short ss_family
    int getpeername(int sockfd, sockaddr *addr, socklen_t *addrlen)
    int AF_INET
    ssize_t send(int sockfd, const void *buf, size_t len, int flags)
    int MSG_DONTWAIT, MSG_NOSIGNAL

cdef extern from "<netinet/in.h>" nogil:
    int IPPROTO_TCP
    struct in_addr:
        unsigned int s_addr
    struct sockaddr_in:
        unsigned short sin_family
        unsigned short sin_port
        in_addr sin_addr
    unsigned short ntohs(unsigned short)

cdef extern from "<netinet/tcp.h>" nogil:
    int TCP_CORK

__all__ = ["IMPLEMENTATION", "BATCH", "DescriptorWriter", "cork", "encode_datagrams", "peer_name", "send_datagrams",
           "send_now"]

IMPLEMENTATION = "compiled"

cdef enum:
    _BATCH = 64  # datagrams per sendmmsg: a whole flush of typical lines in a few calls

BATCH = _BATCH


def send_datagrams(sock, datagrams, Py_ssize_t start=0):
    """Send ``datagrams[start:]`` in order until one is refused; return how many were sent."""
    cdef Py_ssize_t total, index, count, i
    cdef Py_ssize_t sent = 0
    cdef int fd, result
    cdef mmsghdr messages[_BATCH]
    cdef iovec vectors[_BATCH]
    cdef object data
    cdef list items
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if sock.gettimeout() != 0.0:
        raise ValueError("send_datagrams needs a non-blocking socket")
    # Our own list: it holds every datagram alive while a pointer into it is in use, and
    # its length and items are the ones checked here, whatever the sequence does.
    items = list(datagrams)
    total = len(items)
    for index in range(start, total):
        data = items[index]
        if type(data) is not bytes:
            raise TypeError(f"a datagram must be bytes, not {type(data).__name__}")
    fd = sock.fileno()
    memset(messages, 0, sizeof(messages))
    index = start
    while index < total:
        count = min(<Py_ssize_t>_BATCH, total - index)
        for i in range(count):
            data = items[index + i]
            vectors[i].iov_base = PyBytes_AS_STRING(data)
            vectors[i].iov_len = PyBytes_GET_SIZE(data)
            messages[i].msg_hdr.msg_iov = &vectors[i]
            messages[i].msg_hdr.msg_iovlen = 1
        result = sendmmsg(fd, messages, <unsigned int>count, 0)
        if result < 0:
            if errno == EINTR:
                PyErr_CheckSignals()  # a handler that raises ends the call (PEP 475)
                continue
            if sent == 0:
                PyErr_SetFromErrno(OSError)
            return sent
        sent += result
        index += result
        if result < count:
            return sent  # the next one was refused: the caller calls again from it to learn why
    return sent


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)


def encode_datagrams(messages, Py_ssize_t limit):
    """Each message as ASCII (``backslashreplace``), at most ``limit`` bytes."""
    cdef list out = []
    cdef Py_ssize_t n
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    for message in messages:
        if type(message) is str and PyUnicode_IS_ASCII(message):
            n = min(PyUnicode_GET_LENGTH(message), limit)
            out.append(PyBytes_FromStringAndSize(<const char *>PyUnicode_1BYTE_DATA(message), n))
        else:
            out.append(message.encode("ascii", "backslashreplace")[:limit])
    return out


def cork(sock):
    """Set TCP_CORK on ``sock``."""
    cdef int fd = sock.fileno()
    cdef int one = 1
    if fd < 0:
        raise OSError(EBADF, os.strerror(EBADF))  # what setsockopt on a closed socket.socket says
    if setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)) != 0:
        PyErr_SetFromErrno(OSError)


def peer_name(sock):
    """``sock.getpeername()``, or None when the socket has no peer (closed, reset)."""
    cdef sockaddr_storage address
    cdef socklen_t size = sizeof(address)
    cdef sockaddr_in *v4
    cdef int fd = sock.fileno()
    if fd < 0 or getpeername(fd, <sockaddr *>&address, &size) != 0:
        return None
    if address.ss_family != AF_INET:
        try:
            return sock.getpeername()
        except OSError:
            return None
    v4 = <sockaddr_in *>&address
    return (ipv4_text(<const unsigned char *>&v4.sin_addr), ntohs(v4.sin_port))


def send_now(sock, data):
    """Send what the kernel takes of ``data`` now: its count, 0 when it takes nothing
    (full, or ``data`` is not bytes), -1 on an error or a socket without a descriptor."""
    if type(data) is not bytes:
        return 0
    return _send_now(sock.fileno(), data)


cdef Py_ssize_t _send_now(int fd, bytes data):
    cdef ssize_t sent
    if fd < 0:
        return -1
    while True:
        sent = send(fd, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), MSG_DONTWAIT | MSG_NOSIGNAL)
        if sent >= 0:
            return sent
        if errno == EINTR:
            continue
        if errno == EAGAIN:  # EWOULDBLOCK is EAGAIN on Linux
            return 0
        return -1


cdef class DescriptorWriter:
    """``send_now`` on a descriptor its caller took once (``sock.fileno()``), as a C
    method: the compiled engine's connections hold one in a typed global
    (lbcore/proxy/http.pxd, backend.pxd) and write through it without a Python call or
    a ``fileno()`` method call on uvloop's socket object per write."""

    cpdef Py_ssize_t send_now(self, int fd, data):
        """``send_now`` of ``data`` on ``fd`` (-1: no descriptor)."""
        if type(data) is not bytes:
            return 0
        return _send_now(fd, <bytes>data)

    cpdef int cork(self, int fd) except -1:
        """``cork`` of the socket whose descriptor is ``fd`` (-1: closed, EBADF)."""
        cdef int one = 1
        if fd < 0:
            raise OSError(EBADF, os.strerror(EBADF))
        if setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)) != 0:
            PyErr_SetFromErrno(OSError)
        return 0
