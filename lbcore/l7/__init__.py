"""Sans-IO layer-7 core: HTTP/1.1 framing, ACL language, routing, balancing, persistence.

Nothing in this package does I/O or imports an event loop.
"""
