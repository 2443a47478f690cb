"""The usable-skin mask (issue 18, section 1): hands, occluders over the face and clothes below
the jaw do not paint the skin; the mirrored cheek fills what they covered.

Synthetic truth: an ICT head with a known texture rendered by our ray caster, a patch painted
over one cheek (phone-grey, found by the colour model; or hand-coloured with hand landmarks
over it, found as a hand). Real photos (shared data): hand-drawn boxes and strand lines around
the occluders in image04085 (hand under the chin), alfw1 (phone and fingers) and image00408
(hair strands across the face).
"""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from gen3dface.backend.face.landmarks import FACE_OVAL
from gen3dface.backend.face.skin_mask import (LANDMARK_TWIN, SkinMaskConfig, colour_features,
                                              config_for_mode,
                                              face_regions, fit_skin_model, shadowed_skin,
                                              shallow_in_face, usable_skin)
from gen3dface.protocol.cameras import intrinsics_from_fov, orbit_w2c_in_head

PHONE_GREY = (88, 92, 104)


def _shared_photo(faces_dir, name: str) -> np.ndarray:
    """A shared photo as RGB uint8, or the test skipped when this machine lacks it."""
    path = faces_dir / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])


def _project(points, w2c, k):
    pc = points @ w2c[:3, :3].T + w2c[:3, 3]
    return np.stack([k.fx * pc[:, 0] / pc[:, 2] + k.cx, k.fy * pc[:, 1] / pc[:, 2] + k.cy], 1)


def test_landmark_twins_are_a_mirror_pairing():
    has = LANDMARK_TWIN >= 0
    assert has.sum() > 380
    assert np.all(LANDMARK_TWIN[LANDMARK_TWIN[has]] == np.flatnonzero(has))
    assert LANDMARK_TWIN[1] == 1 and LANDMARK_TWIN[152] == 152     # nose tip, chin: midline
    assert LANDMARK_TWIN[133] == 362 and LANDMARK_TWIN[50] == 280   # inner eye corners, cheeks


def test_disabled_mask_is_all_ones():
    rgb = np.full((64, 64, 3), 128, np.uint8)
    m = usable_skin(rgb, np.zeros((478, 2)), None, SkinMaskConfig(enabled=False))
    assert m.usable.shape == (64, 64) and m.usable.min() == 1.0


def test_shadowed_skin_keeps_hue_and_rejects_clothes_and_hair():
    rng = np.random.default_rng(0)
    skin = np.array([205.0, 150.0, 125.0])
    patch = np.clip(skin + rng.normal(0, 4, (40, 40, 3)), 0, 255).astype(np.uint8)
    cfg = SkinMaskConfig()
    model = fit_skin_model(colour_features(patch), np.ones((40, 40), np.uint8), cfg)
    rows = np.array([[[92, 60, 46]],        # the skin 2.4x darker and more saturated: shade
                     [[60, 60, 62]],        # grey: a dark shirt
                     [[40, 60, 120]],       # blue: a tie
                     [[30, 18, 14]],        # brown-black hair: too dark for shade
                     [[150, 135, 130]]],    # a greyish beige (a knit): not saturated enough
                    np.uint8)
    got = shadowed_skin(colour_features(rows)[:, 0], model, cfg)
    assert got.tolist() == [True, False, False, False, False]


def test_shadowed_skin_beside_cheeks_lit_near_white():
    """Patches lit near white (an overexposed cheek and forehead: image02246's) are barely
    saturated, so the shaded side's ordinary skin is many times more saturated than they are;
    it is still shade, while grey, blue and near-black stay out."""
    rng = np.random.default_rng(1)
    lit = np.array([250.0, 236.0, 228.0])               # saturation ~2.5 (rg percent from grey)
    patch = np.clip(lit + rng.normal(0, 2, (40, 40, 3)), 0, 255).astype(np.uint8)
    cfg = SkinMaskConfig()
    model = fit_skin_model(colour_features(patch), np.ones((40, 40), np.uint8), cfg)
    rows = np.array([[[178, 120, 96]],      # the shaded side: same hue, saturation ~12
                     [[70, 70, 74]],        # grey
                     [[40, 60, 120]],       # blue
                     [[28, 18, 14]],        # near-black hair
                     [[185, 100, 65]]],     # red hair: the shade's hue and depth, saturation ~20
                    np.uint8)
    got = shadowed_skin(colour_features(rows)[:, 0], model, cfg)
    assert got.tolist() == [True, False, False, False, False], got
    strict = SkinMaskConfig(shadow_saturation_abs=0.0)  # the relative bound alone refuses it
    assert not shadowed_skin(colour_features(rows[:1])[:, 0], model, strict)[0]


# -- synthetic head with a patch over one cheek ------------------------------------------------

@pytest.fixture(scope="module")
def scene(ict_model):
    return make_scene(ict_model)


@pytest.fixture(scope="module")
def bust_scene(ict_model):
    """The same head from further away and lower: the neck and shoulders in the frame."""
    return make_scene(ict_model, distance=0.9, target=(0.0, -0.06, 0.0))


def make_scene(ict_model, distance=0.55, target=(0.0, 0.02, 0.03)):
    """A synthetic head seen 10 degrees from the front, its true landmarks (projected through
    the mediapipe -> ICT mapping) and camera."""
    from gen3dface.backend.fitting.correspondence import load_mapping
    from gen3dface.backend.render.raycast import RenderConfig, render_views
    from gen3dface.backend.render.synthetic import SyntheticHeadConfig, make_synthetic_head

    head = make_synthetic_head(ict_model, seed=2, config=SyntheticHeadConfig(max_jaw_open=0.0))
    w2c = np.asarray(orbit_w2c_in_head(10, 0, distance, target))
    k = intrinsics_from_fov(512, 512, 25)
    photo = render_views(head.meshes, [(w2c, k)],
                         RenderConfig(shading="unlit", background=(200, 200, 200, 255)))[0]
    mapping = load_mapping()
    lm = np.zeros((478, 2))
    lm[mapping.landmark_ids] = _project(mapping.points(head.template_vertices), w2c, k)
    return dict(head=head, w2c=w2c, k=k, rgb=np.ascontiguousarray(photo.rgba[..., :3]),
                fg=photo.mask.astype(np.float32), lm=lm)


