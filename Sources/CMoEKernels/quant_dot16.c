// AVX2 decode kernels on 16-bit activations: rows of ggml blocks dotted with the activations of one token (decode) or a few (batched
// decode), see include/moe_quant_dot.h. The block layouts are ggml's, declared in Sources/MoEKernels/Quant/*.swift.
//
// Integer products, as llama.cpp's CPU kernels do, but with 16-bit activations instead of its 8-bit ones: the
// activations are quantised once per call to int16, one f32 scale per 32 values (error ≤ 1/65534 of the group's
// largest magnitude, ~1e-5 relative on a dot product, against llama.cpp's ~1e-3), the weight codes widened to int16
// and multiplied with vpmaddwd, and each 32 products scaled once in f32.
#include "moe_quant_dot.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include "quant_common.h"

int moe_quant_avx2_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

/// The activation vector as the kernels read it. Per group g of 32 values: `d[g]`, and the 32 int16 codes
/// `q[32g ..< 32g+32]` with x ≈ d[g]·q, in the order the kernels widen 32 bytes (values 0–7, 16–23, then 8–15,
/// 24–31: what vpunpcklbw and vpunpckhbw give); `sum16[2g]` and `sum16[2g+1]`: d[g]·Σq over values 0–15 and 16–31;
/// `sum32[g]` their sum.
/// Offsets and minimums use these sums of the quantised values, so that every kernel computes exactly Σ w·(d·q):
/// its only error is the activations' rounding, against the real weights.
typedef struct {
    const int16_t *q;
    const float *d;
    const float *sum16;
    const float *sum32;
} activations;

/// x[0 ..< n] (n a multiple of 32) as `activations`: per group of 32, d = amax / 32767 and q = round(x / d).
TARGET static void quantize_activations(const float *x, size_t n, int16_t *q, float *d, float *sum16, float *sum32) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (size_t g = 0; g < n / 32; g++, x += 32, q += 32) {
        __m256 v[4], m = _mm256_setzero_ps(), s = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
            s = _mm256_add_ps(s, v[k]);
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        const float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
        // max drops NaN; a NaN scale keeps a NaN or infinite activation visible in every output, as f32 would.
        const float dg = isfinite(hsum(s)) ? amax / 32767.0f : NAN;
        const __m256 inv = _mm256_set1_ps(amax > 0 ? 32767.0f / amax : 0.0f);
        __m256i c[4];
        for (int k = 0; k < 4; k++) c[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], inv));
        // packs works within 128-bit lanes (a0-3 b0-3 a4-7 b4-7); the permute makes it a0-7 b0-7.
        _mm256_storeu_si256((__m256i *)q, _mm256_permute4x64_epi64(_mm256_packs_epi32(c[0], c[2]), 0xD8));
        _mm256_storeu_si256((__m256i *)(q + 16), _mm256_permute4x64_epi64(_mm256_packs_epi32(c[1], c[3]), 0xD8));
        d[g] = dg;
        sum16[2 * g] = dg * hsum(_mm256_cvtepi32_ps(_mm256_add_epi32(c[0], c[1])));
        sum16[2 * g + 1] = dg * hsum(_mm256_cvtepi32_ps(_mm256_add_epi32(c[2], c[3])));
        sum32[g] = sum16[2 * g] + sum16[2 * g + 1];
    }
}

/// 32 weight codes widened to int16 in the activations' order (vpunpcklbw / vpunpckhbw): once per block, shared by
/// every token.
typedef struct {
    __m256i lo, hi;
} widened;

INLINE widened widen_unsigned(__m256i v) {
    const __m256i zero = _mm256_setzero_si256();
    return (widened){_mm256_unpacklo_epi8(v, zero), _mm256_unpackhi_epi8(v, zero)};
}

INLINE widened widen_signed(__m256i v) {
    const __m256i sign = _mm256_cmpgt_epi8(_mm256_setzero_si256(), v);
    return (widened){_mm256_unpacklo_epi8(v, sign), _mm256_unpackhi_epi8(v, sign)};
}

/// Σ over the 32 products of `w` with the int16 codes at `x`, as f32: eight lanes, the first four summing values
/// 0–15, the last four values 16–31.
INLINE __m256 dot32(widened w, const int16_t *x) {
    return _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_madd_epi16(w.lo, _mm256_loadu_si256((const __m256i *)x)),
                                               _mm256_madd_epi16(w.hi, _mm256_loadu_si256((const __m256i *)(x + 16)))));
}

// Each type: `<type>_block` adds one block of a row, dotted with `nt` tokens' activations (1 ≤ nt ≤ max_tokens; a
// constant where it is inlined, so that its loops unroll), to each token's accumulators: acc[t][0], acc[t][1] for
// the integer products (two chains, for the FMA latency) and off[t] for f32 terms subtracted at the end (offsets,
// minimums). The weight codes are unpacked once per block for all tokens. (Measured on AMD EPYC: alternate blocks
// into separate accumulators were no faster, and two rows interleaved to share activation loads 4× slower.)
enum { max_tokens = 4 };

