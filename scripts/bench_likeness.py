"""Likeness benchmark: our head against the open-source eos peer, in the same run, judged by
dlib's face-recognition network.

    bash scripts/setup_bench.sh                       # once: the bench extra + the peer's venv
    .venv/bin/python scripts/bench_likeness.py [--photos DIR] [--stems a,b] [--label NAME]
        [--ours-arg=--texture-size=2048 ...] [--json R.json] [--sheet S.png] [--redo-peer]
        [--compare OTHER_LABEL] [--yaws 0,30,60] [--ours-src DIR]

For every photo of --photos (default $GEN3DFACE_TEST_DATA/faces, else ../shared/data/faces):
1. ours: `gen3dface run PHOTO -o OUT.glb [--ours-arg ...]`, the command's own handler called in
   this process for every photo, with one HeadPipeline kept between photos (as a warm server
   keeps it); cold = the first photo (imports and model loads), warm = the median of the rest.
   Written to OUT/ours/LABEL/ (GLB, sidecar, run log).
2. the peer: ../shared/tools/peer_eos/peer.py (eos 1.5 + dlib landmarks) in its own venv
   (--peer-venv, made by its setup.sh when missing), all photos in one process
   (scripts/peer_batch.py). Cached in OUT/peer/; --redo-peer remakes its heads and renders.
   The peer's model files are non-commercial: benchmark only.
3. renders: Blender's glTF importer and Cycles (scripts/render_heads_bpy.py: the photo's camera
   from the sidecar with the long side at --size, then the yaw ring), --workers Blender
   processes over interleaved halves of the list, one Cycles thread each. Renders are kept in
   renders/s{size}_n{samples}_{render script digest}/ beside each head, one stamp per head
   (the digests of its GLB and of the sidecar's camera, and the views made): a view is made
   again only when one of those changed, so an unchanged head (ours is byte-identical run to
   run) or another --yaws subset costs no Blender time. Runs may overlap: a label is locked
   for its run, the peer's cache while one run makes it.
4. the judge (backend/eval/likeness.py): dlib HOG detection (upsample 1 on photos, 2 on
   renders), the largest face, the 128-d ResNet encoding ("large" landmarks, 1 jitter); renders
   composited on grey 128. Per view: found, genuine mean, verified (share of ALL judged photos
   found and < 0.6), impostor mean, rank-1, ours/peer genuine ratio. Photos where dlib finds no
   face are left out (as in the reference judge), and so are photos where dlib's largest face
   is not the face our own face analysis (mediapipe, as in the pipeline) picks, i.e. another
   person of a photo of two (--keep-face-mismatch keeps them). A head our pipeline failed to
   make counts as not found.
5. the face region: PSNR and SSIM of the photo-camera render against the photo, comparing only
   the pixels inside the face oval of mediapipe's landmarks of the photo (backend/face, the same
   mask for ours and the peer's); renders composited on grey 128, so a hole in the face counts.
Prints one table, writes --json (default OUT/ours/LABEL/results.json) and a contact sheet
(--sheet; rows: photo | ours views | peer views).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
PHOTO_EXTS = {".jpg", ".jpeg", ".png", ".webp"}
FACE_MATCH_IOU = 0.2     # dlib's face box against our face analysis' face-oval box: same face
RENDER_SCRIPT = REPO / "scripts" / "render_heads_bpy.py"
PEER_BATCH = REPO / "scripts" / "peer_batch.py"


def load_measures():
    """backend/eval/likeness.py of this checkout, loaded by path: with --ours-src the
    `gen3dface` package is another source tree, which need not have it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_likeness_measures",
                                                  REPO / "backend" / "eval" / "likeness.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def use_ours_source(src: Path, work: Path) -> None:
    """Make `import gen3dface...` load another source tree (a `git archive` of a commit, say):
    a package folder whose backend/ and protocol/ point there, first on sys.path (before the
    editable install's finder)."""
    src = src.resolve()
    if not (src / "backend" / "pipeline" / "pipeline.py").exists():
        raise SystemExit(f"--ours-src {src}: no backend/pipeline/pipeline.py there")
    if "gen3dface" in sys.modules:
        raise SystemExit("--ours-src must be applied before gen3dface is imported")
    pkg = work / "ours_src" / "gen3dface"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    for name in ("backend", "protocol", "blender_addon"):
        link = pkg / name
        if link.is_symlink() or link.exists():
            link.unlink()
        if (src / name).is_dir():
            link.symlink_to(src / name, target_is_directory=True)
    sys.path.insert(0, str(pkg.parent))


