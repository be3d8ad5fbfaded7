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


def _arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # safetensors' own error types
        raise ValueError(f"--data {path}: not a readable safetensors file ({err})") from None


def source_settings(path: Path, meta: dict) -> dict:
    """The settings a rollouts or features file recorded (``sim.libero.features.recorded_settings``), with
    the instruction steps K it needs; a ValueError naming the file otherwise."""
    from sim.libero.features import FEATURES_META_KEY, recorded_settings
    from sim.libero.rollouts_io import META_KEY as ROLLOUTS_META_KEY

    settings = recorded_settings(meta)
    if settings is None:
        raise ValueError(
            f"--data {path}: no {ROLLOUTS_META_KEY!r} or {FEATURES_META_KEY!r} header (not written by "
            "`aura sim rollouts` / `aura sim features`)"
        )
    if settings.get("instruction_steps") is None:
        raise ValueError(
            f"--data {path}: recorded with the instruction always visible (no instruction_steps): "
            "a context target needs the transient variant's data (--instruction-steps K)"
        )
    return settings


def row_languages(path: Path, arrays: dict, meta: dict) -> list[str]:
    """The instruction of each row of a rollouts (``episode_task``) or features (its JSON record) file."""
    from sim.libero.rollouts_io import META_KEY as ROLLOUTS_META_KEY
    from sim.libero.tasks import task_spec

    n = arrays["features"].shape[0]
    if ROLLOUTS_META_KEY in meta:
        tasks = [int(t) for t in arrays["episode_task"]]
        names = {t: task_spec(t)[0] for t in set(tasks)}
        languages = [names[t] for t in tasks]
    else:
        record_path = path.with_suffix(".json")
        try:
            record = json.loads(record_path.read_text())
            languages = [f["language"] for f in record["files"] for _ in range(int(f["demos"]))]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"--data {path}: its record {record_path} is missing or unreadable ({err})"
            ) from None
    if len(languages) != n:
        raise ValueError(f"--data {path}: {len(languages)} languages for {n} rows")
    return languages


def context_sequences(path, backbone) -> tuple[dict[str, np.ndarray], dict[str, str], dict]:
    """The arrays and header of the context-target file of ``path`` (module docstring) and a summary."""
    from sim.libero.env import instruction_at
    from sim.libero.features import sequence_header

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--data {path}: no such file")
    meta = sequence_header(path)
    settings = source_settings(path, meta)
    arrays = _arrays(path)
    for name in ("features", "base_actions", "target_actions"):
        if name not in arrays:
            raise ValueError(f"--data {path}: missing array {name!r}")
    d_context = int(getattr(backbone.spec, "d_context", 0))
    if d_context < 1 or not callable(getattr(backbone, "context", None)):
        raise ValueError(f"the backbone takes no context (spec.d_context = {d_context}): nothing to target")
    languages, k = row_languages(path, arrays, meta), int(settings["instruction_steps"])
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
    from sim.libero.features import sequence_header

    kinds = {str(p): "context" if CONTEXT_META_KEY in sequence_header(p) else "action" for p in paths}
    if len(set(kinds.values())) > 1:
        raise ValueError(f"--data: mixes context-target and action-target files {kinds}")
    return next(iter(kinds.values()), "action")
