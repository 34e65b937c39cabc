"""Verified gzip decompression: every member's CRC-32 and length (ISIZE) are checked.

nibabel reads a ``.nii.gz`` through :class:`gzip.GzipFile` and stops after the voxel data, so the
CRC-32 and length in the gzip trailer are never read and a damaged file loads with changed voxels.
Here the whole file is decompressed once, in memory, and verified: with ISA-L's ``igzip`` (the ``isal``
package, several times faster than zlib) when it is installed, else with the standard library's
:func:`gzip.decompress`, which checks the same fields. :func:`head` decompresses only the first bytes,
so a header can be checked before the data are decompressed.
"""

from __future__ import annotations

import gzip
import struct
import zlib

try:  # ISA-L: decompresses several times faster than zlib and verifies CRC-32 and ISIZE of every member
    from isal import igzip as _igzip
except ImportError:  # pragma: no cover - isal is a dependency; the standard library does the same, slower
    _igzip = None

MAGIC = b"\x1f\x8b"
"""The first two bytes of every gzip member."""
MAX_RATIO = 1032
"""Deflate's largest possible expansion (output bytes per input byte), plus a margin below."""

CHECKSUM, LENGTH, TRUNCATED, DAMAGED, NOT_GZIP, TOO_LARGE = (
    "checksum", "length", "truncated", "damaged", "not gzip", "too large")

_ADVICE = "re-copy or re-download it"
_MESSAGES = {
    CHECKSUM: f"corrupt: the gzip checksum does not match (the file was damaged after it was written); {_ADVICE}",
    LENGTH: "corrupt: the gzip length field does not match the decompressed data (the file was damaged after it "
            f"was written); {_ADVICE}",
    TRUNCATED: "truncated: the compressed data end before the gzip end marker (the file was cut short, e.g. by an "
               f"interrupted copy or download); {_ADVICE}",
    DAMAGED: "corrupt: the compressed data cannot be decompressed (the file was damaged after it was written)",
    NOT_GZIP: "corrupt: the gzip stream is followed by data that are not gzip (the file was damaged or two files "
              "were joined)",
    TOO_LARGE: "corrupt: the compressed data hold far more than the header describes (a damaged file or a "
               "decompression bomb); decompression stopped",
}


class GzipError(Exception):
    """The gzip data are damaged or incomplete.

    Attributes:
        kind: ``checksum``, ``length``, ``truncated``, ``damaged`` or ``not gzip``.
        detail: the decompressor's own words.
    """

    def __init__(self, kind: str, detail: str = ""):
        self.kind, self.detail = kind, detail
        super().__init__(self.message())

    def message(self) -> str:
        """The problem in plain words, for a :class:`~braingui.errors.CaseError`."""
        text = _MESSAGES[self.kind]
        if self.kind in (DAMAGED, NOT_GZIP, TOO_LARGE):
            text += (f" ({self.detail})" if self.detail else "") + f"; {_ADVICE}"
        return text


def backend() -> str:
    """``"isal"`` when ISA-L's igzip decompresses, else ``"zlib"``."""
    return "isal" if _igzip is not None else "zlib"


def is_gzip(raw: bytes | memoryview) -> bool:
    """True when ``raw`` starts like a gzip member."""
    return bytes(raw[:2]) == MAGIC


def trailer_size(raw: bytes) -> int | None:
    """ISIZE of the last member (the uncompressed size modulo 2**32), or ``None`` when too short."""
    return struct.unpack("<I", raw[-4:])[0] if len(raw) >= 18 else None


def largest_output(raw_size: int) -> int:
    """The most bytes ``raw_size`` bytes of gzip can decompress to (deflate expands at most 1032:1)."""
    return raw_size * MAX_RATIO + 1024


