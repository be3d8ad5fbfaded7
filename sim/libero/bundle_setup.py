"""The GPU-machine half of the libero_10 bundle (``aura sim bundle-setup``, run by scripts/libero_gpu.sh).

Every part, wheel and deb a call carries is hashed against the bundle's ``index.json`` and copied into a
persistent prefix (:func:`stage`); the wheels are pip-installed offline once all are staged; once all
parts are staged they are decompressed as one stream and every member is checked against the manifest
(name, size, sha256) as it is written (:func:`unpack`); :func:`setup` then links the assets, writes
LIBERO's config (``sim.libero.install``) and checks that LIBERO imports and EGL renders. The build side
and the recipe are ``sim.libero.bundle``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from sim.libero import install
from sim.libero.bundle import (
    ASSETS,
    INDEX,
    MANIFEST,
    MIB,
    BundleError,
    last_line,
    read_index,
    sha256_file,
    tag,
)


def _copy(f, g) -> str:
    """Copy file object ``f`` into ``g``; returns the sha256 of what was copied."""
    h = hashlib.sha256()
    while block := f.read(MIB):
        h.update(block)
        g.write(block)
    return h.hexdigest()


def _stage_file(src: Path, dst: Path, entry: dict, what: str) -> None:
    """Copy ``src`` to ``dst`` while hashing it; refuse it (naming it) unless it matches ``entry``."""
    tmp = dst.with_name(dst.name + ".tmp")
    with open(src, "rb") as f, open(tmp, "wb") as g:
        digest = _copy(f, g)
    if digest != entry["sha256"]:
        tmp.unlink()
        want = entry["sha256"][:12]
        raise BundleError(
            f"{what} {entry['name']} ({src}): sha256 {digest[:12]}... is not the index's {want}...: "
            "corrupt or from another build; send it again"
        )
    os.replace(tmp, dst)


def _ready(prefix: Path, index: dict) -> bool:
    try:
        return json.loads((prefix / "ready.json").read_text())["sha256"] == index["sha256"]
    except (OSError, ValueError, KeyError):
        return False


def stage(index_path: Path, prefix: Path, wheel_dir: Path | None, gl_dir: Path | None, log=print) -> list:
    """Check what this call carried against the index, copy it into ``prefix`` and install the wheels
    once all are staged; returns what is still missing. A new bundle (another sha256) discards the old
    one's parts and tree; staged files the index does not list are removed."""
    index = read_index(index_path)
    prefix.mkdir(parents=True, exist_ok=True)
    staged = prefix / INDEX
    if staged.is_file() and read_index(staged)["sha256"] != index["sha256"]:
        log(f"[bundle] a new bundle {index['sha256'][:12]}: discarding the staged one")
        shutil.rmtree(prefix / "parts", ignore_errors=True)
        shutil.rmtree(prefix / "src", ignore_errors=True)
        (prefix / "ready.json").unlink(missing_ok=True)
    if index_path.resolve() != staged.resolve():
        shutil.copyfile(index_path, staged)
    wheels = index.get("wheels", {}).get(tag(), [])
    groups = [("wheel", wheels, wheel_dir, "whl")]
    if not _ready(prefix, index):
        groups.append(("part", index["parts"], index_path.parent, "parts"))
    if gl_dir is not None:
        groups.append(("deb", index.get("debs", []), gl_dir, "gl"))
    missing = []
    for what, entries, src_dir, sub in groups:
        if not entries:
            flag = (
                "--gl"
                if what == "deb"
                else f"--wheels --python-version {sys.version_info[0]}.{sys.version_info[1]}"
            )
            missing.append(f"the {what}s (none in the index: aura sim bundle --no-build {flag})")
        (prefix / sub).mkdir(exist_ok=True)
        for old in set(os.listdir(prefix / sub)) - {e["name"] for e in entries}:
            (prefix / sub / old).unlink()
        lost, came = [], []
        for e in entries:
            dst, src = prefix / sub / e["name"], (src_dir / e["name"]) if src_dir else None
            if src is not None and src.is_file():  # what arrived is always checked, even if staged before
                _stage_file(src, dst, e, what)
                came.append(e)
            elif not (dst.is_file() and dst.stat().st_size == e["size"]):
                lost.append(e["name"])
        if came:
            names = ", ".join(e["name"] for e in came) if what == "part" else f"{len(came)} of {len(entries)}"
            log(f"[bundle] staged {what}s {names} ({sum(e['size'] for e in came) / MIB:.1f} MiB, sha256 ok)")
        if lost:
            missing.append(f"{len(lost)} {what}(s) {', '.join(lost) if len(lost) < 3 else f'for {tag()}'}")
    if wheels and not any(" wheel(s) " in m for m in missing):
        install_wheels(prefix, wheels, log)
    return missing


