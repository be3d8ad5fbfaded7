"""The whole AuraMem step as two Triton kernels (GPU development machines; imports torch and triton).

Same math as ``aura.layer.AuraMem.step`` (rule "gdn2", one head; s = K^-1/2, l2n(x) = x rsqrt(sum x^2 + eps)):

    kernel 1 (split-K GEMV, ~128 programs): P[j] = z[rows j] @ [W_proj | W_gate_z][rows j] (read once)
    kernel 2 (one program, everything else):
        y = sum_j P[j] + bias;  q, k = l2n(.), v;  b, w = sigmoid(.)
        alpha = exp(-exp(A_log) softplus(f + dt_bias))
        S' = Diag(alpha) S;  u = w*v - S'^T (b*k);  S~ = S' + k u^T;  norm guard folded into (alpha, u)
        signals log(eps + [||u||, s||W_c u||, ||W_c (S~ - S)^T s q||, ||w*v - aux||]) ++ z-view -> MLP -> p
        write = p > tau;  (S, aux) <- (S~, w*v) if write
        a = a_base + W_c S^T s q;  a_skip = a_base + W_c S_old^T s q

The read-out is the linear one only: a layer with ``readout="mlp"`` (aura.readout) is refused at construction.

The AURA-sized step (d_model 4096, 32 x 32 state) reads ~3.3 MB of weights, a small fraction of a GPU's
latency budget; the rest is launch latency, so the point is the kernel count: eager ``AuraMem.step``
launches ~60 kernels (docs/deploy.md, "Measured costs").
The naive twin is ``AuraMem.step`` itself; tests/deploy/test_fused_step.py compares both against float64.
Completion: the tail echoes a host-written token into ``done`` (pinned host memory on CUDA) after storing
every output, so a host can spin on it instead of paying a stream synchronisation
(``deploy.export.cuda_graph``). The kernels live in ``deploy.export.fused_kernels``. Runs under
``TRITON_INTERPRET=1`` on the CPU as well (slowly), which is how the CPU test suite checks it.
"""

from __future__ import annotations

import torch
import triton

from deploy.export.fused_kernels import _gemv_partial, _step_single, _step_tail


