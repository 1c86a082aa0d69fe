"""Augmentation for domain gaps, weak spectral labels, and open-vocabulary training prompts."""
from __future__ import annotations

import random
import re

import numpy as np
from rasterio.windows import Window
import pytest

torch = pytest.importorskip("torch")

from conftest import write_scene  # noqa: E402


def _scene_with_square(size: int = 128, half: int = 16):
    img = torch.zeros(3, size, size)
    img[0] = 0.2
    mask = torch.zeros(1, size, size)
    c = size // 2
    img[:, c - half:c + half, c - half:c + half] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)
    mask[:, c - half:c + half, c - half:c + half] = 1
    return img, mask


def test_mirror_tile_is_seamless_and_fills_the_target():
    from geopix_tiles.training.augment import mirror_tile

    x = torch.arange(12.0).view(1, 3, 4)
    y = mirror_tile(x, (7, 10))
    assert y.shape == (1, 7, 10)
    assert torch.equal(y[:, :3, :4], x)
    assert torch.equal(y[:, 3:6, :4], x.flip(-2))  # mirrored, so no seam at the edge
    assert torch.equal(y[:, :3, 4:8], x.flip(-1))


def test_zoom_changes_object_size_like_a_gsd_change_and_masks_follow_the_pixels():
    from geopix_tiles.training.augment import _zoom

    img, mask = _scene_with_square()
    area = float(mask.sum())
    zin, min_ = _zoom(img, mask, 2.0, random.Random(0))
    zout, mout = _zoom(img, mask, 0.5, random.Random(0))
    assert zin.shape == img.shape and mout.shape == mask.shape
    # zoom-out: each mirrored copy holds the square at a quarter of its area, the tile holds four copies
    assert float(mout.sum()) == pytest.approx(area, rel=0.05)
    assert float(mout[:, :64, :64].sum()) == pytest.approx(area / 4, rel=0.05)
    # masks stay on the red pixels after the geometry change
    for im, m in ((zin, min_), (zout, mout)):
        red = im[0] > 0.6
        inside = m[0] > 0.5
        assert inside.any() and float((red & inside).sum()) / float(inside.sum()) > 0.9


