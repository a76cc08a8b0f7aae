# An IPv4 address's text, written out in C: four numbers, what inet_ntop makes through
# snprintf at about a tenth of the instructions. Used by _sockio (peer_name) and
# _streams (the peer's address from accept4).

cdef inline str ipv4_text(const unsigned char *octets):
    """The dotted-quad text of the four octets (network order) at ``octets``."""
    cdef char text[16]
    cdef int n = 0, i, octet
    for i in range(4):
        octet = octets[i]
        if octet >= 100:
            text[n] = c'0' + octet // 100
            n += 1
        if octet >= 10:
            text[n] = c'0' + octet // 10 % 10
            n += 1
        text[n] = c'0' + octet % 10
        n += 1
        if i < 3:
            text[n] = c'.'
            n += 1
    return text[:n].decode("ascii")
