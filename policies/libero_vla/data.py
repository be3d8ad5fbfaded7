"""Demonstrations for behaviour cloning: the HDF5 files of ``aura sim demos``, read fast, into flat arrays.

Layout read (``sim/libero/demos.py``; one file per task): ``data`` (attrs ``language``, ``task_id``) /
``demo_i`` / ``actions [T, 7]``, ``obs/agentview_rgb`` and ``obs/eye_in_hand_rgb [T, S, S, 3]`` uint8 upright
(row 0 = top, as LiberoEnv gives), ``obs/state [T, 8]``. ``obs[t]`` is what the expert saw before
``actions[t]``. The episode files of ``aura sim rollouts --images`` (DAgger data) follow the same layout with
``actions`` = the shadow expert's label at the visited state: a non-finite row there is unsupervised (masked
out of every chunk target, left out of the action statistics). Such files say so (``data`` attr
``unlabelled_rows`` = ``"nan"``); a non-finite action in any other demo file is corruption, an error.

Decoding is the cost: the image datasets are gzip-compressed in small chunks (h5py picks (40, 32, 32, 1)
for [T, 128, 128, 3]), and h5py decodes them at ~135 MB/s on one core holding a global lock, so threads do
not help it. The fast path instead asks HDF5 only *where* each chunk lies (``chunk_iter`` /
``get_chunk_info``), reads the bytes with ``os.pread`` and inflates them with ``zlib`` in a thread pool -
both release the GIL - straight into one preallocated ``[N, S, S, 3]`` array: ~900 MB/s per core here. Any
dataset that is not chunked + deflate-only (or has a skipped filter or an unallocated chunk) falls back to
h5py's own reader, so the result is always what h5py would return.
"""

from __future__ import annotations

import os
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CAMERAS = {"image": "agentview_rgb", "wrist_image": "eye_in_hand_rgb"}
H5Z_FILTER_DEFLATE = 1
UNLABELLED_ATTR = "unlabelled_rows"  # data attr of files whose NaN action rows are unsupervised (DAgger)


class DemoFileError(ValueError):
    """A demo file or directory is missing or does not follow the layout (the message names it)."""


