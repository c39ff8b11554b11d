"""An image's pixel size read from its JPEG or PNG header, so an oversized image is refused before it is
decoded: a 1 MB PNG can declare 20000x20000 pixels and take 11.5 GB to decode.

The layouts are the formats' own: PNG's IHDR chunk is the first chunk after the 8-byte signature and
holds width then height as big-endian 32-bit integers (PNG specification, section 11.2.2); a JPEG's
frame header (a SOFn marker, 0xFFC0-0xFFCF except DHT 0xC4, JPG 0xC8 and DAC 0xCC) holds the sample
precision, then height and width as big-endian 16-bit integers (ITU-T T.81, B.2.2).
"""
from __future__ import annotations

import struct

# COCO's largest image is 640x640 (0.4 Mpx); 64 Mpx (8000x8000, 192 MB decoded as BGR) leaves room for
# any camera a pose dataset uses while refusing decompression bombs before they are decoded.
MAX_IMAGE_PIXELS = 64_000_000

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SOF = {m for m in range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}
_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: markers without a length


def header_size(raw: bytes) -> tuple[int, int] | None:
    """(height, width) declared by a JPEG or PNG header, or None when there is none to read."""
    if raw[:8] == PNG_SIGNATURE:
        if len(raw) < 24 or raw[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", raw[16:24])
        return height, width
    if raw[:2] == b"\xff\xd8":
        return _jpeg_size(raw)
    return None


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(raw):
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        (length,) = struct.unpack(">H", raw[i + 2:i + 4])
        if marker in _SOF:
            if i + 9 > len(raw):
                return None
            height, width = struct.unpack(">HH", raw[i + 5:i + 9])
            return height, width
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + length
    return None
