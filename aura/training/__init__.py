"""Gate training (closed-loop action error + write sparsity / budget), checkpoints, and `aura train`."""
