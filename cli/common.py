"""Argument helpers shared by the command modules: integer lists, range checks that name the option, and the
backbone options."""

from __future__ import annotations


def int_list(text: str, hi: int, option: str) -> list[int]:
    """``"0,2,5-9"`` -> sorted distinct ints, each in ``0..hi-1``; ValueError naming ``option`` otherwise."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            a, _, b = part.partition("-")
            lo_, hi_ = int(a), int(b) if b else int(a)
        except ValueError:
            raise ValueError(f"{option}: cannot parse {part!r} (use e.g. 0,2,5-9)") from None
        if not 0 <= lo_ <= hi_ < hi:
            raise ValueError(f"{option}: {part!r} is outside 0..{hi - 1}")
        out.extend(range(lo_, hi_ + 1))
    return sorted(set(out))


def at_least(args, minimum: float, *names: str) -> None:
    """ValueError naming the first of ``names`` (attribute names of ``args``) that is below ``minimum``."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum:g}, got {value}")


def add_backbone_arguments(parser, default: str | None = "libero_expert", what: str = "") -> None:
    """``--backbone NAME|module:Class`` and its repeatable ``--backbone-arg KEY=VALUE`` fields."""
    parser.add_argument(
        "--backbone", default=default, help=what or "registered backbone name or module:Class"
    )
    add_fields_argument(parser, "--backbone-arg", "a field of the backbone's config")


def add_fields_argument(parser, option: str, what: str) -> None:
    """A repeatable ``KEY=VALUE`` option (values parsed as JSON by ``policies.factory.parse_fields``)."""
    parser.add_argument(
        option, action="append", default=[], metavar="KEY=VALUE", help=f"{what} (JSON value; repeatable)"
    )


def per_task_counts(tasks: list[int], default: int, items: list[str], option: str, tasks_arg: str) -> dict:
    """Per-task counts: ``default`` for every task of ``tasks``, overridden by each ``TASKS=N`` of ``items``
    (ids, ranges, names or a group, all within ``tasks_arg``); errors name ``option``."""
    from sim.libero.tasks import parse_tasks

    counts = dict.fromkeys(tasks, default)
    for item in items:
        which, sep, n = item.partition("=")
        try:
            n = int(n)
        except ValueError:
            n = -1
        if not sep or n < 1:
            raise ValueError(f"{option} {item!r}: use TASKS=N with N >= 1, e.g. 7-9=60")
        for t in parse_tasks(which, option):
            if t not in counts:
                raise ValueError(f"{option} {item!r}: task {t} is not in --tasks {tasks_arg}")
            counts[t] = n
    return counts


def add_instruction_steps_argument(parser) -> None:
    """--instruction-steps K: the transient-instruction variant (sim.libero.env.instruction_at)."""
    parser.add_argument(
        "--instruction-steps",
        type=int,
        default=None,
        metavar="K",
        help="transient-instruction variant: the instruction only at steps t < K, then '' (default: always)",
    )
