"""Operating-system plumbing the drivers use that is not a port type:
TAP queues and their link state (``tuntap``), waiting on many fds from the
event loop (``fdwait``)."""
