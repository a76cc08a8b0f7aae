# Field lines in C. ``word_has_ctl``: the eight-bytes-at-a-time test for a value's
# bad bytes, shared by _heads (the scan) and _rewrite (a value's check).
# ``read_field_line``: where the parts of a field line that a scan already checked
# are (a name, a colon, a value of VCHAR, SP and HTAB, CRLF), shared by _events (a
# Response's headers made from its field lines) and _rewrite (the lines copied to
# the client).

from libc.stdint cimport uint64_t
from libc.string cimport memchr


cdef inline bint word_has_ctl(uint64_t x) noexcept nogil:
    """Some byte of x is < 0x20 or is 0x7f (exact "any" tests; HTAB is among the hits)."""
    cdef uint64_t below = (x - 0x2020202020202020ULL) & ~x & 0x8080808080808080ULL
    cdef uint64_t d = x ^ 0x7F7F7F7F7F7F7F7FULL
    cdef uint64_t delete = (d - 0x0101010101010101ULL) & ~d & 0x8080808080808080ULL
    return (below | delete) != 0


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