@contextlib.contextmanager
def folder_lock(folder: Path, wait: bool, what: str):
    """An exclusive flock on folder/.lock: wait for it, or stop at once when it is held."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise SystemExit(f"another bench_likeness run is using {what} ({folder}); "
                                 "give this one another --label")
            log(f"  waiting for another run to finish with {what}")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def source_state(src: Path | None) -> dict:
    """Which code made ours: the checkout's commit and its uncommitted changes under backend/
    and protocol/, or the --ours-src folder."""
    if src is not None:
        return {"path": str(src.resolve()), "commit": None}
    def git(*args):
        r = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    dirty = git("status", "--porcelain", "--", "backend", "protocol")
    return {"path": str(REPO), "commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_files": None if dirty is None else len(dirty.splitlines())}


def data_root() -> Path:
    return Path(os.environ.get("GEN3DFACE_TEST_DATA") or REPO.parent / "shared" / "data")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the judge (dlib) ------------------------------------------------------------------------
def import_face_recognition():
    """face_recognition (installed --no-deps, bench extra). face_recognition_models still imports
    pkg_resources, which setuptools >= 81 no longer ships: give it the one function it uses,
    for that import only."""
    import importlib.resources
    import importlib.util
    import types

    shim = None
    if importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda pkg, name: str(importlib.resources.files(pkg) / name)
        sys.modules["pkg_resources"] = shim
    try:
        import face_recognition
    except ImportError as e:
        raise SystemExit(f"the likeness judge is not installed ({e}): run scripts/setup_bench.sh")
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return face_recognition


class Judge:
    """dlib encodings of images, with a JSON cache keyed by path, size, mtime and upsample (a
    photo or a reused render is judged once; entries of files since changed are dropped)."""

    def __init__(self, cache_path: Path | None):
        self.fr = import_face_recognition()
        self.cache_path = cache_path
        self.cache = {}
        if cache_path and cache_path.exists():
            try:
                self.cache = json.loads(cache_path.read_text())
            except ValueError:
                self.cache = {}
        self.seconds = 0.0
        self.computed = 0

    @staticmethod
    def load_rgb(path) -> np.ndarray:
        """As the reference judge: RGBA composited on grey 128, no EXIF rotation."""
        im = Image.open(path)
        if im.mode == "RGBA":
            bg = Image.new("RGBA", im.size, (128, 128, 128, 255))
            bg.alpha_composite(im)
            im = bg
        return np.asarray(im.convert("RGB"))

    def encode(self, path: Path, upsample: int, cache: bool = False):
        """The encoding of the largest face dlib finds in the image (None: no face)."""
        return self.encode_counted(path, upsample, cache)[0]

    def encode_counted(self, path: Path, upsample: int, cache: bool = False):
        """(encoding of the largest face or None, number of faces found, the largest face's box
        (x0, y0, x1, y1) in pixels or None)."""
        key = None
        if cache:
            st = path.stat()
            key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{upsample}"
            v = self.cache.get(key)
            if isinstance(v, dict) and "box" in v:
                return (None if v["enc"] is None else np.asarray(v["enc"])), v["faces"], v["box"]
        t0 = time.perf_counter()
        arr = self.load_rgb(path)
        boxes = self.fr.face_locations(arr, number_of_times_to_upsample=upsample)
        enc, xyxy = None, None
        if boxes:
            box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))   # (top, right, bottom, left)
            enc = self.fr.face_encodings(arr, [box], num_jitters=1, model="large")[0]
            xyxy = [int(box[3]), int(box[0]), int(box[1]), int(box[2])]
        self.seconds += time.perf_counter() - t0
        self.computed += 1
        if key is not None:
            self.cache[key] = {"enc": None if enc is None else [float(x) for x in enc],
                               "faces": len(boxes), "box": xyxy}
        return enc, len(boxes), xyxy

    def save(self):
        """Write the cache, keeping only entries whose file is still as it was."""
        def current(key):
            path, size, mtime = key.split("|")[:3]
            try:
                st = os.stat(path)
            except OSError:
                return False
            return str(st.st_size) == size and str(st.st_mtime_ns) == mtime
        if self.cache_path and self.cache_path.exists():   # another run's entries since
            try:
                self.cache = {**json.loads(self.cache_path.read_text()), **self.cache}
            except ValueError:
                pass
        self.cache = {k: v for k, v in self.cache.items() if current(k)}
        if self.cache_path:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_name(f"{self.cache_path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.cache))
            os.replace(tmp, self.cache_path)


# -- ours: `gen3dface run`, in this process -----------------------------------------------
def run_ours(photos: dict, out_dir: Path, ours_args: list[str]) -> dict:
    """`gen3dface run PHOTO -o out_dir/STEM.glb *ours_args` for every photo through the
    command's own parser and handler; HeadPipeline is swapped for a cached one so the models
    stay loaded between photos. -> stem -> {ok, exit_code, seconds, glb, sidecar, error}."""
    t_first = time.perf_counter()       # the first photo pays the command's imports too
    from gen3dface.backend.cli import build_parser
    import gen3dface.backend.pipeline.pipeline as pipeline_mod

    original = pipeline_mod.HeadPipeline
    kept: dict[str, object] = {}

    def shared_pipeline(config=None):
        key = repr(config)
        if key not in kept:
            kept[key] = original(config)
        return kept[key]

    pipeline_mod.HeadPipeline = shared_pipeline
    parser = build_parser()
    out_dir.mkdir(parents=True, exist_ok=True)
    res = {}
    try:
        for i, (stem, photo) in enumerate(photos.items()):
            glb = out_dir / f"{stem}.glb"
            summary = out_dir / f"{stem}.run.json"
            for p in (glb, out_dir / f"{stem}.sidecar.json", summary):
                p.unlink(missing_ok=True)
            argv = ["run", str(photo), "-o", str(glb), "--json", str(summary), *ours_args]
            buf = io.StringIO()
            t0 = t_first if i == 0 else time.perf_counter()
            try:
                with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                    args = parser.parse_args(argv)
                    code = int(args.func(args) or 0)
                err = None
            except SystemExit as e:              # argparse: a bad --ours-arg
                code, err = (e.code if isinstance(e.code, int) else 2), buf.getvalue().strip()
            except Exception as e:               # a crash of our pipeline: report, go on
                import traceback
                code, err = 1, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}"
            seconds = time.perf_counter() - t0
            (out_dir / f"{stem}.run.log").write_text(buf.getvalue() + (err or ""))
            if code == 2 and i == 0 and not glb.exists() and "usage" in (err or buf.getvalue()):
                raise SystemExit(f"gen3dface run refused the arguments {argv[1:]}:\n{buf.getvalue()}")
            if err is None and summary.exists():
                try:
                    e = json.loads(summary.read_text()).get("error")
                    err = e and f"{e.get('code')}: {e.get('message')}"
                except ValueError:
                    pass
            ok = code == 0 and glb.exists()
            res[stem] = {"ok": ok, "exit_code": code, "seconds": round(seconds, 3),
                         "glb": str(glb), "sidecar": str(out_dir / f"{stem}.sidecar.json"),
                         "error": None if ok else (err or f"exit {code}")}
            log(f"  ours {stem}: {'ok' if ok else 'FAILED ' + str(res[stem]['error'])[:200]} "
                f"{seconds:.2f} s")
    finally:
        pipeline_mod.HeadPipeline = original
    if len(photos) > 1 and not kept:
        log("  note: gen3dface run no longer builds HeadPipeline through its module: every "
            "photo ran cold")
    return res


# -- the peer ------------------------------------------------------------------------------
def ensure_peer_venv(venv: Path, setup_sh: Path) -> Path:
    py = venv / "bin" / "python"
    ok = py.exists() and subprocess.run(
        [str(py), "-c", "import eos, dlib, face_recognition_models, trimesh"],
        capture_output=True).returncode == 0
    if not ok:
        log(f"  making the peer's venv {venv} with {setup_sh}")
        subprocess.run(["bash", str(setup_sh), str(venv)], check=True)
    return py


def run_peer(py: Path, peer_script: Path, share: Path | None, jobs: dict, out_dir: Path) -> dict:
    """stem -> photo; writes out_dir/STEM.glb + sidecar. -> stem -> {ok, seconds, error}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = {"share": str(share) if share else None,
            "jobs": [{"photo": str(p), "out": str(out_dir / f"{s}.glb")} for s, p in jobs.items()]}
    spec_path = out_dir / "peer_jobs.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    proc = subprocess.run([str(py), str(PEER_BATCH), str(peer_script), str(spec_path)],
                          capture_output=True, text=True)
    (out_dir / "peer_batch.log").write_text(proc.stdout + proc.stderr)
    stems = list(jobs)
    res = {}
    for line in proc.stdout.splitlines():
        if line.startswith("PEER_JOB "):
            r = json.loads(line[len("PEER_JOB "):])
            res[stems[r["job"]]] = {"ok": r["ok"], "seconds": r["seconds"], "error": r.get("error")}
    for s in stems:
        if s not in res:
            res[s] = {"ok": False, "seconds": None,
                      "error": f"the peer batch stopped (exit {proc.returncode}): "
                               f"{proc.stderr.strip()[-300:]}"}
        log(f"  peer {s}: {'ok' if res[s]['ok'] else 'FAILED ' + str(res[s]['error'])[:200]}")
    return res


