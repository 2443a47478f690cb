#!/usr/bin/env python
"""A before/after contact sheet from two `bench_likeness.py` runs of ours: one row per photo,
for each view the first label's render beside the second's (the photo first).

    python scripts/sheet_compare.py --labels before,after --views yaw090,yaw180 \
        --photos DIR --out docs/images/texture_before_after.png

The renders are read from out/bench_likeness/ours/LABEL/renders/*/STEM_VIEW.png, as
bench_likeness.py leaves them (run it with --yaws covering the views first).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _render(root: Path, label: str, stem: str, view: str) -> np.ndarray | None:
    hits = sorted((root / "ours" / label / "renders").glob(f"*/{stem}_{view}.png"))
    return cv2.imread(str(hits[-1]), cv2.IMREAD_COLOR) if hits else None


def _cell(img: np.ndarray | None, size: int, crop: float) -> np.ndarray:
    if img is None:
        return np.full((size, size, 3), 40, np.uint8)
    h, w = img.shape[:2]
    if crop < 1.0:                       # the ring views: their central part
        ch, cw = int(h * crop), int(w * crop)
        img = img[(h - ch) // 2:(h + ch) // 2, (w - cw) // 2:(w + cw) // 2]
    s = size / max(img.shape[:2])
    img = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                     interpolation=cv2.INTER_AREA)
    out = np.full((size, size, 3), 40, np.uint8)
    y, x = (size - img.shape[0]) // 2, (size - img.shape[1]) // 2
    out[y:y + img.shape[0], x:x + img.shape[1]] = img
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", required=True, help="two bench_likeness labels: before,after")
    ap.add_argument("--views", default="yaw090,yaw180")
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--stems", help="comma-separated photo stems (default: all in --photos)")
    ap.add_argument("--bench-out", type=Path, default=REPO / "out" / "bench_likeness")
    ap.add_argument("--cell", type=int, default=160)
    ap.add_argument("--crop", type=float, default=0.6, help="central share of ring views kept")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    labels = a.labels.split(",")
    if len(labels) != 2:
        ap.error("--labels takes two labels")
    photos = {p.stem: p for p in sorted(a.photos.iterdir())
              if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")}
    stems = a.stems.split(",") if a.stems else list(photos)
    rows, missing = [], 0
    for stem in stems:
        cells = [_cell(cv2.imread(str(photos[stem])) if stem in photos else None, a.cell, 1.0)]
        for view in a.views.split(","):
            for label in labels:
                img = _render(a.bench_out, label, stem, view)
                missing += img is None
                cells.append(_cell(img, a.cell, a.crop))
        rows.append(np.hstack(cells))
    if not rows:
        print("no photos", file=sys.stderr)
        return 2
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), np.vstack(rows))
    print(f"wrote {a.out}: {len(rows)} rows; per view {labels[0]} | {labels[1]}"
          + (f"; {missing} renders missing (grey)" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
