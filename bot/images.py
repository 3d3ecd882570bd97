"""Photos as Telegram takes them, checked from the file's own header (no imaging library at
run time): a PNG, JPEG, WebP or GIF within sendPhoto's limits."""

from __future__ import annotations

import struct
from pathlib import Path

# Telegram's limits for a photo sent by file: 10 MB, width + height at most 10000, a ratio of
# at most 20 (Bot API, sendPhoto)
PHOTO_BYTES = 10 * 1024 * 1024
PHOTO_SIDES = 10_000
PHOTO_RATIO = 20


def photo_problem(path: Path) -> str | None:
    """Why Telegram would not take this file as a photo; None when it would."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            return "not a file"
        if size > PHOTO_BYTES:
            return f"{size} bytes, Telegram takes photos up to {PHOTO_BYTES} bytes"
        data = path.read_bytes()
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    found = image_size(data)
    if found is None:
        return "not a PNG, JPEG, WebP or GIF image"
    width, height = found
    if not width or not height or width + height > PHOTO_SIDES:
        return f"{width}x{height} pixels, Telegram takes width + height up to {PHOTO_SIDES}"
    if max(width, height) > PHOTO_RATIO * min(width, height):
        return f"{width}x{height} pixels, a ratio above Telegram's {PHOTO_RATIO}"
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG, GIF, WebP or JPEG header; None when it is none of these."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 ":
            width, height = struct.unpack("<HH", data[26:30])
            return width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return (
                int.from_bytes(data[24:27], "little") + 1,
                int.from_bytes(data[27:30], "little") + 1,
            )
        return None
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None