# -- renders -------------------------------------------------------------------------------
def view_names(yaws) -> list[str]:
    return ["photo"] + [f"yaw{int(round(float(y))):03d}" for y in yaws]


def render_all(jobs: list[dict], size: int, samples: int, yaws, workers: int, work_dir: Path) -> dict:
    """Render jobs ({glb, sidecar, out_prefix}) in `workers` Blender processes (interleaved
    halves, one Cycles thread each when there are several). -> out_prefix -> record."""
    work_dir.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers, len(jobs)))
    # the caller lists ours first, then the peer's: every worker gets its share of each kind
    procs = []
    for w in range(workers):
        part = jobs[w::workers]
        spec = {"size": size, "samples": samples, "yaws": list(yaws),
                "threads": 1 if workers > 1 else 0, "jobs": part}
        sp = work_dir / f"render_jobs_{w}.json"
        sp.write_text(json.dumps(spec, indent=1))
        logf = open(work_dir / f"render_{w}.log", "w")
        procs.append((subprocess.Popen([sys.executable, str(RENDER_SCRIPT), str(sp)],
                                       stdout=logf, stderr=subprocess.STDOUT), logf, w))
    out = {}
    for p, logf, w in procs:
        p.wait()
        logf.close()
        for line in (work_dir / f"render_{w}.log").read_text().splitlines():
            if line.startswith("RENDER_JOB "):
                r = json.loads(line[len("RENDER_JOB "):])
                out[r["out_prefix"]] = r
    for j in jobs:
        if j["out_prefix"] not in out:
            out[j["out_prefix"]] = {"ok": False, "error": "the Blender process stopped (see "
                                    f"{work_dir}/render_*.log)"}
        if not out[j["out_prefix"]]["ok"]:
            log(f"  render FAILED {j['out_prefix']}: {out[j['out_prefix']].get('error')}")
    return out


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def views_to_render(stamp: dict, head: dict, views, exists) -> tuple[set, list]:
    """(views that can be reused, views to render) for one head. `stamp`: what the render
    folder says it holds ({"head": digests, "views": [...]}, or {}), `head`: the digests of the
    GLB and camera now, `exists(view)`: whether that view's PNG is there."""
    have = set(stamp.get("views", [])) if stamp.get("head") == head else set()
    have = {v for v in have if v in views and exists(v)}
    return have, [v for v in views if v not in have]


def camera_digest(sidecar: Path) -> str:
    """The part of a sidecar the renders depend on (its timings change every run)."""
    cam = json.loads(Path(sidecar).read_text()).get("camera")
    return hashlib.sha256(json.dumps(cam, sort_keys=True).encode()).hexdigest()[:16]


