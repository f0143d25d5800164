"""The one copy buffer a worker process shares across all its tunnels and bodies.

A worker's loop runs one callback at a time and every copy finishes (or saves its
leftover) before returning, so a single buffer serves every connection.  256 KiB
matched HAProxy's bulk relay with 256 KiB buffers here (DESIGN.md); reads of small
messages only touch the first page of it.
"""

SHARED_BUFFER_SIZE = 256 * 1024
SHARED_BUFFER = bytearray(SHARED_BUFFER_SIZE)
SHARED_VIEW = memoryview(SHARED_BUFFER)