def test_augment_sample_is_deterministic_per_index_and_keeps_range():
    from geopix_tiles.training.augment import augment_sample

    img, mask = _scene_with_square()
    a = augment_sample(img, mask, True, seed=3, index=7)
    b = augment_sample(img, mask, True, seed=3, index=7)
    c = augment_sample(img, mask, True, seed=3, index=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    outs = [augment_sample(img, mask, False, seed=0, index=i)[0] for i in range(40)]
    assert all(0.0 <= float(o.min()) and float(o.max()) <= 1.0 for o in outs)
    assert any(torch.equal(o[0], o[1]) and torch.equal(o[1], o[2]) for o in outs)  # some grey (panchromatic)
    # photometric only: geometry (and so the mask) untouched
    _, m = augment_sample(img, mask, False, seed=0, index=5)
    assert torch.equal(m, mask)


def test_haze_flattens_contrast_towards_a_bright_bluish_veil_and_appears_in_training_draws():
    from geopix_tiles.training.augment import augment_sample, haze

    img, mask = _scene_with_square()
    h = haze(img, 0.6, random.Random(1))
    for c in range(3):  # each band's contrast scales by 1 - amount
        assert float(h[c].std()) == pytest.approx(0.4 * float(img[c].std()), rel=1e-4)
    assert 0.6 * 0.7 - 1e-6 <= float(h.min()) and float(h.max()) <= 1.0  # a bright floor, still in range
    for seed in range(20):  # the veil itself (on black): bright, and never redder than it is blue
        v = haze(torch.zeros(3, 2, 2), 1.0, random.Random(seed))[:, 0, 0]
        assert 0.7 <= float(v[0]) <= float(v[1]) <= 1.0 and float(v[0]) < float(v[2]) <= 1.0
    assert haze(torch.rand(4, 8, 8), 0.5, random.Random(0)).shape == (4, 8, 8)  # any band count (RGB + NIR)
    # a share of the photometric draws is hazed: low contrast over a bright floor
    def hazy(p):
        outs = [augment_sample(img, mask, False, seed=0, index=i, haze_p=p)[0] for i in range(200)]
        return [o for o in outs if float(o.min()) > 0.25 and float(o.std()) < 0.5 * float(img.std())]

    assert 10 <= len(hazy(0.2)) <= 80
    assert not hazy(0.0)  # off by default: the shipped recipe's draws are unchanged


def test_spectral_index_source_gives_weak_water_and_vegetation(tmp_path):
    from geopix_tiles.training.adapters import build_source
    from geopix_tiles.training.windows import records_from_scene

    h = w = 96
    data = np.zeros((4, h, w), dtype=np.uint8)
    data[:] = np.array([90, 90, 90, 95], dtype=np.uint8).reshape(4, 1, 1)  # bare: NDVI ~0.03
    data[:, :32, :] = np.array([60, 80, 70, 20], dtype=np.uint8).reshape(4, 1, 1)  # water: NDWI 0.6
    data[:, 64:, :] = np.array([30, 60, 30, 120], dtype=np.uint8).reshape(4, 1, 1)  # vegetation: NDVI 0.6
    data[:, 40:44, 0:4] = 0  # nodata
    write_scene(tmp_path / "s.tif", data, nodata=0)
    src = build_source({"type": "spectral_index", "images": str(tmp_path / "*.tif"), "rgb": [1, 2, 3], "red": 1,
                        "green": 2, "nir": 4, "name": "weak"})
    scene = next(iter(src.scenes()))
    assert scene.annotated_classes() == ["vegetation", "water"]
    (rec,) = records_from_scene(scene, [Window(0, 0, w, h)])
    assert rec.meta["weak_labels"] is True and rec.meta["classes"] == ["vegetation", "water"]
    areas = {i.category: i.area for i in rec.instances}
    assert areas == {"water": 32 * w, "vegetation": 32 * w}
    assert rec.image.shape[0] == 3  # the model reads RGB only


def test_open_vocabulary_samples_use_training_words_only():
    from geopix_tiles.training.instruct import make_samples
    from geopix_tiles.training.records import ImageRecord, Instance
    from geopix_tiles.training import rle
    from geopix_tiles.training.vocabulary import (HELD_OUT_PARAPHRASES, HELD_OUT_UNRELATED, TRAIN_SYNONYMS,
                                                  TRAIN_UNRELATED)

    m1 = np.zeros((32, 32), np.uint8)
    m1[:8, :8] = 1
    m2 = np.zeros((32, 32), np.uint8)
    m2[20:, 20:] = 1
    rec = ImageRecord(image_path=None, image=np.zeros((3, 32, 32), np.float32),
                      instances=[Instance.from_mask("building", m1), Instance.from_mask("water", m2)],
                      meta={"classes": ["building", "road", "water"]})
    samples = make_samples([rec] * 60, tasks=["category_seg"], per_record=1, max_targets=4, negatives=0.5,
                           paraphrases=1.0, unrelated=1.0, seed=1)
    held = {p for ps in HELD_OUT_PARAPHRASES.values() for p in ps} | set(HELD_OUT_UNRELATED)
    train_words = {p for ps in TRAIN_SYNONYMS.values() for p in ps} | set(TRAIN_UNRELATED)
    seen_unrelated = 0
    for s in samples:
        assert len(s.target_texts) == len(s.target_masks) == len(s.target_categories)
        for text, cat, m in zip(s.texts(), s.target_categories, s.target_masks):
            assert text not in held and not any(re.search(rf"\b{re.escape(h)}\b", text) for h in held), text
            assert text in train_words or any(w in text for w in train_words), text
            assert text in s.question
            if cat == "unrelated":
                seen_unrelated += 1
                assert rle.decode(m).sum() == 0
            if cat == "road":  # annotated but absent: an empty mask
                assert rle.decode(m).sum() == 0
    assert seen_unrelated >= 40
    # off by default: the old samples exactly
    old = make_samples([rec] * 5, tasks=["category_seg"], per_record=1, seed=2)
    again = make_samples([rec] * 5, tasks=["category_seg"], per_record=1, seed=2, paraphrases=0.0, unrelated=0.0)
    assert [(s.question, s.answer) for s in old] == [(s.question, s.answer) for s in again]


def test_per_class_adds_one_single_class_question_per_class():
    from geopix_tiles.training.instruct import make_samples, templates
    from geopix_tiles.training.records import ImageRecord, Instance

    m1 = np.zeros((32, 32), np.uint8)
    m1[:8, :8] = 1
    m2 = np.zeros((32, 32), np.uint8)
    m2[20:, 20:] = 1
    rec = ImageRecord(image_path=None, image=np.zeros((3, 32, 32), np.float32),
                      instances=[Instance.from_mask("building", m1), Instance.from_mask("water", m2)])
    base = make_samples([rec], tasks=["category_seg", "caption"], per_record=2, seed=4)
    more = make_samples([rec], tasks=["category_seg", "caption"], per_record=2, seed=4, per_class=True)
    assert [(s.question, s.answer) for s in more[:len(base)]] == [(s.question, s.answer) for s in base]
    extra = more[len(base):]
    assert [s.target_categories for s in extra] == [["building"], ["water"]]
    first = templates("category_seg")[0]
    assert all(s.template == first and s.answer == "Sure, [SEG]." for s in extra)
    assert make_samples([rec], tasks=["caption"], per_record=1, per_class=True)[0].task == "caption"


def _naip_chip(size: int = 128) -> "torch.Tensor":
    """A real NAIP chip (the shipped sample) scaled to [0, 1]."""
    from pathlib import Path

    import rasterio

    path = Path(__file__).resolve().parents[1] / "geopix_tiles" / "data" / "naip_sample.tif"
    with rasterio.open(path) as src:
        arr = src.read([1, 2, 3], window=Window(0, 0, size, size)).astype(np.float32) / 255.0
    return torch.from_numpy(arr)


def test_synthetic_cloud_brightens_what_its_mask_covers_and_is_not_labelled_where_unseen():
    from geopix_tiles.training.augment import synthetic_cloud, with_cloud

    chip = _naip_chip()
    shares = []
    for seed in range(8):
        alpha = synthetic_cloud(128, 128, random.Random(seed))
        assert alpha.shape == (128, 128) and 0.0 <= float(alpha.min()) and float(alpha.max()) <= 1.0
        out, mask = with_cloud(chip, random.Random(seed))
        assert out.shape == chip.shape and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
        m = mask.bool()
        shares.append(float(m.float().mean()))
        if m.any():
            # under the mask the (dark green) ground turned bright and grey: brighter by a lot
            gain = float((out - chip).mean(0)[m].mean())
            assert gain > 0.2, (seed, gain)
        if (~m).any():  # outside it the chip is far less changed
            assert float((out - chip).abs().mean(0)[~m].mean()) < float((out - chip).abs().mean(0)[m].mean())
        # deterministic per draw
        again, mask2 = with_cloud(chip, random.Random(seed))
        assert torch.equal(out, again) and torch.equal(mask, mask2)
    assert min(shares) < 0.3 < max(shares)  # from a few blobs to most of the chip
    # over light-grey ground as bright as the cloud, most of it cannot be seen, and what cannot be
    # seen is not labelled (else bright ground itself would be taught as cloud)
    pale = torch.full((3, 128, 128), 0.75)
    opaque = sum(float((synthetic_cloud(128, 128, random.Random(s)) >= 0.5).sum()) for s in range(8))
    labelled = sum(float(with_cloud(pale, random.Random(s))[1].sum()) for s in range(8))
    assert labelled < 0.25 * opaque, (labelled, opaque)


def test_cloud_free_chips_are_asked_for_clouds_and_get_synthetic_ones():
    from geopix_tiles.training import rle
    from geopix_tiles.training.dataset import InstructDataset, mark_cloud_free
    from geopix_tiles.training.instruct import make_samples
    from geopix_tiles.training.records import ImageRecord, Instance

    chip = _naip_chip().numpy()
    water = np.zeros((128, 128), np.uint8)
    water[:, :64] = 1
    naip = ImageRecord(image_path=None, image=chip, instances=[Instance.from_mask("water", water)],
                       meta={"classes": ["vegetation", "water"], "source": "naip_weak/2019"})
    s2 = ImageRecord(image_path=None, image=chip, instances=[Instance.from_mask("cloud", water)],
                     meta={"classes": ["cloud"], "source": "s2_cloud/aeey"})
    partial = ImageRecord(image_path=None, image=chip, instances=[Instance.from_mask("building", water)],
                          meta={"source": "naip_weak/roofs"})  # not labelled exhaustively: says nothing
    records = [naip, s2, partial]
    assert mark_cloud_free(records, ["naip_weak", "dubai_aerial"]) == 1
    assert naip.meta["classes"] == ["cloud", "vegetation", "water"] and naip.meta["synthetic_clouds"]
    assert "synthetic_clouds" not in s2.meta and "synthetic_clouds" not in partial.meta
    # clouds_over: orthophoto chips are asked for clouds (answer none) but never get a blob over them
    ortho = ImageRecord(image_path=None, image=chip, instances=[], meta={"classes": ["building"],
                                                                          "source": "dubai_aerial/tile_1"})
    assert mark_cloud_free([ortho], ["naip_weak", "dubai_aerial"], clouds_over=["naip_weak"]) == 1
    assert ortho.meta["classes"] == ["building", "cloud"] and ortho.meta["synthetic_clouds"] is False

    chips = [naip] * 80
    samples = make_samples(chips, tasks=["category_seg"], per_record=1, max_targets=3, negatives=1.0, seed=3)
    asked = [i for i, s in enumerate(samples) if "cloud" in s.target_categories]
    assert len(asked) >= 20  # "clouds" is now asked of the cloud-free chip (answer: none)
    assert all(rle.decode(samples[i].target_masks[samples[i].target_categories.index("cloud")]).sum() == 0
               for i in asked)
    plain = InstructDataset(chips, samples, 128)
    clouded = InstructDataset(chips, samples, 128, clouds=1.0)
    got = 0
    for i in asked:
        k = samples[i].target_categories.index("cloud")
        a, b = plain[i], clouded[i]
        assert float(a["gt_masks"][k].sum()) == 0
        cloud = b["gt_masks"][k].bool()
        if cloud.any():
            got += 1
            assert not torch.equal(a["image"], b["image"])
            for j, c in enumerate(samples[i].target_categories):
                if j != k:  # ground under the cloud is not seen: no other class there
                    assert float(b["gt_masks"][j][cloud].sum()) == 0
        else:  # the cloud fell where it cannot be seen: neither a label nor a changed answer
            assert float(b["gt_masks"][k].sum()) == 0
    assert got >= len(asked) // 2
    others = [i for i in range(len(samples)) if i not in asked][:10]
    assert all(torch.equal(plain[i]["image"], clouded[i]["image"]) for i in others)  # only where clouds are asked


def test_coarse_sources_are_shown_zoomed_out_and_nothing_else_changes():
    """``data.coarse``: about ``coarse_p`` of a listed source's category samples are zoomed out by a factor in
    ``coarse_zoom`` (the chip's 64 px square label shrinks to 64 * zoom px and is mirrored around),
    another source's samples are drawn exactly as without it."""
    from geopix_tiles.training.augment import augment_sample
    from geopix_tiles.training.dataset import InstructDataset
    from geopix_tiles.training.instruct import make_samples
    from geopix_tiles.training.records import ImageRecord, Instance

    chip = _naip_chip().numpy()
    water = np.zeros((128, 128), np.uint8)
    water[32:96, 32:96] = 1
    naip = ImageRecord(image_path=None, image=chip, instances=[Instance.from_mask("water", water)],
                       meta={"classes": ["water"], "source": "naip_weak/2019"})
    dubai = ImageRecord(image_path=None, image=chip, instances=[Instance.from_mask("water", water)],
                        meta={"classes": ["water"], "source": "dubai_aerial/tile_1"})
    chips = [naip] * 40 + [dubai] * 40
    samples = make_samples(chips, tasks=["category_seg"], per_record=1, max_targets=1, negatives=0.0, seed=3)
    plain = InstructDataset(chips, samples, 128, augment=True, seed=5)
    coarse = InstructDataset(chips, samples, 128, augment=True, seed=5, coarse=["naip_weak"],
                             coarse_zoom=[0.1, 0.25], coarse_p=0.5)
    zoomed = 0
    for i, s in enumerate(samples):
        a, b = plain[i], coarse[i]
        if s.record >= 40:  # Dubai: not listed
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["gt_masks"], b["gt_masks"])
            continue
        z = coarse._coarse_zoom(s, i)
        if z is None:
            assert torch.equal(a["image"], b["image"])
            continue
        zoomed += 1
        assert 0.1 <= z <= 0.25
        # the label's square: ~64 * z px on a side, repeated by the mirror fill: its share of the tile stays
        # ~1/4, but the tile now holds several copies (connected runs along the first row are short)
        from scipy import ndimage

        m = b["gt_masks"][0].numpy() > 0.5
        assert abs(float(m.mean()) - 0.25) < 0.12
        assert ndimage.label(m)[1] >= 4  # several copies of the shrunk square
        assert torch.equal(b["image"], augment_sample(*_as_tensors(chips[s.record], s), True, 5, i, zoom=z)[0])
    assert 5 <= zoomed <= 35


