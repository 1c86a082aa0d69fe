"""Multi-turn pixel dialogue about a window of a scene, with georeferenced masks in every reply.

A :class:`Conversation` reads its window once, at native resolution (the model may be shown it
coarser, ``resolution`` as in ``segment``), on the scene's own tile
grid (the tiles of ``segment`` that touch the window, with the same overlap and raised-cosine
blending, so a mask asked for in a conversation is ``segment``'s mask on that window), encodes
each tile once, and keeps those encodings and every phrase's stitched masks for the turns
that follow. A window whose longer side exceeds ``max_size`` is resampled down to it and tiled
on its own grid. The words of each
reply are the model's (:meth:`GeoPixModel.chat`); this module adds the geography: masks
as polygons in the scene CRS, areas in m² from the window's transform.

    chat = geopix_tiles.chat("scene.tif", window=Window(0, 0, 512, 512))
    chat.ask("Where are the buildings?")
    chat.ask("And the roads next to them?")   # "them" = the buildings of the last reply
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from affine import Affine

from ..errors import InputError
from ..io.ground import pixel_area_m2
from ..segmenters.resampled import class_coarsest, coarse_caveat, coarse_limit, model_factor, shown_classes
from ..segmenters.canopy import CANOPY_MAX_PIXEL_M
from ..segmenters.protocol import DEFAULT_OVERLAP

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    import xarray as xr
    from rasterio.windows import Window

__all__ = ["Reply", "Conversation", "ask_scene", "parse_bbox", "pixel_area_m2", "masks_to_polygons"]

#: the longest side (pixels) a conversation reads at native resolution
DEFAULT_MAX_SIZE = 1024
#: scenes with pixels of this many metres or more are satellite scenes: their clouds are real often enough
#: that the presence check (which vetoed the Landsat-7 sample's cumulus) does not second-guess them
CLOUD_CHECK_BELOW_M = 5.0


@dataclass
class Reply:
    """One answer: its text, its masks (polygons in the scene CRS and rasters on ``transform``)."""

    question: str
    text: str
    task: str
    masks: "gpd.GeoDataFrame"  # one row per mask: prompt, pixels, area_m2, count, geometry
    arrays: np.ndarray  # bool [M, h, w] on ``transform``
    prompts: list[str]
    facts: list[Any]
    transform: Affine
    crs: Any
    bounds: tuple[float, float, float, float]
    scene_class: tuple[str, float] | None = None

    def __str__(self) -> str:
        return self.text


# --------------------------------------------------------------------------- windows
def parse_bbox(value: "str | Sequence[float] | None") -> tuple[float, float, float, float] | None:
    """``"minx,miny,maxx,maxy"`` or a 4-sequence -> floats (validated)."""
    if value is None or value == "":
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        box = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise InputError(f"bbox '{value}' is not four numbers; write minx,miny,maxx,maxy in the scene CRS") from None
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise InputError(f"bbox '{value}' is not four finite numbers; write minx,miny,maxx,maxy in the scene CRS")
    if box[0] >= box[2] or box[1] >= box[3]:
        raise InputError(f"bbox '{value}' is empty: minx must be < maxx and miny < maxy")
    return box  # type: ignore[return-value]


def resolve_window(window: Any, height: int, width: int, transform: Affine) -> "Window":
    """A rasterio ``Window`` from a ``Window``, a CRS bbox (tuple or ``"minx,miny,maxx,maxy"``) or None."""
    from rasterio.windows import Window, from_bounds  # noqa: PLC0415

    full = Window(0, 0, width, height)
    if window is None:
        return full
    if isinstance(window, Window):
        win = window
    else:
        box = parse_bbox(window)
        win = from_bounds(*box, transform=transform)
    try:
        c0 = max(0, int(math.floor(win.col_off)))
        r0 = max(0, int(math.floor(win.row_off)))
        c1 = min(width, int(math.ceil(win.col_off + win.width)))
        r1 = min(height, int(math.ceil(win.row_off + win.height)))
    except (TypeError, ValueError):
        raise InputError(f"window {window!r} is not a rasterio Window or a bbox") from None
    if c1 <= c0 or r1 <= r0:
        raise InputError(f"window {window!r} does not overlap the scene ({width} x {height} pixels); give a bbox in "
                         "the scene CRS inside its bounds, or a rasterio Window inside the raster")
    return Window(c0, r0, c1 - c0, r1 - r0)


def masks_to_polygons(masks: np.ndarray, transform: Affine, crs: Any, question: str, text: str,
                      prompts: Sequence[str] = (), facts: Sequence[Any] = ()) -> "gpd.GeoDataFrame":
    """Boolean ``[M, h, w]`` masks -> one (multi)polygon per non-empty mask, georeferenced by ``transform``.

    Traced by :func:`~geopix_tiles.outputs.trace.trace_labels`, the tracer ``segment``'s
    GeoPackage uses, so a chat reply's polygons and ``segment``'s have the same vertices.
    """
    import geopandas as gpd  # noqa: PLC0415
    import shapely  # noqa: PLC0415
    from scipy import ndimage  # noqa: PLC0415

    from ..outputs.trace import trace_labels  # noqa: PLC0415
    from ..outputs.vectorize import to_crs_geometry  # noqa: PLC0415

    rows: dict[str, list] = {"mask": [], "prompt": [], "pixels": [], "area_m2": [], "count": []}
    geoms = []
    for k, m in enumerate(np.asarray(masks, dtype=bool), start=1):
        if not m.any():
            continue
        components, _ = ndimage.label(m)  # 4-connected, as the tracer requires
        _, parts = trace_labels(components)
        f = facts[k - 1] if k - 1 < len(facts) else None
        rows["mask"].append(k)
        rows["prompt"].append(prompts[k - 1] if k - 1 < len(prompts) else "")
        rows["pixels"].append(int(m.sum()))
        rows["area_m2"].append(float(f.area_m2) if f is not None and f.area_m2 is not None else float("nan"))
        rows["count"].append(int(f.count) if f is not None else 0)
        geoms.append(shapely.union_all(to_crs_geometry(list(parts), transform)))
    n = len(geoms)
    frame = gpd.GeoDataFrame({"mask": np.asarray(rows["mask"], dtype=np.int64), "prompt": rows["prompt"],
                              "question": [question] * n, "answer": [text] * n,
                              "pixels": np.asarray(rows["pixels"], dtype=np.int64),
                              "area_m2": np.asarray(rows["area_m2"], dtype=float),
                              "count": np.asarray(rows["count"], dtype=np.int64)},
                             geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)
    return frame


# --------------------------------------------------------------------------- the tiled view
def _tiled_view(model: Any, image: np.ndarray, grid: Any, tiles: Sequence[Any], origin: tuple[int, int],
                crop: "Window", valid: np.ndarray | None = None, factor: float = 1.0,
                classes: Sequence[str] | None = None, batch: int = 8):
    """A :class:`~geopix_tiles.model.dialogue.View` whose logits are blended like ``segment``'s.

    ``image`` holds the pixels of every tile in ``tiles`` (tiles of ``grid``, the scene's own
    grid when the window is read at native resolution), with its top-left pixel at grid
    position ``origin``; ``crop`` is the window inside ``image`` (a rasterio Window) and ``valid``
    the scene's valid-data mask of that window (None when every pixel is data).
    Tiles are encoded once; each phrase's probabilities are blended by
    :class:`~geopix_tiles.core.blocks.BlockBlend`, as dask blocks are. ``factor`` > 1 shows the
    model each tile shrunk by it, as :class:`~geopix_tiles.segmenters.resampled.ResampledSegmenter`
    does in ``segment``, and stretches its probabilities back.
    """
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    from rasterio.windows import Window  # noqa: PLC0415

    from ..core.blocks import BlockBlend  # noqa: PLC0415
    from ..core.tiling import TileGrid  # noqa: PLC0415
    from ..model.dialogue import View  # noqa: PLC0415
    from ..model.answer import present  # noqa: PLC0415
    from ..model.presence_check import TILE_CHECK_SKIPS, tile_doubts, veto_tiles  # noqa: PLC0415

    tile = int(model.config.tile_size)
    oy, ox = origin
    (r0, r1), (c0, c1) = crop.toranges()
    rows, cols = r1 - r0, c1 - c0
    block = Window(ox + c0, oy + r0, cols, rows)  # the window in grid coordinates
    from ..segmenters.resampled import ResampledSegmenter, resize_tiles  # noqa: PLC0415

    shown = ResampledSegmenter(model, factor, classes) if factor != 1.0 else None
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(model.device)
    encodings: dict[bool, list] = {}  # shrunk or not -> per batch of tiles, made when a phrase first needs it

    def encoded(small: bool) -> list:
        if small not in encodings:
            with torch.no_grad():
                out = []
                for i in range(0, len(tiles), batch):
                    stack = torch.stack([x[:, t.y - oy:t.y - oy + t.height, t.x - ox:t.x - ox + t.width]
                                         for t in tiles[i:i + batch]])
                    if small:
                        stack = torch.from_numpy(resize_tiles(stack.cpu().numpy(), shown.model_size(*stack.shape[-2:])))
                    out.append(model.encode_images(stack.to(model.device)))
                encodings[small] = out
        return encodings[small]

    with torch.no_grad():
        win = x[:, r0:r0 + rows, c0:c0 + cols]
        whole = win if (rows, cols) == (tile, tile) else F.interpolate(
            win[None], size=(tile, tile), mode="bilinear", antialias=True, align_corners=False)[0]
        scene_enc = model.encode_images(whole[None])

    tile_pixels = float(sum(t.height * t.width for t in tiles))

    class TiledView(View):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.tile_vetoed: dict[str, float] = {}  # phrase -> scene pixels of vetoed tiles that said yes
            self._scene_probs: np.ndarray | None = None

        def _compute(self, phrases: Sequence[str]) -> list[np.ndarray]:
            acc = BlockBlend(grid, block, len(phrases))
            flags = shown.shown(phrases) if shown is not None else [False] * len(phrases)
            per_tile = [np.zeros((len(phrases), t.height, t.width), np.float32) for t in tiles]
            with torch.no_grad():
                for small in (True, False):
                    idx = [k for k, f in enumerate(flags) if f == small]
                    if not idx:
                        continue
                    asked = [phrases[k] for k in idx]
                    # as segment's tiles (veto_tiles), but not on a view shown finer than its scene (segment's rule)
                    checked = model.prompt_classes(asked) if getattr(model, "presence_check", None) is not None \
                        and factor >= 1.0 else None
                    for i, enc in enumerate(encoded(small)):
                        # tiles of the window: a place in a phrase names part of the window, not of each tile
                        probs = torch.sigmoid(model.segment_encoded(enc, asked, place_prior=False)[0].float())
                        if checked is not None:  # as segment's tiles (veto_tiles)
                            doubts = tile_doubts(model.presence_check, enc.feats, probs, checked)
                            # scene pixels the vetoed tiles said yes to (tiles overlap: later read as a share of
                            # all tiles' pixels); the shares are of each tile as the model saw it
                            said = ((probs > 0.5) & doubts[..., None, None]).flatten(2).float().mean(-1)  # [b, P]
                            areas = torch.tensor([float(t.height * t.width)
                                                  for t in tiles[i * batch:i * batch + len(said)]])
                            for k, n in zip(idx, (said * areas[:, None]).sum(0).tolist()):
                                self.tile_vetoed[phrases[k]] = self.tile_vetoed.get(phrases[k], 0.0) + n
                            probs = veto_tiles(model.presence_check, enc.feats, probs, checked, doubts)
                        probs = probs.cpu().numpy()
                        chunk = range(i * batch, min(len(tiles), (i + 1) * batch))
                        if small:  # back to the tiles' own pixels
                            probs = np.clip(resize_tiles(probs, (tiles[chunk[0]].height, tiles[chunk[0]].width)), 0, 1)
                        for j, p in zip(chunk, probs):
                            per_tile[j][idx] = p
            for t, p in zip(tiles, per_tile):
                acc.add(t, p)
            prob = np.clip(acc.result()[0], 1e-7, 1 - 1e-7)
            return list(np.log(prob / (1 - prob)).astype(np.float32))

        def scene_probabilities(self) -> np.ndarray | None:
            """The mean of the tiles' scene probabilities (at the view's own pixels), not the view shrunk to one tile.

            Why: the scene head knows 0.3 m chips of one tile; shrinking a 1024 px window of 0.3 m to one
            tile shows it 1.2 m pixels, where it is right half as often (``benchmarks/results/scene_pixel_size.md``).
            """
            if max(rows, cols) <= tile or model.scene_head is None:
                return super().scene_probabilities()
            if self._scene_probs is None:
                win = x[:, r0:r0 + rows, c0:c0 + cols]
                boxes = list(TileGrid(rows, cols, tile, 0))  # model tiles, the last of each axis flush with its end
                probs = []
                with torch.no_grad():
                    for i in range(0, len(boxes), batch):
                        stack = torch.stack([win[:, t.y:t.y + t.height, t.x:t.x + t.width] for t in boxes[i:i + batch]])
                        probs.append(model.scene_probabilities(encoding=model.encode_images(stack)))
                self._scene_probs = torch.cat(probs).float().mean(0).cpu().numpy()
            return self._scene_probs

        def doubted(self, phrase: str, name: str | None) -> bool:
            """The tiles' verdict, as ``segment``'s masks have it: what they said yes to, vetoed, and nothing left.

            Why not the whole view's: the check was fitted on model tiles, and on a view of many
            tiles the view's own encoding (the window shrunk to one tile) no longer resolves small
            objects: on the NAIP sample it vetoed the farm buildings ``segment`` keeps (and a
            segment request then warned about its own pixels). Clouds, which ``segment``'s
            tiles never veto, keep the whole view's check.
            """
            if name in TILE_CHECK_SKIPS:
                return super().doubted(phrase, name)
            fg = self.logits([phrase])[0] > 0
            # what the tiles took back, as a share of the view: "what first looked like X" only when it would
            # have made the view say yes (a few vetoed pixels in one tile are not worth a sentence)
            share = self.tile_vetoed.get(phrase, 0.0) / tile_pixels
            return present(int(round(share * fg.size)), share) and not present(int(fg.sum()), float(fg.mean()))

    view = TiledView(model, scene_enc, (rows, cols), valid)
    view.presence_checked = factor >= 1.0
    return view


def _model_factor(pixels: Any, resolution: Any, model: Any) -> float:
    """Scene pixels per model pixel for ``resolution`` (as ``segment`` uses it); 1.0 on the scene's own grid."""
    return model_factor(resolution, pixels.transform, pixels.crs, model, (pixels.height, pixels.width))


