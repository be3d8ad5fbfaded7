"""LIBERO as a robot of the torch-free loop: the task table equals LIBERO's own, `aura run --env libero:...`
drives an exported backbone graph and memory step graph without importing torch, and bad specs are named."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")


def test_task_table_equals_liberos_init_states():
    from sim.libero.install import ensure_libero
    from sim.libero.tasks import task_spec

    ensure_libero()  # before LIBERO's import, which otherwise asks for its config on stdin
    from libero.libero import benchmark

    suite = benchmark.get_benchmark_dict()["libero_10"]()
    for t in (0, 9):
        language, bddl, states = task_spec(t)
        assert language == suite.get_task(t).language and bddl.endswith(suite.get_task(t).bddl_file)
        assert np.array_equal(states, np.asarray(suite.get_task_init_states(t)))


def test_libero_spec_errors_name_the_option():
    from sim.libero.robot import parse_spec

    assert parse_spec("3") == (3, None) and parse_spec("3:7") == (3, 7)
    for bad in ("", "x", "10", "3:50", "1:2:3"):
        with pytest.raises(ValueError, match="--env libero:"):
            parse_spec(bad)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """The shipped backbone and a fresh d_model-256 AuraMem, both exported to ONNX."""
    import torch

    from aura.layer import AuraMem, AuraMemConfig
    from deploy.export.backbone_graph import export_graph
    from deploy.export.step_graph import export_layer
    from policies.libero_vla.checkpoint import load_checkpoint

    d = tmp_path_factory.mktemp("graphs")
    net, _ = load_checkpoint("checkpoints/libero-vla")
    backbone = export_graph(net, d / "backbone.onnx")
    torch.manual_seed(0)
    _, step = export_layer(AuraMem(AuraMemConfig(d_model=256, d_action=7)), d / "step.onnx")
    return backbone, step


def test_aura_run_on_libero_is_torch_free(graphs, tmp_path):
    backbone, step = graphs
    out = tmp_path / "run"
    code = (
        "import sys\n"
        "from cli import main\n"
        f"rc = main(['run', '--model', {str(step)!r}, '--env', 'libero:5:0', '--backbone', 'libero_vla_onnx',"
        f" '--backbone-arg', 'model={backbone}', '--episodes', '1', '--max-steps', '6',"
        f" '--out', {str(out)!r}])\n"
        "assert rc == 0, rc\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('TORCH-FREE OK')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "TORCH-FREE OK" in r.stdout, r.stderr[-2000:] + r.stdout[-2000:]
    ep = json.loads((out / "episodes.jsonl").read_text().splitlines()[0])
    assert ep["steps"] == 6 and ep["success"] is False and ep["task"] == 5 and ep["init_state"] == 0
    assert ep["sim_ms_mean"] > 0
