# Declarations for the compiled build of http.py (see flow.pxd): the connection and
# the exchange as extension types, their fields in C, the request path's methods
# called directly between them.

cimport cython

# The events' C fields, under names of their own: http.py imports the classes that
# serve (lbcore.l7.http1), which are these when the extensions are built.
from lbcore._fastpath._clock cimport Clock as CClock
from lbcore._fastpath._events cimport Data as CData, Request as CRequest, Response as CResponse
from lbcore._fastpath._logline cimport RecordMaker as CRecordMaker
from lbcore._fastpath._rewrite cimport HeadWriter as CHeadWriter
from lbcore._fastpath._sockio cimport DescriptorWriter as CDescriptorWriter
from lbcore._fastpath._streams cimport ProtocolMaker as CProtocolMaker, Stream as CStream, StreamProtocol as CStreamProtocol
from lbcore._fastpath._tlsconn cimport TlsConnection as CTlsConnection, TlsServer as CTlsServer
from lbcore.l7._http1_requests cimport RequestReader, new_request_reader
from lbcore.l7._http1_responses cimport ResponseReader
from lbcore.l7.balance cimport MemberState
from lbcore.l7.facts cimport RequestFacts, new_request_facts
from lbcore.l7.router cimport Route
from lbcore.proxy.accesslog cimport AccessLogs
from lbcore.proxy.backend cimport BackendConnection, BackendPools, MemberPool, OwnerBase
from lbcore.proxy.flow cimport Admission, Deadline, ReadGate, new_deadline, new_read_gate, transport_peer, transport_socket
from lbcore.proxy.runtime cimport ListenerRuntime, MemberInfo, PoolRuntime, Revision, client_v4, parse_client_text
from lbcore.proxy.stats cimport ListenerCounters, MemberCounters, PoolCounters, WorkerStats

cdef class Exchange

cdef long _PEER_FULL, _PIPELINE, _BUFFERED  # ReadGate's reasons
cdef CRecordMaker _records  # makes the access records (http.py)
cdef CHeadWriter _heads  # writes the heads each way (http.py)
cdef CDescriptorWriter _writer  # corks a stream by its descriptor (http.py)

cdef class WorkerContext:
    cdef public object loop
    cdef public CClock clock
    cdef public WorkerStats stats
    cdef public BackendPools backends
    cdef public AccessLogs access_logs
    cdef public Admission admission
    cdef public Revision revision
    cdef public dict bind_listener, passive
    cdef public bint stopping

# A stream's (or the TLS layer's) protocol, its data_received called in C: the base is
# declared here only, http.py's class has none (the pure build has no such base).
cdef class ClientConnection(CStreamProtocol):
    cdef public object worker, loop, listener_name, transport, sock
    cdef public CStream stream
    cdef public CTlsConnection tls
    cdef public WorkerContext context
    cdef public ReadGate gate
    cdef public Deadline deadline
    cdef public int phase
    cdef public object client_ip, client_ip_text, client_port
    cdef public RequestReader reader
    cdef public list pending
    cdef public Py_ssize_t pending_at
    cdef public bint closed, counted
    cdef public ListenerCounters lstats
    cdef public long requests
    cdef public object tunnel, tunnel_backlog
    cdef public double tunnel_timeout
    cdef public object sni, cert_headers, cert_header_names
    cdef public Exchange exchange
    cdef public ListenerRuntime listener
    cdef public double head_started
    cdef _setup(self, worker, WorkerContext context, str listener_name)
    @cython.locals(listener=ListenerRuntime, number=cython.longlong, stream=CStream, tls=CTlsConnection,
                   port=cython.int, lstats=ListenerCounters)
    cpdef connection_made(self, transport)
    @cython.locals(lstats=ListenerCounters, tls=CTlsConnection, resumed=cython.bint)
    cpdef tls_established(self, transport, ListenerRuntime listener)
    cpdef data_received(self, data)
    cpdef connection_lost(self, exc)
    cpdef dispatch(self)
    @cython.locals(pending=list, at=Py_ssize_t)
    cpdef take_pending(self)
    cpdef exchange_done(self, Exchange ex, bint keep_alive)
    @cython.locals(stream=CStream, tls=CTlsConnection)
    cpdef write(self, data)
    cpdef bint counted_out(self, Py_ssize_t size) except -1
    @cython.locals(stream=CStream, tls=CTlsConnection)
    cpdef write_last(self, data)
    @cython.locals(stream=CStream)
    cpdef close(self)

cdef class TlsClientConnection(ClientConnection):
    pass

@cython.locals(conn=ClientConnection)
cpdef ClientConnection new_connection(bint tls, worker, WorkerContext context, str listener_name)

# An acceptor's factory, its make() called in C (the base declared here only).
cdef class ProtocolFactory(CProtocolMaker):
    cdef public object worker, tcp_client, terminator
    cdef public WorkerContext context
    cdef public str key
    @cython.locals(listener=ListenerRuntime, server=CTlsServer)
    cpdef make(self)

# A member connection's owner, its backend_data called in C (the base declared here
# only, as ClientConnection's).
cdef class Exchange(OwnerBase):
    cdef public ClientConnection conn
    cdef public CRequest request
    cdef public Revision revision
    cdef public MemberState member
    cdef public ListenerRuntime listener
    cdef public PoolRuntime pool
    cdef public BackendConnection backend
    cdef public PoolCounters pstats
    cdef public MemberCounters mstats
    cdef public double started, accepted
    cdef public object status
    cdef public long bytes_out
    cdef public object termination, t_queue, t_connect, t_first_byte
    cdef public double sent_at
    cdef public MemberPool slot
    cdef public object acl
    cdef public RequestFacts facts
    cdef public bint client_keep_alive, request_done
    cdef public object body_pending
    cdef public long body_pending_size
    cdef public bint body_sent
    cdef public long body_received
    cdef public object body_limit
    cdef public bint discard_body
    cdef public ResponseReader reader
    cdef public bint response_started, response_chunked, response_keep_alive, backend_keep_alive
    cdef public list tried
    cdef public bint finished
    cdef _setup(self, ClientConnection conn, CRequest request)
    @cython.locals(route=Route, pool=PoolRuntime, pstats=PoolCounters)
    cpdef start(self)
    cpdef pick_member(self)
    @cython.locals(info=MemberInfo, pool=PoolRuntime, mpool=MemberPool)
    cpdef MemberPool member_pool(self, MemberState member)
    @cython.locals(mpool=MemberPool, backend=BackendConnection, pool=PoolRuntime, mstats=MemberCounters)
    cpdef connect(self, MemberState member)
    @cython.locals(info=MemberInfo, reader=ResponseReader, conn=ClientConnection, stream=CStream, tls=CTlsConnection, waiting=Py_ssize_t)
    cpdef attach(self, BackendConnection backend)
    cpdef client_event(self, event)
    cpdef send_body(self, data)
    cpdef backend_data(self, BackendConnection backend, data)
    @cython.locals(data_event=CData, head=CResponse)
    cpdef forward(self, list events)
    cpdef write_end(self, data, bint keep_alive)
    @cython.locals(now=double)
    cpdef response_head(self, CResponse response)
    @cython.locals(now=double)
    cpdef response_complete(self)
    cpdef finish(self)
    cpdef free_slot(self)
    cpdef release_member(self)
    @cython.locals(now=double, started=double, t_request=double)
    cpdef access_record(self, MemberState member)

@cython.locals(ex=Exchange)
cpdef Exchange new_exchange(ClientConnection conn, CRequest request)