def install_wheels(prefix: Path, wheels: list[dict], log=print) -> None:
    """``pip install --no-index --no-deps --target prefix/wheels`` the staged wheels, unless done."""
    target, stamp = prefix / "wheels", json.dumps(sorted(e["sha256"] for e in wheels))
    if (target / ".aura-installed").is_file() and (target / ".aura-installed").read_text() == stamp:
        return
    shutil.rmtree(target, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    cmd += ["--no-cache-dir", "--disable-pip-version-check", "--target", str(target)]
    r = subprocess.run(
        cmd + [str(prefix / "whl" / e["name"]) for e in wheels], capture_output=True, text=True
    )
    if r.returncode != 0:
        raise BundleError(f"pip install of the staged wheels failed: {last_line(r.stderr)}")
    (target / ".aura-installed").write_text(stamp)
    log(f"[bundle] installed {len(wheels)} wheels into {target}")


class _Concat(io.RawIOBase):
    """The staged parts read back as one stream, hashed as they are read."""

    def __init__(self, paths):
        self.paths, self.h, self._f = list(paths), hashlib.sha256(), None

    def readable(self):
        return True

    def readinto(self, b) -> int:
        while True:
            if self._f is None:
                if not self.paths:
                    return 0
                self._f = open(self.paths.pop(0), "rb")
            n = self._f.readinto(b)
            if n:
                self.h.update(memoryview(b)[:n])
                return n
            self._f.close()
            self._f = None


def read_manifest(text: str) -> dict[str, tuple[str, int]]:
    """``{path: (sha256, size)}`` from the bundle manifest's ``sha256<TAB>size<TAB>path`` lines."""
    return {
        rel: (digest, int(size)) for digest, size, rel in (line.split("\t") for line in text.splitlines())
    }


def unpack(prefix: Path, index: dict, dest: Path) -> dict[str, tuple[str, int]]:
    """Decompress the staged parts into ``dest``, checking every member against the manifest (name,
    size, sha256) as it is written, and the stream against the index; returns the manifest."""
    parts = [prefix / "parts" / p["name"] for p in index["parts"]]
    src = stream = _Concat(parts)
    if index.get("codec") == "zstd":
        import zstandard

        stream = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True, closefd=False)
    manifest: dict[str, tuple[str, int]] = {}
    seen: set[str] = set()
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for m in tar:
            f, rel = tar.extractfile(m) if m.isfile() else None, Path(m.name)
            if f is None or rel.is_absolute() or ".." in rel.parts or m.name in seen:
                raise BundleError(f"bundle member {m.name!r} is not a plain relative file")
            if not manifest:
                data = f.read()
                if m.name != MANIFEST or hashlib.sha256(data).hexdigest() != index["manifest_sha256"]:
                    raise BundleError(f"the bundle starts with {m.name!r}, not the manifest its index names")
                manifest = read_manifest(data.decode())
                dest.mkdir(parents=True, exist_ok=True)
                (dest / MANIFEST).write_bytes(data)
                continue
            if m.name not in manifest:
                raise BundleError(f"bundle member {m.name!r} is not in its manifest")
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            with open(dest / rel, "wb") as g:
                if (_copy(f, g), m.size) != manifest[m.name]:
                    raise BundleError(f"{m.name}: sha256 or size differs from the bundle manifest")
            os.chmod(dest / rel, 0o755 if m.mode & 0o111 else 0o644)
            seen.add(m.name)
    while stream.read(MIB) or src.read(MIB):
        pass
    if src.h.hexdigest() != index["sha256"]:
        for p, e in zip(parts, index["parts"]):
            if sha256_file(p) != e["sha256"]:
                p.unlink()
                raise BundleError(f"staged part {e['name']} changed since it was staged: send it again")
    lost = sorted(set(manifest) - seen)
    if lost:
        raise BundleError(f"{len(lost)} files of the manifest are not in the bundle, e.g. {lost[0]}")
    return manifest


