/* Fused CPU kernel for the Gated DeltaNet-2 rule, forward and backward, float32 and float64.
 *
 * Built and loaded by aura/memory/cpu_fast.py (ctypes, no torch headers); the math and the adjoints are
 * stated in that module's docstring. Per sequence (one batch row, one head) and token t, with the state
 * S in R^{K x V} held row-major in a local buffer (rows are key dimensions):
 *
 *     S' = Diag(a_t) S_{t-1},  kb = b_t * k_t,  u = w_t * v_t - S'^T kb
 *     S_t = S' + k_t u^T,  o_t = S_t^T (s q_t)
 *
 * a_t = exp(g_t) is computed here, vectorised (vexp below), per token as it is needed. Forward makes two
 * passes over S per token (the decay fused with S'^T kb; the rank-1 update fused with the read) and saves
 * S at the start of every chunk of Cs tokens into ckpt [B, H, N, K, V], N = ceil(T / Cs), and S_T into
 * its own buffer (a copy out of ckpt would be a torch op whose OpenMP threads then spin). As it loads each
 * row, forward also tests it against the value rules (finite; g <= 0; b, w in [0, 1]; S0 finite) and
 * returns pass / fail per argument and sequence, so callers need no separate pass over the inputs (a torch
 * check reads them all a second time: about as long as this forward). Backward walks the
 * chunks in reverse: it recomputes the chunk's S_{t-1} and u_t from its checkpoint into scratch
 * (Cs V K + Cs V elements, sized to stay in L2), then back-propagates token by token. It holds S^T and dS^T (value dims as rows, key dims along the vector
 * lanes), so that dq, dk, db, dg accumulate as whole vectors and only u_j and du_j need horizontal sums.
 *
 * Rows are padded to whole 32-byte vectors (GCC vector extensions; W lanes each), so no loop has a scalar
 * tail; padding lanes start at 0 and stay 0. The sequence loops are instantiated with the vector count a
 * compile-time constant for float rows of 25-32 (AURA's d = 32), so the loops unroll and the accumulators
 * live in registers; other sizes run the same code with a run-time count. Horizontal sums use a fixed
 * shuffle tree, so results do not depend on alignment or on how sequences are split over threads.
 *
 * The file includes itself twice to instantiate the body for float (suffix _f32) and double (_f64).
 */
#ifndef GDN2_REAL

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))
/* Bits of the forward's per-sequence value flags, one per argument (cpu_fast.FLAG_NAMES, same order). */
enum { F_Q, F_K, F_V, F_G, F_B, F_W, F_S0 };
typedef float vec_f32 __attribute__((vector_size(32)));
typedef double vec_f64 __attribute__((vector_size(32)));
typedef int32_t ivec_f32 __attribute__((vector_size(32))); /* shuffle masks */
typedef int64_t ivec_f64 __attribute__((vector_size(32)));

#define GDN2_REAL float
#define GDN2_VEC vec_f32
#define GDN2_IVEC ivec_f32
#define GDN2_LANES 8
#define GDN2_FN(name) name##_f32
#include __FILE__
#undef GDN2_REAL
#undef GDN2_VEC
#undef GDN2_IVEC
#undef GDN2_LANES
#undef GDN2_FN

#define GDN2_REAL double
#define GDN2_VEC vec_f64
#define GDN2_IVEC ivec_f64
#define GDN2_LANES 4
#define GDN2_FN(name) name##_f64
#include __FILE__
#undef GDN2_REAL
#undef GDN2_VEC
#undef GDN2_IVEC
#undef GDN2_LANES
#undef GDN2_FN

/* ABI version: cpu_fast.py refuses a library whose version differs from the one it expects. */
int gdn2_abi_version(void) { return 5; }

#else /* the body, instantiated once per precision */

#define real GDN2_REAL
#define vec GDN2_VEC
#define W ((int64_t)GDN2_LANES)

#include "cpu_kernel_ops.h"

/* One step on S (K x NV vectors, in place): S_{t-1} -> S_t; u_t into u; if sq, o_t = S_t^T sq into o.
 * acc: NV vectors of scratch (the caller's, so no variable-length array is set up per token). */
