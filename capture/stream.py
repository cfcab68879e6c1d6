"""Opening an input once: regular files and pipes, compressed or not.

``open_head(path)`` reads the first ``HEAD_BYTES`` of a file -- after decompression -- so that
its format can be told by content (``capture.sources.detect``), and returns them as an
:class:`Opened`, whose ``open()`` then gives the whole content from its first byte:

* a regular file is closed after its head is read and opened afresh by ``open()``: the inputs
  of one ingest (thousands of rotated captures, say) are not all held open at once;
* anything else -- a pipe, a FIFO, ``/dev/stdin``, a character device -- can be read only once
  (it cannot seek back): it stays open, and ``open()`` hands out that one stream, the head
  replayed before the rest. So ``cat x.pcapng | segmenter ingest /dev/stdin`` reads what
  ``segmenter ingest x.pcapng`` reads.

Compression is found by its magic number, as tshark does (wiretap's file_wrappers.c): gzip (the
standard library), zstd (the ``zstandard`` package: ``pip install 'segmenter[zstd]'``), xz and
bzip2 (the standard library). lz4 is recognised and refused with a message saying so. A stream
whose compressed data turns out damaged part-way ends there: its ``error`` says why, and
readers report the capture as damaged at that point, the packets before it kept.
"""

from __future__ import annotations

import io
import os
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from capture.errors import CaptureError

HEAD_BYTES = 65536  # how much of an input (after decompression) the format sniffers see
MAGIC_BYTES = 6  # the longest compression magic number (xz)


