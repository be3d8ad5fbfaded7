"""Gate training: the closed-loop action error plus write sparsity / budget (``train``), and the
``aura train`` sequence files (``data``)."""
