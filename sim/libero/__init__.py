"""LIBERO-Long (libero_10): install check, gymnasium env, demonstrations and the evaluation harness.

Nothing here imports LIBERO at module import time; :func:`sim.libero.install.ensure_libero` runs first.
"""
