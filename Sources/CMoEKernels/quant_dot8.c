// AVX2 kernels on 8-bit activations, as llama.cpp's and ik_llama.cpp's CPU kernels: the fast path of quantised
// decode (see include/moe_quant_dot.h). Each token's activations are rounded to int8 once per call (one f32 scale per
// 32 values for Q4_0 rows, as ggml's Q8_0; per 256 for the K-quants and IQ4_XS, as ggml's Q8_K), and the weight
// codes, unsigned bytes as stored, are multiplied with them by vpmaddubsw: 32 products in one instruction, twice what
// the 16-bit kernels of quant_dot16.c do, at llama.cpp's accuracy (each activation off by ≤ 1/254 of its group's
// largest). K-quant blocks stay in integers up to their one f32 scale per 256 values.
// Measured one thread, AMD EPYC (Gproducts/s, 2,048 columns in cache, 16-bit → 8-bit): Q4_K 21 → 29 for one token,
// 25 → 47–51 for 4–16; Q6_K 17 → 20 and 24 → 40–45; Q4_0 17 → 19 and 24 → 28; types that had only f32 Swift
// kernels: Q5_K 24 and 45, Q3_K 16 and 42, Q2_K 21 and 41, IQ4_XS 18 and 33. Q8_0 gained nothing (its signed codes
// need a vpsignb per token) and keeps the 16-bit kernels. Four tokens per unpacked block: six or eight were no faster.
#include "moe_quant_dot.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include "quant_blocks8.h"

/// Rounds x[0 ..< n] (n a multiple of `group`, 32 or 256) to int8 with one scale per group: d = amax / 127.
TARGET static void quantize_activations8(const float *x, size_t n, size_t group, int8_t *q, float *d, float *dsum,
                                         int16_t *sum16, int16_t *sum32) {
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t g = 0; g < n / group; g++) {
        const float *xg = x + g * group;
        float amax = 0;
        int finite = 1;
        for (size_t i = 0; i < group; i += 32) {
            __m256 v[4];
            for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(xg + i + 8 * k);
            int f;
            const float m = amax32(v, &f);
            amax = m > amax ? m : amax;
            finite &= f;
        }
        // A NaN scale keeps a NaN or infinite activation visible in every output, as f32 math would.
        const float dg = finite ? amax / 127.0f : NAN;
        const __m256 inv = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
        for (size_t i = 0; i < group; i += 32) {
            __m256i c[4];
            for (int k = 0; k < 4; k++) c[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xg + i + 8 * k), inv));
            // packs works within 128-bit lanes; the permute puts the 32 bytes back in order.
            const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
            _mm256_storeu_si256((__m256i *)(q + g * group + i), _mm256_permutevar8x32_epi32(b, order));
            const int32_t s0 = hsum_i32(_mm256_add_epi32(c[0], c[1])), s1 = hsum_i32(_mm256_add_epi32(c[2], c[3]));
            const size_t j = (g * group + i) / 32;
            if (group == 32) dsum[j] = dg * (float)(s0 + s1);
            sum16[2 * j] = (int16_t)s0;
            sum16[2 * j + 1] = (int16_t)s1;
            sum32[j] = (int16_t)(s0 + s1);
        }
        d[g] = dg;
    }
}

// Each type: `<type>_block8` adds one block of a row, dotted with `nt` tokens' activations (1 ≤ nt ≤ max_tokens8, a
// constant where inlined), to each token's accumulator acc[t][c] (c: which of two chains, for the FMA latency
// between small blocks) and off[t] (f32 terms subtracted at the end). The codes are unpacked once for all tokens.
enum { max_tokens8 = 4 };

// Q4_0: f16 d, 16 bytes of nibbles (value j low, j+16 high); value = d·(q − 8).
INLINE void q4_0_block8(const uint8_t *b, const activations8 *a, int nt, size_t v, __m256 (*acc)[2], float *off, int c) {
    const __m128i m0f = _mm_set1_epi8(0x0F), qs = _mm_loadu_si128((const __m128i *)(b + 2));
    const __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), m0f), _mm_and_si128(qs, m0f));
    const __m256i ones = _mm256_set1_epi16(1);
    const float d = half_at(b);
    for (int t = 0; t < nt; t++) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(a[t].q + v));
        const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones));
        acc[t][c] = _mm256_fmadd_ps(s, _mm256_set1_ps(d * a[t].d[v / 32]), acc[t][c]);
        off[t] += 8 * d * a[t].dsum[v / 32];
    }
}

