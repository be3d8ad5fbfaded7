"""Scripted privileged expert for LIBERO-Long (libero_10): reads simulator poses, never images."""

from policies.libero_expert.expert import ScriptedExpert

__all__ = ["ScriptedExpert"]
