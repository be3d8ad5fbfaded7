"""One output directory, one configuration: ``aura eval libero`` and ``aura sim rollouts`` key their records
by episode only ((task, init state, arm, seed); (task, k)), so a resume under settings that change an
episode would mix incomparable episodes in one file. The settings are pinned in ``OUT/config.json`` and a
resume under other ones is refused.

Settings added after directories already existed are *optional*: absent from the pins while unset, so those
directories still resume, but counted when either side has them - a directory made with one is not resumed
by a run without it, nor the reverse.
"""

from __future__ import annotations

import json
from pathlib import Path


def pin(config_path: Path, pinned: dict, optional, started: bool, what: str) -> None:
    """Write ``pinned`` to ``config_path``; when the directory already holds ``what`` (``started``), first
    raise ValueError naming every setting that differs from the recorded one (was, now)."""
    if started and config_path.is_file():
        old = json.loads(config_path.read_text())
        keys = set(pinned) | (set(old) & set(optional))
        diff = {k: (old.get(k), pinned.get(k)) for k in sorted(keys) if old.get(k) != pinned.get(k)}
        if diff:
            raise ValueError(
                f"--out {config_path.parent} holds {what} of another configuration {diff} (was, now); "
                "use another --out"
            )
    config_path.write_text(json.dumps(pinned, indent=1))
