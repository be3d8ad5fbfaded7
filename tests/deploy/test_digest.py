"""Model integrity: an exported step graph seals its sha256 and every runner verifies it before loading,
so a model file with a flipped byte is refused naming the file instead of running with other gate
decisions; older graphs load unverified; engine sidecars and checkpoint weight digests."""

import json

import numpy as np
import pytest

from deploy.runtime.digest import DIGEST_KEY, read_sidecar, verify_graph, verify_sidecar, write_sidecar
from deploy.runtime.errors import ModelFileError
from deploy.runtime.ort_runner import OrtRunner


def _weight_offset(data: bytes) -> tuple[int, int]:
    """(offset, length) of the largest initializer's raw bytes inside the serialised graph."""
    import onnx

    model = onnx.load_from_string(data)
    raw = max((t.raw_data for t in model.graph.initializer), key=len)
    at = data.find(raw)
    assert at > 0 and len(raw) > 1000
    return at, len(raw)


def test_export_seals_the_graph_and_the_runner_verifies_it(tiny_onnx):
    import onnx

    path, _ = tiny_onnx
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta["aura.format"] == "2" and len(meta[DIGEST_KEY]) == 64
    runner = OrtRunner(path)
    assert runner.digest.verified and runner.model_id == meta[DIGEST_KEY]
    assert runner.model_info["sha256"] == meta[DIGEST_KEY] and runner.model_info["verified"]


def test_a_flipped_weight_byte_is_refused_at_load_naming_the_file(tiny_onnx, tmp_path):
    import onnxruntime as ort

    path, _ = tiny_onnx
    data = bytearray(path.read_bytes())
    at, n = _weight_offset(bytes(data))
    data[at + n // 2] ^= 0x01  # one bit of one weight: the graph still parses and runs
    bad = tmp_path / "model.onnx"
    bad.write_bytes(bytes(data))
    ort.InferenceSession(str(bad), providers=["CPUExecutionProvider"])  # ORT alone would run it silently
    with pytest.raises(ModelFileError, match=r"model\.onnx: graph digest mismatch.*corrupt or was modified"):
        OrtRunner(bad)
    from cli import main

    assert main(["run", "--model", str(bad), "--env", "noise", "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r" / "journal").exists()  # refused before anything was written


def test_every_flipped_byte_of_the_file_is_refused(tiny_onnx, tmp_path):
    """Headers, node list, shapes, weights, metadata and the digest itself: no flip loads silently."""
    path, _ = tiny_onnx
    data = path.read_bytes()
    bad = tmp_path / "flip.onnx"
    positions = sorted({*range(0, len(data), max(len(data) // 300, 1)), len(data) - 1, data.find(b"aura.")})
    refused = 0
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        with pytest.raises(ModelFileError, match="flip.onnx"):
            OrtRunner(bad)
        refused += 1
    assert refused == len(positions) >= 300


def test_an_older_graph_without_a_digest_loads_unverified_but_a_damaged_entry_is_refused(tiny_onnx, tmp_path):
    import onnx

    path, _ = tiny_onnx
    model = onnx.load(path)
    props = [(p.key, p.value) for p in model.metadata_props if p.key != DIGEST_KEY]
    del model.metadata_props[:]
    for k, v in props:
        p = model.metadata_props.add()
        p.key, p.value = k, ("1" if k == "aura.format" else v)
    old = tmp_path / "old.onnx"
    onnx.save(model, old)
    runner = OrtRunner(old)
    assert not runner.digest.verified and "older export" in runner.digest.how
    # the same graph still claiming format 2: its digest entry must have been damaged
    for p in model.metadata_props:
        if p.key == "aura.format":
            p.value = "2"
    onnx.save(model, tmp_path / "stripped.onnx")
    with pytest.raises(ModelFileError, match=r"stripped\.onnx: aura\.format 2 graph without its"):
        OrtRunner(tmp_path / "stripped.onnx")


def test_verify_graph_reports_a_duplicated_digest_entry(tiny_onnx):
    path, _ = tiny_onnx
    data = path.read_bytes()
    at = data.find(DIGEST_KEY.encode())
    twice = data + data[at - 2 : at + len(DIGEST_KEY) + 66]
    with pytest.raises(ModelFileError, match="more than once"):
        verify_graph("m.onnx", twice)


def test_engine_sidecar(tmp_path):
    engine = tmp_path / "model.engine"
    blob = bytes(range(256)) * 10
    engine.write_bytes(blob)
    assert not verify_sidecar(engine, blob).verified  # an engine built with trtexec: unverified
    write_sidecar(engine, blob, source="ab" * 32)
    assert read_sidecar(engine) == (verify_sidecar(engine, blob).sha256, "ab" * 32)
    assert verify_sidecar(engine, blob).verified
    with pytest.raises(
        ModelFileError, match=r"model\.engine: sha256 .* does not match model\.engine\.sha256"
    ):
        verify_sidecar(engine, blob[:-1] + b"\x00")


def test_export_records_the_checkpoint_weights_digest(tmp_path):
    import onnx

    from aura.layer import AuraMem
    from deploy.export.step_graph import export_checkpoint

    AuraMem(d_model=8, d_action=3, d_key=4, d_val=4).save(tmp_path / "ck")
    recorded = json.loads((tmp_path / "ck" / "config.json").read_text())["weights_sha256"]
    _, path = export_checkpoint(tmp_path / "ck", tmp_path / "m.onnx")
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta["aura.weights_sha256"] == recorded
    runner = OrtRunner(path)
    assert runner.model_info["weights_sha256"] == recorded and runner.model_info["checkpoint"] == "ck"
    res = runner.step(np.zeros(8, np.float32), np.zeros(3, np.float32))
    assert res.fallback is None
