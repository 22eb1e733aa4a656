"""A file object over buffers already in memory, for uploads without a joined copy. Pure code."""

from __future__ import annotations

import hashlib
import io


# A read returns at most this much (a raw stream may return less than asked): botocore hashes
# an upload's body in 1 MiB reads, each a new bytes object, in every upload thread at once.
MAX_READ_BYTES = 64 * 1024


class BufferStream(io.RawIOBase):
    """A seekable, read-only file over several buffers in a row (e.g. an .npy header and the
    samples' memory), so an upload reads the data where it lies instead of a joined copy.
    botocore seeks back to the start to retry, and to find the length. Reads are short (at most
    MAX_READ_BYTES); wrap it in io.BufferedReader where full reads are required."""

    def __init__(self, *buffers):
        self._views = [memoryview(b).cast("B") for b in buffers]
        self._starts = [0]
        for view in self._views:
            self._starts.append(self._starts[-1] + len(view))
        self.size = self._starts[-1]
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        chunk = bytearray(min(size, MAX_READ_BYTES, max(self.size - self._position, 0)))
        del chunk[self.readinto(chunk):]
        return bytes(chunk)

    def readall(self) -> bytes:
        parts = []
        while part := self.read(MAX_READ_BYTES):
            parts.append(part)
        return b"".join(parts)

    def readinto(self, target) -> int:
        target = memoryview(target).cast("B")
        written = 0
        for view, start in zip(self._views, self._starts):
            if written == len(target):
                break
            inner = self._position - start
            if 0 <= inner < len(view):
                n = min(len(view) - inner, len(target) - written)
                target[written:written + n] = view[inner:inner + n]
                written += n
                self._position += n
        return written

    def sha256(self) -> bytes:
        digest = hashlib.sha256()
        for view in self._views:
            digest.update(view)
        return digest.digest()
