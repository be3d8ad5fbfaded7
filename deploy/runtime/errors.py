"""Errors raised at the deploy runtime's boundaries. Each names the file or tensor at fault."""

from __future__ import annotations

import os


class DeployFileError(ValueError):
    """A model, engine or journal file is missing, corrupt, truncated or does not match the model."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ModelFileError(DeployFileError):
    """An ONNX model or TensorRT engine cannot be used."""


class JournalError(DeployFileError):
    """A state journal or snapshot cannot be used."""


class InputError(ValueError):
    """A tensor handed to the runtime has the wrong type, shape or dtype; the message names it."""


class JournalCorruptError(JournalError):
    """A journal holds damaged data that is not a torn tail: recovery refuses and changes nothing.

    ``offset`` is the byte in ``path`` where the damage was found (0 for a file header).
    """

    def __init__(self, path: str | os.PathLike, offset: int, problem: str):
        self.offset = offset
        super().__init__(path, f"corrupt at byte {offset}: {problem}")
