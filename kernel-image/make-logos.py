#!/usr/bin/python3
"""Draws the kernelspec logos (a padlock on a blue rounded square) as RGBA PNGs.

Run with Debian's interpreter: /usr/bin/python3 kernel-image/make-logos.py
Writes kernel-image/kernelspec/logo-32x32.png and logo-64x64.png. Standard library only
(zlib + struct), so it runs anywhere; the PNGs are committed, this script is how to redo them.
"""

import struct
import zlib
from pathlib import Path

BLUE = (48, 105, 152)
YELLOW = (255, 212, 59)
SUPERSAMPLE = 4


def inside_rounded_rect(x, y, x0, y0, x1, y1, r):
    if not (x0 <= x <= x1 and y0 <= y <= y1):
        return False
    cx = min(max(x, x0 + r), x1 - r)
    cy = min(max(y, y0 + r), y1 - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def shade(u, v):
    """Colour at (u, v) in the unit square, or None where the logo is transparent."""
    if not inside_rounded_rect(u, v, 0.02, 0.02, 0.98, 0.98, 0.18):
        return None
    # Padlock body.
    if inside_rounded_rect(u, v, 0.24, 0.46, 0.76, 0.86, 0.06):
        # Keyhole.
        if (u - 0.5) ** 2 + (v - 0.61) ** 2 <= 0.055**2 or (0.475 <= u <= 0.525 and 0.61 <= v <= 0.74):
            return BLUE
        return YELLOW
    # Shackle: an arch (ring segment) above the body.
    d = ((u - 0.5) ** 2 + (v - 0.42) ** 2) ** 0.5
    if 0.14 <= d <= 0.21 and v <= 0.42:
        return YELLOW
    if (0.29 <= u <= 0.36 or 0.64 <= u <= 0.71) and 0.42 <= v <= 0.47:
        return YELLOW
    return BLUE


def render(size):
    rows = []
    n = SUPERSAMPLE
    for y in range(size):
        row = bytearray([0])  # filter type 0 for this scanline
        for x in range(size):
            acc = [0, 0, 0, 0]
            for sy in range(n):
                for sx in range(n):
                    c = shade((x + (sx + 0.5) / n) / size, (y + (sy + 0.5) / n) / size)
                    if c is not None:
                        acc[0] += c[0]
                        acc[1] += c[1]
                        acc[2] += c[2]
                        acc[3] += 1
            covered = acc[3]
            if covered:
                row += bytes(
                    [acc[0] // covered, acc[1] // covered, acc[2] // covered, 255 * covered // (n * n)]
                )
            else:
                row += bytes(4)
        rows.append(bytes(row))
    return b"".join(rows)


def png(size):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(render(size), 9))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "kernelspec"
    out.mkdir(exist_ok=True)
    for size in (32, 64):
        (out / f"logo-{size}x{size}.png").write_bytes(png(size))
        print(f"wrote {out}/logo-{size}x{size}.png")