def _as_tensors(rec, s):
    from geopix_tiles.training import rle

    image = torch.from_numpy(np.ascontiguousarray(rec.image, dtype=np.float32))
    masks = torch.from_numpy(np.stack([rle.decode(r) for r in s.target_masks]).astype(np.float32))
    return image, masks


def test_degrade_softens_adds_noise_and_keeps_the_scene():
    """``degrade``: another camera's view of the same ground - in range, same shape, every op reachable,
    deterministic per draw, and still the same picture (high correlation with the clean chip)."""
    from geopix_tiles.training.augment import DEGRADATIONS, _blur, _jpeg, degrade

    x = _naip_chip()
    seen = set()
    for i in range(40):
        rng = random.Random(i)
        y = degrade(x, rng)
        assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        assert torch.equal(y, degrade(x, random.Random(i)))
        r = np.corrcoef(x.flatten().numpy(), y.flatten().numpy())[0, 1]
        assert r > 0.6, f"draw {i} no longer shows the same ground (r={r:.2f})"
        probe = random.Random(i)
        seen.update(probe.sample(list(DEGRADATIONS), probe.randint(1, 3)))
    assert seen == {"blur", "resample", "saturation", "mix", "noise", "jpeg"}
    # blur lowers the high-frequency energy; a flat image stays flat; JPEG keeps extra bands as they are
    def hf(t):
        return float((t[:, 1:] - t[:, :-1]).abs().mean())

    assert hf(_blur(x, 1.2)) < 0.7 * hf(x)
    flat = torch.full((3, 32, 32), 0.4)
    assert torch.allclose(_blur(flat, 1.0), flat, atol=1e-6)
    four = torch.cat([x, x[:1]], 0)
    j = _jpeg(four, 40)
    assert torch.equal(j[3], four[3]) and float((j[:3] - four[:3]).abs().mean()) < 0.05