INLINE void GDN2_FN(step)(vec *restrict S, const real *restrict a, const real *restrict kb,
                          const real *restrict k, const real *restrict sq, const vec *restrict wv,
                          vec *restrict u, vec *restrict o, vec *restrict acc, int64_t K, int64_t NV) {
    for (int64_t l = 0; l < NV; l++) acc[l] = (vec){0};
    for (int64_t i = 0; i < K; i++) { /* S' = Diag(a) S, acc = S'^T kb */
        vec *Si = S + i * NV;
        for (int64_t l = 0; l < NV; l++) {
            vec x = a[i] * Si[l];
            Si[l] = x;
            acc[l] += kb[i] * x;
        }
    }
    for (int64_t l = 0; l < NV; l++) u[l] = wv[l] - acc[l];
    if (sq) { /* S_t = S' + k u^T and o = S_t^T sq from the fresh rows */
        for (int64_t l = 0; l < NV; l++) acc[l] = (vec){0};
        for (int64_t i = 0; i < K; i++) {
            vec *Si = S + i * NV;
            for (int64_t l = 0; l < NV; l++) {
                vec x = Si[l] + k[i] * u[l];
                Si[l] = x;
                acc[l] += sq[i] * x;
            }
        }
        for (int64_t l = 0; l < NV; l++) o[l] = acc[l];
    } else {
        for (int64_t i = 0; i < K; i++)
            for (int64_t l = 0; l < NV; l++) S[i * NV + l] += k[i] * u[l];
    }
}

/* Forward of one sequence; ws: K NV + 3 NV + 3 NK vectors of scratch. Returns the sequence's flags: bit
 * F_Q.. F_S0 set when that argument holds a value its rule forbids. Each row is tested as it is loaded for
 * the step anyway (1 vector op per vector of q, k, v; 3 per vector of g, b, w; little beside the two
 * passes over S: docs/memory.md, "The CPU kernel"), so the check costs no second read of the inputs. */
INLINE int GDN2_FN(fwd_seq)(const real *q, const real *k, const real *v, const real *g, const real *b,
                            const real *w, const real *S0, real *o, real *ck, real *ST, int64_t T,
                            int64_t H, int64_t K, int64_t V, int64_t Cs, real scale, vec *ws, int64_t NV) {
    int64_t NK = (K + W - 1) / W;
    vec *S = ws, *u = S + K * NV, *wv = u + NV, *ov = wv + NV, *av = ov + NV, *kb = av + NK, *sq = kb + NK;
    vec acc[NV], fq = {0}, fk = {0}, fv = {0}, fg = {0}, fs = {0};
    GDN2_IVEC pos_g = {0}, fb = {0}, fw = {0};
    for (int64_t i = 0; i < K; i++) {
        if (S0) {
            GDN2_FN(load_row)(S + i * NV, S0 + i * V, V, NV);
            for (int64_t l = 0; l < NV; l++) fs = GDN2_FN(fin)(fs, S[i * NV + l]);
            memcpy(ck + i * V, S0 + i * V, V * sizeof(real));
        } else {
            memset(S + i * NV, 0, NV * sizeof(vec));
            memset(ck + i * V, 0, V * sizeof(real));
        }
    }
    for (int64_t t = 0; t < T; t++) {
        int64_t rk = t * H * K, rv = t * H * V;
        for (int64_t l = 0; l < NK; l++) { /* kb = b * k, sq = s q, a = e^g */
            vec qx = GDN2_FN(load_vec)(q + rk, l, K), kx = GDN2_FN(load_vec)(k + rk, l, K);
            vec bx = GDN2_FN(load_vec)(b + rk, l, K), gx = GDN2_FN(load_vec)(g + rk, l, K);
            fq = GDN2_FN(fin)(fq, qx);
            fk = GDN2_FN(fin)(fk, kx);
            fg = GDN2_FN(fin)(fg, gx);
            pos_g |= gx > 0;
            fb = GDN2_FN(bad_gate)(fb, bx);
            kb[l] = bx * kx;
            sq[l] = scale * qx;
            av[l] = GDN2_FN(vexp)(gx);
        }
        for (int64_t l = 0; l < NV; l++) { /* wv = w * v */
            vec vx = GDN2_FN(load_vec)(v + rv, l, V), wx = GDN2_FN(load_vec)(w + rv, l, V);
            fv = GDN2_FN(fin)(fv, vx);
            fw = GDN2_FN(bad_gate)(fw, wx);
            wv[l] = wx * vx;
        }
        GDN2_FN(step)(S, (const real *)av, (const real *)kb, k + rk, (const real *)sq, wv, u, ov, acc, K,
                      NV);
        GDN2_FN(store_row)(o + rv, ov, V, NV);
        if ((t + 1) % Cs == 0 || t + 1 == T) {
            real *dst = t + 1 < T ? ck + (t + 1) / Cs * K * V : ST; /* next chunk's start, or S_T */
            if (dst)
                for (int64_t i = 0; i < K; i++) memcpy(dst + i * V, S + i * NV, V * sizeof(real));
        }
    }
    return GDN2_FN(any)(fq != 0) << F_Q | GDN2_FN(any)(fk != 0) << F_K | GDN2_FN(any)(fv != 0) << F_V |
           GDN2_FN(any)((fg != 0) | pos_g) << F_G | GDN2_FN(any)(fb) << F_B | GDN2_FN(any)(fw) << F_W |
           GDN2_FN(any)(fs != 0) << F_S0;
}