/// The end of a 256-value block: each token's integer sum times the block's f32 scale `d` and the token's activation
/// scale, into its accumulator chain `c`.
INLINE void k_scale_sums(const __m256i *sum, float d, const activations8 *a, int nt, size_t v, __m256 (*acc)[2], int c) {
    for (int t = 0; t < nt; t++)
        acc[t][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[t]), _mm256_set1_ps(d * a[t].d[v / 256]), acc[t][c]);
}

/// The K-quants' minimums, dmin·d_x·Σ_j min_j·(Σq of its 32), into off[t].
INLINE void k4_minimums(__m128i mins, float dmin, const activations8 *a, int nt, size_t v, float *off) {
    for (int t = 0; t < nt; t++)
        off[t] += dmin * a[t].d[v / 256] *
                  (float)hsum_i32x4(_mm_madd_epi16(mins, _mm_loadu_si128((const __m128i *)(a[t].sum32 + v / 32))));
}

/// Adds the products of 64 codes (`lo`: values x..x+31, `hi`: x+32..x+63, unsigned bytes) with the tokens'
/// activations, times scales `s0` and `s1` (int16 words), to each token's integer sum.
INLINE void k4_pair(__m256i lo, __m256i hi, __m256i s0, __m256i s1, const activations8 *a, int nt, size_t x,
                    __m256i *sum) {
    for (int t = 0; t < nt; t++) {
        const int8_t *y = a[t].q + x;
        const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)y)), s0);
        const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(y + 32))), s1);
        sum[t] = _mm256_add_epi32(sum[t], _mm256_add_epi32(p0, p1));
    }
}

// Q4_K: f16 d, dmin; 12 bytes of scales and mins; 128 bytes of nibbles (per 64 values: the first 32 low, the next
// 32 high). value = d·scale·q − dmin·min.
INLINE void q4_K_block8(const uint8_t *b, const activations8 *a, int nt, size_t v, __m256 (*acc)[2], float *off, int c) {
    __m256i scales, sum[max_tokens8];
    __m128i mins;
    k4_scales_mins(b + 4, &scales, &mins);
    k4_minimums(mins, half_at(b + 2), a, nt, v, off);
    for (int t = 0; t < nt; t++) sum[t] = _mm256_setzero_si256();
    const __m256i m0f = _mm256_set1_epi8(0x0F);
    for (int p = 0; p < 4; p++) {
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * p));
        k4_pair(_mm256_and_si256(Q, m0f), _mm256_and_si256(_mm256_srli_epi16(Q, 4), m0f), WORD(scales, 2 * p),
                WORD(scales, 2 * p + 1), a, nt, v + 64 * p, sum);
    }
    k_scale_sums(sum, half_at(b), a, nt, v, acc, c);
}

// Q5_K: as Q4_K, then 32 bytes of fifth bits (bit 2p / 2p+1 of byte l: value l of the pair's first / second 32),
// then the 128 bytes of low nibbles. value = d·scale·q − dmin·min, q in 0…31.
INLINE void q5_K_block8(const uint8_t *b, const activations8 *a, int nt, size_t v, __m256 (*acc)[2], float *off, int c) {
    __m256i scales, sum[max_tokens8];
    __m128i mins;
    k4_scales_mins(b + 4, &scales, &mins);
    k4_minimums(mins, half_at(b + 2), a, nt, v, off);
    for (int t = 0; t < nt; t++) sum[t] = _mm256_setzero_si256();
    const __m256i m0f = _mm256_set1_epi8(0x0F), m10 = _mm256_set1_epi8(0x10);
    const __m256i QH = _mm256_loadu_si256((const __m256i *)(b + 16));
    for (int p = 0; p < 4; p++) {
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 48 + 32 * p));
        const __m256i H = _mm256_srli_epi16(QH, 2 * p);  // this pair's bits at 0 and 1 of each byte
        const __m256i lo = _mm256_or_si256(_mm256_and_si256(Q, m0f), _mm256_and_si256(_mm256_slli_epi16(H, 4), m10));
        const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(Q, 4), m0f),
                                           _mm256_and_si256(_mm256_slli_epi16(H, 3), m10));
        k4_pair(lo, hi, WORD(scales, 2 * p), WORD(scales, 2 * p + 1), a, nt, v + 64 * p, sum);
    }
    k_scale_sums(sum, half_at(b), a, nt, v, acc, c);
}

/// The codes' offset, −2^shift·Σ scale·(Σq of its 16), as each token's starting integer sum.
INLINE void k16_offsets(__m128i sc, int shift, const activations8 *a, int nt, size_t v, __m256i *sum) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(sc);
    for (int t = 0; t < nt; t++)
        sum[t] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                  _mm256_slli_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)(a[t].sum16 + v / 16))), shift));
}