def head(raw: bytes, size: int) -> bytes:
    """The first ``size`` decompressed bytes of a gzip file (fewer if it holds fewer); the rest untouched.

    The trailer is not checked here (it is not reached); :func:`decompress` checks it.

    Raises:
        GzipError: the stream is damaged or ends within the returned bytes.
    """
    view, pos, step = memoryview(raw), 0, 16 * 1024
    out: list[bytes] = []
    have = 0
    dec = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    while have < size:
        if dec.eof:  # a further member (or the end)
            rest = dec.unused_data + bytes(view[pos:])
            if not rest.strip(b"\x00"):
                break
            if rest[:2] != MAGIC:
                raise GzipError(NOT_GZIP, f"{len(rest)} bytes after the end of the gzip data")
            dec, view, pos = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS), memoryview(rest), 0
        if dec.unconsumed_tail:
            chunk = dec.unconsumed_tail
        elif pos < len(view):
            chunk, pos = view[pos:pos + step], pos + step
        else:
            raise GzipError(TRUNCATED, "the stream ends inside the first bytes")
        try:
            piece = dec.decompress(chunk, size - have)
        except zlib.error as exc:  # a small file: zlib reaches the trailer and checks it here
            raise _classify(exc) from exc
        out.append(piece)
        have += len(piece)
    return b"".join(out)


def decompress(raw: bytes, limit: int | None = None) -> bytes:
    """Decompress every member of a gzip file and verify each one's CRC-32 and length.

    Args:
        raw: the whole file's bytes.
        limit: stop, and refuse, once the output would pass this many bytes (zlib, streamed: for a
            file whose length field is out of line with its header); ``None``: no limit (igzip).

    Returns:
        The decompressed bytes (memory: what the file really holds, never what a header claims).

    Raises:
        GzipError: a checksum or length mismatch, a cut-off or damaged stream, junk after it, or more
            than ``limit`` bytes.
    """
    if limit is not None:
        return _bounded(raw, limit)
    try:
        return _igzip.decompress(raw) if _igzip is not None else gzip.decompress(raw)
    except EOFError as exc:
        if _igzip is not None:  # igzip says "ended before the end-of-stream marker" for junk after the data too
            try:
                gzip.decompress(raw)  # the slower reader tells the two apart (on this error path only)
            except (gzip.BadGzipFile, OSError, zlib.error) as std:
                raise _classify(std) from exc
            except EOFError:
                pass
        raise GzipError(TRUNCATED, str(exc)) from exc
    except (gzip.BadGzipFile, OSError, zlib.error, ValueError) as exc:
        raise _classify(exc) from exc
    except Exception as exc:  # isal_zlib.error / IsalError (an invalid deflate block)
        if type(exc).__name__ in ("error", "IsalError"):
            raise GzipError(DAMAGED, _first_line(exc)) from exc
        raise


def _bounded(raw: bytes, limit: int) -> bytes:
    """:func:`decompress` with zlib, member by member, never holding more than ``limit + 1`` bytes."""
    out: list[bytes] = []
    have = 0
    rest: bytes | memoryview = memoryview(raw)
    while True:
        dec = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # checks each member's CRC-32 and ISIZE itself
        chunk = rest
        while True:
            try:
                piece = dec.decompress(chunk, limit + 1 - have)
            except zlib.error as exc:
                raise _classify(exc) from exc
            out.append(piece)
            have += len(piece)
            if have > limit:
                raise GzipError(TOO_LARGE, f"more than {limit} bytes")
            if dec.eof:
                break
            chunk = dec.unconsumed_tail
            if not chunk:
                raise GzipError(TRUNCATED, "the stream ends before its end marker")
        rest = dec.unused_data
        if not rest.strip(b"\x00"):
            return b"".join(out)
        if rest[:2] != MAGIC:
            raise GzipError(NOT_GZIP, f"{len(rest)} bytes after the end of the gzip data")


def _classify(exc: BaseException) -> GzipError:
    text = _first_line(exc)
    low = text.lower()
    if "crc" in low or "incorrect data check" in low:
        return GzipError(CHECKSUM, text)
    if "length" in low:
        return GzipError(LENGTH, text)
    if "not a gzipped file" in low:
        return GzipError(NOT_GZIP, text)
    return GzipError(DAMAGED, text)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) < 120 else text[:117] + "..."
