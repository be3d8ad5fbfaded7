"""Benchmarks of AURA's parts, as libraries: each module's functions run a benchmark, print a table and
write JSON; the command lines that call them are in ``cli/`` (``aura bench <name>``).

- ``aura.bench.memory``: the memory rule's forms timed against each other (``aura bench memory``).
- ``aura.bench.stability``: the state norm over long random and adversarial runs (``aura bench stability``).
"""