/* Backward of one sequence, in the transposed layout: S^T and dS^T as V rows of NK vectors (key dims
 * along the lanes), so the per-key gradients (dq, dk, db, dg) accumulate as whole vectors over the V rows
 * and only du_j = dS^T_j . k needs a horizontal sum (the row layout would need four per key row).
 * ws: (Cs + 2) V NK + (Cs + 5) NK vectors + (Cs + 1) V reals of scratch. */
INLINE void GDN2_FN(bwd_seq)(const real *q, const real *k, const real *v, const real *g, const real *b,
                             const real *w, const real *ck, const real *dout, const real *dST, real *dq,
                             real *dk, real *dv, real *dg, real *db, real *dw, real *dS0, int64_t T,
                             int64_t H, int64_t K, int64_t V, int64_t Cs, real scale, vec *ws, int64_t NK) {
    int64_t N = (T + Cs - 1) / Cs, VN = V * NK;
    vec *P = ws, *dS = P + (Cs + 1) * VN, *av = dS + VN, *kv = av + NK, *bv = kv + NK, *kbv = bv + NK;
    vec *sqv = kbv + NK, *A = sqv + NK, aq[NK], ak[NK], akb[NK], ag[NK];
    real *U = (real *)(A + Cs * NK), *du = U + Cs * V;
    /* zero-padded key rows: padding lanes of a, k, b, q are 0, so the padding of S^T and dS^T stays 0 */
    memset(dS, 0, VN * sizeof(vec));
    if (dST)
        for (int64_t i = 0; i < K; i++)
            for (int64_t j = 0; j < V; j++) ((real *)(dS + j * NK))[i] = dST[i * V + j];
    for (int64_t c = N - 1; c >= 0; c--) {
        int64_t t0 = c * Cs, t1 = t0 + Cs < T ? t0 + Cs : T;
        /* recompute S_{t-1}^T into P[t - t0] and u_t into U[t - t0] from the chunk's checkpoint */
        memset(P, 0, VN * sizeof(vec));
        for (int64_t i = 0; i < K; i++)
            for (int64_t j = 0; j < V; j++) ((real *)(P + j * NK))[i] = ck[(c * K + i) * V + j];
        for (int64_t t = t0; t < t1; t++) { /* the chunk's last S_t lands in P[Cs], unused */
            int64_t rk = t * H * K, rv = t * H * V;
            vec *Sp = P + (t - t0) * VN, *Sn = Sp + VN, *At = A + (t - t0) * NK;
            real *u = U + (t - t0) * V;
            GDN2_FN(load_row)(av, g + rk, K, NK);
            GDN2_FN(load_row)(kv, k + rk, K, NK);
            GDN2_FN(load_row)(bv, b + rk, K, NK);
            for (int64_t l = 0; l < NK; l++) { /* a = e^g (padding: 1), kept for the reverse pass */
                av[l] = GDN2_FN(vexp)(av[l]);
                At[l] = av[l];
            }
            /* the reverse pass below walks t downwards, which the hardware prefetcher follows poorly:
             * fetch its other rows now, in ascending order (the chunk's rows fit in L2 beside P) */
            GDN2_FN(prefetch)(q + rk, K, 0);
            GDN2_FN(prefetch)(dout + rv, V, 0);
            GDN2_FN(prefetch)(dq + rk, K, 1);
            GDN2_FN(prefetch)(dk + rk, K, 1);
            GDN2_FN(prefetch)(db + rk, K, 1);
            GDN2_FN(prefetch)(dg + rk, K, 1);
            GDN2_FN(prefetch)(dv + rv, V, 1);
            GDN2_FN(prefetch)(dw + rv, V, 1);
            for (int64_t l = 0; l < NK; l++) kbv[l] = bv[l] * kv[l] * av[l]; /* u_j = wv_j - (kb a) . S^T_j */
            for (int64_t j = 0; j < V; j++) {
                vec acc = (vec){0};
                for (int64_t l = 0; l < NK; l++) acc += kbv[l] * Sp[j * NK + l];
                u[j] = w[rv + j] * v[rv + j] - GDN2_FN(hsum)(acc);
                for (int64_t l = 0; l < NK; l++) Sn[j * NK + l] = av[l] * Sp[j * NK + l] + u[j] * kv[l];
            }
        }
        for (int64_t t = t1 - 1; t >= t0; t--) {
            int64_t rk = t * H * K, rv = t * H * V;
            const vec *Pt = P + (t - t0) * VN;
            const real *u = U + (t - t0) * V, *dot = dout + rv;
            for (int64_t l = 0; l < NK; l++) av[l] = A[(t - t0) * NK + l];
            GDN2_FN(load_row)(kv, k + rk, K, NK);
            GDN2_FN(load_row)(bv, b + rk, K, NK);
            GDN2_FN(load_row)(sqv, q + rk, K, NK);
            real udo = 0;
            for (int64_t j = 0; j < V; j++) udo += u[j] * dot[j];
            for (int64_t l = 0; l < NK; l++) {
                kbv[l] = bv[l] * kv[l];
                sqv[l] *= scale;
                aq[l] = ak[l] = (vec){0};
            }
            /* pass A, row j of dS_t^T: += do_j (s q); aq += do_j S_{t-1}^T_j; ak += u_j dS_t^T_j; du_j.
             * (Fusing pass B into this loop, possible since du_j needs only row j, measured slower: the
             * horizontal sum then sits between the two halves of every row.) */
            for (int64_t j = 0; j < V; j++) {
                vec *dSj = dS + j * NK, acc = (vec){0};
                const vec *Pj = Pt + j * NK;
                for (int64_t l = 0; l < NK; l++) {
                    vec d = dSj[l] + dot[j] * sqv[l];
                    dSj[l] = d;
                    aq[l] += dot[j] * Pj[l];
                    ak[l] += u[j] * d;
                    acc += kv[l] * d;
                }
                du[j] = GDN2_FN(hsum)(acc);
            }
            for (int64_t j = 0; j < V; j++) {
                dw[rv + j] = du[j] * v[rv + j];
                dv[rv + j] = du[j] * w[rv + j];
            }
            /* pass B: dS'^T_j = dS_t^T_j - du_j kb; akb += du_j S_{t-1}^T_j; ag += S_{t-1}^T_j * dS'^T_j;
             * dS_{t-1}^T_j = a * dS'^T_j */
            for (int64_t l = 0; l < NK; l++) akb[l] = ag[l] = (vec){0};
            for (int64_t j = 0; j < V; j++) {
                vec *dSj = dS + j * NK;
                const vec *Pj = Pt + j * NK;
                for (int64_t l = 0; l < NK; l++) {
                    vec d = dSj[l] - du[j] * kbv[l];
                    akb[l] += du[j] * Pj[l];
                    ag[l] += Pj[l] * d;
                    dSj[l] = av[l] * d;
                }
            }
            /* dq = s (a * aq + k (u . do)); dkb = -a * akb; dk = ak + b dkb; db = k dkb; dg = a * ag */
            for (int64_t l = 0; l < NK; l++) {
                vec dkb = -(av[l] * akb[l]);
                aq[l] = scale * (av[l] * aq[l] + udo * kv[l]);
                ak[l] += bv[l] * dkb;
                akb[l] = kv[l] * dkb;
                ag[l] = av[l] * ag[l];
            }
            GDN2_FN(store_row)(dq + rk, aq, K, NK);
            GDN2_FN(store_row)(dk + rk, ak, K, NK);
            GDN2_FN(store_row)(db + rk, akb, K, NK);
            GDN2_FN(store_row)(dg + rk, ag, K, NK);
        }
    }
    if (dS0)
        for (int64_t i = 0; i < K; i++)
            for (int64_t j = 0; j < V; j++) dS0[i * V + j] = ((real *)(dS + j * NK))[i];
}