def _cheek_patch(scene, colour):
    """The photo with an ellipse of `colour` over the subject's left cheek (the side nearer
    the camera), its mask, and 21 'hand landmarks' spread over it."""
    lm = scene["lm"]
    size = float(np.ptp(lm[FACE_OVAL], axis=0).max())
    centre = 0.55 * lm[425] + 0.45 * lm[352]
    axes = (int(0.13 * size), int(0.17 * size))
    patch = np.zeros(scene["rgb"].shape[:2], np.uint8)
    cv2.ellipse(patch, tuple(np.round(centre).astype(int)), axes, 0, 0, 360, 1, -1)
    rgb = scene["rgb"].copy()
    rgb[patch > 0] = colour
    t = np.linspace(0, 2 * np.pi, 21, endpoint=False)
    r = 0.83 + 0.04 * np.cos(5 * t)          # on the fingers' centre lines: inside the edge
    hand = centre + np.stack([axes[0] * r * np.cos(t), axes[1] * r * np.sin(t)], 1)
    return rgb, patch.astype(bool), hand


def _hand_colour(scene):
    skin = np.median(scene["rgb"][face_regions(scene["rgb"].shape[:2], scene["lm"],
                                               SkinMaskConfig())["patches"] > 0], 0)
    return tuple(int(c) for c in np.clip(skin * np.array([1.06, 0.93, 0.9]), 0, 255))


@pytest.mark.parametrize("kind", ["phone", "hand"])
def test_cheek_patch_is_excluded_from_the_mask(scene, kind):
    colour = PHONE_GREY if kind == "phone" else _hand_colour(scene)
    rgb, patch, hand = _cheek_patch(scene, colour)
    m = usable_skin(rgb, scene["lm"], [hand] if kind == "hand" else [])
    regs = face_regions(rgb.shape[:2], scene["lm"], SkinMaskConfig())
    twin = np.zeros_like(patch)           # the patch mirrored onto the other cheek, roughly
    ys, xs = np.nonzero(patch)
    lm = scene["lm"]
    mid = (lm[1, 0] + lm[152, 0]) / 2
    xt = np.clip(np.round(2 * mid - xs).astype(int), 0, rgb.shape[1] - 1)
    twin[ys, xt] = True
    twin &= regs["face"] > 0
    excluded = float((m.usable[patch] < 0.5).mean())
    kept_twin = float((m.usable[twin] > 0.5).mean())
    face = (regs["face"] > 0) & ~patch
    kept_face = float((m.usable[face] > 0.5).mean())
    print(f"{kind}: patch excluded {excluded:.3f}, mirrored cheek kept {kept_twin:.3f}, rest of "
          f"the face kept {kept_face:.3f}")
    assert excluded > 0.97
    assert kept_twin > 0.95
    assert kept_face > 0.9
    # the hand-coloured patch is skin coloured: without its landmarks it stays in the mask
    if kind == "hand":
        assert (usable_skin(rgb, scene["lm"], []).usable[patch] > 0.5).mean() > 0.9


@pytest.mark.parametrize("kind", ["phone", "hand"])
def test_cheek_patch_does_not_reach_the_texture(scene, ict_model, kind):
    """Baked with foreground x usable skin, the texels under the patch take the mirrored
    cheek's colour (close to what the clean photo gives them), not the patch's; baked with the
    foreground alone they take the patch."""
    from gen3dface.backend.camera import View
    from gen3dface.backend.texture.bake import TextureBaker, TextureConfig

    colour = PHONE_GREY if kind == "phone" else _hand_colour(scene)
    rgb, patch, hand = _cheek_patch(scene, colour)
    w2c, k, fg, v = scene["w2c"], scene["k"], scene["fg"], scene["head"].template_vertices
    m = usable_skin(rgb, scene["lm"], [hand] if kind == "hand" else [])
    baker = TextureBaker(ict_model, TextureConfig(size=256))
    # the texels the patch lands on: bake an image that is white on the patch only
    probe_img = np.zeros_like(rgb)
    probe_img[patch] = 255
    probe = TextureBaker(ict_model, TextureConfig(size=256, mirror_fill=False)).bake(
        v, [View.posed(probe_img, w2c, k, fg)])
    under = (probe.confidence > 0.9) & (probe.texture[..., 0] > 230)
    assert under.sum() > 200
    ref = baker.bake(v, [View.posed(scene["rgb"], w2c, k, fg)]).texture.astype(float)
    off = baker.bake(v, [View.posed(rgb, w2c, k, fg)]).texture.astype(float)
    on = baker.bake(v, [View.posed(rgb, w2c, k, fg * m.usable)]).texture.astype(float)
    c = np.asarray(colour, float)
    err_off = np.abs(off[under] - ref[under]).mean()
    err_on = np.abs(on[under] - ref[under]).mean()
    patch_off = np.abs(off[under] - c).mean(1)
    patch_on = np.abs(on[under] - c).mean(1)
    print(f"{kind}: texels under the patch {under.sum()}: mean |error| vs the clean bake "
          f"{err_off:.1f} (foreground only) -> {err_on:.1f} (usable skin); near the patch colour "
          f"(<8/255) {(patch_off < 8).mean():.3f} -> {(patch_on < 8).mean():.3f}")
    tone = np.abs(on[under].mean(0) - ref[under].mean(0)).max()
    print(f"{kind}: mean colour under the patch, usable skin vs clean: {tone:.1f}/255")
    assert (patch_off < 8).mean() > 0.8          # without the mask the patch is baked in
    # with it, the patch colour is gone (the hand colour is a skin colour: some of the blotchy
    # skin lies within 8/255 of it anyway)
    assert (patch_on < 8).mean() < (0.02 if kind == "phone" else 0.25)
    # the mirrored cheek's colour: the same tone as the clean bake there; texel by texel it
    # differs as much as this head's blotchy procedural skin differs left to right
    assert tone < 8.0
    # ... and the skin's blotches, where the foreground-only bake shows a flat patch
    spread = [t[under].std(0).mean() for t in (ref, off, on)]
    print(f"{kind}: colour spread under the patch: clean {spread[0]:.1f}, foreground only "
          f"{spread[1]:.1f}, usable skin {spread[2]:.1f}")
    assert spread[1] < 0.35 * spread[0] and spread[2] > 0.6 * spread[0]
    if kind == "phone":
        assert err_on < 0.6 * err_off


# -- real photos --------------------------------------------------------------------------------

