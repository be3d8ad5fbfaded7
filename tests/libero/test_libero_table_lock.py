"""The task table (sim.libero.tasks) is written once, whole, when many processes reach its first use together.

On a fresh GPU machine 15 demo workers did, and with one fixed temp name their writes interleaved
(``BadZipFile``, a rename of a temp file another worker had already moved). No LIBERO needed: the part
that reads LIBERO's benchmark (``_collect``) is replaced by a slow fake that counts its calls.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import time

import numpy as np
import pytest

from sim.libero import tasks

STATES = {"task0": np.arange(6.0).reshape(2, 3), "task100": np.ones((2, 4))}


def _patch(cfg, calls):
    def collect():
        with open(calls, "a") as f:
            f.write("collect\n")
        time.sleep(0.3)  # LIBERO's import is slow: the window in which the other workers arrive
        return [dict(task=0, name="a"), dict(task=100, name="b")], STATES

    tasks._CACHE.clear()
    tasks._collect = collect
    tasks.ensure_libero = lambda: None
    tasks.config_dir = lambda: cfg


def _first_use(cfg, calls, queue):
    _patch(cfg, calls)
    queue.put(sorted(tasks._table()))


def test_concurrent_first_use_writes_once(tmp_path):
    cfg, calls = tmp_path / "config", tmp_path / "calls.txt"
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_first_use, args=(cfg, calls, queue)) for _ in range(6)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert got == [[0, 100]] * 6
    assert calls.read_text().splitlines() == ["collect"]  # one writer; the others read its table
    with np.load(cfg / tasks.STATES, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(STATES)
        for k, v in STATES.items():
            np.testing.assert_array_equal(z[k], v)
    doc = json.loads((cfg / tasks.TABLE).read_text())
    assert doc["format"] == tasks.FORMAT and doc["suites"] == tasks.SUITES
    assert doc["states_sha256"] == hashlib.sha256((cfg / tasks.STATES).read_bytes()).hexdigest()
    assert not [p.name for p in cfg.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("force", [True, False])
def test_old_format_is_rewritten_and_force_rewrites_a_usable_one(tmp_path, monkeypatch, force):
    cfg, calls = tmp_path / "config", []

    def collect():
        calls.append(1)
        return [dict(task=0, name="a")], STATES

    monkeypatch.setattr(tasks, "_CACHE", {})
    monkeypatch.setattr(tasks, "config_dir", lambda: cfg)
    monkeypatch.setattr(tasks, "ensure_libero", lambda: None)
    monkeypatch.setattr(tasks, "_collect", collect)
    cfg.mkdir()
    (cfg / tasks.TABLE).write_text(json.dumps(dict(format=tasks.FORMAT - 1, suites=tasks.SUITES)))
    np.savez(cfg / tasks.STATES, **STATES)
    assert sorted(tasks._table()) == [0] and len(calls) == 1  # an older format is rewritten on first use
    tasks.write_table(cfg, log=lambda *_: None, force=force)  # `aura sim install` forces
    assert len(calls) == (2 if force else 1)


def test_unwritable_config_folder_is_one_clear_error(tmp_path, monkeypatch):
    cfg = tmp_path / "config"
    cfg.write_text("a file where the config folder should be")  # unwritable as a folder, for root too
    monkeypatch.setattr(tasks, "_collect", lambda: pytest.fail("must not read LIBERO before the lock"))
    with pytest.raises(ValueError, match=r"libero_tasks\.json\.lock: cannot write .*LIBERO_CONFIG_PATH"):
        tasks.write_table(cfg, log=lambda *_: None, force=False)