# -- the face region -------------------------------------------------------------------------
def photo_for_camera(photo: Path) -> Image.Image:
    """The photo as the pipeline sees it (EXIF-rotated, RGBA over grey 128), in RGB."""
    im = ImageOps.exif_transpose(Image.open(photo))
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (128, 128, 128, 255))
        bg.alpha_composite(im)
        im = bg
    return im.convert("RGB")


def analyse_photos(photos: dict) -> dict:
    """Our face analysis (backend/face, mediapipe) of each photo as the pipeline sees it:
    stem -> {"size": (W, H), "oval": (N, 2) face-oval landmarks in pixels, "face_box": the
    oval's bounding box as fractions of the image} or {"error": why}."""
    from gen3dface.backend.face.analysis import FaceAnalysisConfig, FaceAnalyzer
    from gen3dface.backend.face.landmarks import FACE_OVAL

    out = {}
    analyzer = FaceAnalyzer(FaceAnalysisConfig(segment=False))
    try:
        for stem, photo in photos.items():
            im = photo_for_camera(photo)
            try:
                fa = analyzer.analyze(np.asarray(im))
            except Exception as e:
                out[stem] = {"error": f"{type(e).__name__}: {e}"}
                continue
            lm = fa.landmarks[FACE_OVAL]
            out[stem] = {"size": (im.width, im.height), "oval": lm,
                         "face_box": [float(lm[:, 0].min() / im.width), float(lm[:, 1].min() / im.height),
                                      float(lm[:, 0].max() / im.width), float(lm[:, 1].max() / im.height)]}
    finally:
        analyzer.close()
    return out


def face_region_scores(photos: dict, ours_pref: dict, peer_pref: dict, views_ok,
                       analyses: dict | None = None) -> dict:
    """PSNR/SSIM in the face oval of the photo, of the photo-camera renders of ours and the
    peer. -> {"per_photo": {stem: {...}}, "ours": {...}, "peer": {...}, "skipped": {...}}."""
    L = load_measures()
    if analyses is None:
        analyses = analyse_photos(photos)
    per, skipped = {}, {}
    for stem, photo in photos.items():
        renders = {}
        for who, pref in (("ours", ours_pref.get(stem)), ("peer", peer_pref.get(stem))):
            p = Path(f"{pref}_photo.png") if pref else None
            if p is not None and p.exists() and views_ok(who, stem):
                renders[who] = np.asarray(Image.open(p).convert("RGBA"))
        if not renders:
            skipped[stem] = "no photo-camera render"
            continue
        fa = analyses.get(stem) or {"error": "not analysed"}
        if fa.get("error"):
            skipped[stem] = f"face analysis: {fa['error']}"
            continue
        im = photo_for_camera(photo)
        rec = {"face_box": fa["face_box"]}
        for who, rgba in renders.items():
            h, w = rgba.shape[:2]
            ref = np.asarray(im.resize((w, h), Image.LANCZOS), np.float64) / 255.0
            pts = fa["oval"] * np.array([w / im.width, h / im.height])
            mask = L.polygon_mask(pts, w, h)
            if not mask.any():
                continue
            test = L.composite(rgba, L.GREY)
            rec[who] = {"psnr": L.psnr_in_mask(ref, test, mask),
                        "ssim": L.ssim_in_mask(ref, test, mask),
                        "mask_px": int(mask.sum()),
                        "covered": float((rgba[..., 3][mask] > 127).mean())}
        per[stem] = rec
    out = {"per_photo": per, "skipped": skipped}
    for who in ("ours", "peer"):
        vals = [r[who] for r in per.values() if who in r]
        out[who] = {"psnr_mean": L.mean_or_none(v["psnr"] for v in vals),
                    "ssim_mean": L.mean_or_none(v["ssim"] for v in vals),
                    "covered_mean": L.mean_or_none(v["covered"] for v in vals), "n": len(vals)}
    common = [s for s, r in per.items() if "ours" in r and "peer" in r]
    out["paired"] = {who: {"psnr_mean": L.mean_or_none(per[s][who]["psnr"] for s in common),
                           "ssim_mean": L.mean_or_none(per[s][who]["ssim"] for s in common)}
                     for who in ("ours", "peer")}
    out["paired"]["n"] = len(common)
    return out