def test_degraded_samples_keep_their_clean_copy_and_other_draws_do_not_move():
    """``InstructDataset(degrade=p)``: about p of the samples are degraded with the clean image kept for the
    anchor; masks and every other draw are those of a run without it."""
    from geopix_tiles.training.dataset import InstructDataset
    from geopix_tiles.training.instruct import make_samples
    from geopix_tiles.training.records import ImageRecord, Instance

    chip = _naip_chip().numpy()
    water = np.zeros((128, 128), np.uint8)
    water[32:96, 32:96] = 1
    rec = ImageRecord(image_path=None, image=chip, instances=[Instance.from_mask("water", water)],
                      meta={"classes": ["water"], "source": "naip_weak/2019"})
    samples = make_samples([rec] * 40, tasks=["category_seg"], per_record=1, max_targets=1, negatives=0.0, seed=3)
    plain = InstructDataset([rec] * 40, samples, 128, augment=True, seed=5)
    worse = InstructDataset([rec] * 40, samples, 128, augment=True, seed=5, degrade=0.5)
    n = 0
    for i in range(len(samples)):
        a, b = plain[i], worse[i]
        assert a["clean_image"] is None
        assert torch.equal(a["gt_masks"], b["gt_masks"])
        if b["clean_image"] is None:
            assert torch.equal(a["image"], b["image"])
        else:
            n += 1
            assert torch.equal(b["clean_image"], a["image"]) and not torch.equal(b["image"], a["image"])
    assert 8 <= n <= 32


