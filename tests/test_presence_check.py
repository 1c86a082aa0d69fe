"""The presence check: it learns what it is fitted on, survives a checkpoint, and a veto changes
the reply the way the README says (words say "no" and return no pixels; a segment request keeps
its pixels with a warning). On held-out UC Merced chips of another sensor it removes false
"yes" answers the mask rule alone gives, without losing the classes those scenes surely show.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from geopix_tiles.model import GeoPixConfig, GeoPixModel  # noqa: E402
from geopix_tiles.model.presence_check import (  # noqa: E402
    PresenceCheck, largest_part_shares, mask_shape, mask_shapes, presence_check_off)
from geopix_tiles.training.presence_check import fit_check  # noqa: E402

DATA = Path(__file__).parent / "data"
UC = DATA / "uc_merced"


def test_fit_recovers_an_unbalanced_linear_rule_on_unseen_examples():
    """80 % of the examples are "yes"; the balanced fit must still find the "no"s."""
    check = PresenceCheck([4, 8, 6, 10], ["a", "b"])
    dim = check.fc.in_features
    assert dim == 6 + 10 + 6 + 10 + 2 + 3
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, dim, generator=g) * torch.linspace(0.1, 20, dim) + torch.linspace(-5, 5, dim)
    w = torch.zeros(dim)
    w[[3, 17, 30]] = torch.tensor([1.0, -0.5, 0.2])
    score = ((x - x.mean(0)) / x.std(0)) @ w
    y = (score > torch.quantile(score, 0.2)).float()
    stats = fit_check(check, x[:2000], y[:2000])
    assert 0.75 < stats["true_yes_share"] < 0.85
    p = check(x[2000:]) >= check.threshold
    truth = y[2000:] > 0.5
    assert (p[truth]).float().mean() >= 0.9 and (~p[~truth]).float().mean() >= 0.9


def test_mask_shape_reads_the_largest_part_and_the_confidence():
    prob = np.zeros((100, 100), np.float32)
    prob[10:30, 10:30] = 0.9  # 400 px
    prob[60:65, 60:65] = 0.7  # 25 px
    largest, meanp, log_share = mask_shape(prob)
    assert largest == pytest.approx(0.04)
    assert meanp == pytest.approx((400 * 0.9 + 25 * 0.7) / 425, rel=1e-5)
    assert log_share == pytest.approx(np.log(0.0425 + 1e-4), rel=1e-5)
    assert mask_shape(np.zeros((8, 8)))[:2] == (0.0, 0.0)


def _masks_of_every_shape() -> np.ndarray:
    """Smooth blobs at three scales, empty, full, a one-pixel checkerboard, a serpentine and a spiral."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    blobs = [ndimage.gaussian_filter(rng.random((96, 96)), s) for s in (1, 2, 5)]
    probs = [(b - b.min()) / (b.max() - b.min()) for b in blobs]
    probs += [np.zeros((96, 96)), np.ones((96, 96)), np.indices((96, 96)).sum(0) % 2 * 0.9]
    snake = np.zeros((96, 96))
    snake[::2] = 0.8
    snake[1::4, -1] = snake[3::4, 0] = 0.8  # one 4-connected path through every other row
    spiral = np.zeros((96, 96))
    lo, hi = 0, 95
    while lo <= hi:
        spiral[lo, lo:hi + 1] = spiral[lo:hi + 1, hi] = spiral[hi, lo:hi + 1] = 0.7
        spiral[lo + 2:hi + 1, lo] = 0.7
        if lo + 2 <= hi:
            spiral[lo + 2, lo:lo + 3] = 0.7
        lo, hi = lo + 2, hi - 2
    return np.stack(probs + [snake, spiral]).astype(np.float32)


def test_mask_shapes_on_tensors_equal_scipys_per_mask_numbers():
    """The GPU path's connected parts (label propagation on tensors, run here on the CPU) give exactly
    scipy's largest part, and the same confidence and share, on blobs, thin serpentines and spirals."""
    probs = _masks_of_every_shape()
    ref = np.array([mask_shape(p) for p in probs])
    got = mask_shapes(torch.from_numpy(probs).view(1, len(probs), 96, 96))[0].numpy()
    np.testing.assert_array_equal(got[:, 0], ref[:, 0].astype(np.float32))
    np.testing.assert_allclose(got[:, 1:], ref[:, 1:], rtol=1e-5, atol=1e-6)
    assert got[6, 0] == pytest.approx((48 * 96 + 48) / 96**2)  # the serpentine is one part
    assert got[5, 0] == pytest.approx(1 / 96**2)  # checkerboard: single pixels
    assert largest_part_shares(torch.zeros((0, 4, 4), dtype=torch.bool)).shape == (0,)


