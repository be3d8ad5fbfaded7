/* Vector primitives of the GDN-2 CPU kernel (cpu_kernel.c includes this inside its per-precision body,
 * where real, vec, W, GDN2_FN and GDN2_IVEC are defined): lane sums, e^x, row loads and stores, prefetch,
 * and the value rules of the fused check. No include guard: it is included once per precision. */

/* Sum of a vector's lanes as a fixed tree: fold the halves, then the quarters, ... (shuffles, no memory). */
INLINE real GDN2_FN(hsum)(vec x) {
#if GDN2_LANES == 8
    x += __builtin_shuffle(x, (GDN2_IVEC){4, 5, 6, 7, 0, 1, 2, 3});
    x += __builtin_shuffle(x, (GDN2_IVEC){2, 3, 0, 1, 6, 7, 4, 5});
    x += __builtin_shuffle(x, (GDN2_IVEC){1, 0, 3, 2, 5, 4, 7, 6});
#else
    x += __builtin_shuffle(x, (GDN2_IVEC){2, 3, 0, 1});
    x += __builtin_shuffle(x, (GDN2_IVEC){1, 0, 3, 2});
#endif
    return x[0];
}

/* e^x lane-wise, to about 1 ulp: x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite: ln2 in two parts, so
 * n ln2 is exact enough), e^r by its Taylor polynomial (degree 7 in float, 13 in double: truncation below
 * 1e-8 and 1e-17 relative), times 2^n built in the exponent bits. Below LO (e^x under the smallest normal)
 * the result is 0; NaN stays NaN. Vectorised here because a libm call per element, or a separate torch
 * pass (whose OpenMP threads then spin on the second core while this kernel runs), costs more. */
INLINE vec GDN2_FN(vexp)(vec x) {
#if GDN2_LANES == 8 /* LO = ln(smallest normal); SHIFT = 1.5 2^23 rounds to an integer */
    const real LO = -87.3365447f, HI = 88.0f, LOG2E = 1.44269504088896341f, SHIFT = 12582912.0f;
    const real LN2_HI = 0.693359375f, LN2_LO = -2.12194440e-4f;
    const int DEG = 7, MANT = 23, BIAS = 127;
#else /* SHIFT = 1.5 2^52 */
    const real LO = -708.39641853226408, HI = 709.0, LOG2E = 1.4426950408889634, SHIFT = 6755399441055744.0;
    const real LN2_HI = 6.93147180369123816490e-01, LN2_LO = 1.90821492927058770002e-10;
    const int DEG = 13, MANT = 52, BIAS = 1023;
#endif
    GDN2_IVEC under = x < LO;                            /* lanes that underflow: 0 at the end */
    vec xc = x;
    xc = (vec)(((GDN2_IVEC)xc & ~under) | ((GDN2_IVEC)((vec){0} + LO) & under));
    GDN2_IVEC over = xc > HI;
    xc = (vec)(((GDN2_IVEC)xc & ~over) | ((GDN2_IVEC)((vec){0} + HI) & over));
    vec t = xc * LOG2E + SHIFT;                          /* round(x log2 e) in the low mantissa bits */
    vec n = t - SHIFT;
    vec r = (xc - n * LN2_HI) - n * LN2_LO;
    real c[DEG + 1]; /* 1 / i!, folded to constants by the compiler */
    c[0] = 1;
    for (int i = 1; i <= DEG; i++) c[i] = c[i - 1] / (real)i;
    vec p = (vec){0} + c[DEG];
    for (int i = DEG - 1; i >= 0; i--) p = p * r + c[i];
    GDN2_IVEC e = ((GDN2_IVEC)t - (GDN2_IVEC)((vec){0} + SHIFT) + BIAS) << MANT;
    vec y = p * (vec)e;
    return (vec)((GDN2_IVEC)y & ~under);
}

/* dst (NV vectors, zero-padded) <- src (n contiguous reals, any alignment). Whole vectors when n fills
 * them (the common d = 32 case), else element by element; no memset/memcpy calls, whose setup costs more
 * than these few dozen bytes. */
INLINE void GDN2_FN(load_row)(vec *restrict dst, const real *restrict src, int64_t n, int64_t NV) {
    if (n == NV * W) {
        for (int64_t l = 0; l < NV; l++) __builtin_memcpy(dst + l, src + l * W, sizeof(vec));
        return;
    }
    real *d = (real *)dst;
    for (int64_t j = 0; j < n; j++) d[j] = src[j];
    for (int64_t j = n; j < NV * W; j++) d[j] = 0;
}

/* dst (n contiguous reals, any alignment) <- the first n lanes of src. */
INLINE void GDN2_FN(store_row)(real *restrict dst, const vec *restrict src, int64_t n, int64_t NV) {
    if (n == NV * W) {
        for (int64_t l = 0; l < NV; l++) __builtin_memcpy(dst + l * W, src + l, sizeof(vec));
        return;
    }
    const real *s = (const real *)src;
    for (int64_t j = 0; j < n; j++) dst[j] = s[j];
}

/* Prefetch the cache lines of n reals at p (for writing if w). */
INLINE void GDN2_FN(prefetch)(const real *p, int64_t n, int w) {
    for (int64_t off = 0; off < n; off += 64 / (int64_t)sizeof(real)) {
        if (w)
            __builtin_prefetch(p + off, 1, 3);
        else
            __builtin_prefetch(p + off, 0, 3);
    }
}

/* Lanes [l W, l W + W) of a row of n reals at src (any alignment); lanes past n are 0. */
INLINE vec GDN2_FN(load_vec)(const real *src, int64_t l, int64_t n) {
    vec x = (vec){0};
    if ((l + 1) * W <= n) {
        __builtin_memcpy(&x, src + l * W, sizeof x);
    } else {
        for (int64_t j = l * W; j < n; j++) x[j - l * W] = src[j];
    }
    return x;
}

/* The value rules of aura.memory.value_flags, in as few vector ops as the forward can carry unnoticed
 * (zero lanes pass every rule, so a row's padding never flags):
 *   finite:      fin += x * 0 stays 0, or becomes NaN for good once any x is NaN or +-inf (one FMA);
 *   log-decay g: finite, and the lanes with g > 0 OR-ed into a mask;
 *   gate b, w:   y = x - x^2 = x (1 - x) >= 0 exactly when 0 <= x <= 1 (false for NaN, and for +-inf,
 *                whose y is NaN or -inf). Rounding never flips the sign: for x in [0, 1] every step
 *                rounds a value >= 0, and outside it |x (1 - x)| >= min(|x|, 2^-23 or 2^-52), so it does
 *                not underflow to -0 (x = -0 gives y = -0, which passes, as -0 >= 0 does in torch). */
INLINE vec GDN2_FN(fin)(vec acc, vec x) { return acc + x * (real)0; }
INLINE GDN2_IVEC GDN2_FN(bad_gate)(GDN2_IVEC acc, vec x) { return acc | ~((x - x * x) >= 0); }

/* Whether any lane of m is set. */
INLINE int GDN2_FN(any)(GDN2_IVEC m) {
    int r = 0;
    for (int64_t l = 0; l < W; l++) r |= m[l] != 0;
    return r;
}