def test_degrade_ops_limit_the_draw_and_unknown_ones_are_refused():
    """``data.degrade_ops``: only the named degradations happen; a typo is an error naming the choices."""
    from geopix_tiles.errors import InputError
    from geopix_tiles.training.augment import degrade
    from geopix_tiles.training.config import TrainConfig

    x = _naip_chip()
    # saturation alone keeps each pixel's grey value
    for i in range(5):
        y = degrade(x, random.Random(i), ["saturation"])
        assert float((_grey(y) - _grey(x)).abs().max()) < 0.02
    with pytest.raises(ValueError, match="choose from blur"):
        degrade(x, random.Random(0), ["sharpen"])
    cfg = TrainConfig()
    cfg.data.train = "x.jsonl"
    cfg.data.degrade, cfg.data.anchor, cfg.data.degrade_ops = 0.5, "ckpt", ["blurr"]
    with pytest.raises(InputError, match="data.degrade_ops"):
        cfg.validate()
    cfg.data.anchor, cfg.data.degrade_ops = None, []
    with pytest.raises(InputError, match="data.degrade needs data.anchor"):
        cfg.validate()


def _dubai_buildings():
    """The repository's held-out Dubai tile_7 chip (real pixels, human building masks) as training would see it."""
    from pathlib import Path

    from geopix_tiles.training.dataset import InstructDataset
    from geopix_tiles.training.records import read_jsonl

    recs = [r for r in read_jsonl(Path(__file__).resolve().parent / "data" / "default_val" / "val.jsonl")
            if str(r.meta.get("source", "")).startswith("dubai")]
    ds = InstructDataset(recs, [], 256)
    roofs = ds._masks([i.mask_rle for i in recs[0].instances if i.category == "building"])
    return recs, ds.image(0), roofs