def verify_tree(root: Path, manifest: dict[str, tuple[str, int]]) -> None:
    """Hash every manifest file under ``root``; raise naming the first one that is missing or differs."""
    for rel, (digest, size) in sorted(manifest.items()):
        p = root / rel
        if not p.is_file() or p.stat().st_size != size or sha256_file(p) != digest:
            raise BundleError(
                f"{p}: missing or differs from the bundle manifest; remove {root.parent} and resend"
            )


_CHECK = "import mujoco, libero.libero.envs, robosuite; print(mujoco.__version__, robosuite.__version__)"


def setup(prefix: Path, check: bool = True, log=print) -> Path:
    """Unpack (or, when done before, re-verify) the staged bundle into ``prefix/src``, link the
    assets, write LIBERO's config into ``prefix/config``; the first time (with ``check``) also import
    LIBERO and render one frame with MuJoCo's EGL backend, in subprocesses. Returns the config folder."""
    t0 = time.perf_counter()
    index = read_index(prefix / INDEX)
    src, cfg, ready = prefix / "src", prefix / "config", _ready(prefix, index)
    if ready:
        if not (src / MANIFEST).is_file() or sha256_file(src / MANIFEST) != index["manifest_sha256"]:
            raise BundleError(f"{src / MANIFEST}: missing or not the manifest the index names")
        manifest = read_manifest((src / MANIFEST).read_text())
        verify_tree(src, manifest)
        secs = time.perf_counter() - t0
        log(f"[bundle] already set up: {len(manifest)} files, every sha256 ok ({secs:.1f} s)")
    else:
        missing = [p["name"] for p in index["parts"] if not (prefix / "parts" / p["name"]).is_file()]
        if missing:
            raise BundleError(f"cannot unpack: parts not staged yet: {', '.join(missing)}")
        shutil.rmtree(prefix / "src.tmp", ignore_errors=True)
        manifest = unpack(prefix, index, prefix / "src.tmp")
        shutil.rmtree(src, ignore_errors=True)
        os.replace(prefix / "src.tmp", src)
        log(f"[bundle] unpacked {len(manifest)} files, every sha256 ok ({time.perf_counter() - t0:.1f} s)")
    root, assets = src / "libero" / "libero", src / ASSETS / "assets"
    link = install.link_assets(assets, root / "assets")
    install.write_config(cfg, root, assets)
    (cfg / install.GL_FILE).write_text("egl\n")
    if not ready:
        log(f"[bundle] {link}; LIBERO config in {cfg}")
    if not ready and check:
        env = dict(os.environ, LIBERO_CONFIG_PATH=str(cfg), MUJOCO_GL="egl", PYOPENGL_PLATFORM="egl")
        r = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise BundleError(f"importing LIBERO from {src} failed: {last_line(r.stderr)}")
        if install.probe_gl(("egl",)) is None:
            raise BundleError("MuJoCo cannot render with MUJOCO_GL=egl: GL debs unpacked? EGL vendor file?")
        secs = time.perf_counter() - t0
        log(f"[bundle] mujoco, robosuite {r.stdout.strip()} import; EGL renders ({secs:.1f} s)")
    if not ready:
        (prefix / "ready.json").write_text(json.dumps({"sha256": index["sha256"], "files": len(manifest)}))
        shutil.rmtree(prefix / "parts", ignore_errors=True)  # the verified tree replaces them
    return cfg