def demo_files(path) -> list[Path]:
    """A directory's ``*.hdf5`` (natural order: task2 before task10), or the one file given."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DemoFileError(f"{p}: no such demo file or directory")
    files = sorted(
        p.glob("*.hdf5"), key=lambda f: [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", f.name)]
    )
    if not files:
        raise DemoFileError(f"{p}: no *.hdf5 demo files (record some with `aura sim demos --out {p}`)")
    return files


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _demo_names(data, path) -> list[str]:
    names = [k for k in data if re.fullmatch(r"demo_\d+", k)]
    if not names:
        raise DemoFileError(f"{path}: data/ has no demo_i groups")
    return sorted(names, key=lambda k: int(k.split("_")[1]))


def _check_demo(g, path, name, size: int | None) -> int:
    where = f"{path}: data/{name}"
    init = int(g.attrs.get("init_state", -1))
    if init >= 0:  # LIBERO's fixed init states are the evaluation set: never train on them
        raise DemoFileError(
            f"{where} was recorded on LIBERO's fixed init state {init} (the evaluation set); record training "
            "demos with `aura sim demos --placements fresh`"
        )
    for key in ("actions", "obs/state", *(f"obs/{c}" for c in CAMERAS.values())):
        if key not in g:
            raise DemoFileError(f"{where} has no {key}")
    t = g["actions"].shape[0]
    if g["actions"].shape != (t, 7) or g["obs/state"].shape != (t, 8) or t < 1:
        raise DemoFileError(
            f"{where}: actions {g['actions'].shape} / obs/state {g['obs/state'].shape}, need [T,7]/[T,8]"
        )
    for cam in CAMERAS.values():
        shape, dtype = g[f"obs/{cam}"].shape, g[f"obs/{cam}"].dtype
        if dtype != np.uint8 or len(shape) != 4 or shape[0] != t or shape[3] != 3 or shape[1] != shape[2]:
            raise DemoFileError(f"{where}: obs/{cam} is {dtype} {shape}, need uint8 [{t}, S, S, 3]")
        if size is not None and shape[1] != size:
            raise DemoFileError(f"{where}: obs/{cam} is {shape[1]} px, the other demos {size} px")
    return t


def _chunk_plan(ds):
    """(compressed, chunk infos) for the fast path, or None when only h5py can decode ``ds``."""
    if ds.chunks is None or ds.dtype != np.uint8:
        return None
    plist = ds.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if filters not in ([], [H5Z_FILTER_DEFLATE]):
        return None
    infos: list = []
    try:
        ds.id.chunk_iter(infos.append)  # h5py >= 3.8 with HDF5 >= 1.12.3: one call for all chunks
    except Exception:  # older h5py/HDF5: one query per chunk (~10 us each)
        try:
            infos = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
        except Exception:  # no chunk queries at all: h5py decodes
            return None
    expected = int(np.prod([-(-s // c) for s, c in zip(ds.shape, ds.chunks)]))
    if len(infos) != expected or any(i.filter_mask != 0 for i in infos):
        return None  # unallocated (fill-value) chunks or a skipped filter: let h5py handle it
    return bool(filters), infos


def _inflate(fd: int, base: int, plan, chunks: tuple, out: np.ndarray) -> None:
    compressed, infos = plan
    n = int(np.prod(chunks))
    for info in infos:
        raw = os.pread(fd, info.size, base + info.byte_offset)
        buf = zlib.decompress(raw) if compressed else raw
        if len(buf) != n:
            raise DemoFileError(f"chunk at byte {info.byte_offset} decodes to {len(buf)} bytes, expected {n}")
        block = np.frombuffer(buf, np.uint8).reshape(chunks)
        sl = tuple(slice(o, min(o + c, s)) for o, c, s in zip(info.chunk_offset, chunks, out.shape))
        out[sl] = block[tuple(slice(0, x.stop - x.start) for x in sl)]


@dataclass
class Demos:
    """All frames of all demos, flat: frame i belongs to episode ``episode[i]``."""

    image: np.ndarray  # [N, S, S, 3] uint8, agentview
    wrist_image: np.ndarray  # [N, S, S, 3] uint8
    state: np.ndarray  # [N, 8] float32
    action: np.ndarray  # [N, 7] float32
    episode_start: np.ndarray  # [E] int64
    episode_length: np.ndarray  # [E] int64
    episode_task: np.ndarray  # [E] int64, index into languages
    languages: list[str]
    recipe: dict = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return len(self.action)

    @property
    def frame_task(self) -> np.ndarray:
        return np.repeat(self.episode_task, self.episode_length)

    @property
    def labelled(self) -> np.ndarray:
        """[N] bool: frames whose action is a label (all finite); the others are unsupervised."""
        return np.isfinite(self.action).all(-1)

    def chunk_targets(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(targets [N, k, 7], valid [N, k]): a_t .. a_t+k-1 of frame t's episode, masked past its end and
        where that action is unlabelled (its target is then 0, so a masked error stays finite)."""
        ep = np.repeat(np.arange(len(self.episode_start)), self.episode_length)
        start, length = self.episode_start[ep][:, None], self.episode_length[ep][:, None]
        tk = (np.arange(self.frames)[:, None] - start) + np.arange(k)[None]
        src = start + np.minimum(tk, length - 1)
        valid = (tk < length) & self.labelled[src]
        return np.where(valid[..., None], self.action[src], 0.0).astype(np.float32), valid