def test_recolor_objects_repaints_each_roof_dark_or_pale_keeps_its_texture_and_leaves_the_ground():
    """``recolor_objects``: outside a one-pixel rim of the roofs nothing moves; each roof gets its own
    brightness (some dark, some pale across draws) with its texture (grey pattern) kept; seeded."""
    import torch.nn.functional as F

    from geopix_tiles.training.augment import recolor_objects

    _, chip, roofs = _dubai_buildings()
    assert roofs.shape[0] >= 3
    rim = F.max_pool2d(roofs.amax(0)[None, None], 3, stride=1, padding=1)[0, 0] > 0
    means = []
    for seed in range(8):
        out = recolor_objects(chip, list(roofs), random.Random(seed), share=1.0)
        assert torch.equal(out, recolor_objects(chip, list(roofs), random.Random(seed), share=1.0))
        assert torch.equal(out[:, ~rim], chip[:, ~rim])
        for m in roofs:
            inside = F.avg_pool2d(m[None, None], 3, stride=1, padding=1)[0, 0] >= 1.0  # away from the soft edge
            if int(inside.sum()) < 30:
                continue
            a, b = _grey(chip)[inside], _grey(out)[inside]
            means.append(float(b.mean()))
            if float(a.std()) > 0.02 and float(b.max()) < 0.99:  # texture: the grey pattern survives the repaint
                assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.8
    assert min(means) < 0.3 and max(means) > 0.5
    assert torch.equal(recolor_objects(chip, list(roofs), random.Random(0), share=0.0), chip)