def test_a_check_reads_only_the_masks_it_needs_and_the_same_numbers_for_them():
    """``needed`` skips the shape measures of masks whose answer is not read; the others are unchanged."""
    torch.manual_seed(0)
    check = PresenceCheck([8, 16, 24, 32], ["building", "water"])
    feats = [torch.randn(3, c, 96 // s, 96 // s) for c, s in ((8, 4), (16, 8), (24, 16), (32, 32))]
    probs = torch.from_numpy(_masks_of_every_shape()[:6]).view(3, 2, 96, 96)
    needed = torch.tensor([[True, False], [False, True], [True, True]])
    full = check.features(feats, probs, ["building", "water"])
    part = check.features(feats, probs, ["building", "water"], needed=needed)
    torch.testing.assert_close(part[needed], full[needed])
    assert not torch.equal(part[~needed], full[~needed])


def test_checkpoint_round_trip_keeps_the_check(tmp_path):
    torch.manual_seed(0)
    cfg = GeoPixConfig.tiny()
    cfg.extra["presence_check"] = {"classes": ["building", "water"], "threshold": 0.4}
    model = GeoPixModel(cfg).eval()
    with torch.no_grad():
        model.presence_check.fc.weight.normal_()
        model.presence_check.mean.normal_()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    probs = torch.sigmoid(model.segment(x, ["buildings", "water"]))
    enc = model.encode_images(x)
    before = model.presence_check.confirm(enc.feats, probs, ["building", "water"])
    assert before.shape == (2, 2) and ((before > 0) & (before < 1)).all()
    model.save_pretrained(tmp_path / "m")
    loaded = GeoPixModel.from_pretrained(tmp_path / "m")
    assert loaded.presence_check is not None and loaded.presence_check.threshold == 0.4
    assert loaded.presence_check.classes == ["building", "water"]
    after = loaded.presence_check.confirm(loaded.encode_images(x).feats, probs, ["building", "water"])
    assert torch.allclose(before, after)
    assert GeoPixModel(GeoPixConfig.tiny()).presence_check is None  # a model without one answers from masks alone


@pytest.fixture(scope="module")
def shipped() -> GeoPixModel:
    from geopix_tiles.segmenters.registry import load_answer_model

    model = load_answer_model("default", "cpu")
    if model.presence_check is None:
        pytest.fail("the shipped default model has no presence check (training/default_recipe.py --step presence)")
    return model


def _chip(name: str) -> torch.Tensor:
    from geopix_tiles.training.dialogue_heads import chip_pixels

    return torch.from_numpy(chip_pixels(UC / name, 256))


def test_a_vetoed_yes_says_no_and_returns_no_pixels(shipped):
    """Forced veto vs forced pass on one real chip: words, masks and facts move together."""
    from geopix_tiles.model import answer as A

    from geopix_tiles.model.dialogue import View

    x = _chip("mediumresidential63.jpg")  # buildings 41 % of the caption with the check passed

    def uncut() -> View:
        # the forced verdict is every class's, vegetation's too, so the canopy cut (tests/test_canopy.py) would
        # differ between the two runs: a segment request here is judged on the building mask alone
        view = View(shipped, shipped.encode_images(x[None]))
        view.canopy_cut = False
        return view

    bias = shipped.presence_check.fc.bias.detach().clone()
    try:
        with torch.no_grad():
            shipped.presence_check.fc.bias.fill_(1e4)
        yes = shipped.chat(x, "Are there any buildings?")
        seg_yes = shipped.chat(uncut(), "Please segment the buildings.")
        cap_yes = shipped.chat(x, "Describe this image.")
        with torch.no_grad():
            shipped.presence_check.fc.bias.fill_(-1e4)
        no = shipped.chat(x, "Are there any buildings?")
        count = shipped.chat(x, "How many buildings are there?")
        seg_no = shipped.chat(uncut(), "Please segment the buildings.")
        cap_no = shipped.chat(x, "Describe this image.")
    finally:
        with torch.no_grad():
            shipped.presence_check.fc.bias.copy_(bias)
    assert yes.text.startswith("Yes") and yes.facts[0].pixels > 1000
    assert no.text.startswith("No") and "closer look" in no.text
    assert not no.masks[0].any() and no.facts[0] == A.mask_facts(np.zeros((256, 256), bool))
    assert count.text.startswith("I count no buildings") and count.facts[0].count == 0
    # a segment request is the pixel answer: the same mask either way, with a warning when doubted
    assert torch.equal(seg_no.masks[0], seg_yes.masks[0]) and seg_no.masks[0].any()
    assert "Careful" in seg_no.text and "Careful" not in seg_yes.text
    assert "buildings (" in cap_yes.text and "buildings (" not in cap_no.text


def _said_yes(model, names_and_classes) -> list[bool]:
    from geopix_tiles.model.dialogue import class_phrases

    phrase = dict(class_phrases(model))
    return [model.chat(_chip(name), f"Is there any {phrase[c]}?").text.startswith("Yes")
            for name, c in names_and_classes]


def test_fewer_false_yes_on_held_out_chips_of_another_sensor(shipped):
    from geopix_tiles.training.scene_negatives import ABSENT_BY_SCENE, PRESENT_BY_SCENE

    chips = sorted(p.name for p in UC.glob("*.jpg") if 60 <= int("".join(filter(str.isdigit, p.stem))) < 80)
    scene = {n: re.sub(r"\d+$", "", Path(n).stem) for n in chips}
    absent = [(n, c) for n in chips for c in ABSENT_BY_SCENE[scene[n]]]
    present = [(n, c) for n in chips for c in PRESENT_BY_SCENE.get(scene[n], ())]
    assert len(chips) >= 16 and len(absent) >= 40 and len(present) >= 8
    with_check = (np.mean(_said_yes(shipped, absent)), np.mean(_said_yes(shipped, present)))
    with presence_check_off(shipped):
        masks_only = (np.mean(_said_yes(shipped, absent)), np.mean(_said_yes(shipped, present)))
    assert masks_only[0] >= 0.2, masks_only  # the mask rule alone says yes to what these scenes rule out
    assert with_check[0] <= masks_only[0] / 2, (with_check, masks_only)
    assert with_check[1] >= 0.85 and with_check[1] >= masks_only[1] - 0.15, (with_check, masks_only)


def test_segment_drops_a_class_from_tiles_the_check_vetoes_but_never_clouds():
    """The engine's segmenter on held-out UC Merced chips: a class a scene rules out is painted in fewer
    tiles with the tile check; classes the scenes surely show are kept; cloud prompts are never touched;
    and a forced veto / forced pass gives zeros / exactly the unchecked probabilities."""
    from geopix_tiles.model.answer import present
    from geopix_tiles.segmenters.registry import load_segmenter
    from geopix_tiles.training.scene_negatives import ABSENT_BY_SCENE, PRESENT_BY_SCENE

    seg = load_segmenter("default", device="cpu")
    assert seg.tile_check and "tile_check=True" in repr(seg)
    prompts = {"building": "buildings", "road": "roads", "water": "water", "vegetation": "vegetation",
               "cloud": "clouds"}
    chips = sorted(p.name for p in UC.glob("*.jpg") if 60 <= int("".join(filter(str.isdigit, p.stem))) < 80)
    tiles = np.stack([_chip(n).numpy() for n in chips])
    names = list(prompts.values())
    on, off = seg.predict(tiles, names), seg.predict(tiles, names, check=False)
    np.testing.assert_array_equal(on[:, names.index("clouds")], off[:, names.index("clouds")])

    def said(probs, pairs):
        out = []
        for n, c in pairs:
            m = probs[chips.index(n), names.index(prompts[c])] > 0.5
            out.append(present(int(m.sum()), float(m.mean())))
        return np.mean(out)

    scene = {n: re.sub(r"\d+$", "", Path(n).stem) for n in chips}
    absent = [(n, c) for n in chips for c in ABSENT_BY_SCENE[scene[n]] if c in prompts and c != "cloud"]
    sure = [(n, c) for n in chips for c in PRESENT_BY_SCENE.get(scene[n], ()) if c in prompts]
    assert said(off, absent) >= 0.2 and said(on, absent) <= said(off, absent) / 2, (said(on, absent), said(off, absent))
    assert said(on, sure) >= 0.8, said(on, sure)
    check = seg.model.presence_check
    bias = check.fc.bias.detach().clone()
    try:
        with torch.no_grad():
            check.fc.bias.fill_(-1e4)
        vetoed = seg.predict(tiles[:4], names)
        with torch.no_grad():
            check.fc.bias.fill_(1e4)
        passed = seg.predict(tiles[:4], names)
    finally:
        with torch.no_grad():
            check.fc.bias.copy_(bias)
    np.testing.assert_array_equal(passed, off[:4])
    for j, name in enumerate(names):
        for i in range(4):
            m = off[i, j] > 0.5
            if name != "clouds" and present(int(m.sum()), float(m.mean())):
                assert not vetoed[i, j].any()
            else:
                np.testing.assert_array_equal(vetoed[i, j], off[i, j])


def test_segment_with_the_check_only_removes_pixels_and_says_what_it_cut(tmp_path, capsys):
    """The shipped NAIP sample through segment, the check on (default) and off (the CLI flag): the same grid,
    and the checked probabilities never above the unchecked ones (a veto zeroes tiles, blending mixes them).
    The run counts the tiles the check cut each prompt from: every tile judged once, a prompt's raster differs from the unchecked one exactly when some tile lost it; the summary says so,
    and a run without the check says nothing of it."""
    import argparse

    import rasterio

    from geopix_tiles import segment
    from geopix_tiles.interfaces.cli import _summary, main

    naip = Path(__file__).resolve().parents[1] / "geopix_tiles" / "data" / "naip_sample.tif"
    _, stats = segment(naip, ["water", "buildings"], model="default", out=tmp_path / "a.gpkg",
                       raster_out=tmp_path / "on.tif", progress=False, return_stats=True)
    assert main(["segment", str(naip), "-p", "water", "-p", "buildings", "-o", str(tmp_path / "b.gpkg"),
                 "--raster", str(tmp_path / "off.tif"), "--model", "default", "--no-presence-check", "-q"]) == 0
    assert "presence check cut" not in capsys.readouterr().out
    with rasterio.open(tmp_path / "on.tif") as a, rasterio.open(tmp_path / "off.tif") as b:
        assert a.transform == b.transform and a.crs == b.crs
        on, off = a.read().astype(int), b.read().astype(int)
    assert (on <= off + 1).all()
    assert (on[0] >= 128).mean() > 0.05  # the sample's lakes stay water
    cuts = stats.extra["tile_cuts"]
    judged = stats.tiles_total - stats.tiles_skipped
    assert set(cuts) == {"water", "buildings"} and all(n == judged for _, n in cuts.values()), cuts
    for band, prompt in enumerate(("water", "buildings")):
        assert (cuts[prompt][0] > 0) == bool((on[band] < off[band] - 1).any()), (prompt, cuts)
    assert cuts["buildings"][0] > 0  # bright fields painted as buildings at 5 m: something to say
    _summary(stats, argparse.Namespace(prompt=["water", "buildings"]))
    said = capsys.readouterr().out.strip().splitlines()[-1]
    assert said.startswith("the presence check cut ") and f"'buildings' from {cuts['buildings'][0]} of {judged}" in said
    assert ("'water'" in said) == (cuts["water"][0] > 0), said


def test_a_mask_over_most_of_its_view_is_vetoed_only_when_the_check_is_sure():
    """The bar is the check's threshold for a patch, SURE_NO for a mask covering most of its tile or view."""
    from geopix_tiles.model.presence_check import MAX_VETO_SHARE, SURE_NO

    check = PresenceCheck([4, 8, 6, 10], ["a"])
    assert SURE_NO < check.threshold
    p = torch.tensor([0.3, 0.3, 0.3, SURE_NO / 2, 0.6, 0.6])
    share = torch.tensor([0.2, MAX_VETO_SHARE, 0.8, 0.8, 0.1, 0.9])
    assert check.vetoes(p, share).tolist() == [True, True, False, True, False, False]


def test_the_tile_check_cuts_no_tile_out_of_the_sea_but_still_fields_painted_as_buildings(tmp_path):
    """Two failures of one rule, on real scenes. The Landsat-7 corner (tests/data, 300 m): the check doubted
    tiles of open sea (p 0.1-0.4), and cutting them left tile-shaped holes (on 0.44 of the valid pixels
    painted as water vs 0.54 unchecked); a mask over most of its tile is cut only when the check is sure.
    UC Merced fields that the mask head paints whole as buildings: the check is sure, and they are cut."""
    import rasterio

    from geopix_tiles import segment
    from geopix_tiles.segmenters.registry import load_segmenter

    shares = {}
    for check in (True, False):
        out = tmp_path / f"{check}.tif"
        segment(DATA / "landsat_collar" / "landsat7_collar.tif", ["water"], model="default", raster_out=out,
                vectorize=False, collect=False, device="cpu", presence_check=check)
        with rasterio.open(out) as o:
            shares[check] = float((o.read(1)[o.read_masks(1) > 0] >= 128).mean())
    assert shares[False] > 0.45, shares  # the sea (and the collar's edge) is painted
    assert abs(shares[True] - shares[False]) < 0.01, shares

    seg = load_segmenter("default", device="cpu")
    tiles = np.stack([_chip(n).numpy() for n in ("agricultural63.jpg", "agricultural71.jpg")])
    on, off = seg.predict(tiles, ["buildings"]), seg.predict(tiles, ["buildings"], check=False)
    painted = (off[:, 0] > 0.5).mean((1, 2))
    assert (painted > 0.5).any(), painted  # the mask head's failure the check is there for
    for i in np.flatnonzero(painted > 0.5):
        assert not on[i, 0].any()