class FusedStep:
    """Packed weights of one AuraMem (rule gdn2, one head) and preallocated work buffers for the kernels."""

    def __init__(
        self,
        layer,
        ksplit: int | None = None,
        block_n: int = 64,
        single: bool = False,
        tail_warps: int = 1,
        echo: str | None = None,
    ):
        cfg = layer.config
        if cfg.readout != "linear":  # the tail computes a = a_base + W_c r; it would drop the MLP term
            raise NotImplementedError(
                f"fused step supports AuraMemConfig.readout 'linear' only (got readout {cfg.readout!r}); "
                "use the eager CUDA graph (fused=False) or the ONNX step graph"
            )
        if cfg.rule != "gdn2" or cfg.heads != 1 or cfg.gate_z_features <= 0:
            raise NotImplementedError(
                f"fused step supports rule 'gdn2', heads 1, gate_z_features > 0 (got {cfg.rule!r}, "
                f"heads {cfg.heads}, gate_z_features {cfg.gate_z_features}); use the eager CUDA graph"
            )
        for name, n in (
            ("d_key", cfg.d_key),
            ("d_val", cfg.d_val),
            ("gate_z_features", cfg.gate_z_features),
            ("gate_hidden", cfg.gate_hidden),
        ):
            if n & (n - 1):
                raise NotImplementedError(f"fused step needs a power-of-two {name}, got {n}")
        dev = layer.proj.weight.device
        d = cfg.d_model
        self.ksplit = ksplit or max(1, min(32, d // 128))
        if d % self.ksplit or (d // self.ksplit) & (d // self.ksplit - 1):
            raise NotImplementedError(f"d_model {d} must split into {self.ksplit} power-of-two row blocks")
        g = layer.gate
        w = torch.cat([layer.proj.weight, g.z_proj.weight], 0).detach().float()  # [N, d]
        bias = torch.cat([layer.proj.bias, g.z_proj.bias], 0).detach().float()
        n = w.shape[0]
        self.block_n = block_n
        self.n_pad = triton.cdiv(n, block_n) * block_n
        self.w = torch.zeros(d, self.n_pad, device=dev)
        self.w[:, :n] = w.t()
        self.bias = torch.zeros(self.n_pad, device=dev)
        self.bias[:n] = bias
        self.a_log = layer.A_log.detach().float().contiguous()
        self.dt_bias = layer.dt_bias.detach().float().contiguous()
        self.wc = layer.head.weight.detach().float().contiguous()  # [A, V]
        self.w1 = g.mlp[0].weight.detach().float().contiguous()
        self.b1 = g.mlp[0].bias.detach().float().contiguous()
        self.w2 = g.mlp[2].weight.detach().float().reshape(-1).contiguous()
        self.b2 = g.mlp[2].bias.detach().float().contiguous()
        self.cfg, self.scale, self.tau = cfg, cfg.d_key**-0.5, float(cfg.threshold)
        # no guard == a bound no fp32 state reaches (c is then exactly 1)
        self.max_norm = 3.0e38 if cfg.max_state_norm is None else float(cfg.max_state_norm)
        self.partial = torch.empty(self.ksplit, self.n_pad, device=dev)
        self.count = torch.zeros(1, dtype=torch.int32, device=dev)
        # single: one launch (arrival counter); else GEMV + tail. A one-warp tail reduces with shuffles only.
        self.single, self.tail_warps = single, tail_warps
        self.a_pad = triton.next_power_of_2(cfg.d_action)
        # token (host -> kernel) and done (kernel -> host): pinned on CUDA so both cross PCIe without a copy
        pin = dev.type == "cuda"
        # "fence": fence.sc.sys + posted store (inline PTX, CUDA only); "atomic": release exchange
        echo = echo or ("fence" if pin else "atomic")
        if echo not in ("fence", "atomic") or (echo == "fence" and not pin):
            raise ValueError(f"FusedStep: echo must be 'fence' (CUDA) or 'atomic', got {echo!r}")
        self.echo = 2 if echo == "fence" else 1
        self.token = torch.zeros(1, dtype=torch.int32, pin_memory=pin)
        self.done = torch.zeros(1, dtype=torch.int32, pin_memory=pin)

    def __call__(self, z, base, state, out_state, action, skip, write, prob, decay, key, delta, aux) -> None:
        """One step on flat fp32 buffers; ``write`` is int8 [1]. No allocation: safe to capture in a graph.

        z, base, action, skip, write and prob may live in pinned host memory (zero-copy over PCIe).
        """
        cfg = self.cfg
        bk = cfg.d_model // self.ksplit
        tail_args = (
            self.partial,
            self.bias,
            state,
            base,
            self.token,
            self.a_log,
            self.dt_bias,
            self.wc,
            self.w1,
            self.b1,
            self.w2,
            self.b2,
            out_state,
            action,
            skip,
            write,
            prob,
            decay,
            key,
            delta,
            aux,
            self.done,
            self.scale,
            self.tau,
            self.max_norm,
            cfg.d_action,
            self.ksplit,
            self.n_pad,
            cfg.d_key,
            cfg.d_val,
            self.a_pad,
            cfg.gate_z_features,
            cfg.gate_hidden,
            self.echo,
        )
        grid = (self.n_pad // self.block_n, self.ksplit)
        if self.single:
            _step_single[grid](z, self.w, self.count, *tail_args, bk, self.block_n, num_warps=self.tail_warps)
        else:
            _gemv_partial[grid](z, self.w, self.partial, self.n_pad, bk, self.block_n)
            _step_tail[(1,)](*tail_args, num_warps=self.tail_warps)