def _naip_objects(category: str):
    """A held-out NAIP chip (weak labels), its ``category`` objects, the pixels inside them away from the soft
    one-pixel edge, and the objects with that rim (outside it nothing may move)."""
    from pathlib import Path

    import torch.nn.functional as F

    from geopix_tiles.training.dataset import InstructDataset
    from geopix_tiles.training.records import read_jsonl

    recs = [r for r in read_jsonl(Path(__file__).resolve().parent / "data" / "default_val" / "val.jsonl")
            if str(r.meta.get("source", "")).startswith("naip_weak")]
    ds = InstructDataset(recs, [], 256)
    objects = ds._masks([i.mask_rle for i in recs[0].instances if i.category == category])
    cover = (objects.amax(0) > 0)[None, None].float()
    inside = F.avg_pool2d(cover, 3, stride=1, padding=1)[0, 0] >= 1.0
    rim = F.max_pool2d(cover, 3, stride=1, padding=1)[0, 0] > 0
    return ds.image(0), objects, inside, rim


def _grey(t: torch.Tensor) -> torch.Tensor:
    """Rec. 601 luma, written out here rather than taken from ``training.augment`` so the tests do not check
    the augmentations with their own arithmetic."""
    return 0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2]


def test_recolor_objects_gives_water_the_colours_of_rivers_and_keeps_its_ripples():
    """``category="water"``: a real NAIP lake becomes brown, olive, turquoise or grey water
    of another level (the ripples kept as differences: scaling near-black pixels would amplify noise);
    the ground outside a one-pixel rim is untouched; a class without colours is refused."""
    from geopix_tiles.training.augment import RECOLOR_PALETTES, recolor_objects

    chip, lakes, inside, rim = _naip_objects("water")
    lo, hi = RECOLOR_PALETTES["water"][1]
    levels, browns = [], 0
    for seed in range(12):
        out = recolor_objects(chip, list(lakes), random.Random(seed), share=1.0, category="water")
        assert torch.equal(out[:, ~rim], chip[:, ~rim])
        level = float(_grey(out)[inside].mean())
        levels.append(level)
        assert 0.8 * lo < level < 1.25 * hi
        r, b = float(out[0][inside].mean()), float(out[2][inside].mean())
        browns += r > 1.15 * b
        ripple = _grey(out)[inside] - level  # the same pattern, up to the tint's gain
        assert float(torch.corrcoef(torch.stack([_grey(chip)[inside], ripple]))[0, 1]) > 0.8
        if float(out[:, inside].amax()) < 0.99:  # and as strong as it was (a ratio would scale it with the level)
            assert 0.7 < float(ripple.std() / _grey(chip)[inside].std()) < 1.4
    assert min(levels) < 0.15 and max(levels) > 0.3 and browns >= 1, (levels, browns)
    with pytest.raises(ValueError, match="no colours to repaint 'road'"):
        recolor_objects(chip, list(lakes), random.Random(0), share=1.0, category="road")


def test_recolor_objects_gives_vegetation_other_greens_never_sand_and_keeps_its_canopy_texture():
    """``category="vegetation"``: the real NAIP vegetation becomes dark conifer to yellow-green (green stays
    the strongest band: no tint makes it look like sand or soil), its canopy texture kept as a ratio,
    the ground outside a one-pixel rim untouched."""
    from geopix_tiles.training.augment import RECOLOR_PALETTES, recolor_objects

    chip, plants, inside, rim = _naip_objects("vegetation")
    assert len(plants) >= 1
    lo, hi = RECOLOR_PALETTES["vegetation"][1]
    levels = []
    for seed in range(12):
        out = recolor_objects(chip, list(plants), random.Random(seed), share=1.0, category="vegetation")
        assert torch.equal(out[:, ~rim], chip[:, ~rim])
        level = float(_grey(out)[inside].mean())
        levels.append(level)
        assert 0.8 * lo < level < 1.25 * hi
        r, g, b = (float(out[c][inside].mean()) for c in range(3))
        assert g > r and g > b, (seed, r, g, b)  # still green
        # the canopy's light and shadow where they were
        assert float(torch.corrcoef(torch.stack([_grey(chip)[inside], _grey(out)[inside]]))[0, 1]) > 0.8
    assert min(levels) < 0.15 and max(levels) > 0.25, levels


