"""A table in shared memory: a memfd cut into named columns.

Every field is reached by name, `table.weight[i]` or `table.pid[row]`, never by an offset
computed at the call site.  A column is a memoryview over the shared pages: a fixed count of
8-byte integers ("q") or floats ("d"), or of fixed-width byte strings (an int: the width).
Columns rather than records because the hot readers scan one field over many rows (the
balancer's pick reads status and health of every member) and because a worker's counter
cell is then a strided view it indexes by member (`busy[cell::cells]`).

The memfd (not an anonymous mapping) lets `mpmctl upgrade` pass a table to the next master.
Its first words are a magic number and a fingerprint of the layout, so a master never
misreads a table that an older version of the code laid out differently: `LayoutMismatch`.

A reader may see a row mid-update: every field is a counter, a state or a time, each one
written whole, so a torn read is one update stale at most.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import zlib

_MAGIC = 0x4D504D54              # "MPMT"
_HEADER = 2                      # words: magic, layout fingerprint


class LayoutMismatch(Exception):
    """An inherited table was laid out by different code."""


class SharedTable:
    """Subclasses call `__init__` with their columns: (name, kind, length), kind "q", "d" or a
    byte width.  Each column becomes an attribute of that name."""

    def __init__(self, label: str, columns: list[tuple[str, str | int, int]], fd: int | None = None):
        layout, offset = {}, _HEADER * 8
        for name, kind, length in columns:
            width = kind if isinstance(kind, int) else 8
            layout[name] = (kind, offset, length)
            offset += -(-width * length // 8) * 8
        size = max(-(-offset // mmap.PAGESIZE) * mmap.PAGESIZE, mmap.PAGESIZE)
        fingerprint = zlib.crc32(repr(columns).encode())
        inherited = fd is not None
        if not inherited:
            fd = os.memfd_create(label, os.MFD_CLOEXEC)
            os.ftruncate(fd, size)
        elif os.fstat(fd).st_size < size:
            raise LayoutMismatch(f"{label}: the inherited table is smaller than this layout")
        self.fd = fd
        self.map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        self._q = memoryview(self.map).cast("q")      # the same bytes, read as integers ...
        self._d = memoryview(self.map).cast("d")      # ... or as floats
        self._b = memoryview(self.map)
        if inherited and (self._q[0], self._q[1]) != (_MAGIC, fingerprint):
            self.close(keep_fd=True)
            raise LayoutMismatch(f"{label}: the inherited table has another layout")
        self._q[0], self._q[1] = _MAGIC, fingerprint
        self._views = []
        for name, (kind, start, length) in layout.items():
            if kind == "q":
                view = self._q[start // 8:start // 8 + length]
            elif kind == "d":
                view = self._d[start // 8:start // 8 + length]
            else:
                view = self._b[start:start + kind * length]
            self._views.append(view)
            setattr(self, name, view)
        self._widths = {name: kind for name, (kind, _, _) in layout.items() if isinstance(kind, int)}

    def address(self, column: str) -> int:
        """Where a column starts in this process's memory, for C code that reads the table
        (conf._tickets); valid while the table is open."""
        pointer = ctypes.c_char.from_buffer(getattr(self, column))
        address = ctypes.addressof(pointer)
        del pointer               # the export ends here: the table can still be closed
        return address

    # -- the lock: a record lock on the memfd, so it holds across processes (what each table
    # takes it for is in its own docstring) --------------------------------------------------
    def lock(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)

    def unlock(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)

    # -- fixed-width byte strings (names, addresses) ------------------------------------------
    def get_bytes(self, column: str, index: int) -> bytes:
        width = self._widths[column]
        raw = bytes(getattr(self, column)[index * width:(index + 1) * width])
        return raw.rstrip(b"\0")

    def set_bytes(self, column: str, index: int, value: bytes) -> None:
        width = self._widths[column]
        if len(value) > width:
            raise ValueError(f"{column}: {len(value)} bytes do not fit in {width}")
        getattr(self, column)[index * width:(index + 1) * width] = value.ljust(width, b"\0")

    def close(self, keep_fd: bool = False) -> None:
        """Unmap (and close the memfd unless `keep_fd`).  Views handed out elsewhere in this
        process keep the mapping alive until they go; the memfd closes regardless."""
        for view in getattr(self, "_views", ()):
            view.release()
        for view in (self._q, self._d, self._b):
            view.release()
        try:
            self.map.close()
        except BufferError:
            pass
        if not keep_fd:
            os.close(self.fd)


class WorkerCells:
    """For a SharedTable whose counters have one cell per worker (columns `cell_pid` and
    `cells_used`, attribute `cells`): a worker claims its cell once, and only it writes there."""

    def claim(self, pid: int) -> int:
        """A cell for worker `pid`, or -1 when every cell is taken."""
        self.lock()
        try:
            for cell in range(self.cells):
                if self.cell_pid[cell] == 0:
                    self.cell_pid[cell] = pid
                    self.cells_used[0] = max(self.cells_used[0], cell + 1)
                    return cell
            return -1
        finally:
            self.unlock()
