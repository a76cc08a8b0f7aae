# A field line that a scan already checked (a name, a colon, a value of VCHAR, SP
# and HTAB, CRLF): where its parts are. Shared by _events (a Response's headers made
# from its field lines) and _rewrite (the lines copied to the client).

from libc.string cimport memchr


cdef struct FieldLine:
    Py_ssize_t colon  # the name is p[start:colon]
    Py_ssize_t value_start, value_end  # the value, without leading and trailing SP/HTAB
    Py_ssize_t next  # where the next line starts (after this one's CRLF)


cdef inline void read_field_line(const unsigned char *p, Py_ssize_t start, Py_ssize_t end,
                                 FieldLine *line) noexcept nogil:
    """The parts of the checked field line at ``p[start:]``; ``end`` bounds the lines."""
    cdef Py_ssize_t line_end = <const unsigned char *>memchr(p + start, 13, end - start) - p
    cdef Py_ssize_t lead = <const unsigned char *>memchr(p + start, 58, line_end - start) - p
    cdef Py_ssize_t tail = line_end
    line.colon = lead
    lead += 1
    while lead < line_end and (p[lead] == 32 or p[lead] == 9):
        lead += 1
    while tail > lead and (p[tail - 1] == 32 or p[tail - 1] == 9):
        tail -= 1
    line.value_start = lead
    line.value_end = tail
    line.next = line_end + 2