/// Adds the products of 32 codes (values x…x+31, unsigned bytes) times their scales `s` to each token's sum.
INLINE void k16_products(__m256i q, __m256i s, const activations8 *a, int nt, size_t x, __m256i *sum) {
    for (int t = 0; t < nt; t++)
        sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(a[t].q + x))), s));
}

// Q6_K: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales (one per 16 values), f16 d;
// value = d·scale·(q − 32).
INLINE void q6_K_block8(const uint8_t *b, const activations8 *a, int nt, size_t v, __m256 (*acc)[2], float *off, int c) {
    (void)off;
    const __m128i sc = _mm_loadu_si128((const __m128i *)(b + 192));
    const __m256i S = _mm256_broadcastsi128_si256(sc);
    __m256i sum[max_tokens8];
    k16_offsets(sc, 5, a, nt, v, sum);
    for (int n = 0; n < 2; n++) {
        __m256i q[4];
        q6_K_codes(b, n, q);
        for (int k = 0; k < 4; k++) k16_products(q[k], k16_scales(S, 8 * n + 2 * k), a, nt, v + 128 * n + 32 * k, sum);
    }
    k_scale_sums(sum, half_at(b + 208), a, nt, v, acc, c);
}

// Q3_K: 32 bytes of high bits (bit 4n+k of byte l: value 128n+32k+l), 64 bytes of 2-bit codes (bits 2k–2k+1 of byte
// 32n+l), 12 bytes of 6-bit scales (one per 16 values, minus 32), f16 d; value = d·scale·(q + 4·high − 4).
INLINE void q3_K_block8(const uint8_t *b, const activations8 *a, int nt, size_t v, __m256 (*acc)[2], float *off, int c) {
    (void)off;
    const __m128i sc = q3_K_scales(b + 96);
    const __m256i S = _mm256_broadcastsi128_si256(sc);
    __m256i sum[max_tokens8];
    k16_offsets(sc, 2, a, nt, v, sum);
    for (int n = 0; n < 2; n++) {
        __m256i q[4];
        q3_K_codes(b, n, q);
        for (int k = 0; k < 4; k++) k16_products(q[k], k16_scales(S, 8 * n + 2 * k), a, nt, v + 128 * n + 32 * k, sum);
    }
    k_scale_sums(sum, half_at(b + 108), a, nt, v, acc, c);
}

// Q2_K: 16 bytes of 4-bit scale (low nibble) and min (high) per 16 values, 64 bytes of 2-bit codes (as Q3_K's low
// bits), f16 d and dmin; value = d·scale·q − dmin·min.
INLINE void q2_K_block8(const uint8_t *b, const activations8 *a, int nt, size_t v, __m256 (*acc)[2], float *off, int c) {
    const __m128i sm = _mm_loadu_si128((const __m128i *)b);
    const __m128i m0f = _mm_set1_epi8(0x0F);
    const __m256i S = _mm256_broadcastsi128_si256(_mm_and_si128(sm, m0f));
    // The minimums: dmin·d_x·Σ min·(Σq of its 16).
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m0f));
    const float dmin = half_at(b + 82);
    __m256i sum[max_tokens8];
    for (int t = 0; t < nt; t++) {
        sum[t] = _mm256_setzero_si256();
        off[t] += dmin * a[t].d[v / 256] *
                  (float)hsum_i32(_mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)(a[t].sum16 + v / 16))));
    }
    const __m256i m03 = _mm256_set1_epi8(0x03);
    for (int n = 0; n < 2; n++) {
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * n));
        for (int k = 0; k < 4; k++)
            k16_products(_mm256_and_si256(_mm256_srli_epi16(Q, 2 * k), m03), k16_scales(S, 8 * n + 2 * k), a, nt,
                         v + 128 * n + 32 * k, sum);
    }
    k_scale_sums(sum, half_at(b + 80), a, nt, v, acc, c);
}

// IQ4_XS: f16 d, 16 bits of scale high pairs, 4 bytes of scale low nibbles, 128 bytes of 4-bit indices into IQ4_NL's
// grid (16 bytes per 32 values: value j low, j+16 high); value = d·(scale − 32)·grid[q]. The grid is signed, so
// vpmaddubsw takes |grid[q]| and the activations with grid[q]'s sign.

