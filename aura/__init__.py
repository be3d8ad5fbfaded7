"""AURA: a constant-size gated-delta memory with an action-surprise write gate for frozen robot policies.

Import what you need from the submodules (``aura.memory``, ``aura.layer``, ...): this package does
not import torch at import time, so ``aura.cli`` stays cheap and the deploy runtime stays torch-free.
"""

__version__ = "0.1.0"