# Hand-drawn from the photos (pixel boxes x0, y0, x1, y1; strand polylines traced at 6x zoom).
REAL = {
    "image04085.jpg": dict(occluders=[(70, 310, 150, 380), (170, 375, 200, 415)],   # hand
                           clean=[(260, 240, 300, 280)]),          # subject's left cheek
    "alfw1.png": dict(occluders=[(142, 135, 158, 180),              # the phone
                                 (160, 110, 200, 160)],             # fingers holding it
                      clean=[(62, 110, 92, 140)]),                  # subject's right cheek
    "image00408.jpg": dict(strands=[[(125, 211), (150, 227), (175, 246), (187, 257), (200, 270),
                                     (212, 283)],
                                    [(198, 205), (203, 215), (207, 230), (211, 243), (215, 255),
                                     (219, 265), (223, 276), (228, 287), (233, 295)]],
                           clean=[(120, 255, 165, 300), (235, 245, 262, 275)]),
}


@pytest.fixture(scope="module")
def analyzers():
    """One FaceAnalyzer per skin-mask mode, made when first asked for."""
    from gen3dface.backend.face import FaceAnalyzer
    from gen3dface.backend.face.analysis import FaceAnalysisConfig

    made = {}

    def get(mode):
        if mode not in made:
            made[mode] = FaceAnalyzer(FaceAnalysisConfig(skin=config_for_mode(mode)))
        return made[mode]

    yield get
    for a in made.values():
        a.close()


@pytest.mark.parametrize("mode", ["face", "full"])
@pytest.mark.parametrize("name", list(REAL))
def test_real_photo_masks_cover_the_occluders(analyzers, faces_dir, name, mode):
    """The pipeline's default mode ("face") and "full" (+ below the jaw) on the shared photos
    with a hand, a phone and hair strands over the face."""
    from gen3dface.backend.pipeline.pipeline import PipelineConfig

    assert PipelineConfig().skin_mask == "face"
    rgb = _shared_photo(faces_dir, name)
    fa = analyzers(mode).analyze(rgb)
    assert fa.skin is not None and fa.skin.shape == rgb.shape[:2]
    m = fa.view_mask
    case = REAL[name]
    for x0, y0, x1, y1 in case.get("occluders", []):
        box = m[y0:y1, x0:x1]
        assert (box < 0.5).mean() > 0.9, (name, (x0, y0, x1, y1), (box < 0.5).mean())
        assert (fa.mask[y0:y1, x0:x1] > 0.5).mean() > 0.9     # the foreground alone keeps it
    regs = face_regions(rgb.shape[:2], fa.landmarks, SkinMaskConfig())
    if case.get("strands"):
        all_on = np.zeros(rgb.shape[:2], bool)
        for line in case["strands"]:
            px = np.zeros(rgb.shape[:2], np.uint8)
            cv2.polylines(px, [np.array(line, np.int32)], False, 1, 2)
            on = px > 0
            all_on |= on
            judged = on & (regs["features"] == 0)     # eyes with their lids, brows, lips and
            # the nose's base are kept as they are: strands over them stay in the mask
            print(f"{name}: strand excluded {(m[on] < 0.5).mean():.3f} "
                  f"({(m[judged] < 0.5).mean():.3f} outside the facial features)")
            assert (m[judged] < 0.5).mean() > 0.7
        assert (m[all_on] < 0.5).mean() > 0.4
    for x0, y0, x1, y1 in case["clean"]:
        assert (m[y0:y1, x0:x1] > 0.5).mean() > 0.95, (name, (x0, y0, x1, y1))
    face = regs["face"] > 0
    print(f"{name}: hands {len(fa.hands)}, face oval excluded {(m[face] < 0.5).mean():.3f}, "
          f"info {fa.skin_info}")
    if name == "image04085.jpg":
        assert len(fa.hands) == 1
        below = (regs["below_jaw"] > 0) & (fa.mask > 0.5)
        # the black T-shirt below the jaw is not neck skin ("full"); the default leaves it
        shirt = below & (rgb.max(2) < 50)
        assert shirt.sum() > 2000
        if mode == "full":
            assert (m[shirt] < 0.5).mean() > 0.9
        else:
            assert (m[shirt & (regs["beside"] == 0)] > 0.5).mean() > 0.9


def test_side_lit_face_stays_usable(scene):
    """Shade is not an occluder: a head lit from one side (the dark half-face 2.2x darker)
    keeps its dark cheek in the mask. (Here the colour model, fitted on both cheeks, spans the
    shade already; the shadow test covers shade the patches do not see, such as the neck.)"""
    from gen3dface.backend.render.raycast import RenderConfig, render_views

    light = RenderConfig(shading="lambert", ambient=0.3, lights=((-1.0, 0.1, 0.25, 0.7),),
                         background=(200, 200, 200, 255))
    rgb = np.ascontiguousarray(render_views(scene["head"].meshes, [(scene["w2c"], scene["k"])],
                                            light)[0].rgba[..., :3])
    regs = face_regions(rgb.shape[:2], scene["lm"], SkinMaskConfig())
    face = (regs["face"] > 0) & (regs["features"] == 0)
    lm = scene["lm"]
    mid = (lm[1, 0] + lm[152, 0]) / 2
    xx = np.arange(rgb.shape[1])[None, :].repeat(rgb.shape[0], 0)
    halves = [face & (xx < mid), face & (xx >= mid)]
    bright = [float(rgb[h].mean()) for h in halves]
    dark = halves[int(np.argmin(bright))]
    kept = (usable_skin(rgb, lm, []).usable[dark] > 0.5).mean()
    print(f"side light: half-face brightness {min(bright):.0f} vs {max(bright):.0f}; dark half "
          f"kept {kept:.3f}")
    assert max(bright) > 1.6 * min(bright)
    assert kept > 0.85


def test_hands_mode_keeps_the_hand_off_and_the_rest_of_the_photo_on(faces_dir):
    """PipelineConfig(skin_mask="hands"): image04085's hand under the chin is out of the view
    mask; inside the face oval and below the jaw nothing else is taken out (the skin-colour
    tests there are the "face" and "full" modes')."""
    from gen3dface.backend.face import FaceAnalyzer
    from gen3dface.backend.face.analysis import FaceAnalysisConfig
    from gen3dface.backend.pipeline.pipeline import PipelineConfig

    with pytest.raises(ValueError, match="skin_mask"):
        PipelineConfig(skin_mask="yes")
    rgb = _shared_photo(faces_dir, "image04085.jpg")
    cfg = FaceAnalysisConfig(skin=config_for_mode("hands"))
    with FaceAnalyzer(cfg) as a:
        fa = a.analyze(rgb)
    m = fa.view_mask
    for x0, y0, x1, y1 in REAL["image04085.jpg"]["occluders"]:
        assert (m[y0:y1, x0:x1] < 0.5).mean() > 0.9
    regs = face_regions(rgb.shape[:2], fa.landmarks, SkinMaskConfig())
    keep = ((regs["face"] > 0) | (regs["below_jaw"] > 0)) & (fa.mask > 0.5)
    shirt = keep & (rgb.max(2) < 50) & (regs["below_jaw"] > 0)
    assert shirt.sum() > 2000 and (m[shirt] > 0.5).mean() > 0.9     # the T-shirt stays in
    print(f"hands mode: face and neck foreground kept {(m[keep] > 0.5).mean():.3f}")