# -- contact sheet ------------------------------------------------------------------------------
def contact_sheet(path: Path, photos: dict, ours_pref: dict, peer_pref: dict, views, cell=96,
                  face_boxes: dict | None = None, ring_crop: float = 0.6, colours: int = 0):
    """Rows: photo | ours views | peer views. The photo and both photo-camera renders are cut to
    the same square around the photo's face (face_boxes: stem -> (x0, y0, x1, y1) as fractions
    of the image); ring views to their central `ring_crop` (the same for ours and the peer)."""
    face_boxes = face_boxes or {}

    def cut(im: Image.Image, stem: str, view: str) -> Image.Image:
        if view == "photo":
            b = face_boxes.get(stem)
            if b is None:
                return im
            W, H = im.size
            cx, cy = (b[0] + b[2]) / 2 * W, (b[1] + b[3]) / 2 * H
            half = 0.8 * max((b[2] - b[0]) * W, (b[3] - b[1]) * H)
            return im.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
        W, H = im.size
        m = (1 - ring_crop) / 2
        return im.crop((round(m * W), round(m * H), round((1 - m) * W), round((1 - m) * H)))

    def fit(im: Image.Image) -> Image.Image:
        im = im.convert("RGBA")
        s = cell / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
        bg = Image.new("RGBA", (cell, cell), (128, 128, 128, 255))
        bg.alpha_composite(im, ((cell - im.width) // 2, (cell - im.height) // 2))
        return bg

    head_h = 16
    cols = 1 + 2 * len(views)
    sheet = Image.new("RGB", (cols * cell + 8, head_h + len(photos) * cell), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    labels = ["photo"] + [f"ours {v}" for v in views] + [f"peer {v}" for v in views]
    for c, lab in enumerate(labels):
        x = c * cell + (8 if c > len(views) else 0)
        draw.text((x + 3, 2), lab, fill=(0, 0, 0))
    for r, (stem, photo) in enumerate(photos.items()):
        y = head_h + r * cell
        sheet.paste(fit(cut(photo_for_camera(photo).convert("RGBA"), stem, "photo")).convert("RGB"),
                    (0, y))
        draw.text((2, y + cell - 12), stem[:14], fill=(255, 255, 0))
        for k, (who, pref) in enumerate((("ours", ours_pref), ("peer", peer_pref))):
            for c, v in enumerate(views):
                x = (1 + k * len(views) + c) * cell + (8 if k else 0)
                p = Path(f"{pref[stem]}_{v}.png") if pref.get(stem) else None
                if p is not None and p.exists():
                    sheet.paste(fit(cut(Image.open(p).convert("RGBA"), stem, v)).convert("RGB"), (x, y))
                else:
                    draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(60, 0, 0))
                    draw.text((x + 4, y + cell // 2), "missing", fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    if colours:        # a palette image: a third of the size, for README
        sheet = sheet.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    sheet.save(path, optimize=True)


# -- table ----------------------------------------------------------------------------------
def fmt(x, spec=".3f", none="-"):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return none
    return format(x, spec)


def print_table(res: dict) -> str:
    lines = []
    n = res["n_photos"]
    lines.append(f"likeness on {n} photos ({res['photos_dir']}, "
                 f"{res['n_photos_listed']} listed); label {res['label']!r}, ours args "
                 f"{res['ours_args'] or 'none'}")
    sub = f"{'found':>6s} {'genuine':>7s} {'verified':>8s} {'impostor':>8s} {'rank-1':>6s}"
    lines.append(f"{'':8s} | {'ours':^39s} | {'eos peer':^39s} | ours/peer genuine")
    lines.append(f"{'view':8s} | {sub} | {sub} | all (paired, n)")
    for v, r in res["views"].items():
        cells = []
        for who in ("ours", "peer"):
            s = r[who]
            ver = None if s["verified"] is None else 100 * s["verified"]
            cells.append(f"{s['found']:>3d}/{n:<2d} {fmt(s['genuine_mean']):>7s} "
                         f"{fmt(ver, '.0f') + '%':>8s} {fmt(s['impostor_mean']):>8s} "
                         f"{fmt(s['rank1'], '.2f'):>6s}")
        gr = r["genuine_ratio"]
        lines.append(f"{v:8s} | {cells[0]} | {cells[1]} | {fmt(gr['all'], '.2f')} "
                     f"({fmt(gr['paired'], '.2f')}, {gr['n_paired']})")
    fr = res["face_region"]
    lines.append(f"face region, photo camera vs photo (pixels in mediapipe's face oval of the photo; "
                 f"renders over grey 128): PSNR ours {fmt(fr['ours']['psnr_mean'], '.2f')} dB / "
                 f"peer {fmt(fr['peer']['psnr_mean'], '.2f')} dB; SSIM ours "
                 f"{fmt(fr['ours']['ssim_mean'])} / peer {fmt(fr['peer']['ssim_mean'])} "
                 f"(n {fr['ours']['n']} / {fr['peer']['n']}); oval covered by the head: ours "
                 f"{fmt(fr['ours']['covered_mean'], '.0%')} / peer {fmt(fr['peer']['covered_mean'], '.0%')}")
    t = res["timing"]
    lines.append(f"time: ours cold {fmt(t['ours']['cold'], '.2f')} s, warm median "
                 f"{fmt(t['ours']['warm_median'], '.2f')} s ({t['ours']['n']} photos); peer warm "
                 f"median {fmt(t['peer']['warm_median'], '.2f')} s ({t['peer']['n']}, "
                 f"{'cached' if t['peer']['cached'] else 'made this run'}); stages: "
                 + ", ".join(f"{k} {v:.0f} s" for k, v in t["stages_s"].items())
                 + f"; total {t['total_s']:.0f} s; rendered {t['views_rendered']} views (heads with "
                 f"every view reused: ours {t['renders_reused']['ours']}, peer "
                 f"{t['renders_reused']['peer']})")
    if res["failures"]:
        lines.append("failures: " + "; ".join(f"{k}: {v}" for k, v in res["failures"].items()))
    text = "\n".join(lines)
    print(text)
    return text


def compare_runs(this: dict, other: dict) -> dict:
    """Ours in this run against ours in another run's results.json, per view: genuine mean and
    verified share of each (each over its own photos), and the mean change of the genuine
    distance over the photos both runs found (negative: this run looks more like the person)."""
    out = {}
    for v, r in this["views"].items():
        o = other.get("views", {}).get(v)
        if o is None:
            continue
        pairs = [(p["ours"][v], other["per_photo"][s]["ours"].get(v))
                 for s, p in this["per_photo"].items() if s in other.get("per_photo", {})]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        out[v] = {"this": {"genuine_mean": r["ours"]["genuine_mean"], "verified": r["ours"]["verified"],
                           "found": r["ours"]["found"]},
                  "other": {"genuine_mean": o["ours"]["genuine_mean"], "verified": o["ours"]["verified"],
                            "found": o["ours"]["found"]},
                  "paired_change": float(np.mean([x - y for x, y in pairs])) if pairs else None,
                  "n_paired": len(pairs)}
    return out


def format_comparison(name: str, cmp: dict) -> str:
    lines = [f"ours against {name!r}: genuine (found, verified) there -> here; mean change on the "
             "photos found by both"]
    for v, c in cmp.items():
        t, o = c["this"], c["other"]
        ver = lambda x: fmt(None if x is None else 100 * x, ".0f") + "%"
        lines.append(f"  {v:8s} {fmt(o['genuine_mean'])} ({o['found']}, {ver(o['verified'])}) -> "
                     f"{fmt(t['genuine_mean'])} ({t['found']}, {ver(t['verified'])}); change "
                     f"{fmt(c['paired_change'], '+.3f')} (n={c['n_paired']})")
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------
def parse_args(argv=None):
    root = data_root()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Pass options to `gen3dface run` with the = form: "
                                        "--ours-arg=--texture-size=2048 (repeatable).")
    ap.add_argument("--photos", type=Path, default=root / "faces")
    ap.add_argument("--stems", help="comma-separated photo stems: a quick subset")
    ap.add_argument("--keep-face-mismatch", action="store_true",
                    help="also judge photos where dlib's largest face is not the face our "
                         "pipeline's face analysis picks (two people: left out by default)")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "bench_likeness",
                    help="output folder (peer cache in OUT/peer, ours in OUT/ours/LABEL)")
    ap.add_argument("--label", default="ours", help="name of this variant of ours (its folder)")
    ap.add_argument("--ours-arg", action="append", default=[],
                    help="an extra `gen3dface run` argument (repeatable)")
    ap.add_argument("--ours-src", type=Path,
                    help="run ours from this source tree instead of the checkout (e.g. "
                         "`git archive COMMIT | tar -x -C DIR`: a baseline)")
    ap.add_argument("--reuse-ours", action="store_true",
                    help="judge the GLBs already in OUT/ours/LABEL instead of running the pipeline")
    ap.add_argument("--peer-venv", type=Path, default=REPO / ".venv-peer")
    ap.add_argument("--peer-script", type=Path,
                    default=Path(os.environ.get("GEN3DFACE_PEER_EOS", REPO.parent / "shared" / "tools" / "peer_eos")) / "peer.py")
    ap.add_argument("--eos-share", type=Path, default=root / "eos",
                    help="the peer's model files (non-commercial licence: benchmark only)")
    ap.add_argument("--redo-peer", action="store_true", help="remake the peer's GLBs and renders")
    ap.add_argument("--redo-ours-renders", action="store_true",
                    help="render ours again even where the GLB is unchanged")
    ap.add_argument("--size", type=int, default=320, help="render size (long side of the photo view)")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--yaws", default="0,30,60,90,180")
    ap.add_argument("--workers", type=int, default=2, help="Blender render processes")
    ap.add_argument("--compare", action="append",
                    help="another label (or a results.json) to compare ours with (repeatable)")
    ap.add_argument("--json", type=Path, help="results JSON (default OUT/ours/LABEL/results.json)")
    ap.add_argument("--sheet", type=Path, help="contact sheet PNG (default OUT/ours/LABEL/sheet.png)")
    ap.add_argument("--sheet-views", default="photo,yaw000,yaw030,yaw060,yaw090")
    ap.add_argument("--cell", type=int, default=96, help="contact sheet thumbnail size (px)")
    ap.add_argument("--sheet-colours", type=int, default=0,
                    help="save the sheet with a palette of this many colours (0: full colour)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    with folder_lock(a.out / "ours" / a.label, wait=False, what=f"label {a.label!r}"):
        return bench(a)


def bench(a) -> int:
    t_start = time.perf_counter()
    if a.ours_src:
        use_ours_source(a.ours_src, a.out / "work" / a.label)
    stages = {}
    yaws = [float(y) for y in a.yaws.split(",") if y.strip()]
    views = view_names(yaws)
    ours_dir = a.out / "ours" / a.label
    peer_dir = a.out / "peer"
    failures = {}

    listed = sorted(p for p in a.photos.iterdir() if p.suffix.lower() in PHOTO_EXTS)
    photos = {p.stem: p for p in listed}
    if a.stems:
        want = [s.strip() for s in a.stems.split(",") if s.strip()]
        missing = [s for s in want if s not in photos]
        if missing:
            raise SystemExit(f"no photo named {missing} in {a.photos}")
        photos = {s: photos[s] for s in want}
    if not photos:
        raise SystemExit(f"no photos in {a.photos}")
    log(f"{len(photos)} photos in {a.photos}")

    # 1. the photos the judge can read (cached)
    t0 = time.perf_counter()
    judge = Judge(a.out / "encodings_cache.json")
    photo_enc, photo_box, photo_faces = {}, {}, {}
    for s, p in photos.items():
        e, n_faces, box = judge.encode_counted(p, upsample=1, cache=True)
        if e is None:
            failures[f"photo {s}"] = "dlib finds no face in the photo: left out"
        else:
            photo_enc[s], photo_box[s], photo_faces[s] = e, box, n_faces
    judge.save()
    photos = {s: photos[s] for s in photo_enc}
    stages["photos"] = time.perf_counter() - t0
    log(f"{len(photos)} photos where dlib finds a face")
    if not photos:
        raise SystemExit("dlib reads none of the photos")

    # 2. ours
    t0 = time.perf_counter()
    ours_args = list(a.ours_arg)
    if not any(x == "--assets" or x.startswith("--assets=") for x in ours_args) \
            and not os.environ.get("GEN3DFACE_ASSETS") and (data_root() / "ict_facekit").is_dir():
        ours_args += ["--assets", str(data_root())]
    if a.reuse_ours:
        ours = {s: {"ok": (ours_dir / f"{s}.glb").exists(), "seconds": None,
                    "glb": str(ours_dir / f"{s}.glb"), "sidecar": str(ours_dir / f"{s}.sidecar.json"),
                    "error": None} for s in photos}
        prev = ours_dir / "results.json"
        if prev.exists():
            for s, r in json.loads(prev.read_text()).get("per_photo", {}).items():
                if s in ours and r.get("ours_seconds") is not None:
                    ours[s]["seconds"] = r["ours_seconds"]
    else:
        log(f"ours: gen3dface run {' '.join(ours_args)}")
        ours = run_ours(photos, ours_dir, ours_args)
    for s, r in ours.items():
        if not r["ok"]:
            failures[f"ours {s}"] = r["error"] or "no GLB"
        elif Path(r["sidecar"]).exists():
            side = json.loads(Path(r["sidecar"]).read_text())
            if (side.get("head_model") or {}).get("name") != "ict_facekit":
                failures[f"ours {s}"] = f"head model {side.get('head_model')} (a fallback)"
    stages["ours"] = time.perf_counter() - t0

    # 3. the peer (cached)
    t0 = time.perf_counter()
    peer_dir.mkdir(parents=True, exist_ok=True)
    peer = {}
    with folder_lock(peer_dir, wait=True, what="the peer's cache"):   # one run makes it at a time
        todo = {s: p for s, p in photos.items()
                if a.redo_peer or not (peer_dir / f"{s}.glb").exists()
                or not (peer_dir / f"{s}.sidecar.json").exists()}
        if todo:
            py = ensure_peer_venv(a.peer_venv, a.peer_script.parent / "setup.sh")
            log(f"peer: {len(todo)} photos ({a.peer_script})")
            peer.update(run_peer(py, a.peer_script, a.eos_share, todo, peer_dir))
    for s in photos:
        if s not in peer:
            peer[s] = {"ok": (peer_dir / f"{s}.glb").exists(), "seconds": None, "error": None,
                       "cached": True}
        if not peer[s]["ok"]:
            failures[f"peer {s}"] = peer[s]["error"] or "no GLB"
    peer_warm = []
    for s in photos:
        sc = peer_dir / f"{s}.sidecar.json"
        if peer[s]["ok"] and sc.exists():
            peer_warm.append(json.loads(sc.read_text()).get("timing_s", {}).get("warm_total"))
    stages["peer"] = time.perf_counter() - t0

    # 3b. the person: the judge compares with dlib's largest face, our pipeline models the face
    #     its own face analysis picks (mediapipe). Where those are different people (photos of
    #     two), the judge would measure the mix-up, not likeness: such photos are left out.
    t0 = time.perf_counter()
    analyses = analyse_photos(photos)
    L = load_measures()
    face_match = {}
    for s in list(photos):
        fa = analyses.get(s)
        if fa is None or fa.get("error") or a.keep_face_mismatch:
            continue
        W, H = fa["size"]
        oval = [fa["face_box"][0] * W, fa["face_box"][1] * H, fa["face_box"][2] * W, fa["face_box"][3] * H]
        iou = L.box_iou(photo_box[s], oval)
        face_match[s] = {"iou": round(iou, 3), "dlib_faces": photo_faces[s]}
        if iou < FACE_MATCH_IOU:
            failures[f"photo {s}"] = (f"dlib's largest face is not the one our face analysis picks "
                                      f"(IoU {iou:.2f}; dlib finds {photo_faces[s]} faces): left out")
            del photos[s], photo_enc[s]
    log(f"{len(photos)} photos judged")
    stages["faces"] = time.perf_counter() - t0

    # 4. renders. Kept per render setting (renders/s{size}_n{samples}_{script digest}/) and per
    #    view: a view is rendered again only when the GLB or the sidecar's camera changed (a
    #    stamp beside the renders says), so runs with other --yaws share the same files.
    t0 = time.perf_counter()
    script_digest = file_digest(RENDER_SCRIPT)
    key_dir = f"s{a.size}_n{a.samples}_{script_digest[:8]}"
    jobs = {"ours": [], "peer": []}
    prefs = {"ours": {}, "peer": {}}
    stamps, reused = {}, {"ours": 0, "peer": 0}
    for who, base, ok, redo in (("ours", ours_dir, lambda s: ours[s]["ok"], a.redo_ours_renders),
                                ("peer", peer_dir, lambda s: peer[s]["ok"], a.redo_peer)):
        rdir = base / "renders" / key_dir
        rdir.mkdir(parents=True, exist_ok=True)
        for s in photos:
            if not ok(s):
                continue
            glb, side = base / f"{s}.glb", base / f"{s}.sidecar.json"
            pref = prefs[who][s] = str(rdir / s)
            stamp_path = rdir / f"{s}.render.json"
            head = {"glb": file_digest(glb), "camera": camera_digest(side)}
            old = {}
            if stamp_path.exists() and not redo:
                try:
                    old = json.loads(stamp_path.read_text())
                except ValueError:
                    old = {}
            have, need = views_to_render(old, head, views,
                                         lambda v, pref=pref: Path(f"{pref}_{v}.png").exists())
            if not need:
                reused[who] += 1
                continue
            stamps[pref] = (stamp_path, {"head": head, "views": sorted(have | set(need))})
            jobs[who].append({"glb": str(glb), "sidecar": str(side), "out_prefix": pref,
                              "photo": "photo" in need,
                              "yaws": [y for y, v in zip(yaws, views[1:]) if v in need]})
    ours_pref, peer_pref = prefs["ours"], prefs["peer"]
    job_list = jobs["ours"] + jobs["peer"]
    n_views = sum(int(j["photo"]) + len(j["yaws"]) for j in job_list)
    log(f"renders: {n_views} views of {len(job_list)} heads in "
        f"{min(a.workers, max(len(job_list), 1))} Blender processes (all views already there: "
        f"ours {reused['ours']}, peer {reused['peer']})")
    rendered = render_all(job_list, a.size, a.samples, yaws, a.workers,
                          a.out / "work" / a.label) if job_list else {}
    for pref, (stamp_path, stamp) in stamps.items():
        if rendered.get(pref, {}).get("ok"):
            tmp = stamp_path.with_name(f"{stamp_path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(stamp))
            os.replace(tmp, stamp_path)
    for pref, r in rendered.items():
        if not r["ok"]:
            failures[f"render {Path(pref).name} ({Path(pref).parents[2].name})"] = r.get("error")
    stages["renders"] = time.perf_counter() - t0

    # 5. the judge
    t0 = time.perf_counter()
    L = load_measures()
    enc = {"ours": {v: {} for v in views}, "peer": {v: {} for v in views}}
    for who, who_prefs in (("ours", ours_pref), ("peer", peer_pref)):
        for s, pref in who_prefs.items():
            for v in views:
                p = Path(f"{pref}_{v}.png")
                enc[who][v][s] = judge.encode(p, upsample=2, cache=True) if p.exists() else None
    judge.save()
    res_views = {}
    for v in views:
        o = L.view_scores(photo_enc, enc["ours"][v])
        p = L.view_scores(photo_enc, enc["peer"][v])
        res_views[v] = {"ours": o, "peer": p, "genuine_ratio": L.genuine_ratio(o, p)}
    stages["judge"] = time.perf_counter() - t0

    # 6. the face region
    t0 = time.perf_counter()
    face = face_region_scores(photos, ours_pref, peer_pref, lambda who, s: True, analyses)
    stages["face_region"] = time.perf_counter() - t0

    # 7. outputs
    t0 = time.perf_counter()
    sheet = a.sheet or ours_dir / "sheet.png"
    sheet_views = [v for v in a.sheet_views.split(",") if v in views]
    contact_sheet(sheet, photos, ours_pref, peer_pref, sheet_views, a.cell,
                  {s: r["face_box"] for s, r in face["per_photo"].items() if "face_box" in r},
                  colours=a.sheet_colours)
    stages["sheet"] = time.perf_counter() - t0

    # in the order they ran (photos left out later still ran: the first one is the cold one)
    ours_times = [r["seconds"] for r in ours.values() if r["ok"] and r["seconds"] is not None]
    res = {
        "label": a.label, "ours_args": ours_args,
        "ours_src": source_state(a.ours_src), "photos_dir": str(a.photos),
        "n_photos_listed": len(listed) if not a.stems else len(a.stems.split(",")),
        "n_photos": len(photos), "stems": list(photos),
        "render": {"size": a.size, "samples": a.samples, "yaws": yaws, "workers": a.workers},
        "views": {v: {"ours": {k: x for k, x in r["ours"].items() if k != "genuine"},
                      "peer": {k: x for k, x in r["peer"].items() if k != "genuine"},
                      "genuine_ratio": r["genuine_ratio"]} for v, r in res_views.items()},
        "between_views_mean": {who: L.between_views_mean(enc[who]) for who in ("ours", "peer")},
        "face_region": {k: x for k, x in face.items() if k != "per_photo"},
        "timing": {
            "ours": dict(L.cold_warm(ours_times) if not a.reuse_ours else
                         {"cold": None, "warm_median": None, "n": 0}),
            "peer": {"warm_median": float(statistics.median([x for x in peer_warm if x is not None]))
                     if any(x is not None for x in peer_warm) else None,
                     "n": len(peer_warm), "cached": not todo},
            "stages_s": {k: round(v, 1) for k, v in stages.items()},
            "renders_reused": reused, "renders_made": {k: len(v) for k, v in jobs.items()},
            "views_rendered": n_views,
        },
        "failures": failures,
        "per_photo": {s: {"ours_seconds": ours[s]["seconds"],
                          "ours": {v: res_views[v]["ours"]["genuine"].get(s) for v in views},
                          "peer": {v: res_views[v]["peer"]["genuine"].get(s) for v in views},
                          "face_region": face["per_photo"].get(s),
                          "face_match": face_match.get(s)} for s in photos},
        "sheet": str(sheet),
    }
    res["timing"]["total_s"] = round(time.perf_counter() - t_start, 1)
    res["table"] = print_table(res)
    for other in a.compare or []:
        path = Path(other) if other.endswith(".json") else a.out / "ours" / other / "results.json"
        if not path.exists():
            log(f"--compare {other}: no {path}")
            continue
        res.setdefault("compare", {})[other] = compare_runs(res, json.loads(path.read_text()))
        print(format_comparison(other, res["compare"][other]))
    out_json = a.json or ours_dir / "results.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(res, indent=1, default=float))
    if out_json != ours_dir / "results.json":
        (ours_dir / "results.json").write_text(json.dumps(res, indent=1, default=float))
    log(f"wrote {out_json} and {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