INLINE void iq4_xs_block8(const uint8_t *b, const activations8 *a, int nt, size_t v, __m256 (*acc)[2], float *off, int c) {
    (void)off;
    const __m256i scales = iq4_xs_scales(b), grid = iq4nl_grid_vector();
    const __m256i m0f = _mm256_set1_epi8(0x0F);
    __m256i sum[max_tokens8];
    for (int t = 0; t < nt; t++) sum[t] = _mm256_setzero_si256();
    for (int p = 0; p < 4; p++) {
        // Groups 2p (low lane) and 2p+1 (high lane); each group's values 0–15 in the low nibbles, 16–31 in the high.
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 8 + 32 * p));
        const __m256i lo = _mm256_and_si256(Q, m0f), hi = _mm256_and_si256(_mm256_srli_epi16(Q, 4), m0f);
        const __m256i w0 = _mm256_shuffle_epi8(grid, _mm256_permute2x128_si256(lo, hi, 0x20));
        const __m256i w1 = _mm256_shuffle_epi8(grid, _mm256_permute2x128_si256(lo, hi, 0x31));
        const __m256i u0 = _mm256_abs_epi8(w0), u1 = _mm256_abs_epi8(w1);
        const __m256i s0 = WORD(scales, 2 * p), s1 = WORD(scales, 2 * p + 1);
        for (int t = 0; t < nt; t++) {
            const int8_t *y = a[t].q + v + 64 * p;
            const __m256i x0 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y), w0);
            const __m256i x1 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(y + 32)), w1);
            sum[t] = _mm256_add_epi32(sum[t], _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(u0, x0), s0),
                                                               _mm256_madd_epi16(_mm256_maddubs_epi16(u1, x1), s1)));
        }
    }
    k_scale_sums(sum, half_at(b), a, nt, v, acc, c);
}

// MXFP4: one E8M0 exponent byte e, 16 bytes of E2M1 codes (value j low nibble, j+16 high, as Q4_0); value =
// 2^(e−128)·grid[q] with ggml's doubled E2M1 grid (0, ±1, ±2, ±3, ±4, ±6, ±8, ±12). Signed like IQ4_XS's grid.
INLINE __m256i mxfp4_grid_vector(void) {
    static const int8_t grid[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)grid));
}

/// 2^(e − 128) (ggml's `ggml_e8m0_to_fp32_half`), subnormal for e < 2.
INLINE float e8m0_half(uint8_t e) {
    const uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

INLINE void mxfp4_block8(const uint8_t *b, const activations8 *a, int nt, size_t v, __m256 (*acc)[2], float *off, int c) {
    (void)off;
    const __m128i m0f = _mm_set1_epi8(0x0F), qs = _mm_loadu_si128((const __m128i *)(b + 1));
    const __m256i codes = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), m0f), _mm_and_si128(qs, m0f));
    const __m256i w = _mm256_shuffle_epi8(mxfp4_grid_vector(), codes), u = _mm256_abs_epi8(w);
    const __m256i ones = _mm256_set1_epi16(1);
    const float d = e8m0_half(b[0]);
    for (int t = 0; t < nt; t++) {
        const __m256i x = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a[t].q + v)), w);
        const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, x), ones));
        acc[t][c] = _mm256_fmadd_ps(s, _mm256_set1_ps(d * a[t].d[v / 32]), acc[t][c]);
    }
}

size_t moe_activations8_bytes(size_t n, size_t tokens) { return token_stride8(n) * tokens; }

void moe_quantize_activations8(const float *x, size_t ldx, size_t n, size_t group, size_t token_begin, size_t token_end,
                               void *buffer) {
    for (size_t t = token_begin; t < token_end; t++) {
        uint8_t *p = (uint8_t *)buffer + t * token_stride8(n);
        float *d = (float *)(p + n), *dsum = d + n / 32;
        int16_t *sum16 = (int16_t *)(dsum + n / 32);
        quantize_activations8(x + t * ldx, n, group, (int8_t *)p, d, dsum, sum16, sum16 + n / 16);
    }
}

/// Rows per tile: the tile's blocks (up to 16 KiB) stay in L1 while every group of four tokens passes over them, and
/// each group's activations stay in L1 while the tile's rows pass (prefill: with 16 tokens per pass over all rows,
/// the rows streamed from L3 and the kernels ran at 0.8× the f32 GEMM).
enum { tile_bytes8 = 16 << 10 };

