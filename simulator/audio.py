"""Voice-note bytes for the simulator: a well-formed Ogg/Opus container (OpusHead, OpusTags,
20 ms mono packets, correct granule positions and page CRCs) whose packet payloads are random.

No Opus encoder ships on PyPI or in the base image without a system library, so the packets are
not decodable speech; sizes follow a 12.8 kbit/s voice note (about 16 KB per 10 s).
"""

from __future__ import annotations

import functools
import os
import struct

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
PACKET_BYTES = 32  # 12.8 kbit/s
PACKETS_PER_PAGE = 50  # one second per page
PRE_SKIP = 312
TOC_SILK_NB_20MS_MONO = 0x08
MIME = "audio/ogg; codecs=opus"


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_TABLE = _crc_table()


def ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, no reflection, zero init)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _TABLE[(crc >> 24) ^ byte]
    return crc


def _page(packets: list[bytes], granule: int, serial: int, seq: int, flags: int) -> bytes:
    lacing = bytearray()
    for packet in packets:
        lacing += bytes([255] * (len(packet) // 255) + [len(packet) % 255])
    header = struct.pack(
        "<4sBBqIIIB", b"OggS", 0, flags, granule, serial, seq, 0, len(lacing)
    ) + bytes(lacing)
    page = bytearray(header + b"".join(packets))
    struct.pack_into("<I", page, 22, ogg_crc(bytes(page)))
    return bytes(page)


@functools.lru_cache(maxsize=128)
def voice_note(seconds: int, serial: int = 0x46494C41) -> bytes:
    """An Ogg/Opus voice note lasting `seconds` (at least one packet)."""
    head = struct.pack("<8sBBHIhB", b"OpusHead", 1, 1, PRE_SKIP, SAMPLE_RATE, 0, 0)
    vendor = b"fila-simulator"
    tags = b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
    pages = [_page([head], 0, serial, 0, 0x02), _page([tags], 0, serial, 1, 0)]
    total = max(1, seconds * SAMPLE_RATE // FRAME_SAMPLES)
    written = 0
    seq = 2
    while written < total:
        count = min(PACKETS_PER_PAGE, total - written)
        packets = [
            bytes([TOC_SILK_NB_20MS_MONO]) + os.urandom(PACKET_BYTES - 1) for _ in range(count)
        ]
        written += count
        flags = 0x04 if written >= total else 0
        pages.append(_page(packets, PRE_SKIP + written * FRAME_SAMPLES, serial, seq, flags))
        seq += 1
    return b"".join(pages)


def duration_of(ogg: bytes) -> float:
    """Seconds of an Ogg/Opus stream, from the last page's granule position."""
    last = ogg.rfind(b"OggS")
    if last < 0 or not ogg.startswith(b"OggS"):
        raise ValueError("not an Ogg stream")
    (granule,) = struct.unpack_from("<q", ogg, last + 6)
    return max(0, int(granule) - PRE_SKIP) / SAMPLE_RATE