// Q8_0: f16 d, 32 signed bytes; value = d·q.
INLINE void q8_0_block(const uint8_t *b, const activations *a, int nt, size_t v, __m256 (*acc)[2], float *off) {
    (void)off;
    const widened w = widen_signed(_mm256_loadu_si256((const __m256i *)(b + 2)));
    const float d = half_at(b);
    for (int t = 0; t < nt; t++)
        acc[t][0] = _mm256_fmadd_ps(dot32(w, a[t].q + v), _mm256_set1_ps(d * a[t].d[v / 32]), acc[t][0]);
}

// Q4_0: f16 d, 16 bytes of nibbles (value j in the low nibble of byte j, value j+16 in its high nibble);
// value = d·(q − 8).
INLINE void q4_0_block(const uint8_t *b, const activations *a, int nt, size_t v, __m256 (*acc)[2], float *off) {
    const __m128i m0f = _mm_set1_epi8(0x0F), qs = _mm_loadu_si128((const __m128i *)(b + 2));
    const widened w = widen_unsigned(_mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), m0f), _mm_and_si128(qs, m0f)));
    const float d = half_at(b);
    for (int t = 0; t < nt; t++) {
        acc[t][0] = _mm256_fmadd_ps(dot32(w, a[t].q + v), _mm256_set1_ps(d * a[t].d[v / 32]), acc[t][0]);
        off[t] += 8 * d * a[t].sum32[v / 32];
    }
}

// Q6_K: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales (one per 16 values), f16 d;
// value = d·scale·(q − 32).
INLINE void q6_K_block(const uint8_t *b, const activations *a, int nt, size_t v, __m256 (*acc)[2], float *off) {
    (void)off;
    const __m256 d = _mm256_set1_ps(half_at(b + 208));
    const __m128i sc = _mm_loadu_si128((const __m128i *)(b + 192));
    const __m256 sc0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)), d);
    const __m256 sc1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8))), d);
    // The offset, 32·d·Σ scale·(Σ of the quantised activations of its 16), taken off lane by lane.
    for (int t = 0; t < nt; t++) {
        acc[t][0] = _mm256_fnmadd_ps(_mm256_mul_ps(sc0, _mm256_set1_ps(32)), _mm256_loadu_ps(a[t].sum16 + v / 16), acc[t][0]);
        acc[t][1] = _mm256_fnmadd_ps(_mm256_mul_ps(sc1, _mm256_set1_ps(32)), _mm256_loadu_ps(a[t].sum16 + v / 16 + 8), acc[t][1]);
    }
    // The f32 factor of each 32 values' eight lanes: d·scale of its first 16 (four lanes) and of its second 16
    // (four lanes); for one token with its activation scale folded in, for several times each token's.
    __m256 s[2] = {sc0, sc1};
    if (nt == 1) {
        const __m256 dx = _mm256_loadu_ps(a[0].d + v / 32);
        s[0] = _mm256_mul_ps(sc0, _mm256_permutevar8x32_ps(dx, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3)));
        s[1] = _mm256_mul_ps(sc1, _mm256_permutevar8x32_ps(dx, _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7)));
    }
    for (int n = 0; n < 2; n++) {
        __m256i q[4];
        q6_K_codes(b, n, q);
        for (int k = 0; k < 4; k++) {
            const widened w = widen_unsigned(q[k]);
            const __m256 f = _mm256_permutevar8x32_ps(s[n], _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k,
                                                                            2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1));
            const size_t x = v + 128 * n + 32 * k;
            for (int t = 0; t < nt; t++) {
                const __m256 p = nt == 1 ? dot32(w, a[t].q + x) : _mm256_mul_ps(dot32(w, a[t].q + x), _mm256_set1_ps(a[t].d[x / 32]));
                acc[t][k & 1] = _mm256_fmadd_ps(p, f, acc[t][k & 1]);
            }
        }
    }
}

