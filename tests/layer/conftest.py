"""Helpers shared by the layer tests."""

import argparse

from cli import train as train_cli


def train_args(**kw) -> argparse.Namespace:
    """``aura train`` options from keywords (``d_key=4`` -> ``--d-key 4``; ``True`` -> a bare flag)."""
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    argv = []
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return parser.parse_args(argv)
