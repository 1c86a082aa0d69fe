"""Interactive maps: folium HTML with the scene overlay and per-prompt polygons (and a real browser where one exists)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

folium = pytest.importorskip("folium")

from geopix_tiles import plot, segment  # noqa: E402
from geopix_tiles.interfaces.cli import main  # noqa: E402
from conftest import RGBN, water_scene, write_scene  # noqa: E402

BOXES = [(10, 60, 20, 140), (70, 150, 90, 110)]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_scene(tmp_path_factory.mktemp("ex") / "s.tif", water_scene(160, 210, BOXES), descriptions=RGBN)


def _n_features(html: str) -> int:
    """How many GeoJSON features folium embedded in the page."""
    return len(re.findall(r'"type":\s*"Feature"(?!Collection)', html))


def test_map_has_the_scene_overlay_and_polygons_per_prompt(scene, tmp_path):
    from rasterio.warp import transform_bounds

    polys = segment(scene, ["water", "vegetation"], tile=64, overlap=16)
    m = plot.explore(scene, polys, tiles=None)
    html = m.get_root().render()
    assert html.count("data:image/png;base64,") == 1  # the scene, embedded (no server needed)
    (west, south, east, north) = transform_bounds("EPSG:32633", "EPSG:4326", 500000, 3999920, 500105, 4000000)
    overlay = re.search(r"L\.imageOverlay\(\s*\"data:image/png;base64,[^\"]+\",\s*(\[\[.*?\]\])", html, flags=re.S)
    (s, w), (n, e) = json.loads(overlay.group(1))
    assert (s, w, n, e) == pytest.approx((south, west, north, east), abs=1e-5)  # ~1 m: the warp grid snaps
    # each prompt its own layer and colour, with the attributes in popups
    for prompt, colour in (("water", "#1f77b4"), ("vegetation", "#2ca02c")):
        assert colour in html
    assert html.count("L.geoJson(") == 2 and html.count(".bindPopup(") >= 2
    assert all(f in html for f in ('"prompt"', '"score"', '"area_m2"'))
    assert len(polys) >= 3 and _n_features(html) == len(polys)  # every polygon, none twice
    out = tmp_path / "map.html"
    from geopix_tiles.interfaces.explore import save_html

    save_html(m, out)
    assert out.read_text().count("data:image/png;base64,") == 1


def test_accessor_and_cli_html(scene, tmp_path, capfd):
    polys = segment(scene, ["water"], tile=64, overlap=16)
    assert isinstance(polys.geopix.explore(scene, tiles=None), folium.Map)
    out, html = tmp_path / "o.gpkg", tmp_path / "map.html"
    rc = main(["segment", str(scene), "-p", "water", "--out", str(out), "--html", str(html), "--tile", "64",
               "--overlap", "16", "--quiet"])
    assert rc == 0, capfd.readouterr().err
    assert html.exists() and "L.imageOverlay" in html.read_text()
    assert main(["segment", str(scene), "-p", "water", "--out", str(tmp_path / "p.gpkg"), "--html",
                 str(tmp_path / "map.png")]) == 2
    assert "--html" in capfd.readouterr().err and not (tmp_path / "p.gpkg").exists()


CHROMIUM = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium installed (apt install chromium)")
def test_saved_map_draws_in_a_real_browser(scene, tmp_path):
    """Screenshot the saved page offline: the overlay (scene colours) and polygon outlines are drawn."""
    import matplotlib.image

    polys = segment(scene, ["water"], tile=64, overlap=16)
    page = tmp_path / "map.html"
    from geopix_tiles.interfaces.explore import save_html

    save_html(plot.explore(scene, polys, tiles=None, colors={"water": "#ff00ff"}), page)
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=800,600", "--virtual-time-budget=5000", page.as_uri()], check=True, timeout=120,
                   capture_output=True)
    img = matplotlib.image.imread(shot)[..., :3]
    magenta = (img[..., 0] > 0.8) & (img[..., 1] < 0.3) & (img[..., 2] > 0.8)
    assert magenta.sum() > 50  # the polygon outlines / fills
    assert (img.std(axis=(0, 1)) > 0.02).all()  # an image, not a blank page