// Q4_K: f16 d and dmin, 12 bytes of 6-bit scales and mins (one each per 32 values), 128 bytes of nibbles
// (per 64 values: the first 32 in the low nibbles, the next 32 in the high); value = d·scale·q − dmin·min.
INLINE void q4_K_block(const uint8_t *b, const activations *a, int nt, size_t v, __m256 (*acc)[2], float *off) {
    (void)off;
    // The 12 bytes as three words: scales 0–3 and mins 0–3 are the low 6 bits of bytes 0–3 and 4–7; scale and
    // min j+4 take their low 4 bits from byte j+8 (low / high nibble), their high 2 bits from bytes j and j+4.
    uint32_t w[3], sm[2];
    memcpy(w, b + 4, 12);
    sm[0] = w[0] & 0x3F3F3F3F;
    sm[1] = (w[2] & 0x0F0F0F0F) | (((w[0] >> 6) & 0x03030303) << 4);
    const uint32_t mins[2] = {w[1] & 0x3F3F3F3F, ((w[2] >> 4) & 0x0F0F0F0F) | (((w[1] >> 6) & 0x03030303) << 4)};
    __m256 scales = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sm))),
                                  _mm256_set1_ps(half_at(b)));
    if (nt == 1) scales = _mm256_mul_ps(scales, _mm256_loadu_ps(a[0].d + v / 32));
    const __m256 m = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)mins))),
                                   _mm256_set1_ps(half_at(b + 2)));
    // The minimums, dmin·min·(Σ of the quantised activations of its 32), taken off lane by lane.
    for (int t = 0; t < nt; t++) acc[t][1] = _mm256_fnmadd_ps(m, _mm256_loadu_ps(a[t].sum32 + v / 32), acc[t][1]);
    const __m256i m0f = _mm256_set1_epi8(0x0F);
    for (int p = 0; p < 4; p++) {
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * p));
        const size_t x0 = v + 64 * p, x1 = x0 + 32;
        for (int t = 0; t < nt; t++) {
            // (Widened inside the token loop, where the compiler shares it between tokens: hoisted above, it kept
            // every code vector live and spilled the one-token kernel.)
            __m256 s0 = dot32(widen_unsigned(_mm256_and_si256(Q, m0f)), a[t].q + x0);
            __m256 s1 = dot32(widen_unsigned(_mm256_and_si256(_mm256_srli_epi16(Q, 4), m0f)), a[t].q + x1);
            const __m256 f0 = _mm256_permutevar8x32_ps(scales, _mm256_set1_epi32(2 * p));
            const __m256 f1 = _mm256_permutevar8x32_ps(scales, _mm256_set1_epi32(2 * p + 1));
            if (nt > 1) {
                s0 = _mm256_mul_ps(s0, _mm256_set1_ps(a[t].d[x0 / 32]));
                s1 = _mm256_mul_ps(s1, _mm256_set1_ps(a[t].d[x1 / 32]));
            }
            acc[t][0] = _mm256_fmadd_ps(s0, f0, acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(s1, f1, acc[t][1]);
        }
    }
}

