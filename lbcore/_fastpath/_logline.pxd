# The compiled access-log helpers (_logline.pyx) that the compiled engine calls as C
# methods: lbcore/proxy/http.pxd holds a RecordMaker in a typed global.

cdef class RecordMaker:
    cpdef make(self, accepted, started, client_ip, client_port, listener, acl, pool, member,
               method, target, http_version, host, user_agent, status, bytes_in, bytes_out,
               t_tls, t_request, t_queue, t_connect, t_first_byte, t_total, retries, termination)
