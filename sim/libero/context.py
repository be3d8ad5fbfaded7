"""Context targets: `aura train` sequences in which the memory restores the backbone's context.

A backbone with ``spec.d_context > 0`` (``policies.backbone``; libero_vla's text embedding l) acts on a
context vector c. In the transient-instruction variant (issue 13) it sees c_t = l(instruction_t), which is
l(instruction) at steps t < K and l("") after. Given a sequence file of ``aura sim rollouts`` or ``aura sim
features`` (features z_t recorded with the instruction blanked after K steps), :func:`context_sequences`
keeps z_t and replaces the actions::

    base_actions[i, t]   = c_t       = l(instruction_at(language_i, K, t))     what the backbone sees
    target_actions[i, t] = c*        = l(language_i)                            the episode's instruction
                           (NaN where the source's target row is NaN: padding and unlabelled steps)

so AuraMem trained on it (``aura train``; the file's ``aura.context`` header makes the checkpoint's
``output`` "context") learns c-hat_t = c_t + W_c r_t -> c*: the memory carries the instruction, and at run
time the frozen backbone acts on c-hat_t (``sim.libero.arms``). The rows' languages come from the task
table (rollouts: ``episode_task``) or the features file's JSON record (its ``files``: task, demos,
language, in row order). The source's other arrays and header entries are kept, so ``aura train
--held-steps`` still finds K.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CONTEXT_META_KEY = "aura.context"


def _header(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as err:  # safetensors' own error types
        raise ValueError(f"--data {path}: not a readable safetensors file ({err})") from None


def row_languages(path: Path, arrays: dict, meta: dict) -> tuple[list[str], int, dict]:
    """(the instruction of each row, K, the source's settings) of a rollouts or features file."""
    from sim.libero.features import FEATURES_META_KEY
    from sim.libero.rollouts_io import META_KEY as ROLLOUTS_META_KEY
    from sim.libero.tasks import task_spec

    n = arrays["features"].shape[0]
    if ROLLOUTS_META_KEY in meta:
        settings = json.loads(meta[ROLLOUTS_META_KEY])["args"]
        tasks = [int(t) for t in arrays["episode_task"]]
        names = {t: task_spec(t)[0] for t in set(tasks)}
        languages = [names[t] for t in tasks]
    elif FEATURES_META_KEY in meta:
        settings = json.loads(meta[FEATURES_META_KEY])
        record_path = path.with_suffix(".json")
        try:
            record = json.loads(record_path.read_text())
            languages = [f["language"] for f in record["files"] for _ in range(int(f["demos"]))]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"--data {path}: its record {record_path} is missing or unreadable ({err})"
            ) from None
    else:
        raise ValueError(
            f"--data {path}: no {ROLLOUTS_META_KEY!r} or {FEATURES_META_KEY!r} header (not written by "
            "`aura sim rollouts` / `aura sim features`)"
        )
    if len(languages) != n:
        raise ValueError(f"--data {path}: {len(languages)} languages for {n} rows")
    k = settings.get("instruction_steps")
    if k is None:
        raise ValueError(
            f"--data {path}: recorded with the instruction always visible (no instruction_steps): "
            "a context target needs the transient variant's data (--instruction-steps K)"
        )
    return languages, int(k), settings


def context_sequences(path, backbone) -> tuple[dict[str, np.ndarray], dict[str, str], dict]:
    """The arrays and header of the context-target file of ``path`` (module docstring) and a summary."""
    from sim.libero.env import instruction_at

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--data {path}: no such file")
    arrays, meta = _header(path)
    for name in ("features", "base_actions", "target_actions"):
        if name not in arrays:
            raise ValueError(f"--data {path}: missing array {name!r}")
    d_context = int(getattr(backbone.spec, "d_context", 0))
    if d_context < 1 or not callable(getattr(backbone, "context", None)):
        raise ValueError(f"the backbone takes no context (spec.d_context = {d_context}): nothing to target")
    languages, k, settings = row_languages(path, arrays, meta)
    n, t_max = arrays["features"].shape[:2]
    blank = backbone.context("")
    labelled = np.isfinite(arrays["target_actions"]).all(-1)  # [N, T]
    base = np.empty((n, t_max, d_context), np.float32)
    target = np.full((n, t_max, d_context), np.nan, np.float32)
    for i, language in enumerate(languages):
        goal = backbone.context(language)
        for t in range(t_max):
            base[i, t] = goal if instruction_at(language, k, t) else blank
        target[i, labelled[i]] = goal
    out = dict(arrays, base_actions=base, target_actions=target)
    doc = dict(
        source=str(path),
        instruction_steps=k,
        d_context=d_context,
        source_backbone=settings.get("backbone"),
        source_backbone_args=settings.get("backbone_args"),
    )
    summary = dict(rows=n, steps=t_max, labelled_steps=int(labelled.sum()), tasks=len(set(languages)), **doc)
    return out, dict(meta, **{CONTEXT_META_KEY: json.dumps(doc)}), summary


def write_context_sequences(path, backbone, out) -> dict:
    """Write :func:`context_sequences` of ``path`` to ``out`` (safetensors, temporary name then renamed)."""
    from safetensors.numpy import save_file

    arrays, meta, summary = context_sequences(path, backbone)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp), metadata=meta)
    tmp.replace(out)
    return summary


def data_output(paths) -> str:
    """ "context" if every ``aura train --data`` file carries the ``aura.context`` header, "action" if none
    does; a mix is a ValueError naming the files."""
    from safetensors import safe_open

    kinds = {}
    for path in paths:
        meta = {}
        if str(path).endswith(".safetensors") and Path(path).is_file():
            with safe_open(str(path), "np") as f:
                meta = f.metadata() or {}
        kinds[str(path)] = "context" if CONTEXT_META_KEY in meta else "action"
    if len(set(kinds.values())) > 1:
        raise ValueError(f"--data: mixes context-target and action-target files {kinds}")
    return next(iter(kinds.values()), "action")