class _RawSource:
    """The bytes of the file itself, for a decompressor: first what was read ahead to find the
    compression, then the rest. Remembers an I/O error, so that it is not taken for damaged
    compressed data (bzip2's and gzip's decompressors raise ``OSError`` for those too)."""

    def __init__(self, raw: io.FileIO | io.BytesIO) -> None:
        self.raw = raw
        self.ahead = b""
        self.io_error: OSError | None = None

    def peek(self, n: int) -> bytes:
        """The first ``n`` bytes (fewer at the end of the file), kept to be read again."""
        while len(self.ahead) < n:
            got = self._read_raw(n - len(self.ahead))
            if not got:
                break
            self.ahead += got
        return self.ahead[:n]

    def _read_raw(self, n: int) -> bytes:
        try:
            return self.raw.read(n) or b""
        except OSError as exc:
            self.io_error = exc
            raise

    def read(self, n: int = -1) -> bytes:
        if self.ahead:
            if n < 0:
                data, self.ahead = self.ahead + self._read_all(), b""
                return data
            data, self.ahead = self.ahead[:n], self.ahead[n:]
            return data
        return self._read_all() if n < 0 else self._read_raw(n)

    def _read_all(self) -> bytes:
        chunks = []
        while chunk := self._read_raw(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.ahead:
            n = min(len(view), len(self.ahead))
            view[:n] = self.ahead[:n]
            self.ahead = self.ahead[n:]
            return n
        try:
            return self.raw.readinto(view) or 0
        except OSError as exc:
            self.io_error = exc
            raise

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self.raw.closed

    def close(self) -> None:
        self.raw.close()


@dataclass(frozen=True)
class Compression:
    """A compressed-file format: its name, magic number and how to decompress a stream."""

    name: str
    magic: bytes
    decompress: Callable[[_RawSource], Any] | None  # None: recognised, not read
    errors: Callable[[], tuple[type[BaseException], ...]]  # what its decompressor raises
    hint: str = ""  # what to do when it is not read


def _gzip(source: Any) -> Any:  # a _RawSource
    import gzip

    return gzip.GzipFile(fileobj=source, mode="rb")


def _gzip_errors() -> tuple[type[BaseException], ...]:
    return (EOFError, OSError, zlib.error)


def _zstd(source: Any) -> Any:  # a _RawSource
    try:
        import zstandard
    except ImportError:
        raise _NotReadable("zstd-compressed, and the zstandard package that reads it is not"
                           " installed (pip install 'segmenter[zstd]', or decompress it"
                           " first: zstd -dc FILE)") from None
    return _ZstdReader(source, zstandard.ZstdDecompressor())


class _ZstdReader:
    """A zstd stream, frame after frame (zstd --rsyncable and pzstd write several), through
    ``decompressobj``: zstandard's ``stream_reader`` takes a stream cut inside a frame for
    its end, this says so (``EOFError``). The compressed bytes are fed in pieces sized so that
    each gives about ``TARGET`` decompressed bytes, starting small: a frame of a huge ratio
    (runs of one byte) cannot make one piece hundreds of megabytes."""

    TARGET = 1 << 20
    FIRST, MOST = 512, 256 << 10

    def __init__(self, source: Any, dctx: Any) -> None:
        self.source = source
        self.dctx = dctx
        self.obj = dctx.decompressobj()
        self.in_frame = False  # bytes of a frame fed, its end not reached
        self.piece = self.FIRST
        self.out = b""
        self.pos = 0

    def read1(self, n: int) -> bytes:
        while self.pos >= len(self.out):
            chunk = self.source.read(self.piece)
            if not chunk:
                if self.in_frame:
                    raise EOFError("the zstd stream ends inside a frame")
                return b""
            self.out, self.pos = self._decompress(chunk), 0
            self.piece = max(self.FIRST, min(self.MOST, self.piece * self.TARGET
                                             // max(len(self.out), 1)))
        data = self.out[self.pos : self.pos + n]
        self.pos += len(data)
        return data

    def _decompress(self, chunk: bytes) -> bytes:
        parts = []
        while chunk:
            parts.append(self.obj.decompress(chunk))
            self.in_frame = not self.obj.eof
            if not self.obj.eof:
                break
            chunk = self.obj.unused_data  # the next frame starts in this chunk
            self.obj = self.dctx.decompressobj()
        return b"".join(parts)

    def close(self) -> None:
        self.source.close()


def _zstd_errors() -> tuple[type[BaseException], ...]:
    import zstandard

    return (EOFError, OSError, zstandard.ZstdError)


def _xz(source: Any) -> Any:  # a _RawSource
    import lzma

    return lzma.LZMAFile(source)


def _xz_errors() -> tuple[type[BaseException], ...]:
    import lzma

    return (EOFError, OSError, lzma.LZMAError)


def _bzip2(source: Any) -> Any:  # a _RawSource
    import bz2

    return bz2.BZ2File(source)


def _bzip2_errors() -> tuple[type[BaseException], ...]:
    return (EOFError, OSError, ValueError)


# Magic numbers: RFC 1952 (gzip), RFC 8878 (zstd frame), the xz file format 1.2.1, bzip2's
# "BZh" + block size digit, and the lz4 frame format (and its legacy frame).
COMPRESSIONS: tuple[Compression, ...] = (
    Compression("gzip", b"\x1f\x8b", _gzip, _gzip_errors),
    Compression("zstd", b"\x28\xb5\x2f\xfd", _zstd, _zstd_errors),
    Compression("xz", b"\xfd7zXZ\x00", _xz, _xz_errors),
    Compression("bzip2", b"BZh", _bzip2, _bzip2_errors),
    Compression("lz4", b"\x04\x22\x4d\x18", None, _gzip_errors,
                "decompress it first (lz4 -dc FILE | segmenter ingest /dev/stdin ...)"),
    Compression("lz4", b"\x02\x21\x4c\x18", None, _gzip_errors,
                "decompress it first (lz4 -dc FILE | segmenter ingest /dev/stdin ...)"),
)


class _NotReadable(Exception):
    """A compression recognised but not read here: the message says what to do."""


def compression_of(magic: bytes) -> Compression | None:
    """The compression whose magic number ``magic`` starts with, if any."""
    for comp in COMPRESSIONS:
        if magic.startswith(comp.magic) and (comp.name != "bzip2" or magic[3:4].isdigit()):
            return comp
    return None


class Stream(io.RawIOBase):
    """An input's content from its first byte, decompressed: ``readinto`` for our readers,
    ``read`` for scapy's, ``tell`` (bytes given so far) for progress.

    A compressed stream whose data is damaged part-way ends there, as if the file ended, and
    ``error`` then says what the decompressor found; an I/O error of the file itself is raised
    as the ``OSError`` it is.
    """

    def __init__(self, source: _RawSource, compression: Compression | None) -> None:
        super().__init__()
        self.source = source
        self.compression = compression
        self.inner: Any = source
        if compression is not None:
            assert compression.decompress is not None
            self.inner = compression.decompress(source)
        self.replay = b""  # bytes already read once (the head of a pipe), given again first
        self.given = 0
        self.error: str | None = None
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.replay:
            n = min(len(view), len(self.replay))
            view[:n] = self.replay[:n]
            self.replay = self.replay[n:]
            self.given += n
            return n
        if self._ended or not len(view):
            return 0
        n = self._read_inner(view)
        self.given += n
        return n

    def _read_inner(self, view: memoryview) -> int:
        if self.compression is None:
            return self.source.readinto(view)
        try:
            # read1: one step of the decompressor. A read() of many steps loses the steps
            # before one that raises (io.BufferedReader drops them), so a truncated stream
            # would end earlier than scapy's small reads of it find.
            data = self.inner.read1(len(view))
        except self.compression.errors() as exc:
            if self.source.io_error is not None:
                raise self.source.io_error from exc
            self.error = str(exc) or type(exc).__name__
            self._ended = True
            return 0
        n = len(data)
        view[:n] = data
        return n

    def read(self, size: int | None = -1) -> bytes:
        """``size`` bytes, fewer only at the end (as a buffered file's read: scapy's readers
        take a short read for the end of the file); all the rest for -1 or None."""
        if size is None or size < 0:
            return self.readall()
        return self.read_up_to(size)

    def read_up_to(self, n: int) -> bytes:
        """Up to ``n`` bytes: fewer only at the end (a pipe's read gives what is there)."""
        out = bytearray(n)
        view = memoryview(out)
        got = 0
        while got < n:
            step = self.readinto(view[got:])
            if not step:
                break
            got += step
        view.release()
        del out[got:]
        return bytes(out)

    def tell(self) -> int:
        return self.given

    def close(self) -> None:
        if not self.closed:
            try:
                if self.inner is not self.source:
                    self.inner.close()
            finally:
                self.source.close()
        super().close()


@dataclass
class _Held:
    """The one stream of an input that can be read only once, until it is taken."""

    stream: Stream | None


@dataclass(frozen=True)
class Opened:
    """An input about to be read: its first bytes (decompressed), how it is stored, and how to
    read it (``open()``)."""

    path: str
    head: bytes
    compression: str | None  # "gzip", "zstd", "xz", "bzip2" or None
    size: int  # bytes on disk; 0 for a pipe
    held: _Held | None = field(default=None, compare=False, repr=False)
    # The content itself, held in memory (:func:`in_memory`), read in place of the file.
    data: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def gzipped(self) -> bool:
        return self.compression == "gzip"

    @property
    def seekable(self) -> bool:
        """A regular file, which ``open()`` may open again; else a stream read only once."""
        return self.held is None

    def open(self) -> Stream:
        """The whole content from its first byte; ``CaptureError`` for a pipe already taken."""
        if self.held is not None:
            stream = self.held.stream
            if stream is None:
                raise CaptureError("a pipe or device can be read only once", path=self.path)
            self.held.stream = None
            return stream
        if self.data is not None:
            return Stream(_RawSource(io.BytesIO(self.data)), None)
        stream, _st = _open_stream(self.path)
        return stream


def _open_stream(path: str) -> tuple[Stream, os.stat_result]:
    """The file at ``path`` opened, its compression found; ``CaptureError`` naming it."""
    try:
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the Stream
    except FileNotFoundError as exc:
        raise CaptureError("no such file", path=path) from exc
    except PermissionError as exc:
        raise CaptureError("permission denied", path=path) from exc
    except IsADirectoryError as exc:
        raise CaptureError("is a directory, not a capture file", path=path) from exc
    except OSError as exc:
        raise CaptureError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    source = _RawSource(raw)
    try:
        st = os.fstat(raw.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise CaptureError("is a directory, not a capture file", path=path)
        comp = compression_of(source.peek(MAGIC_BYTES))
        if comp is not None and comp.decompress is None:
            raise CaptureError(f"{comp.name}-compressed, which is not read here: {comp.hint}",
                               path=path)
        try:
            return Stream(source, comp), st
        except _NotReadable as exc:
            raise CaptureError(str(exc), path=path) from None
    except OSError as exc:
        source.close()
        raise CaptureError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    except BaseException:
        source.close()
        raise


def open_head(path: str) -> Opened:
    """Read the first bytes of ``path`` (decompressed) without losing them: see the module."""
    if os.path.isdir(path):
        raise CaptureError("is a directory, not a capture file", path=path)
    stream, st = _open_stream(path)
    comp = stream.compression
    try:
        head = stream.read_up_to(HEAD_BYTES)
    except OSError as exc:
        stream.close()
        raise CaptureError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    except BaseException:
        stream.close()
        raise
    if comp is not None and not head and stream.error is not None:
        stream.close()
        raise CaptureError(f"{comp.name}-compressed, but cannot be decompressed:"
                           f" {stream.error}", path=path)
    if not head:
        stream.close()
        raise CaptureError("empty file", path=path)
    name = comp.name if comp is not None else None
    if stat.S_ISREG(st.st_mode):
        stream.close()
        return Opened(path, head, name, st.st_size)
    # A pipe or device: keep it open; what was read is given again first.
    stream.replay = head
    stream.given = 0
    return Opened(path, head, name, 0, _Held(stream))


def in_memory(path: str, data: bytes) -> Opened:
    """Content already read, uncompressed (a run of lines appended to a growing file after its
    header, standard input read in parts), to be read as a file of that content: ``path``
    names it in messages."""
    return Opened(path, data[:HEAD_BYTES], None, len(data), data=data)


def is_compressed(head: bytes) -> bool:
    """Whether a file starting with ``head`` (its raw bytes) is of a compression read here or
    recognised: such a file cannot be read by parts from an offset."""
    return compression_of(head[:MAGIC_BYTES]) is not None