# --------------------------------------------------------------------------- conversation
class Conversation:
    """A dialogue about one window of a scene (see the module docstring).

    ``window`` is a rasterio ``Window`` (pixels) or a bbox ``(minx, miny, maxx, maxy)`` /
    ``"minx,miny,maxx,maxy"`` in the scene CRS; the whole scene by default. ``resolution``
    (metres per pixel, ``auto`` or ``native``) is the ground resolution the model is shown, as in
    ``segment``; replies stay on the window's grid (read coarser only when it is longer than
    ``max_size`` pixels). ``allow_no_georef=True`` accepts a file without CRS or transform (a plain
    JPEG chip): masks are then in pixel coordinates and replies give shares, not square metres.
    """

    def __init__(self, scene: "str | os.PathLike | xr.DataArray", model: Any = "default", *, window: Any = None,
                 device: str = "auto", bands: Any = None, band_roles: Any = None,
                 max_size: int = DEFAULT_MAX_SIZE, overlap: int = DEFAULT_OVERLAP,
                 resolution: float | str | None = "auto", allow_no_georef: bool = False, stretch: str = "auto") -> None:
        from rasterio.windows import Window  # noqa: PLC0415

        from ..segmenters.registry import load_answer_model  # noqa: PLC0415
        from .crops import crop_transform  # noqa: PLC0415
        from .pixels import open_pixels  # noqa: PLC0415

        if not isinstance(max_size, int) or max_size < 32:
            raise InputError(f"max_size {max_size!r} must be a whole number of pixels >= 32")
        from ..core.tiling import TileGrid  # noqa: PLC0415

        with open_pixels(scene, bands, band_roles, allow_no_georef, stretch) as pixels:  # checked before the model loads
            win = resolve_window(window, pixels.height, pixels.width, pixels.transform)
            rows, cols = int(win.height), int(win.width)
            row0, col0 = int(win.row_off), int(win.col_off)
            _model_factor(pixels, resolution, None)  # a bad resolution fails before the model loads
            self.model = load_answer_model(model, device)
            # ``resolution`` as in segment: the model sees tiles ``factor`` times coarser than the scene
            factor = _model_factor(pixels, resolution, self.model)
            scale = min(1.0, max_size / max(rows, cols))
            out_h, out_w = max(1, int(round(rows * scale))), max(1, int(round(cols * scale)))
            # a window read coarser than max_size needs less shrinking; a coarse scene is shown finer (< 1), as segment does
            shown = factor * scale if factor < 1.0 else max(1.0, factor * scale)
            shown = 1.0 if abs(shown - 1.0) < 0.02 else shown
            model_tile = int(self.model.config.tile_size)
            tile, ov = int(round(model_tile * shown)), int(round(min(overlap, model_tile // 4) * shown))
            if scale == 1.0:
                # native resolution: the scene's own tile grid, so masks are segment's masks on this window
                grid = TileGrid(pixels.height, pixels.width, tile, ov)
                tiles = grid.tiles_touching(win)
                ey0, ex0 = min(t.y for t in tiles), min(t.x for t in tiles)
                ey1, ex1 = max(t.y + t.height for t in tiles), max(t.x + t.width for t in tiles)
                image, valid = pixels.read_masked(Window(ex0, ey0, ex1 - ex0, ey1 - ey0), (ey1 - ey0, ex1 - ex0))
                origin, crop = (ey0, ex0), Window(col0 - ex0, row0 - ey0, cols, rows)
            else:  # resampled: a grid of its own over the resampled window
                image, valid = pixels.read_masked(win, (out_h, out_w))
                grid = TileGrid(out_h, out_w, tile, ov)
                tiles, origin, crop = list(grid), (0, 0), Window(0, 0, out_w, out_h)
            self.crs = pixels.crs
            self.transform = crop_transform(pixels.transform, win, (out_h, out_w))
            native_area = pixel_area_m2(pixels.transform, pixels.crs)  # the scene's own pixel, however it is read
        self.window = win
        rs, cs = crop.toslices()
        self.image = image[:, rs, cs]
        #: pixels of the window the scene has data for (None: all); replies never cover the others
        self.valid = None if valid is None else valid[rs, cs]
        left, top = self.transform @ (0, 0)
        right, bottom = self.transform @ (out_w, out_h)
        self.bounds = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        self.pixel_area_m2 = pixel_area_m2(self.transform, self.crs, (top + bottom) / 2)
        classes = None if shown < 1.0 else shown_classes(resolution, self.model)
        self.view = _tiled_view(self.model, image, grid, tiles, origin, crop, self.valid, shown, classes)
        # classes the model sees at coarser pixels than it learned them at: replies about them say so
        view_m = math.sqrt(self.pixel_area_m2) if self.pixel_area_m2 else None
        for name in class_coarsest(self.model):
            seen_m = None if view_m is None else view_m * (shown if classes is None or name in classes else 1.0)
            limit = coarse_limit(self.model, name, seen_m)
            if limit is not None:
                self.view.coarse_notes[name] = (f"{coarse_caveat(name, limit, seen_m, 'view')}, so treat my {name}s "
                                                "here as a rough guess")
        # the scene head sees the window's own pixels (tile by tile); unknown without a georeference
        self.view.scene_pixel_m = view_m
        # clouds on a satellite-scale scene are not second-guessed, as segment never does (model.dialogue.View)
        self.view.clouds_checked = not (native_area and native_area >= CLOUD_CHECK_BELOW_M ** 2)
        # tree cover hides roofs and ponds where crowns are objects, not shares of mixed pixels (as segment decides)
        self.view.canopy_cut = view_m is None or view_m <= CANOPY_MAX_PIXEL_M
        #: said after every reply about the view when the window was read much coarser than the scene: on the
        #: 20k NAIP mosaic (5 m) read at 98 m to fit 1,024 pixels "Is there any water?" was answered "No" (a
        #: quarter of it is lakes, each a few pixels at that size)
        self.shrunk_note: str | None = None
        if scale < 0.5:
            native_m = math.sqrt(native_area) if native_area else None
            at = f"about {view_m:,.0f} m per pixel" if view_m else f"1/{1 / scale:.0f} of its pixels"
            coarser = f", {1 / scale:.0f}x coarser than the scene's {native_m:.2g} m," if native_m else ""
            self.shrunk_note = (f"Careful: I read this window at {at}{coarser} to fit {max_size:,} pixels, so lakes, "
                                "buildings and roads smaller than a few of those pixels vanish; ask about a smaller "
                                "window (--window / --bbox) or raise --max-size for detail.")
        self.turns: list[Any] = []
        self.replies: list[Reply] = []

    def ask(self, question: str) -> Reply:
        """Answer ``question`` in the context of the earlier turns."""
        from ..model.dialogue import Turn  # noqa: PLC0415

        if not isinstance(question, str) or not question.strip():
            raise InputError("the question is empty; ask something such as 'where is the water?'")
        q = question.strip()
        r = self.model.chat(self.view, q, self.turns, self.pixel_area_m2)
        arrays = r.masks.cpu().numpy().astype(bool)
        union = arrays.any(0) if len(arrays) else None
        self.turns.append(Turn(r.question, r.task, r.question.target if r.question else None, union))
        text = " ".join(str(r.text).split())
        if self.shrunk_note and (r.task == "caption" or (r.question is not None and r.question.target is not None)):
            text += f" ({self.shrunk_note})"
        frame = masks_to_polygons(arrays, self.transform, self.crs, q, text, r.prompts, r.facts)
        reply = Reply(q, text, r.task, frame, arrays, list(r.prompts), list(r.facts), self.transform, self.crs,
                      self.bounds, r.scene)
        self.replies.append(reply)
        return reply

    @property
    def history(self) -> list[tuple[str, str]]:
        """``(question, answer)`` of every turn so far."""
        return [(r.question, r.text) for r in self.replies]


def ask_scene(scene: "str | os.PathLike | xr.DataArray", question: str, model: Any = "default", *,
              bbox: Any = None, window: Any = None, device: str = "auto", bands: Any = None,
              band_roles: Any = None, resolution: float | str | None = "auto", allow_no_georef: bool = False,
              max_size: int = DEFAULT_MAX_SIZE) -> Reply:
    """One question about a window of the scene (the whole scene by default): a one-turn conversation."""
    if not isinstance(question, str) or not question.strip():
        raise InputError("the question is empty; ask something such as 'where is the water?'")
    if bbox is not None and window is not None:
        raise InputError("give either bbox or window, not both")
    return Conversation(scene, model, window=window if window is not None else parse_bbox(bbox), device=device,
                        bands=bands, band_roles=band_roles, resolution=resolution,
                        allow_no_georef=allow_no_georef, max_size=max_size).ask(question)