def test_hair_hanging_beside_the_face_is_not_skin_and_the_bare_sides_are(scene):
    """The side test (every mode but "off"): strands of dark hair painted down the side of the
    face, from the eye line to the jaw (image02673's long hair), are out of the mask; the same
    band of the clean photo (cheek sides, ears, in the head's foreground) stays in."""
    rgb, lm = scene["rgb"], scene["lm"]
    # the foreground without its edge pixels (half background; the bake erodes it too)
    fg = cv2.erode((scene["fg"] > 0.5).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    cfg = config_for_mode("hands")                                # hands and beside the face
    beside = (face_regions(rgb.shape[:2], lm, cfg)["beside"] > 0) & fg
    assert beside.sum() > 1500
    clean = usable_skin(rgb, lm, [], cfg).usable
    kept = float((clean[beside] > 0.5).mean())
    hair = np.zeros(rgb.shape[:2], np.uint8)
    ys, xs = np.nonzero(beside)
    mid = (lm[1, 0] + lm[152, 0]) / 2
    for side in (xs < mid, xs > mid):                             # 3 strands down each side
        for x in np.quantile(xs[side], [0.2, 0.5, 0.8]):
            cv2.line(hair, (int(x), int(ys.min())), (int(x), int(ys.max())), 1, 5)
    hair = (hair > 0) & beside
    # judged away from the band's ends, where the zone stops and the edge is feathered
    inner = hair & (cv2.erode(beside.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0)
    assert hair.sum() > 400
    dark = rgb.copy()
    dark[hair] = (38, 27, 22)
    m = usable_skin(dark, lm, [], cfg).usable
    off = float((m[inner] < 0.5).mean())
    without = usable_skin(dark, lm, [], replace(cfg, sides=False)).usable
    print(f"beside the face: clean kept {kept:.3f}; hair strands excluded {off:.3f} "
          f"(without the side test {(without[hair] < 0.5).mean():.3f})")
    assert kept > 0.9 and off > 0.97
    assert (without[hair] < 0.5).mean() < 0.05                   # what the test adds
    # inside the face oval the "hands" mode still takes nothing out
    face = (face_regions(rgb.shape[:2], lm, cfg)["face"] > 0) & ~_grow_mask(hair, 12)
    assert (m[face] > 0.5).mean() > 0.98


def _grow_mask(mask, r):
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0


def test_shallow_blobs_at_the_oval_edge_are_dropped_and_deep_ones_kept():
    """shallow_in_face: of a mask's blobs, the parts inside the face of those that never reach
    `min_depth` in from its edge; a blob reaching deeper is left whole, and nothing outside
    the face is returned."""
    face = np.zeros((200, 200), np.uint8)
    cv2.circle(face, (100, 100), 80, 1, -1)
    mask = np.zeros_like(face)
    cv2.rectangle(mask, (14, 90), (40, 110), 1, -1)        # straddles the edge, 20 px deep
    cv2.line(mask, (100, 10), (100, 120), 1, 3)            # from the edge to the centre
    out = shallow_in_face(mask, face, min_depth=30.0)
    edge = np.zeros(face.shape, bool)
    edge[90:111, 14:41] = True
    assert out[edge & (face > 0)].all()
    assert not out[edge & (face == 0)].any()               # outside the face: not returned
    assert out.sum() == (edge & (face > 0)).sum()          # the deep line is untouched
    assert not shallow_in_face(mask, face, min_depth=15.0).any()


def test_face_test_keeps_the_hairline_and_forehead_but_takes_strands_across_the_cheek(scene):
    """The skin test inside the face (skin_mask "full") without false occluders where hair
    frames the face: a dark band along the oval's edge beside the temple (a fringe, the
    hairline) and one across the forehead above the brows stay in the mask (the head is
    painted with its hair there); the same dark colour as a strand across the cheek, from the
    edge toward the nose, is taken out. `forehead_test=True, face_min_depth=0` (the first
    version) took the hairline band out too."""
    rgb, lm = scene["rgb"].copy(), scene["lm"]
    cfg = SkinMaskConfig(neck=False)
    regs = face_regions(rgb.shape[:2], lm, cfg)
    face = regs["face"] > 0
    size = float(np.ptp(lm[FACE_OVAL], axis=0).max())
    depth = cv2.distanceTransform(face.astype(np.uint8), cv2.DIST_L2, 5)
    below_brows = regs["below_brows"] > 0
    free = face & (regs["features"] == 0)
    left = np.arange(rgb.shape[1])[None, :] < (lm[1, 0] + lm[152, 0]) / 2   # one side only
    above_eyes = np.arange(rgb.shape[0])[:, None] < (lm[33, 1] + lm[263, 1]) / 2
    hairline = free & left & (depth < 0.07 * size) & below_brows & above_eyes  # the temple
    forehead = free & left & ~below_brows & (depth > 0.02 * size)          # a side fringe
    strand = np.zeros(rgb.shape[:2], np.uint8)
    mid = (lm[1, 0] + lm[152, 0]) / 2
    a = max(lm[234], lm[454], key=lambda p: p[0] - mid)    # the other cheek's edge ...
    b = lm[1]                                              # ... toward the nose tip
    cv2.line(strand, tuple(np.round(0.8 * a + 0.2 * b).astype(int)),
             tuple(np.round(0.4 * a + 0.6 * b).astype(int)), 1, 5)
    strand = (strand > 0) & free & (regs["around_eyes"] == 0) & ~left
    assert hairline.sum() > 150 and forehead.sum() > 300 and strand.sum() > 80
    for region in (hairline, forehead, strand):
        rgb[region] = (30, 28, 27)                         # dark, greyish hair: not shade
    m = usable_skin(rgb, lm, [], cfg).usable
    old = usable_skin(rgb, lm, [], replace(cfg, forehead_test=True, face_min_depth=0.0)).usable
    kept = [float((m[r] > 0.5).mean()) for r in (hairline, forehead)]
    off = float((m[strand] < 0.5).mean())
    print(f"face test: hairline band kept {kept[0]:.3f} (first version "
          f"{(old[hairline] > 0.5).mean():.3f}), forehead band kept {kept[1]:.3f} "
          f"({(old[forehead] > 0.5).mean():.3f}), cheek strand excluded {off:.3f}")
    assert kept[0] > 0.9 and kept[1] > 0.95
    assert off > 0.9
    assert (old[hairline] > 0.5).mean() < 0.5 and (old[forehead] > 0.5).mean() < 0.5


def test_stubble_on_a_turned_face_stays_skin(analyzers, faces_dir):
    """image03786 (a man looking up and aside, heavy stubble on the cheek nearer the camera,
    whose mirror twin is turned away): the default mode keeps the stubbled cheek (a box
    hand-drawn on it), which the first version of the test inside the face cut out (a hue
    only 8 degrees from the cheek patches' counted as shade; the chin and jaw were tested)."""
    rgb = _shared_photo(faces_dir, "image03786.png")
    fa = analyzers("face").analyze(rgb)
    x0, y0, x1, y1 = 70, 130, 110, 160
    first = replace(config_for_mode("face"), shadow_hue_face_deg=8.0, chin_test=True)
    old = usable_skin(rgb, fa.landmarks, fa.hands, first).usable
    kept, kept_old = (float((m[y0:y1, x0:x1] > 0.5).mean()) for m in (fa.skin, old))
    print(f"image03786 stubble kept {kept:.2f} (first version {kept_old:.2f})")
    assert kept > 0.7 and kept_old < 0.3


def test_chin_and_jaw_are_not_tested_unless_asked(scene):
    """Below the mouth corners beards grow: a dark patch on one side of the chin stays in the
    default mask (its mirror twin is clean skin, so the mirror test would not keep it); with
    `chin_test=True` it is taken out."""
    rgb, lm = scene["rgb"].copy(), scene["lm"]
    cfg = config_for_mode("face")
    regs = face_regions(rgb.shape[:2], lm, cfg)
    size = float(np.ptp(lm[FACE_OVAL], axis=0).max())
    depth = cv2.distanceTransform((regs["face"] > 0).astype(np.uint8), cv2.DIST_L2, 5)
    left = np.arange(rgb.shape[1])[None, :] < (lm[1, 0] + lm[152, 0]) / 2
    chin = (regs["face"] > 0) & (regs["features"] == 0) & (regs["above_mouth"] == 0) & left
    chin &= depth > 0.04 * size
    assert chin.sum() > 2 * 6e-3 * size * size      # larger than a mark of the face (a mole)
    rgb[chin] = (30, 28, 27)
    kept = float((usable_skin(rgb, lm, [], cfg).usable[chin] > 0.5).mean())
    off = float((usable_skin(rgb, lm, [], replace(cfg, chin_test=True)).usable[chin] < 0.5).mean())
    print(f"dark patch on the chin: kept {kept:.3f}; with chin_test excluded {off:.3f}")
    assert kept > 0.95 and off > 0.9



def test_cheeks_sides_take_the_side_test_in_every_mode(scene):
    """Beside the face down to the jaw angles the side band's looser test holds in every mode:
    "full" (the test below the jaw as well, `--neck-skin`) used the neck's stricter one where
    the two regions meet. A colour off the cheeks by more than the neck allows and less than
    the side does (a greyer cheek side: stubble, the light there) stays in the mask in "face"
    and "full" (before, "full" took it out)."""
    rgb, lm = scene["rgb"].copy(), scene["lm"]
    regs = face_regions(rgb.shape[:2], lm, SkinMaskConfig())
    fg = cv2.erode((scene["fg"] > 0.5).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    both = (regs["beside"] > 0) & (regs["below_jaw"] > 0) & fg
    assert both.sum() > 300
    model = fit_skin_model(colour_features(rgb), regs["patches"], SkinMaskConfig())
    cfg = SkinMaskConfig()
    mid = 0.5 * (cfg.skin_d0 + cfg.skin_d1)                 # where skin_probability is 0.5
    base = np.median(rgb[regs["patches"] > 0], 0)
    for k in np.linspace(0.0, 1.0, 101):                    # greyer until between the two
        c = np.clip(base * (1 - k) + base.mean() * k, 0, 255).astype(np.uint8)
        d = float(model.distance(colour_features(c[None, None]), cfg)[0, 0])
        if mid * cfg.neck_tolerance * 1.1 < d < mid * cfg.side_tolerance * 0.9:
            break
    else:
        pytest.fail("no colour between the neck's and the side's tolerance")
    rgb[both] = c
    kept = {mode: float((usable_skin(rgb, lm, [], config_for_mode(mode)).usable[both] > 0.5
                         ).mean()) for mode in ("face", "full")}
    print(f"cheek sides, colour {c.tolist()} at distance {d:.1f}: kept {kept}")
    assert kept["face"] > 0.9 and kept["full"] > 0.9


def test_dark_hair_over_the_shoulders_is_not_neck_skin(analyzers, faces_dir):
    """image00302 (long black hair over both shoulders, the throat bare between): with the
    skin neck (the job's default) the hair in boxes drawn on it is taken out and the throat
    kept. Without the darkness limit below the jaw (`neck_dark=0`, before session 11) the
    brown-black hair passed the neck's loose skin test (skin's hue; brightness 2.5 sigmas
    wide, 1.4 times looser) on 63-68 % of both boxes and was painted onto the shoulders."""
    rgb = _shared_photo(faces_dir, "image00302.jpg")
    fa = analyzers("face").analyze(rgb, neck_skin=True)
    cfg = replace(config_for_mode("face"), neck=True)
    assert cfg.neck_dark == cfg.shadow_depth
    # (the neck's column and grey limit off too: each takes out much of these boxes by
    # itself, see test_only_the_neck_paints_the_neck)
    before = usable_skin(rgb, fa.landmarks, fa.hands,
                         replace(cfg, neck_dark=0.0, neck_width=0.0, neck_grey=0.0)).usable
    for x0, y0, x1, y1 in ((100, 350, 140, 420), (330, 330, 390, 400)):
        now, old = (float((m[y0:y1, x0:x1] < 0.5).mean()) for m in (fa.skin, before))
        print(f"image00302 hair box {(x0, y0, x1, y1)} taken out {now:.2f} (before {old:.2f})")
        assert now > 0.95 and old < 0.5
    throat = fa.skin[405:445, 195:240]
    assert (throat > 0.5).mean() > 0.95


@pytest.mark.parametrize("name", ["IMG_0392_inputs.jpg", "id04657-PPHljWCZ53c-000565_inputs_inputs.jpg",
                                  "id06692-Hlahj5abifM-002721_inputs_inputs.jpg"])
def test_the_shade_under_the_chin_stays_neck_skin(analyzers, faces_dir, name):
    """The darkness limit below the jaw is the deepest shade taken for skin (shadow_depth):
    the shade under these chins (a looser limit, 1.75 log2 steps, took 3-7 % more of the
    region below the jaw here) stays as it was without the limit."""
    rgb = _shared_photo(faces_dir, name)
    fa = analyzers("face").analyze(rgb, neck_skin=True)
    cfg = replace(config_for_mode("face"), neck=True)
    below = face_regions(rgb.shape[:2], fa.landmarks, cfg)["below_jaw"] > 0
    loose, none = (usable_skin(rgb, fa.landmarks, fa.hands, replace(cfg, neck_dark=d)).usable
                   for d in (1.75, 0.0))
    same = float(((fa.skin[below] < 0.5) == (none[below] < 0.5)).mean())
    extra = float((loose[below] < 0.5).mean() - (none[below] < 0.5).mean())
    print(f"{name[:12]}: below the jaw unchanged {same:.4f}; at 1.75 {extra:+.3f} taken out")
    assert same > 0.995


def test_only_the_neck_paints_the_neck(bust_scene):
    """Below the jaw the photo may paint only the neck's column (as wide as the jaw angles
    are apart, down to the neck's base): on the clean synthetic photo the skin below the jaw
    beside and below the column (the head's shoulders, in its foreground) is taken out and
    the column kept; without the column (`neck_width=0`) both are kept, so the column is
    what takes them out. Beside the face (the side band, ears) nothing changes."""
    rgb, lm = bust_scene["rgb"], bust_scene["lm"]
    fg = cv2.erode((bust_scene["fg"] > 0.5).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    cfg = replace(config_for_mode("face"), neck=True)
    regs = face_regions(rgb.shape[:2], lm, cfg)
    below = (regs["below_jaw"] > 0) & fg
    beyond = (regs["beyond_neck"] > 0) & fg
    column = below & (_grow_mask(beyond, 4) == 0) & (regs["beside"] == 0)
    assert beyond.sum() > 1500 and column.sum() > 1500
    assert not (beyond & (regs["beside"] > 0)).any()
    now = usable_skin(rgb, lm, [], cfg).usable
    without = usable_skin(rgb, lm, [], replace(cfg, neck_width=0.0)).usable
    beside = (regs["beside"] > 0) & fg
    print(f"below the jaw: beyond the neck taken out {(now[beyond] < 0.5).mean():.3f} "
          f"(without the column {(without[beyond] < 0.5).mean():.3f}), the column kept "
          f"{(now[column] > 0.5).mean():.3f}")
    assert (now[beyond] < 0.5).mean() > 0.99 and (now[column] > 0.5).mean() > 0.9
    assert (without[beyond] > 0.5).mean() > 0.9
    assert np.array_equal(now[beside] > 0.5, without[beside] > 0.5)


def test_a_grey_collar_under_the_jaw_is_not_neck_skin(bust_scene):
    """Pale skin (the photo desaturated to the patches' saturation of alfw1 and image00202,
    about 4) lets a grey pass the neck's loose colour test: a collar of the skin's colour
    greyed to under half its saturation (a white or grey shirt under a warm light) is taken
    out below the jaw by the saturation floor (`neck_grey`); without the floor it paints the
    neck. The clean neck stays."""
    lm = bust_scene["lm"]
    photo = bust_scene["rgb"].astype(np.float64)
    rgb = np.clip(0.45 * photo + 0.55 * photo.mean(2, keepdims=True), 0, 255).astype(np.uint8)
    fg = cv2.erode((bust_scene["fg"] > 0.5).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    cfg = replace(config_for_mode("face"), neck=True)
    regs = face_regions(rgb.shape[:2], lm, cfg)
    model = fit_skin_model(colour_features(rgb), regs["patches"], cfg)
    column = (regs["below_jaw"] > 0) & (regs["beyond_neck"] == 0) & (regs["beside"] == 0) & fg
    size = float(np.ptp(lm[FACE_OVAL], axis=0).max())
    down = np.arange(rgb.shape[0])[:, None] - lm[152, 1]
    collar = column & (down > 0.12 * size) & (down < 0.22 * size)
    assert collar.sum() > 500
    clean = usable_skin(rgb, lm, [], cfg).usable
    base = np.median(rgb[regs["patches"] > 0], 0)
    loose = 0.5 * (cfg.skin_d0 + cfg.skin_d1) * cfg.neck_tolerance
    for k in np.linspace(0.0, 1.0, 101):                     # greyer until under the floor
        c = np.clip(base * (1 - k) + base.mean() * k, 0, 255).astype(np.uint8)
        f = colour_features(c[None, None])
        sat = float(np.hypot(f[0, 0, 1] - 100 / 3, f[0, 0, 2] - 100 / 3))
        if sat < 0.9 * cfg.neck_grey * model.saturation:
            break
    d = float(model.distance(f, cfg)[0, 0])
    assert d < 0.9 * loose, "the greyed colour should pass the neck's loose colour test"
    rgb[collar] = c
    inner = collar & (cv2.erode(collar.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0)
    now = usable_skin(rgb, lm, [], cfg).usable
    without = usable_skin(rgb, lm, [], replace(cfg, neck_grey=0.0)).usable
    rest = column & ~_grow_mask(collar, 12)
    print(f"grey collar {c.tolist()} (saturation {sat:.1f} against the patches' "
          f"{model.saturation:.1f}, colour distance {d:.1f}): taken out "
          f"{(now[inner] < 0.5).mean():.3f}, without the floor {(without[inner] < 0.5).mean():.3f}; "
          f"the rest of the neck kept {(now[rest] > 0.5).mean():.3f}")
    assert (now[inner] < 0.5).mean() > 0.97 and (without[inner] > 0.5).mean() > 0.9
    assert (clean[rest] > 0.5).mean() > 0.9 and (now[rest] > 0.5).mean() > 0.9


def test_hair_beside_the_neck_is_not_neck_skin(analyzers, faces_dir):
    """alfw1 (blonde hair hanging down beside her neck): the hair passes the neck's colour
    test (blonde is near skin's hue), but it is beside the neck's column: a box drawn on it
    is taken out, which before the column (session 12) was kept."""
    rgb = _shared_photo(faces_dir, "alfw1.png")
    fa = analyzers("face").analyze(rgb, neck_skin=True)
    old = usable_skin(rgb, fa.landmarks, fa.hands,
                      replace(config_for_mode("face"), neck=True, neck_width=0.0)).usable
    x0, y0, x1, y1 = 5, 175, 30, 215
    now, before = (float((m[y0:y1, x0:x1] < 0.5).mean()) for m in (fa.skin, old))
    print(f"alfw1 hair beside the neck taken out {now:.2f} (without the column {before:.2f})")
    assert now > 0.95 and before < 0.5


def test_a_white_collar_beside_the_jaw_is_not_skin(analyzers, faces_dir):
    """id08456 (a white shirt collar right beside his jaw, where the band beside the face
    reaches below the jaw line): its warm white passes the side band's loose colour test, but
    is under the side's lower saturation floor (`neck_side_grey`, 0.3 of the cheeks'): a box
    drawn on the collar is taken out; without the floors most of it painted the jaw's side."""
    rgb = _shared_photo(faces_dir, "id08456-SEvpX9LhEP4-000957_inputs_inputs.jpg")
    fa = analyzers("face").analyze(rgb, neck_skin=True)
    old = usable_skin(rgb, fa.landmarks, fa.hands, replace(
        config_for_mode("face"), neck=True, neck_grey=0.0, neck_side_grey=0.0, edge_grey=0.0,
        edge_white=0.0)).usable
    x0, y0, x1, y1 = 24, 130, 32, 160
    now, before = (float((m[y0:y1, x0:x1] < 0.5).mean()) for m in (fa.skin, old))
    print(f"id08456 collar beside the jaw taken out {now:.2f} (without the floors {before:.2f})")
    assert now > 0.85 and before < 0.5


def test_a_hand_cut_by_the_photo_edge_is_found_and_taken_out(faces_dir):
    """id06692 (fingers over her chin, the palm below the photo's bottom edge): mediapipe's
    palm detector finds no hand in the photo itself (at any confidence, session 11), and finds
    it once the photo is set in a black border (`hand_pad`); the fingers, boxes drawn on them,
    are then out of the usable skin. With `hand_pad=0` (before session 12) no hand was found
    and the fingers painted the chin."""
    from gen3dface.backend.face import FaceAnalyzer
    from gen3dface.backend.face.analysis import FaceAnalysisConfig

    rgb = _shared_photo(faces_dir, "id06692-Hlahj5abifM-002721_inputs_inputs.jpg")
    boxes = [(118, 172, 150, 200), (150, 180, 185, 205), (120, 200, 160, 224)]
    got = {}
    for pad in (0.75, 0.0):
        fa = FaceAnalyzer(FaceAnalysisConfig(skin=config_for_mode("face"), hand_pad=pad))
        try:
            an = fa.analyze(rgb, neck_skin=True)
        finally:
            fa.close()
        got[pad] = (len(an.hands), [float((an.skin[y0:y1, x0:x1] < 0.5).mean())
                                    for x0, y0, x1, y1 in boxes])
    print(f"id06692: hands found, fingers' boxes taken out: with the border {got[0.75]}, "
          f"without {got[0.0]}")
    assert got[0.75][0] == 1 and min(got[0.75][1]) > 0.95
    assert got[0.0][0] == 0 and max(got[0.0][1]) < 0.5


def test_skin_islands_are_the_small_regions():
    from gen3dface.backend.face.skin_mask import skin_islands

    m = np.zeros((60, 60), bool)
    m[5:45, 5:25] = True                      # 800 px: the neck
    m[50:54, 40:44] = True                    # 16 px: skin between two fingers
    m[10:13, 50:58] = True                    # 24 px
    got = skin_islands(m, 100)
    assert got[50:54, 40:44].all() and got[10:13, 50:58].all()
    assert not got[5:45, 5:25].any() and not got[~m].any()
    hand = np.zeros_like(m)
    hand[52:58, 38:46] = True                 # a finger (widened) reaching the first island
    got = skin_islands(m, 100, hand)
    assert got[50:54, 40:44].all() and not got[10:13, 50:58].any()


def test_skin_islands_below_the_jaw_are_not_neck_skin(analyzers, faces_dir):
    """image04085 (a hand under the chin, a black T-shirt): the bits of neck seen between and
    below the fingers are islands cut off by the hand and the shirt, under 2 % of the face
    size squared, next to the hand. Projected, they painted streaks and blotches on the neck;
    now the fill paints it. Without the rule (`neck_island=0`) they were kept. (Bare neck
    between hair strands, image00408's, stays: no hand beside it.)"""
    rgb = _shared_photo(faces_dir, "image04085.jpg")
    fa = analyzers("face").analyze(rgb, neck_skin=True)
    cfg = replace(config_for_mode("face"), neck=True)
    assert cfg.neck_island > 0
    before = usable_skin(rgb, fa.landmarks, fa.hands, replace(cfg, neck_island=0.0)).usable
    for x0, y0, x1, y1 in ((168, 434, 194, 446),):
        now, old = (float((m[y0:y1, x0:x1] > 0.5).mean()) for m in (fa.skin, before))
        print(f"image04085 neck island {(x0, y0, x1, y1)}: kept {now:.2f} (before {old:.2f})")
        assert old > 0.5 and now < 0.05


def _edge_band(scene, cfg):
    """Foreground pixels at the face's edge from the eye line to the mouth, both sides: inside
    the oval within 6 % of the face size of its outline (the eyes, brows, lips and nose left
    out) and beside it, 3 % outward."""
    rgb, lm = scene["rgb"], scene["lm"]
    regs = face_regions(rgb.shape[:2], lm, cfg)
    size = regs["size"]
    fg = cv2.erode((scene["fg"] > 0.5).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    inside = cv2.distanceTransform(regs["face"], cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - regs["face"], cv2.DIST_L2, 5)
    eyes_y = lm[[33, 263], 1].mean()
    rows = np.arange(rgb.shape[0])[:, None]
    band = (((inside > 0) & (inside < 0.06 * size)) | ((outside > 0) & (outside < 0.03 * size)))
    band &= (rows > eyes_y + 0.02 * size) & (rows < lm[61, 1]) & fg
    return band & (regs["pale_keep"] == 0), regs


def test_white_hair_and_rim_light_at_the_face_edge_are_not_skin(scene):
    """The pale-edge test (`edge_grey`, issue 18 section 1): biden.jpg's white hair beside his
    temple and the rim light along his jaw painted white streaks down the cheek's side, seen at
    every turned angle. On a synthetic face, a near-white band painted along the face's edge
    (inside the oval, where the test inside the face leaves the silhouette alone, and beside
    it) is taken out; a highlight of skin's own hue in the same band, as bright, stays, and so
    does the clean edge. Without the test the white band paints the cheek."""
    cfg = config_for_mode("face")
    band, regs = _edge_band(scene, cfg)
    assert band.sum() > 800
    inner = band & (cv2.erode(band.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    clean = usable_skin(scene["rgb"], scene["lm"], [], cfg).usable
    base = np.median(scene["rgb"][regs["patches"] > 0], 0)
    white = scene["rgb"].copy()
    white[band] = (236, 232, 226)
    # a highlight: the skin's colour, brighter, halfway to grey (hue kept)
    shine = scene["rgb"].copy()
    lit = np.clip(base * 1.25, 0, 255)
    shine[band] = np.clip(0.55 * lit + 0.45 * lit.mean(), 0, 255).astype(np.uint8)
    got = {}
    for name, rgb in (("white", white), ("shine", shine)):
        got[name] = usable_skin(rgb, scene["lm"], [], cfg).usable
    without = usable_skin(white, scene["lm"], [], replace(cfg, edge_grey=0.0)).usable
    out = {k: float((m[inner] < 0.5).mean()) for k, m in got.items()}
    # inside the oval the test inside the face leaves the silhouette's blobs alone
    # (`face_min_depth`); beside it the side band's colour test already takes white out, and
    # that, widened and feathered, reaches a little way in
    in_oval = inner & (regs["face"] > 0)
    before = float((without[in_oval] < 0.5).mean())
    print(f"edge band {band.sum()} px: white taken out {out['white']:.3f} (inside the oval "
          f"{(got['white'][in_oval] < 0.5).mean():.3f}, without the test {before:.3f}), "
          f"skin-hued highlight taken out {out['shine']:.3f}, clean edge kept "
          f"{(clean[band] > 0.5).mean():.3f}")
    assert out["white"] > 0.95 and (got["white"][in_oval] < 0.5).mean() > 0.95
    assert in_oval.sum() > 300 and before < 0.25
    assert out["shine"] < 0.05
    assert (clean[band] > 0.5).mean() > 0.97
    # the eyes keep their whites: a white sclera is not the edge's
    eye = regs["pale_keep"] > 0
    assert (got["white"][eye & (regs["face"] > 0)] > 0.5).mean() > 0.95


def test_bidens_white_temple_and_jaw_rim_are_not_skin(analyzers, faces_dir):
    """biden.jpg: the white hair at his left temple and the rim light along his left jaw lie
    inside mediapipe's face oval, at its edge, where the test inside the face leaves the
    silhouette alone. Boxes drawn on them are out of the usable skin with the pale-edge test
    and in it without; a box on his cheek beside them stays in."""
    rgb = _shared_photo(faces_dir, "biden.jpg")
    fa = analyzers("face").analyze(rgb, neck_skin=True)
    old = usable_skin(rgb, fa.landmarks, fa.hands,
                      replace(config_for_mode("face"), edge_grey=0.0)).usable
    boxes = {"temple": (702, 318, 714, 334), "jaw rim": (660, 496, 666, 508)}
    cheek = (600, 400, 640, 440)
    for name, (x0, y0, x1, y1) in boxes.items():
        now, before = (float((m[y0:y1, x0:x1] < 0.5).mean()) for m in (fa.skin, old))
        print(f"biden {name}: taken out {now:.2f} (without the pale-edge test {before:.2f})")
        assert now > 0.9 and before < 0.1
    x0, y0, x1, y1 = cheek
    assert (fa.skin[y0:y1, x0:x1] > 0.5).mean() > 0.99


def test_red_hair_over_the_cheek_and_beside_the_jaw_is_not_skin(analyzers, faces_dir):
    """image02246.jpg: her red hair falls over her left cheek and beside her jaw. It has the
    cheeks' hue and is about as dark as shade, and the shadow test took it for shaded skin
    while it allowed any saturation up to 22 (the hair's is 17-23; her overexposed cheek
    patches' 2.7): the hair painted the side of her face and her neck. Boxes drawn on the
    hair are out of the usable skin now and were in before; her cheeks stay in."""
    rgb = _shared_photo(faces_dir, "image02246.jpg")
    fa = analyzers("face").analyze(rgb, neck_skin=True)
    cfg = replace(config_for_mode("face"), neck=True)
    now = usable_skin(rgb, fa.landmarks, fa.hands, cfg, fa.mask).usable
    before = usable_skin(rgb, fa.landmarks, fa.hands, replace(cfg, shadow_saturation_abs=22.0),
                         fa.mask).usable
    np.testing.assert_array_equal(now, fa.skin)
    for name, (x0, y0, x1, y1), want in (("hair on her cheek", (305, 215, 325, 245), 0.7),
                                         ("hair beside her jaw", (340, 250, 380, 300), 0.95)):
        out_now, out_before = (float((m[y0:y1, x0:x1] < 0.5).mean()) for m in (now, before))
        print(f"image02246 {name}: taken out {out_now:.2f} (before {out_before:.2f})")
        assert out_now > want and out_before < 0.2
    for x0, y0, x1, y1 in ((180, 220, 220, 260), (260, 230, 290, 260)):     # her cheeks
        assert (now[y0:y1, x0:x1] > 0.5).mean() > 0.99


def test_the_pale_edge_test_leaves_the_eyes_whites_alone(scene):
    """Near the face's edge the pale-edge test must not take the sclera, also when mediapipe
    closes an open eye onto its lower lid (its landmarks a flat line there: seen on the
    synthetic photo of tests/test_photo_likeness.py, whose eye then lost its white). The eye
    here has its outer corner inside the edge band; its landmarks are collapsed onto the lower
    lid and its opening painted white: the white stays usable."""
    from gen3dface.backend.face.landmarks import RIGHT_EYE_OPENING

    rgb, lm = scene["rgb"].copy(), scene["lm"].copy()
    cfg = config_for_mode("face")
    regs = face_regions(rgb.shape[:2], lm, cfg)
    depth = cv2.distanceTransform(regs["face"], cv2.DIST_L2, 5)
    eye = lm[RIGHT_EYE_OPENING]
    corner = eye[np.argmin(eye[:, 0])]
    assert depth[int(corner[1]), int(corner[0])] < cfg.face_min_depth * regs["size"]
    opening = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillPoly(opening, [np.round(eye).astype(np.int32)], 1)
    opening = opening.astype(bool)
    rgb[opening] = (236, 234, 230)                            # the white of the eye
    closed = lm.copy()
    closed[RIGHT_EYE_OPENING, 1] = eye[:, 1].max()            # closed onto the lower lid
    m = usable_skin(rgb, closed, [], cfg).usable
    kept = float((m[opening] > 0.5).mean())
    print(f"sclera of an eye whose landmarks are closed onto its lower lid: kept {kept:.3f}")
    assert kept > 0.95