def load_demos(
    path, max_demos_per_task: int | None = None, threads: int | None = None, progress=True
) -> Demos:
    """Read every demo file under ``path`` - one directory or file, or a list of them (demos and DAgger
    rollouts together) - (module docstring); ``max_demos_per_task`` keeps the first n per file."""
    import h5py

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        raise DemoFileError("no demo directory or file given")
    files = [f for p in paths for f in demo_files(p)]
    threads = threads or min(32, os.cpu_count() or 1)
    entries, languages, recipe_files, size = [], [], [], None  # entries: (file, demo name, T, task index)
    unlabelled_ok: set = set()  # files whose NaN action rows are unsupervised (UNLABELLED_ATTR)
    for f in files:
        try:
            h = h5py.File(f, "r")
        except OSError as err:
            raise DemoFileError(f"{f}: not a readable HDF5 file ({err})") from None
        with h:
            if "data" not in h:
                raise DemoFileError(f"{f}: no data/ group (not a sim/libero/demos.py file)")
            data = h["data"]
            language = _text(data.attrs.get("language", ""))
            if language not in languages:
                languages.append(language)
            names = _demo_names(data, f)
            used = names[:max_demos_per_task] if max_demos_per_task else names
            if _text(data.attrs.get(UNLABELLED_ATTR, "")) == "nan":
                unlabelled_ok.add(f)
            lengths = []
            for name in used:
                t = _check_demo(data[name], f, name, size)
                size = data[name][f"obs/{CAMERAS['image']}"].shape[1]
                entries.append((f, name, t, languages.index(language)))
                lengths.append(t)
            recipe_files.append(
                dict(
                    file=f.name,
                    task_id=int(data.attrs.get("task_id", -1)),
                    language=language,
                    demos_in_file=len(names),
                    demos_used=len(used),
                    frames=int(sum(lengths)),
                    bytes=f.stat().st_size,
                )
            )
    lengths = np.array([e[2] for e in entries], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    n = int(lengths.sum())
    out = Demos(
        image=np.empty((n, size, size, 3), np.uint8),
        wrist_image=np.empty((n, size, size, 3), np.uint8),
        state=np.empty((n, 8), np.float32),
        action=np.empty((n, 7), np.float32),
        episode_start=starts,
        episode_length=lengths,
        episode_task=np.array([e[3] for e in entries], dtype=np.int64),
        languages=languages,
    )
    jobs, fast = [], 0
    handles = {f: (h5py.File(f, "r"), os.open(f, os.O_RDONLY)) for f in files}
    try:
        for (f, name, t, _), s0 in zip(entries, starts):
            h, fd = handles[f]
            g = h["data"][name]
            out.state[s0 : s0 + t] = g["obs/state"][()]
            out.action[s0 : s0 + t] = g["actions"][()]
            for key, cam in CAMERAS.items():
                ds, dest = g[f"obs/{cam}"], getattr(out, key)[s0 : s0 + t]
                plan = _chunk_plan(ds)
                fast += plan is not None
                if plan is None:
                    jobs.append((ds.read_direct, (dest,)))  # h5py's own path (serialised by its lock)
                else:
                    jobs.append((_inflate, (fd, h.userblock_size, plan, ds.chunks, dest)))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(jobs), desc="decode demos", unit="video", mininterval=2.0)
        with ThreadPoolExecutor(threads) as pool:
            for fut in [pool.submit(fn, *args) for fn, args in jobs]:
                fut.result()
                if bar is not None:
                    bar.update()
        if bar is not None:
            bar.close()
    finally:
        for h, fd in handles.values():
            h.close()
            os.close(fd)
    if not np.isfinite(out.state).all():
        raise DemoFileError(f"{path}: non-finite states in the demos")
    for (f, name, t, _), s0 in zip(entries, starts):
        if f not in unlabelled_ok and not np.isfinite(out.action[s0 : s0 + t]).all():
            raise DemoFileError(
                f"{f}: data/{name}/actions has non-finite values (corrupt: only `aura sim rollouts "
                f"--images` episodes, data attr {UNLABELLED_ATTR}='nan', leave rows unlabelled)"
            )
    labelled = out.labelled
    if not labelled.any():
        raise DemoFileError(f"{path}: no frame has a finite action label")
    out.recipe = dict(
        source=str(path) if len(paths) == 1 else [str(p) for p in paths],
        labelled_frames=int(labelled.sum()),
        files=recipe_files,
        demos=len(entries),
        frames=n,
        image_size=size,
        tasks=len(languages),
        max_demos_per_task=max_demos_per_task,
        decoder=f"{fast}/{len(jobs)} videos zlib-threaded ({threads} threads), rest h5py",
    )
    return out


def read_frames(path, n: int = 100) -> list[dict]:
    """``n`` evenly spaced frames of one demo file as LiberoEnv-style observation dicts (for parity)."""
    import h5py

    with h5py.File(demo_files(path)[0], "r") as h:
        data = h["data"]
        language = _text(data.attrs.get("language", ""))
        names = _demo_names(data, path)
        lengths = [data[k]["actions"].shape[0] for k in names]
        picks = np.unique(np.linspace(0, sum(lengths) - 1, n).round().astype(int))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        frames = []
        for name, s0, t in zip(names, starts, lengths):
            local = [int(i - s0) for i in picks if s0 <= i < s0 + t]
            if not local:
                continue
            o = data[name]["obs"]
            img, wrist, state = (
                o[CAMERAS["image"]][local],
                o[CAMERAS["wrist_image"]][local],
                o["state"][local],
            )
            frames += [
                dict(image=img[j], wrist_image=wrist[j], state=state[j].astype(np.float32), language=language)
                for j in range(len(local))
            ]
    return frames
