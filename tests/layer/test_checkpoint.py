"""AuraMem checkpoints: round trip gives identical outputs; corrupt or mismatched files are clear errors."""

import json

import pytest
import torch

from aura.layer import AuraMem, AuraMemConfig, CheckpointError


def _trained_looking(seed=0, **kw):
    torch.manual_seed(seed)
    m = AuraMem(AuraMemConfig(d_model=12, d_key=4, d_val=4, d_action=3, **kw))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m.eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    m = _trained_looking(heads=2, rule="kda", threshold=0.4)
    m.save(tmp_path / "ck", meta={"steps": 7})
    loaded = AuraMem.load(tmp_path / "ck")
    assert loaded.config == m.config and loaded.meta == {"steps": 7} and not loaded.training
    z, a = torch.randn(2, 30, 12), torch.randn(2, 30, 3)
    o1, o2 = m(z, a), loaded(z, a)
    for x, y in zip(o1, o2):
        assert torch.equal(x, y)
    doc = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert doc["format"] == "aura-mem" and doc["format_version"] == 1


def _saved(tmp_path):
    path = tmp_path / "ck"
    _trained_looking().save(path)
    return path


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        AuraMem.load(tmp_path / "nope")
    path = _saved(tmp_path)
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        AuraMem.load(path)
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: missing"):
        AuraMem.load(path)


def test_truncated_or_garbage_weights(tmp_path):
    path = _saved(tmp_path)
    w = path / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match="model.safetensors: corrupt"):
        AuraMem.load(path)
    w.write_bytes(b"\x80\x04 this is a pickle, not safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors: corrupt"):
        AuraMem.load(path)


def test_bad_config_json(tmp_path):
    path = _saved(tmp_path)
    cfg = path / "config.json"
    good = json.loads(cfg.read_text())
    cfg.write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        AuraMem.load(path)
    for bad, msg in [
        (dict(good, format="other"), "not an aura-mem checkpoint"),
        (dict(good, format_version=99), "format_version 99"),
        (dict(good, config=dict(good["config"], rule="lstm")), "bad config"),
        (dict(good, config=dict(good["config"], extra=1)), "unknown field"),
    ]:
        cfg.write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match=msg):
            AuraMem.load(path)


def test_weights_that_do_not_match_the_config(tmp_path):
    path = _saved(tmp_path)
    cfg = path / "config.json"
    doc = json.loads(cfg.read_text())
    doc["config"]["d_model"] = 13  # the projection weights now have the wrong shape
    cfg.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="proj.weight has shape"):
        AuraMem.load(path)
    doc["config"]["d_model"], doc["config"]["rule"] = 12, "deltanet"  # dt_bias: one per head, not per channel
    cfg.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="dt_bias has shape"):
        AuraMem.load(path)


def test_missing_or_unexpected_tensor_names(tmp_path):
    from safetensors.torch import load_file, save_file

    path = _saved(tmp_path)
    w = path / "model.safetensors"
    tensors = load_file(str(w))
    save_file(dict(tensors, junk=torch.zeros(1)), str(w))
    with pytest.raises(CheckpointError, match=r"unexpected \['junk'\]"):
        AuraMem.load(path)
    save_file({k: v for k, v in tensors.items() if k != "A_log"}, str(w))
    with pytest.raises(CheckpointError, match=r"missing \['A_log'\]"):
        AuraMem.load(path)


def test_non_finite_or_wrong_dtype_weights(tmp_path):
    from safetensors.torch import load_file, save_file

    path = _saved(tmp_path)
    w = path / "model.safetensors"
    tensors = load_file(str(w))
    bad = dict(tensors, **{"head.weight": tensors["head.weight"].clone().fill_(float("nan"))})
    save_file(bad, str(w))
    with pytest.raises(CheckpointError, match="head.weight contains non-finite"):
        AuraMem.load(path)
    bad = dict(tensors, **{"head.weight": tensors["head.weight"].half()})
    save_file(bad, str(w))
    with pytest.raises(CheckpointError, match="dtype"):
        AuraMem.load(path)


def test_save_records_the_weights_sha256_and_load_verifies_it(tmp_path):
    import hashlib

    path = _saved(tmp_path)
    w = path / "model.safetensors"
    doc = json.loads((path / "config.json").read_text())
    assert doc["weights_sha256"] == hashlib.sha256(w.read_bytes()).hexdigest()
    m = AuraMem.load(path)
    assert m.weights_sha256 == doc["weights_sha256"] and m.weights_verified
    data = bytearray(w.read_bytes())
    data[-2] ^= 0x01  # one mantissa bit of the last weight: parses, finite, right shapes
    w.write_bytes(bytes(data))
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors: sha256 .* does not match the weights_sha256"
    ):
        AuraMem.load(path)


def test_a_checkpoint_saved_before_the_digest_still_loads(tmp_path):
    path = _saved(tmp_path)
    cfg = path / "config.json"
    doc = json.loads(cfg.read_text())
    del doc["weights_sha256"]
    cfg.write_text(json.dumps(doc))
    m = AuraMem.load(path)
    assert not m.weights_verified and len(m.weights_sha256) == 64
    doc["weights_sha256"] = "xyz"
    cfg.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="weights_sha256 must be 64 hex digits"):
        AuraMem.load(path)


def test_the_shipped_checkpoint_without_a_digest_loads():
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "checkpoints" / "synthetic-hard"
    if not (shipped / "config.json").exists():
        pytest.skip("checkpoints/synthetic-hard is not in this checkout")
    m = AuraMem.load(shipped)
    assert len(m.weights_sha256) == 64