/* Aligned scratch of n vectors; NULL on failure. */
static vec *GDN2_FN(alloc)(int64_t n) {
    return (vec *)aligned_alloc(64, ((size_t)n * sizeof(vec) + 63) / 64 * 64);
}

/* Calls BODY with NX (vectors per padded row) a compile-time constant for float rows of 25-32 (AURA's
 * d = 32: 4 vectors): the loops then unroll and the accumulators stay in registers (the speed-up, and the
 * build time each specialisation adds, are in docs/memory.md, "The CPU kernel"). Other sizes, and float64
 * (the tests' precision), run the same code with a run-time NX; build time is why there is only this one. */
#undef GDN2_DISPATCH
#if GDN2_LANES == 8
#define GDN2_DISPATCH(NXR, BODY)                                                                       \
    switch (NXR) {                                                                                     \
    case 4: { const int64_t NX = 4; BODY; } break;                                                     \
    default: { const int64_t NX = NXR; BODY; }                                                         \
    }
#else
#define GDN2_DISPATCH(NXR, BODY) { const int64_t NX = NXR; BODY; }
#endif

/* y = e^x over n elements with the kernel's vexp (exported for its test against libm). */
void GDN2_FN(gdn2_exp)(const real *x, real *y, int64_t n) {
    for (int64_t i = 0; i < n; i += W) {
        int64_t m = n - i < W ? n - i : W;
        vec t;
        GDN2_FN(load_row)(&t, x + i, m, 1);
        t = GDN2_FN(vexp)(t);
        GDN2_FN(store_row)(y + i, &t, m, 1);
    }
}

