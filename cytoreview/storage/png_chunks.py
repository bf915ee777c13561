"""Checking a PNG's chunks before libpng sees them, so a bad file gets one clear line.

libpng, inside OpenCV, prints its complaints straight to the process's stderr ("libpng error:
IDAT: invalid literal/lengths set", "libpng warning: iCCP: too short"), beside the one line
CytoReview prints for the same file and out of reach of its error handling. The chunk walk here
finds what a damaged file usually has (a cut-off end, a flipped bit: every chunk carries a
CRC-32) and says it in words first; and since OpenCV applies none of the colour or text chunks,
the decoder is handed only the chunks that make the pixels, so a harmless odd colour profile no
longer prints a warning either.

A PNG is an 8-byte signature, then chunks: length (4 bytes, big-endian), type (4), data
(length), CRC-32 of type + data (4). See https://www.w3.org/TR/png-3/#5Chunk-layout.
"""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The chunks that decide the pixels OpenCV returns. The rest (colour profile, gamma, text,
#: EXIF, physical size, animation...) OpenCV reads past or warns about, and never applies.
#: ``tRNS`` stays: OpenCV turns it into an alpha channel.
PIXEL_CHUNKS = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"})
#: A chunk longer than this cannot be real (the format's own limit is 2**31 - 1).
_MAX_CHUNK = 2**31 - 1


def pixel_chunks_only(data: bytes) -> tuple[bytes | None, str | None]:
    """Check a PNG's chunk structure and keep only the chunks the pixels need.

    Parameters
    ----------
    data
        The whole file.

    Returns
    -------
    tuple
        ``(png, None)`` with the same image made of :data:`PIXEL_CHUNKS` only, or
        ``(None, reason)`` naming the first defect (a cut-off file, a chunk whose CRC does not
        match, no image data).

    Examples
    --------
    >>> pixel_chunks_only(b"not a png")
    (None, 'not a PNG file (wrong signature)')
    """
    if not data.startswith(SIGNATURE):
        return None, "not a PNG file (wrong signature)"
    kept = [SIGNATURE]
    pos, seen_idat, first = len(SIGNATURE), False, True
    view = memoryview(data)
    while True:
        if pos + 8 > len(data):
            return None, "truncated or corrupt PNG (the file ends before its end chunk)"
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if length > _MAX_CHUNK or end > len(data):
            return (
                None,
                f"truncated or corrupt PNG (the file ends in the middle of chunk {_name(kind)})",
            )
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            return None, f"truncated or corrupt PNG (chunk {_name(kind)} fails its checksum)"
        if first and kind != b"IHDR":
            return None, "truncated or corrupt PNG (the first chunk is not IHDR)"
        first = False
        seen_idat |= kind == b"IDAT"
        if kind in PIXEL_CHUNKS:
            kept.append(view[pos:end])
        pos = end
        if kind == b"IEND":
            break
    if not seen_idat:
        return None, "truncated or corrupt PNG (no image data)"
    return b"".join(kept), None


def _name(kind: bytes) -> str:
    """A chunk type as text for a message (types are four ASCII letters in a valid file)."""
    text = kind.decode("ascii", "replace")
    return text if text.isalpha() else repr(kind)
