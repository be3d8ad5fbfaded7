"""The single ``aura`` command-line entry point.

Subcommands live in the modules named below and are imported only when invoked, so that
``aura run`` (the deploy runtime) never imports torch. Each module exposes::

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (words) -> (module, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("bench", "memory"): ("aura.memory.bench", "naive vs chunk vs C kernel (vs fla on CUDA) timings"),
    ("bench", "stability"): ("aura.memory.stability", "max ||S||_F over long random and adversarial runs"),
    ("bench", "synthetic"): ("sim.synthetic.bench", "the controlled synthetic benchmark: all memory arms"),
    ("bench", "runtime"): ("deploy.bench", "per-step latency and memory growth of the deploy runtime"),
    ("train",): ("aura.training.cli", "train the memory and write gate from (features, actions) sequences"),
    ("export",): ("deploy.export", "export a checkpoint's per-step graph to ONNX (and TensorRT)"),
    ("run",): ("deploy.loop", "closed-loop control with the fixed-memory runtime, write and flash logs"),
    ("sim", "install"): ("sim.libero.install", "write LIBERO's config and verify its assets"),
    ("sim", "demos"): ("sim.libero.demos", "record scripted-expert demonstrations (robomimic HDF5)"),
    ("eval", "libero"): ("sim.libero.evaluate", "closed-loop LIBERO-Long evaluation of memory arms"),
}


def _usage() -> str:
    width = max(len(" ".join(words)) for words in COMMANDS)
    lines = ["usage: aura <command> [options]", "", "commands:"]
    for words, (_, help_) in COMMANDS.items():
        lines.append(f"  {' '.join(words):<{width}}  {help_}")
    lines.append("")
    lines.append("`aura <command> --help` shows a command's options.")
    return "\n".join(lines)


def _match(argv: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
    for n in (2, 1):
        words = tuple(argv[:n])
        if words in COMMANDS:
            return words, argv[n:]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from aura import __version__

        print(__version__)
        return 0
    found = _match(argv)
    if found is None:
        print(f"aura: unknown command {' '.join(argv[:2])!r}\n", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    words, rest = found
    module_name, help_ = COMMANDS[words]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog="aura " + " ".join(words), description=help_)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