/* Forward for sequences [seq0, seq1) of the B*H (sequence n = batch n / H, head n % H). q, k, g, b are
 * [B, T, H, K]; v, w, o [B, T, H, V]; S0 [B, H, K, V] or NULL (zero state); ckpt [B, H, N, K, V];
 * ST [B, H, K, V] (S_T) or NULL; flags [B H] receives each sequence's value flags (bits F_Q.. F_S0).
 * Returns 0, or -1 if scratch could not be allocated. */
int GDN2_FN(gdn2_fwd)(const real *q, const real *k, const real *v, const real *g, const real *b,
                      const real *w, const real *S0, real *o, real *ckpt, real *ST, int32_t *flags,
                      int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t Cs, real scale,
                      int64_t seq0, int64_t seq1) {
    (void)B;
    int64_t NVR = (V + W - 1) / W, N = (T + Cs - 1) / Cs;
    vec *ws = GDN2_FN(alloc)((K + 3) * NVR + 3 * ((K + W - 1) / W));
    if (!ws) return -1;
    for (int64_t n = seq0; n < seq1; n++) {
        int64_t bb = n / H, h = n % H, sk = (bb * T * H + h) * K, sv = (bb * T * H + h) * V;
        const real *S0n = S0 ? S0 + n * K * V : NULL;
        real *ck = ckpt + n * N * K * V, *STn = ST ? ST + n * K * V : NULL;
        GDN2_DISPATCH(NVR, flags[n] = GDN2_FN(fwd_seq)(q + sk, k + sk, v + sv, g + sk, b + sk, w + sv,
                                                       S0n, o + sv, ck, STn, T, H, K, V, Cs, scale, ws, NX))
    }
    free(ws);
    return 0;
}

/* Backward for sequences [seq0, seq1): gradients of q, k, v, g, b, w and S0 from
 * dout [B, T, H, V] and dST [B, H, K, V] (NULL: zero). dS0 may be NULL. Every gradient is overwritten.
 * Returns 0, or -1 if scratch could not be allocated. */
int GDN2_FN(gdn2_bwd)(const real *q, const real *k, const real *v, const real *g, const real *b,
                      const real *w, const real *ckpt, const real *dout, const real *dST, real *dq,
                      real *dk, real *dv, real *dg, real *db, real *dw, real *dS0, int64_t B, int64_t T,
                      int64_t H, int64_t K, int64_t V, int64_t Cs, real scale, int64_t seq0, int64_t seq1) {
    (void)B;
    int64_t NKR = (K + W - 1) / W, N = (T + Cs - 1) / Cs;
    vec *ws = GDN2_FN(alloc)((Cs + 2) * V * NKR + (Cs + 5) * NKR + ((Cs + 1) * V + W - 1) / W);
    if (!ws) return -1;
    for (int64_t n = seq0; n < seq1; n++) {
        int64_t bb = n / H, h = n % H, sk = (bb * T * H + h) * K, sv = (bb * T * H + h) * V;
        const real *dSTn = dST ? dST + n * K * V : NULL;
        real *dS0n = dS0 ? dS0 + n * K * V : NULL;
        const real *ck = ckpt + n * N * K * V;
        GDN2_DISPATCH(NKR, GDN2_FN(bwd_seq)(q + sk, k + sk, v + sv, g + sk, b + sk, w + sv, ck, dout + sv,
                                            dSTn, dq + sk, dk + sk, dv + sv, dg + sk, db + sk, dw + sv,
                                            dS0n, T, H, K, V, Cs, scale, ws, NX))
    }
    free(ws);
    return 0;
}

#undef W
#undef vec
#undef real
#endif
