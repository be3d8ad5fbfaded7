"""sim.libero.pins: one configuration per output directory, optional settings counted from either side."""

import json

import pytest

from sim.libero.pins import pin


def test_pins_refuse_a_changed_or_one_sided_optional_setting(tmp_path):
    cfg = tmp_path / "config.json"
    pin(cfg, {"a": 1}, ("opt",), started=False, what="results")
    pin(cfg, {"a": 1}, ("opt",), started=True, what="results")  # same settings: resumes
    for now in ({"a": 2}, {"a": 1, "opt": 3}):  # changed; optional set now only
        with pytest.raises(ValueError, match=r"holds results of another configuration .*use another --out"):
            pin(cfg, now, ("opt",), started=True, what="results")
    assert json.loads(cfg.read_text()) == {"a": 1}  # the record is kept on a refusal
    pin(cfg, {"a": 1, "opt": 3}, ("opt",), started=False, what="results")  # nothing recorded yet: rewritten
    with pytest.raises(ValueError, match="opt"):  # optional recorded, absent now
        pin(cfg, {"a": 1}, ("opt",), started=True, what="results")