/// `<type>_rows`: out[t·ldo + r] (=|+=) row r · token t for the rows in [row_begin, row_end) and the `tokens`
/// tokens of `a`, at most max_tokens at a time per row (the row stays in L1 for the next group).
#define ROWS_KERNEL(type, block_bytes, block_values)                                                               \
    INLINE void type##_row(const uint8_t *b, size_t blocks, const activations *a, int nt, float *out, size_t ldo,  \
                           int accumulate) {                                                                       \
        __m256 acc[max_tokens][2];                                                                                 \
        float off[max_tokens];                                                                                     \
        for (int t = 0; t < nt; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps(), off[t] = 0;                      \
        for (size_t i = 0; i < blocks; i++) type##_block(b + i * block_bytes, a, nt, i * block_values, acc, off);  \
        for (int t = 0; t < nt; t++) {                                                                             \
            const float s = hsum(_mm256_add_ps(acc[t][0], acc[t][1])) - off[t];                                    \
            out[t * ldo] = accumulate ? out[t * ldo] + s : s;                                                      \
        }                                                                                                          \
    }                                                                                                              \
    TARGET static void type##_rows(const uint8_t *base, size_t row_bytes, size_t blocks, const activations *a,     \
                                   size_t tokens, float *out, size_t ldo, size_t row_begin, size_t row_end,        \
                                   int accumulate) {                                                               \
        if (tokens == 1) {                                                                                         \
            for (size_t r = row_begin; r < row_end; r++) {                                                         \
                const uint8_t *b = base + r * row_bytes;                                                           \
                prefetch_ahead(b, row_bytes, (row_end - r) * row_bytes);                                           \
                type##_row(b, blocks, a, 1, out + r, ldo, accumulate);                                             \
            }                                                                                                      \
            return;                                                                                                \
        }                                                                                                          \
        for (size_t r = row_begin; r < row_end; r++) {                                                             \
            const uint8_t *b = base + r * row_bytes;                                                               \
            prefetch_ahead(b, row_bytes, (row_end - r) * row_bytes);                                               \
            for (size_t t = 0; t < tokens; t += max_tokens) {                                                      \
                float *o = out + t * ldo + r;                                                                      \
                switch (tokens - t) {                                                                              \
                case 1: type##_row(b, blocks, a + t, 1, o, ldo, accumulate); break;                                \
                case 2: type##_row(b, blocks, a + t, 2, o, ldo, accumulate); break;                                \
                case 3: type##_row(b, blocks, a + t, 3, o, ldo, accumulate); break;                                \
                default: type##_row(b, blocks, a + t, 4, o, ldo, accumulate); break;                               \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
    }

ROWS_KERNEL(q8_0, 34, 32)
ROWS_KERNEL(q4_0, 18, 32)
ROWS_KERNEL(q6_K, 210, 256)
ROWS_KERNEL(q4_K, 144, 256)

typedef void (*rows_kernel)(const uint8_t *base, size_t row_bytes, size_t blocks, const activations *a, size_t tokens,
                            float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate);

/// Quantises each token's x (`n` values, row stride ldx) once, then runs `kernel` over the rows.
static void dot_rows(rows_kernel kernel, size_t n, const void *base, size_t row_bytes, size_t blocks, const float *x,
                     size_t ldx, size_t tokens, float *out, size_t ldo, size_t row_begin, size_t row_end,
                     int accumulate) {
    // One token of up to 8,192 values (decode) on the stack; more from the heap. Per token: n int16 codes, then
    // n/8 floats (d, sum16, sum32).
    enum { stack_bytes = 8192 * 2 + 8192 / 8 * 4, max_stack_tokens = 16 };
    _Alignas(32) uint8_t on_stack[stack_bytes];
    activations a_on_stack[max_stack_tokens];
    const size_t per_token = n * sizeof(int16_t) + n / 8 * sizeof(float);
    uint8_t *buffer = on_stack;
    activations *a = a_on_stack;
    void *heap = NULL;
    if (per_token * tokens > stack_bytes || tokens > max_stack_tokens) {
        heap = malloc(per_token * tokens + tokens * sizeof(activations));
        if (!heap) abort();
        a = heap;
        buffer = (uint8_t *)heap + tokens * sizeof(activations);
    }
    for (size_t t = 0; t < tokens; t++) {
        int16_t *q = (int16_t *)(buffer + t * per_token);
        float *d = (float *)(q + n), *sum16 = d + n / 32, *sum32 = sum16 + n / 16;
        quantize_activations(x + t * ldx, n, q, d, sum16, sum32);
        a[t] = (activations){q, d, sum16, sum32};
    }
    kernel(base, row_bytes, blocks, a, tokens, out, ldo, row_begin, row_end, accumulate);
    free(heap);
}

#define ENTRY_POINTS(type, block_values)                                                                           \
    void moe_dot_rows_##type(const void *base, size_t row_bytes, size_t blocks, const float *x, float *out,        \
                             size_t row_begin, size_t row_end, int accumulate) {                                   \
        dot_rows(type##_rows, blocks * block_values, base, row_bytes, blocks, x, 0, 1, out, 0, row_begin, row_end, \
                 accumulate);                                                                                      \
    }                                                                                                              \
    void moe_dot_rows_tokens_##type(const void *base, size_t row_bytes, size_t blocks, const float *x, size_t ldx, \
                                    size_t tokens, float *out, size_t ldo, size_t row_begin, size_t row_end,       \
                                    int accumulate) {                                                              \
        dot_rows(type##_rows, blocks * block_values, base, row_bytes, blocks, x, ldx, tokens, out, ldo, row_begin, \
                 row_end, accumulate);                                                                             \
    }

ENTRY_POINTS(q4_0, 32)
ENTRY_POINTS(q8_0, 32)
ENTRY_POINTS(q4_K, 256)
ENTRY_POINTS(q6_K, 256)

#else

int moe_quant_avx2_available(void) { return 0; }
#define UNAVAILABLE(type)                                                                                          \
    void moe_dot_rows_##type(const void *base, size_t row_bytes, size_t blocks, const float *x, float *out,        \
                             size_t row_begin, size_t row_end, int accumulate) {                                   \
        (void)base; (void)row_bytes; (void)blocks; (void)x; (void)out; (void)row_begin; (void)row_end;             \
        (void)accumulate;                                                                                          \
        abort();                                                                                                   \
    }                                                                                                              \
    void moe_dot_rows_tokens_##type(const void *base, size_t row_bytes, size_t blocks, const float *x, size_t ldx, \
                                    size_t tokens, float *out, size_t ldo, size_t row_begin, size_t row_end,       \
                                    int accumulate) {                                                              \
        (void)base; (void)row_bytes; (void)blocks; (void)x; (void)ldx; (void)tokens; (void)out; (void)ldo;         \
        (void)row_begin; (void)row_end; (void)accumulate;                                                          \
        abort();                                                                                                   \
    }
UNAVAILABLE(q4_0)
UNAVAILABLE(q8_0)
UNAVAILABLE(q4_K)
UNAVAILABLE(q6_K)

#endif