/// `<type>_rows8`: out[t·ldo + r] (=|+=) row r · token t for rows [row_begin, row_end) and the `tokens` tokens of
/// `acts`: tiles of rows, four tokens per unpacked block.
#define ROWS_KERNEL8(type, block_bytes, block_values)                                                              \
    INLINE void type##_row8(const uint8_t *b, size_t blocks, const activations8 *a, int nt, float *out, size_t ldo,\
                            int accumulate) {                                                                      \
        __m256 acc[max_tokens8][2];                                                                                \
        float off[max_tokens8];                                                                                    \
        for (int t = 0; t < nt; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps(), off[t] = 0;                     \
        size_t i = 0;                                                                                              \
        for (; i + 1 < blocks; i += 2) {                                                                           \
            type##_block8(b + i * block_bytes, a, nt, i * block_values, acc, off, 0);                              \
            type##_block8(b + (i + 1) * block_bytes, a, nt, (i + 1) * block_values, acc, off, 1);                  \
        }                                                                                                          \
        if (i < blocks) type##_block8(b + i * block_bytes, a, nt, i * block_values, acc, off, 0);                  \
        for (int t = 0; t < nt; t++) {                                                                             \
            const float s = hsum(_mm256_add_ps(acc[t][0], acc[t][1])) - off[t];                                   \
            out[t * ldo] = accumulate ? out[t * ldo] + s : s;                                                      \
        }                                                                                                          \
    }                                                                                                              \
    TARGET void moe_dot8_rows_##type(const void *base, size_t row_bytes, size_t blocks, const void *acts,          \
                                     size_t tokens, float *out, size_t ldo, size_t row_begin, size_t row_end,      \
                                     int accumulate) {                                                             \
        const size_t n = blocks * block_values, stride = token_stride8(n);                                        \
        const size_t tile = row_bytes >= tile_bytes8 ? 1 : tile_bytes8 / row_bytes;                                \
        for (size_t r0 = row_begin; r0 < row_end; r0 += tile) {                                                    \
            const size_t r1 = row_end - r0 < tile ? row_end : r0 + tile;                                           \
            for (size_t t = 0; t < tokens; t += max_tokens8) {                                                     \
                const int nt = tokens - t < max_tokens8 ? (int)(tokens - t) : max_tokens8;                         \
                activations8 a[max_tokens8];                                                                       \
                for (int k = 0; k < nt; k++) a[k] = token_view8((const uint8_t *)acts + (t + k) * stride, n);      \
                for (size_t r = r0; r < r1; r++) {                                                                 \
                    const uint8_t *b = (const uint8_t *)base + r * row_bytes;                                      \
                    if (t == 0) prefetch_ahead(b, row_bytes, (row_end - r) * row_bytes);                           \
                    float *o = out + t * ldo + r;                                                                  \
                    switch (nt) {                                                                                  \
                    case 1: type##_row8(b, blocks, a, 1, o, ldo, accumulate); break;                               \
                    case 2: type##_row8(b, blocks, a, 2, o, ldo, accumulate); break;                               \
                    case 3: type##_row8(b, blocks, a, 3, o, ldo, accumulate); break;                               \
                    default: type##_row8(b, blocks, a, 4, o, ldo, accumulate); break;                              \
                    }                                                                                              \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
    }

ROWS_KERNEL8(q4_0, 18, 32)
ROWS_KERNEL8(q6_K, 210, 256)
ROWS_KERNEL8(q4_K, 144, 256)
ROWS_KERNEL8(q5_K, 176, 256)
ROWS_KERNEL8(q3_K, 110, 256)
ROWS_KERNEL8(q2_K, 84, 256)
ROWS_KERNEL8(iq4_xs, 136, 256)
ROWS_KERNEL8(mxfp4, 17, 32)

#else

size_t moe_activations8_bytes(size_t n, size_t tokens) { (void)n; (void)tokens; abort(); }
void moe_quantize_activations8(const float *x, size_t ldx, size_t n, size_t group, size_t token_begin, size_t token_end,
                               void *buffer) {
    (void)x; (void)ldx; (void)n; (void)group; (void)token_begin; (void)token_end; (void)buffer;
    abort();
}
#define UNAVAILABLE8(type)                                                                                         \
    void moe_dot8_rows_##type(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,  \
                              float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate) {          \
        (void)base; (void)row_bytes; (void)blocks; (void)acts; (void)tokens; (void)out; (void)ldo;                 \
        (void)row_begin; (void)row_end; (void)accumulate;                                                          \
        abort();                                                                                                   \
    }
UNAVAILABLE8(q4_0)
UNAVAILABLE8(q4_K)
UNAVAILABLE8(q6_K)
UNAVAILABLE8(q5_K)
UNAVAILABLE8(q3_K)
UNAVAILABLE8(q2_K)
UNAVAILABLE8(iq4_xs)
UNAVAILABLE8(mxfp4)

#endif
