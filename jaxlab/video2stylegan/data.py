"""Frame-folder videos (`<video>/<frame>.png`), the procedural datasets and their random streams.

Real format: a folder per video holding aligned square RGB frames named by their integer index
(`0.png`, `1.png`, ... or zero-padded `000000.png`), all of one size; frames are read in index
order as uint8 `[T, H, W, 3]`. A non-image, a mixed size, a non-square frame, a name that is not
an index or an empty folder is a `DataFormatError` naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from jaxlab.core.errors import DataFormatError
from jaxlab.video2stylegan import faces

__all__ = ["read_video", "read_videos", "write_video", "train_images", "identity_table", "procedural_videos",
           "clip_videos", "TRAIN_IDS", "TRAIN_FRAMES", "EVAL_IDS", "EVAL_VIDEOS", "CLIP_VIDEOS"]

TRAIN_IDS, TRAIN_FRAMES, EVAL_IDS, EVAL_VIDEOS, CLIP_VIDEOS = 0x7101, 0x7102, 0x7103, 0x7104, 0x7105


def _frame_index(path: pathlib.Path) -> int:
    try:
        return int(path.stem)
    except ValueError:
        raise DataFormatError(f"{path}: frame file name must be its integer index (e.g. 000012.png), "
                              f"got {path.name!r}") from None


def read_video(folder: str | pathlib.Path) -> np.ndarray:
    """Frames of one video folder as uint8 `[T, H, W, 3]` in index order."""
    from PIL import Image, UnidentifiedImageError

    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise DataFormatError(f"{folder}: not a folder of frames (<video>/<frame>.png)")
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")), key=_frame_index)
    if not files:
        raise DataFormatError(f"{folder}: empty video, expected frames <index>.png")
    frames, size = [], None
    for p in files:
        try:
            with Image.open(p) as im:
                im.load()
                a = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise DataFormatError(f"{p}: not a readable image ({type(e).__name__})") from None
        if a.shape[0] != a.shape[1]:
            raise DataFormatError(f"{p}: frame is {a.shape[1]}x{a.shape[0]}, expected a square aligned face")
        if size is None:
            size, first = a.shape[:2], p
        elif a.shape[:2] != size:
            raise DataFormatError(f"{p}: frame is {a.shape[1]}x{a.shape[0]}, but {first.name} is "
                                  f"{size[1]}x{size[0]}: every frame of a video must have one size")
        frames.append(a)
    return np.stack(frames)


def read_videos(root: str | pathlib.Path) -> dict[str, np.ndarray]:
    """`{video name: frames}`: `root` is one video (frames directly inside) or a folder of video folders."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: no such folder of videos")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not subdirs:
        return {root.name: read_video(root)}
    return {p.name: read_video(p) for p in subdirs}


def write_video(folder: str | pathlib.Path, frames: np.ndarray) -> None:
    """Writes `[T, H, W, 3]` frames (uint8, or float in [0, 1]) as `folder/000000.png`, ..."""
    from PIL import Image

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    a = np.asarray(frames)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a * 255), 0, 255).astype(np.uint8)
    for t, f in enumerate(a):
        Image.fromarray(f).save(folder / f"{t:06d}.png")


def to_unit(frames_uint8: np.ndarray) -> np.ndarray:
    """uint8 frames -> float32 in [-1, 1] (the generator's range)."""
    return frames_uint8.astype(np.float32) / 127.5 - 1.0


def identity_table(seed: int, n: int, stream: int) -> np.ndarray:
    return np.random.default_rng([seed, stream]).uniform(-1, 1, (n, faces.ID_DIM)).astype(np.float32)


_TRAIN_CACHE: dict = {}


def train_images(seed: int, fc, chunk: int = 256) -> dict:
    """`faces.train_images` random renders of `num_identities` training identities:
    `{"image" [N, R, R, 3] in [-1, 1], "landmarks", "ident", "expr", "pose", "id_index"}`.

    The arrays are read-only and kept for the last two (seed, `FaceConfig`) pairs asked for:
    `train-generator` reads them for its batches, its FD-proc curve and its final FD-proc, and
    2,048 renders at 64 px take minutes on a CPU."""
    key = (seed, json.dumps(dataclasses.asdict(fc), sort_keys=True))
    if key not in _TRAIN_CACHE:
        ids = identity_table(seed, fc.num_identities, TRAIN_IDS)
        ident, expr, pose, idx = faces.sample_params(np.random.default_rng([seed, TRAIN_FRAMES]), fc.train_images,
                                                     fc, ids)
        out = {**_render_chunks(ident, expr, pose, fc, chunk), "ident": ident, "expr": expr, "pose": pose,
               "id_index": idx}
        for a in out.values():
            a.setflags(write=False)
        while len(_TRAIN_CACHE) >= 2:
            _TRAIN_CACHE.pop(next(iter(_TRAIN_CACHE)))
        _TRAIN_CACHE[key] = out
    return dict(_TRAIN_CACHE[key])


# Frames x pixels per call of the renderer. It holds `[pixels, triangles, 3]` arrays per frame
# (15.7 MB at 64 px with 320 triangles), so a fixed 256 frames per call took more than 24 GiB
# at 64 px; this budget keeps 256 frames at 32 px and 64 at 64 px.
RENDER_PIXELS = 256 * 32 * 32


def _render_chunks(ident, expr, pose, fc, chunk):
    """Renders in calls of at most `chunk` frames and `RENDER_PIXELS` frame-pixels."""
    chunk = max(1, min(chunk, RENDER_PIXELS // fc.resolution ** 2))
    imgs, lmks = [], []
    for s in range(0, len(ident), chunk):
        sl = slice(s, s + chunk)
        r = faces.render_batch(ident[sl], expr[sl], pose[sl], fc)
        imgs.append(np.asarray(r["image"]))
        lmks.append(np.asarray(r["landmarks"]))
    return {"image": np.concatenate(imgs) * 2 - 1, "landmarks": np.concatenate(lmks)}


def procedural_videos(seed: int, fc, count: int, stream: int, id_stream: int) -> list[dict]:
    """`count` videos of `fc.frames` frames, one identity each: `{"image" [T, R, R, 3] in [-1, 1],
    "landmarks" [T, K, 2], "ident", "expr", "pose"}`."""
    ids = identity_table(seed, count, id_stream)
    rng = np.random.default_rng([seed, stream])
    out = []
    for v in range(count):
        ident, expr, pose = faces.video_params(rng, fc.frames, fc, ids[v])
        out.append({**_render_chunks(ident, expr, pose, fc, 256), "ident": ident, "expr": expr, "pose": pose})
    return out


def eval_videos(seed: int, fc) -> list[dict]:
    """Held-out identities (their own identity stream)."""
    return procedural_videos(seed, fc, fc.videos, EVAL_VIDEOS, EVAL_IDS)


def clip_videos(seed: int, fc) -> list[dict]:
    """Training videos of the encoder: identities from the training identity table."""
    ids = identity_table(seed, fc.num_identities, TRAIN_IDS)
    rng = np.random.default_rng([seed, CLIP_VIDEOS])
    out = []
    for v in range(fc.clip_videos):
        ident, expr, pose = faces.video_params(rng, fc.frames, fc, ids[v % len(ids)])
        out.append({**_render_chunks(ident, expr, pose, fc, 256), "ident": ident, "expr": expr, "pose": pose})
    return out
