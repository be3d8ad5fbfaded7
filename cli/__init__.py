"""The single ``aura`` command: one small module per subcommand, and one error boundary for all of them.

Each subcommand module parses its arguments and calls library functions; it exposes::

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int

and is imported only when invoked, so ``aura run`` (the deploy runtime) never imports torch. Errors:
a user error (bad path, corrupt or mismatched file, out-of-range number, a missing optional package:
``ValueError``, ``OSError``, ``ImportError`` and their subclasses, which every library error type here
derives from) ends the command with one line naming
the option or file and exit code 2; anything else is a bug and prints one line and exits 1. ``AURA_DEBUG=1``
shows the traceback instead. Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# (words) -> (module, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("bench", "memory"): ("cli.bench_memory", "naive vs chunk vs C kernel (vs fla on CUDA) timings"),
    ("bench", "stability"): ("cli.bench_stability", "max ||S||_F over long random and adversarial runs"),
    ("bench", "synthetic"): ("cli.bench_synthetic", "the controlled synthetic benchmark: all memory arms"),
    ("bench", "runtime"): ("cli.bench_runtime", "per-step latency and memory growth of the deploy runtime"),
    ("bench", "libero"): ("cli.bench_libero", "LIBERO env throughput with N workers, and where a step goes"),
    ("train",): ("cli.train", "train the memory and write gate from (features, actions) sequences"),
    ("train", "backbone"): ("cli.train_backbone", "train the LIBERO pixel backbone on demonstrations"),
    ("export",): ("cli.export", "export a checkpoint's per-step graph to ONNX (and TensorRT)"),
    ("export", "backbone"): ("cli.export_backbone", "export a backbone checkpoint to ONNX, with parity"),
    ("run",): ("cli.run", "closed-loop control with the fixed-memory runtime, write and flash logs"),
    ("sim", "install"): ("cli.sim_install", "write LIBERO's config and verify its assets"),
    ("sim", "demos"): ("cli.sim_demos", "record demonstrations from a backbone's actions (robomimic HDF5)"),
    ("sim", "features"): ("cli.sim_features", "run a backbone over demonstrations: `aura train` sequences"),
    ("sim", "context-data"): (
        "cli.sim_context",
        "transient-instruction sequences -> context targets (the memory restores the instruction)",
    ),
    ("sim", "rollouts"): (
        "cli.sim_rollouts",
        "closed-loop backbone rollouts labelled by the expert: `aura train` data",
    ),
    ("sim", "render-check"): ("cli.sim_render_check", "how much a render quality changes LIBERO's pixels"),
    ("sim", "bundle"): ("cli.sim_bundle", "pack what libero_10 needs into checksummed parts for a GPU"),
    ("sim", "bundle-setup"): (
        "cli.sim_bundle_setup",
        "on the GPU machine: stage, verify and set up the bundle",
    ),
    ("eval", "libero"): ("cli.eval_libero", "closed-loop LIBERO-Long evaluation of memory arms"),
}
USER_ERRORS = (ValueError, OSError, ImportError)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` shows each option's default and keeps the description's line breaks."""


def _usage() -> str:
    width = max(len(" ".join(words)) for words in COMMANDS)
    lines = ["usage: aura <command> [options]", "", "commands:"]
    for words, (_, help_) in COMMANDS.items():
        lines.append(f"  {' '.join(words):<{width}}  {help_}")
    lines += ["", "`aura <command> --help` shows a command's options; AURA_DEBUG=1 shows tracebacks."]
    return "\n".join(lines)


def _match(argv: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
    for n in (2, 1):
        words = tuple(argv[:n])
        if words in COMMANDS:
            return words, argv[n:]
    return None


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    return text


def build_parser(words: tuple[str, ...]) -> argparse.ArgumentParser:
    module_name, help_ = COMMANDS[words]
    module = importlib.import_module(module_name)
    doc = (module.__doc__ or "").strip()
    parser = argparse.ArgumentParser(
        prog="aura " + " ".join(words), description=doc or help_, formatter_class=HelpFormatter
    )
    module.add_arguments(parser)
    return parser


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
    prog = "aura " + " ".join(words)
    args = build_parser(words).parse_args(rest)  # argparse itself exits 2 on a malformed command line
    module = importlib.import_module(COMMANDS[words][0])
    debug = os.environ.get("AURA_DEBUG", "") not in ("", "0")
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"{prog}: {one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug, not a user error: still one line, the traceback on request
        if debug:
            raise
        print(f"{prog}: internal error: {type(err).__name__}: {one_line(err)} (AURA_DEBUG=1 shows the "
              "traceback)", file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