def test_recolored_samples_keep_the_original_for_the_anchor_and_need_one():
    """``InstructDataset(recolor=p)``: chips with buildings are repainted about p of the time with the original
    (same zoom, turn and colour draws) kept for the anchor; chips without buildings never; the config
    refuses ``data.recolor`` without ``data.anchor``."""
    from geopix_tiles.errors import InputError
    from geopix_tiles.training.config import TrainConfig
    from geopix_tiles.training.dataset import InstructDataset
    from geopix_tiles.training.instruct import make_samples
    from geopix_tiles.training.records import ImageRecord, Instance

    recs, _, _ = _dubai_buildings()
    water = np.zeros((128, 128), np.uint8)
    water[32:96, 32:96] = 1
    bare = ImageRecord(image_path=None, image=_naip_chip().numpy(), instances=[Instance.from_mask("water", water)],
                       meta={"classes": ["water"], "source": "naip_weak/2019"})
    records = [recs[0]] * 30 + [bare] * 10
    samples = make_samples(records, tasks=["category_seg"], per_record=1, max_targets=2, negatives=0.0, seed=3)
    plain = InstructDataset(records, samples, 256, augment=True, seed=5)
    painted = InstructDataset(records, samples, 256, augment=True, seed=5, recolor=0.5)
    n = 0
    for i, s in enumerate(samples):
        a, b = plain[i], painted[i]
        assert torch.equal(a["gt_masks"], b["gt_masks"])
        if b["clean_image"] is None:
            assert torch.equal(a["image"], b["image"])
            continue
        assert s.record < 30, "a chip without buildings was repainted"
        n += 1
        assert torch.equal(b["clean_image"], a["image"])
        # the roofs, not the scene (the contrast draw stretches about the chip's mean, which the roofs move a little)
        changed = (b["image"] - a["image"]).abs().amax(0) > 0.05
        assert 0.01 < float(changed.float().mean()) < 0.9  # (40 % of this chip is roofs; a zoom-in may show more)
    assert 8 <= n <= 24
    cfg = TrainConfig()
    cfg.data.train = "x.jsonl"
    cfg.data.recolor = 0.5
    with pytest.raises(InputError, match="data.recolor needs data.anchor"):
        cfg.validate()
    cfg.data.anchor = "runs/x/model"
    cfg.data.recolor_classes = ["water", "road"]
    with pytest.raises(InputError, match=r"data.recolor_classes names classes without repaint colours \['road'\]"):
        cfg.validate()


def test_exhaustive_targets_keep_a_one_roof_source_out_of_whole_class_questions():
    """A record that labels one roof of many (no ``meta["classes"]``, as the Puerto Rico source) gives no
    category, count, presence or caption sample with ``exhaustive_targets`` (each would teach its other houses as
    "not a building"), but still referring and region samples; a record labelled exhaustively is unchanged."""
    from geopix_tiles.training.instruct import make_samples
    from geopix_tiles.training.records import ImageRecord, Instance

    roof = np.zeros((32, 32), np.uint8)
    roof[4:10, 4:10] = 1
    one_roof = ImageRecord(image_path=None, image=np.zeros((3, 32, 32), np.float32),
                           instances=[Instance.from_mask("building", roof)], meta={"source": "puerto_rico"})
    full = ImageRecord(image_path=None, image=np.zeros((3, 32, 32), np.float32),
                       instances=[Instance.from_mask("building", roof)], meta={"classes": ["building", "water"]})
    tasks = ["category_seg", "referring_seg", "region_class", "caption", "vqa"]
    kinds = {}
    for exhaustive in (False, True):
        samples = make_samples([one_roof] * 20 + [full] * 20, tasks=tasks, per_record=5, seed=3, negatives=0.5,
                               per_class=True, exhaustive_targets=exhaustive)
        kinds[exhaustive] = {(s.record < 20, s.task) for s in samples}
    whole_class = {"category_seg", "caption", "vqa"}
    assert {t for first, t in kinds[False] if first} & whole_class  # the old samples: the one roof as "the buildings"
    assert not {t for first, t in kinds[True] if first} & whole_class
    assert {t for first, t in kinds[True] if first} >= {"referring_seg", "region_class"}
    assert {t for first, t in kinds[True] if not first} == {t for first, t in kinds[False] if not first}
