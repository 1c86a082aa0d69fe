"""CPU cost of the output raster's codec, as the engine writes it: strips, then a checkpoint's reopen.

The engine writes the probability raster in row strips and, at every checkpoint (10 s apart),
closes the file and reopens it in update mode so that a killed run leaves a valid partial
file. An update handle forgets the creation's compression level (DEFLATE falls back to 6, ZSTD
to 9; GDAL takes no open option for it: checked here), so a long run is mostly written at the
default level. For each codec this writes a real probability raster (``segment --raster``
output, read back) strip by strip once straight through and once reopened after the first
strip, single-threaded, and reports CPU seconds, the file size and the CPU to read it back (all
bands, and one band). Pixel- against band-interleaved blocks: a band per prompt compresses
better on its own (each block holds one probability surface, not four interleaved).

    python benchmarks/bench_raster_codec.py PROBABILITY_RASTER.tif [--out benchmarks/results/raster_codec.md]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

CODECS = {
    "deflate, level 3 (the old default)": dict(compress="deflate", predictor=2, zlevel=3),
    "deflate, level 6 (GDAL's default)": dict(compress="deflate", predictor=2, zlevel=6),
    "zstd, level 1": dict(compress="zstd", predictor=2, zstd_level=1),
    "zstd, level 9 (GDAL's default)": dict(compress="zstd", predictor=2, zstd_level=9),
    "lzw, pixel-interleaved (the default until 2026-12-05)": dict(compress="lzw", predictor=2),
    "deflate, level 6, band-interleaved": dict(compress="deflate", predictor=2, zlevel=6, interleave="band"),
    "zstd, level 9, band-interleaved": dict(compress="zstd", predictor=2, zstd_level=9, interleave="band"),
    "lzw, band-interleaved (the default)": dict(compress="lzw", predictor=2, interleave="band"),
}
ROWS = 192  # the engine's strip height for 256 px tiles overlapping by 64


def _write(path: Path, data: np.ndarray, profile: dict, reopen: dict | None) -> float:
    """CPU seconds to write ``data`` strip by strip (after the first strip when ``reopen`` is given)."""
    h, w = data.shape[1:]
    with rasterio.open(path, "w", **profile) as dst:
        t0 = time.process_time()
        dst.write(data[:, :ROWS], window=Window(0, 0, w, ROWS))
        if reopen is None:
            for y in range(ROWS, h, ROWS):
                dst.write(data[:, y:y + ROWS], window=Window(0, y, w, min(ROWS, h - y)))
    if reopen is None:
        return time.process_time() - t0
    t0 = time.process_time()
    with rasterio.open(path, "r+", **reopen) as dst:
        for y in range(ROWS, h, ROWS):
            dst.write(data[:, y:y + ROWS], window=Window(0, y, w, min(ROWS, h - y)))
    return time.process_time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raster")
    ap.add_argument("--out")
    args = ap.parse_args()
    with rasterio.open(args.raster) as src:
        data = src.read()
        base = dict(driver="GTiff", width=src.width, height=src.height, count=src.count, dtype="uint8", crs=src.crs,
                    transform=src.transform, tiled=True, blockxsize=512, blockysize=512, num_threads=1,
                    interleave="pixel", photometric="MINISBLACK")
    lines = [f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
             f"load {os.getloadavg()[0]:.2f}, GDAL {rasterio.__gdal_version__}; {Path(args.raster).name}: "
             f"{data.shape[0]} bands x {data.shape[1]} x {data.shape[2]} px uint8 ({data.nbytes / 1e6:.0f} MB)", "",
             "| codec (predictor 2) | CPU s, straight | CPU s after a reopen | MB after a reopen | CPU s to read "
             "| CPU s to read band 1 |",
             "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, codec in CODECS.items():
            profile = {**base, **codec}
            path = Path(tmp) / "x.tif"
            straight = min(_write(path, data, profile, None) for _ in range(2))
            level = {k.upper(): str(v) for k, v in codec.items() if k.endswith("level")}  # ignored by GDAL: checked
            reopened = min(_write(path, data, profile, level) for _ in range(2))
            t0 = time.process_time()
            with rasterio.open(path) as src:
                src.read()
            read = time.process_time() - t0
            t0 = time.process_time()
            with rasterio.open(path) as src:
                src.read(1)
            read1 = time.process_time() - t0
            lines.append(f"| {name} | {straight:.2f} | {reopened:.2f} | {path.stat().st_size / 1e6:.1f} | {read:.2f} "
                         f"| {read1:.2f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(Path(args.out).read_text() + "\n" + text if Path(args.out).exists() else text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
