// The prefill GEMM on 8-bit activations (Q4_0, Q8_0, Q2_K–Q6_K, IQ4_XS), on rows repacked as ik_llama.cpp's `_R8`
// types and llama.cpp's CPU "repack" buffers lay them out: each eight rows are unpacked once per call into a panel (in
// the caller's scratch) where one 32-byte vector holds the same four values of all eight rows as byte codes. Each
// token's four activations, broadcast, then meet all eight rows in one vpmaddubsw, so the sums land one row per 32-bit
// lane and need no horizontal reduction: a block ends in one f32 multiply-add per (token, eight rows). The products of
// up to eight steps are summed in 16 bits before vpmaddwd applies their sub-block scale (as many as the codes' size
// allows without overflow). Four tokens per pass over the panel.
//
// The K-quants and IQ4_XS unpack into one layout: value = d·scale·code − dm·coef (coef per 16 or 32 values), so one
// kernel serves them all; Q4_0 and Q8_0, with an f32 scale per 32 values, have their own (`panel32_4`). The integer
// semantics are those of the row kernels (quant_dot8.c). Measured one thread, AMD EPYC (Zen 3), 1,024 rows × 2,048
// columns × 64 tokens, Gproducts/s (row kernels → this): Q4_K 45 → 94, Q5_K 40 → 87, Q6_K 46 → 71, Q3_K 36 → 81,
// Q2_K 39 → 83; the f32 GEMM it replaces runs 44 before dequantising.
#include "moe_quant_dot.h"
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__)
#include "quant_blocks8.h"

/// One 256-value block of a row unpacked: its codes in order; per 32 values a vector of 16 scale words (values 0–15's
/// scale in words 0–7, 16–31's in 8–15); the offsets' coefficients, one per 16 values (`coef`) or, for Q4_K and
/// Q5_K, one per 32 (`coef32`); d, dm.
typedef struct {
    uint8_t codes[256];
    int16_t scales[256], coef[16], coef32[8];
    float d, dm;
} unpacked_block;

INLINE void store(void *p, __m256i v) { _mm256_storeu_si256((__m256i *)p, v); }

// Unpacking, one 256-value block `b` into `u`.

INLINE void q4_K_unpack(const uint8_t *b, unpacked_block *u) {
    __m256i scales;
    __m128i mins;
    k4_scales_mins(b + 4, &scales, &mins);
    const __m256i m0f = _mm256_set1_epi8(0x0F);
    for (int p = 0; p < 4; p++) {
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * p));
        store(u->codes + 64 * p, _mm256_and_si256(Q, m0f));
        store(u->codes + 64 * p + 32, _mm256_and_si256(_mm256_srli_epi16(Q, 4), m0f));
        store(u->scales + 32 * p, WORD(scales, 2 * p));
        store(u->scales + 32 * p + 16, WORD(scales, 2 * p + 1));
    }
    _mm_storeu_si128((__m128i *)(u->coef32), mins);
    u->d = half_at(b);
    u->dm = half_at(b + 2);
}

INLINE void q5_K_unpack(const uint8_t *b, unpacked_block *u) {
    __m256i scales;
    __m128i mins;
    k4_scales_mins(b + 4, &scales, &mins);
    const __m256i m0f = _mm256_set1_epi8(0x0F), m10 = _mm256_set1_epi8(0x10);
    const __m256i QH = _mm256_loadu_si256((const __m256i *)(b + 16));
    for (int p = 0; p < 4; p++) {
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 48 + 32 * p));
        const __m256i H = _mm256_srli_epi16(QH, 2 * p);
        store(u->codes + 64 * p,
              _mm256_or_si256(_mm256_and_si256(Q, m0f), _mm256_and_si256(_mm256_slli_epi16(H, 4), m10)));
        store(u->codes + 64 * p + 32, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(Q, 4), m0f),
                                                               _mm256_and_si256(_mm256_slli_epi16(H, 3), m10)));
        store(u->scales + 32 * p, WORD(scales, 2 * p));
        store(u->scales + 32 * p + 16, WORD(scales, 2 * p + 1));
    }
    _mm_storeu_si128((__m128i *)(u->coef32), mins);
    u->d = half_at(b);
    u->dm = half_at(b + 2);
}

/// The per-16 scales `sc` (int8) of Q2_K, Q3_K and Q6_K as the 8 scale vectors of a block.
INLINE void k16_store_scales(__m128i sc, unpacked_block *u) {
    const __m256i S = _mm256_broadcastsi128_si256(sc);
    for (int j = 0; j < 8; j++) store(u->scales + 16 * j, k16_scales(S, 2 * j));
}

INLINE void q6_K_unpack(const uint8_t *b, unpacked_block *u) {
    for (int n = 0; n < 2; n++) {
        __m256i q[4];
        q6_K_codes(b, n, q);
        for (int k = 0; k < 4; k++) store(u->codes + 128 * n + 32 * k, q[k]);
    }
    const __m128i sc = _mm_loadu_si128((const __m128i *)(b + 192));
    k16_store_scales(sc, u);
    // d·scale·(q − 32): the offset 32·scale per 16 values, at the block's own scale.
    store(u->coef, _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc), 5));
    u->d = u->dm = half_at(b + 208);
}

INLINE void q3_K_unpack(const uint8_t *b, unpacked_block *u) {
    for (int n = 0; n < 2; n++) {
        __m256i q[4];
        q3_K_codes(b, n, q);
        for (int k = 0; k < 4; k++) store(u->codes + 128 * n + 32 * k, q[k]);
    }
    const __m128i sc = q3_K_scales(b + 96);
    k16_store_scales(sc, u);
    // d·scale·(q + 4·high − 4): the offset 4·scale.
    store(u->coef, _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc), 2));
    u->d = u->dm = half_at(b + 108);
}

// IQ4_XS: the codes are IQ4_NL's signed grid values (value = d·scale·grid[q]), no offsets.
INLINE void iq4_xs_unpack(const uint8_t *b, unpacked_block *u) {
    const __m256i scales = iq4_xs_scales(b), grid = iq4nl_grid_vector();
    const __m256i m0f = _mm256_set1_epi8(0x0F);
    for (int p = 0; p < 4; p++) {
        // Groups 2p (low lane) and 2p+1 (high lane); each group's values 0–15 in the low nibbles, 16–31 in the high.
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 8 + 32 * p));
        const __m256i lo = _mm256_and_si256(Q, m0f), hi = _mm256_and_si256(_mm256_srli_epi16(Q, 4), m0f);
        store(u->codes + 64 * p, _mm256_shuffle_epi8(grid, _mm256_permute2x128_si256(lo, hi, 0x20)));
        store(u->codes + 64 * p + 32, _mm256_shuffle_epi8(grid, _mm256_permute2x128_si256(lo, hi, 0x31)));
        store(u->scales + 32 * p, WORD(scales, 2 * p));
        store(u->scales + 32 * p + 16, WORD(scales, 2 * p + 1));
    }
    store(u->coef, _mm256_setzero_si256());
    u->d = half_at(b);
    u->dm = 0;
}

INLINE void q2_K_unpack(const uint8_t *b, unpacked_block *u) {
    const __m128i sm = _mm_loadu_si128((const __m128i *)b);
    const __m128i m0f = _mm_set1_epi8(0x0F);
    const __m256i m03 = _mm256_set1_epi8(0x03);
    for (int n = 0; n < 2; n++) {
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * n));
        for (int k = 0; k < 4; k++)
            store(u->codes + 128 * n + 32 * k, _mm256_and_si256(_mm256_srli_epi16(Q, 2 * k), m03));
    }
    k16_store_scales(_mm_and_si128(sm, m0f), u);
    store(u->coef, _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m0f)));
    u->d = half_at(b + 80);
    u->dm = half_at(b + 82);
}

// The panel: eight rows interleaved so that each vector holds the same four values of all eight rows, and a product
// with four activations broadcast leaves one row per 32-bit lane. Per 256-value block: codes[64][8 rows][4];
// scales[16 groups of 16 values][8 rows][2 copies] (int16); the offsets' coefficients in pairs
// coef[8][8 rows][2] (per 16 values: pair j holds groups 2j, 2j+1; per 32: only pairs 0–3, groups of 32); d[8], dm[8].
enum { panel_codes = 0, panel_scales = 2048, panel_coef = 2048 + 512, panel_d = 2048 + 512 + 256,
       panel_dm = panel_d + 32, panel_block = panel_dm + 32 };

/// The 8 × 8 transpose of 32-bit words: 32 codes of each of eight rows into eight vectors of four codes × 8 rows
/// (vector k: codes 4k … 4k+3 of rows 0–7), at `dst`.
INLINE void transpose_8x32(const uint8_t *const rows[8], uint8_t *dst) {
    __m256i v[8], w[8];
    for (int r = 0; r < 8; r++) v[r] = _mm256_loadu_si256((const __m256i *)rows[r]);
    for (int r = 0; r < 8; r += 2) {
        w[r] = _mm256_unpacklo_epi32(v[r], v[r + 1]);
        w[r + 1] = _mm256_unpackhi_epi32(v[r], v[r + 1]);
    }
    for (int r = 0; r < 8; r += 4)
        for (int k = 0; k < 2; k++) {
            v[r + k] = _mm256_unpacklo_epi64(w[r + k], w[r + 2 + k]);
            v[r + 2 + k] = _mm256_unpackhi_epi64(w[r + k], w[r + 2 + k]);
        }
    // v[0…3]: rows 0–3, code groups (0, 2, 1, 3) in the low lane and (4, 6, 5, 7) in the high; v[4…7]: rows 4–7.
    static const int order[4] = {0, 2, 1, 3};
    for (int k = 0; k < 4; k++) {
        store(dst + 32 * order[k], _mm256_permute2x128_si256(v[k], v[4 + k], 0x20));
        store(dst + 32 * (4 + order[k]), _mm256_permute2x128_si256(v[k], v[4 + k], 0x31));
    }
}

/// Interleaves the blocks of eight rows `u` into the panel block at `p`. `per32`: Q4_K's and Q5_K's
/// coefficients, one per 32 values.
INLINE void interleave(const unpacked_block u[8], uint8_t *p, int per32) {
    for (int j = 0; j < 8; j++) {
        const uint8_t *rows[8];
        for (int r = 0; r < 8; r++) rows[r] = u[r].codes + 32 * j;
        transpose_8x32(rows, p + panel_codes + 256 * j);
    }
    int16_t *scales = (int16_t *)(p + panel_scales), *coef = (int16_t *)(p + panel_coef);
    float *d = (float *)(p + panel_d), *dm = (float *)(p + panel_dm);
    for (int r = 0; r < 8; r++) {
        for (int g = 0; g < 16; g++)
            scales[16 * g + 2 * r] = scales[16 * g + 2 * r + 1] = u[r].scales[16 * (g / 2) + 8 * (g % 2)];
        for (int j = 0; j < 8; j++) {
            coef[16 * j + 2 * r] = per32 ? (j < 4 ? u[r].coef32[2 * j] : 0) : u[r].coef[2 * j];
            coef[16 * j + 2 * r + 1] = per32 ? (j < 4 ? u[r].coef32[2 * j + 1] : 0) : u[r].coef[2 * j + 1];
        }
        d[r] = u[r].d;
        dm[r] = u[r].dm;
    }
}

INLINE __m256i broadcast32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/// A panel times four tokens a[0…3]: acc[t] lane r += row r · token t. `pairs`: the coefficient pairs per block (8,
/// or 4 for coefficients per 32 against the tokens' sums per 32). `steps`: how many four-value products are summed in
/// 16 bits before the scale multiplies them (vpmaddwd), as far as the codes' size allows without overflow (|x| ≤ 128:
/// 8 steps of codes < 16, 4 of codes < 32, 2 of codes < 64, 1 of signed codes), and at most a scale's span (4 steps
/// for a scale per 16 values, 8 per 32). `pairs` 0: no offsets.
INLINE void panel_4(const uint8_t *panel, size_t blocks, const activations8 a[4], int pairs, int steps, int is_signed,
                    __m256 acc[4]) {
    for (size_t i = 0; i < blocks; i++) {
        const uint8_t *p = panel + i * panel_block;
        __m256i sum[4];
        for (int t = 0; t < 4; t++) sum[t] = _mm256_setzero_si256();
        // Not unrolled: unrolled, the compiler interleaved units and spilled.
#pragma clang loop unroll(disable)
        for (int v = 0; v < 256; v += 4 * steps) {
            // Values v … v + 4·steps − 1 share one scale (group v/16's).
            const __m256i s = _mm256_loadu_si256((const __m256i *)(p + panel_scales + 32 * (v / 16)));
            __m256i p16[4];
            for (int k = 0; k < steps; k++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(p + panel_codes + 8 * (v + 4 * k)));
                // Signed codes: their magnitudes, and the activations with their signs.
                const __m256i m = is_signed ? _mm256_abs_epi8(w) : w;
                for (int t = 0; t < 4; t++) {
                    __m256i x = broadcast32(a[t].q + 256 * i + v + 4 * k);
                    if (is_signed) x = _mm256_sign_epi8(x, w);
                    const __m256i prod = _mm256_maddubs_epi16(m, x);
                    p16[t] = k == 0 ? prod : _mm256_add_epi16(p16[t], prod);
                }
            }
            for (int t = 0; t < 4; t++) sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(p16[t], s));
        }
        const __m256 d = _mm256_loadu_ps((const float *)(p + panel_d));
        const __m256 dm = _mm256_loadu_ps((const float *)(p + panel_dm));
        __m256i off[4];
        for (int t = 0; t < 4; t++) off[t] = _mm256_setzero_si256();
        for (int j = 0; j < pairs; j++) {
            const __m256i c = _mm256_loadu_si256((const __m256i *)(p + panel_coef + 32 * j));
            for (int t = 0; t < 4; t++) {
                const int16_t *sums = pairs == 4 ? a[t].sum32 + 8 * i : a[t].sum16 + 16 * i;
                off[t] = _mm256_add_epi32(off[t], _mm256_madd_epi16(c, broadcast32(sums + 2 * j)));
            }
        }
        for (int t = 0; t < 4; t++) {
            const __m256 dt = _mm256_broadcast_ss(a[t].d + i);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[t]), _mm256_mul_ps(d, dt), acc[t]);
            if (pairs) acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(off[t]), _mm256_mul_ps(dm, dt), acc[t]);
        }
    }
}

// Q4_0 and Q8_0: one f32 scale per 32 values, so the panel holds per 32 values the codes of eight rows, 8 × 32 bytes
// as above, then their eight scales; the sums end every 32 values. Q4_0's codes are unsigned (0–15, value
// d·(q − 8): the −8 is subtracted in integers, against the token's sum per 32); Q8_0's are signed, so vpmaddubsw takes
// their magnitudes and the activations carry their signs (one more instruction per product).
enum { panel32_d = 256, panel32_block = 256 + 32 };

/// Interleaves the 32-value blocks at `rows[0…7]` (Q4_0's, or `q8` Q8_0's) into the panel block at `p`.
INLINE void interleave32(const uint8_t *const rows[8], int q8, uint8_t *p) {
    uint8_t codes[8][32];
    const uint8_t *views[8];
    float *d = (float *)(p + panel32_d);
    for (int r = 0; r < 8; r++) {
        const uint8_t *b = rows[r];
        d[r] = half_at(b);
        if (q8) {
            views[r] = b + 2;
        } else {
            const __m128i qs = _mm_loadu_si128((const __m128i *)(b + 2)), m0f = _mm_set1_epi8(0x0F);
            store(codes[r], _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), m0f), _mm_and_si128(qs, m0f)));
            views[r] = codes[r];
        }
    }
    transpose_8x32(views, p);
}

/// A per-32 panel times four tokens (activations with one scale per 32): acc[t] lane r += row r · token t.
INLINE void panel32_4(const uint8_t *panel, size_t blocks, const activations8 a[4], int q8, __m256 acc[4]) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t i = 0; i < blocks; i++) {
        const uint8_t *p = panel + i * panel32_block;
        __m256i sum[4];
        if (q8) {
            for (int t = 0; t < 4; t++) sum[t] = _mm256_setzero_si256();
            for (int k = 0; k < 8; k++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(p + 32 * k)), m = _mm256_abs_epi8(w);
                for (int t = 0; t < 4; t++) {
                    const __m256i x = _mm256_sign_epi8(broadcast32(a[t].q + 32 * i + 4 * k), w);
                    sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(m, x), ones));
                }
            }
        } else {
            // Eight products of codes < 16 sum in 16 bits (|x| ≤ 128: at most 30,720).
            __m256i p16[4];
            for (int k = 0; k < 8; k++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(p + 32 * k));
                for (int t = 0; t < 4; t++) {
                    const __m256i prod = _mm256_maddubs_epi16(w, broadcast32(a[t].q + 32 * i + 4 * k));
                    p16[t] = k == 0 ? prod : _mm256_add_epi16(p16[t], prod);
                }
            }
            for (int t = 0; t < 4; t++)
                sum[t] = _mm256_sub_epi32(_mm256_madd_epi16(p16[t], ones), _mm256_set1_epi32(8 * a[t].sum32[i]));
        }
        const __m256 d = _mm256_loadu_ps((const float *)(p + panel32_d));
        for (int t = 0; t < 4; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[t]), _mm256_mul_ps(d, _mm256_broadcast_ss(a[t].d + i)), acc[t]);
    }
}

size_t moe_gemm8_scratch_bytes(size_t cols) {
    const size_t k_quants = cols / 256 * panel_block, per32 = cols / 32 * panel32_block;
    return k_quants > per32 ? k_quants : per32;
}

/// Stores acc[j] (lane k: row r + k) for the `nt` tokens from t and the `rows` rows from r.
INLINE void store_tile(const __m256 acc[4], int nt, int rows, float *out, size_t ldo, size_t t, size_t r, int accumulate) {
    for (int j = 0; j < nt; j++) {
        float s[8], *o = out + (t + j) * ldo + r;
        _mm256_storeu_ps(s, acc[j]);
        for (int k = 0; k < rows; k++) o[k] = accumulate ? o[k] + s[k] : s[k];
    }
}

/// Views of the activations of tokens t … t+3 (the last token repeated past the end).
INLINE void token_quad(const void *acts, size_t stride, size_t n, size_t tokens, size_t t, activations8 a[4]) {
    for (size_t k = 0; k < 4; k++)
        a[k] = token_view8((const uint8_t *)acts + (t + k < tokens ? t + k : tokens - 1) * stride, n);
}

/// Every four tokens from the activations `acts` through the panel just interleaved (`product` fills acc[0…3] from
/// a[0…3]), stored for rows r … r + rows − 1.
#define PANEL_TOKENS(product)                                                                                      \
    for (size_t t = 0; t < tokens; t += 4) {                                                                       \
        activations8 a[4];                                                                                         \
        token_quad(acts, stride, n, tokens, t, a);                                                                 \
        __m256 acc[4];                                                                                             \
        for (int k = 0; k < 4; k++) acc[k] = _mm256_setzero_ps();                                                  \
        product;                                                                                                   \
        store_tile(acc, tokens - t < 4 ? (int)(tokens - t) : 4, rows, out, ldo, t, r, accumulate);                 \
    }

/// `moe_gemm8_rows_q4_0` and `_q8_0`: eight rows at a time, interleaved once per call, then every four tokens.
#define GEMM32_KERNEL8(type, block_bytes, q8)                                                                      \
    TARGET void moe_gemm8_rows_##type(const void *base, size_t row_bytes, size_t blocks, const void *acts,         \
                                      size_t tokens, float *out, size_t ldo, size_t row_begin, size_t row_end,     \
                                      int accumulate, void *scratch) {                                             \
        const size_t n = blocks * 32, stride = token_stride8(n);                                                  \
        uint8_t *panel = (uint8_t *)scratch;                                                                       \
        for (size_t r = row_begin; r < row_end; r += 8) {                                                          \
            const int rows = row_end - r >= 8 ? 8 : (int)(row_end - r);                                            \
            for (size_t i = 0; i < blocks; i++) {                                                                  \
                const uint8_t *b[8];                                                                               \
                for (int k = 0; k < 8; k++)                                                                        \
                    b[k] = (const uint8_t *)base + (r + (k < rows ? k : rows - 1)) * row_bytes + i * block_bytes;  \
                interleave32(b, q8, panel + i * panel32_block);                                                    \
            }                                                                                                      \
            PANEL_TOKENS(panel32_4(panel, blocks, a, q8, acc))                                                     \
        }                                                                                                          \
    }

GEMM32_KERNEL8(q4_0, 18, 0)
GEMM32_KERNEL8(q8_0, 34, 1)

/// `moe_gemm8_rows_<type>`: eight rows at a time, interleaved once per call into a panel in `scratch`, then every
/// four tokens. `pairs`, `steps`, `signed_codes`: as `panel_4` takes them.
#define GEMM_KERNEL8(type, block_bytes, pairs, steps, signed_codes)                                                \
    TARGET void moe_gemm8_rows_##type(const void *base, size_t row_bytes, size_t blocks, const void *acts,         \
                                      size_t tokens, float *out, size_t ldo, size_t row_begin, size_t row_end,     \
                                      int accumulate, void *scratch) {                                             \
        const size_t n = blocks * 256, stride = token_stride8(n);                                                 \
        uint8_t *panel = (uint8_t *)scratch;                                                                       \
        unpacked_block u[8];                                                                                       \
        for (size_t r = row_begin; r < row_end; r += 8) {                                                          \
            const int rows = row_end - r >= 8 ? 8 : (int)(row_end - r);                                            \
            for (size_t i = 0; i < blocks; i++) {                                                                  \
                /* Past the last row, its copies; their results are dropped. */                                    \
                for (int k = 0; k < 8; k++) {                                                                      \
                    const size_t row = r + (k < rows ? k : rows - 1);                                             \
                    type##_unpack((const uint8_t *)base + row * row_bytes + i * block_bytes, &u[k]);               \
                }                                                                                                  \
                interleave(u, panel + i * panel_block, pairs == 4);                                                \
            }                                                                                                      \
            PANEL_TOKENS(panel_4(panel, blocks, a, pairs, steps, signed_codes, acc))                               \
        }                                                                                                          \
    }

GEMM_KERNEL8(q2_K, 84, 8, 4, 0)
GEMM_KERNEL8(q3_K, 110, 8, 4, 0)
GEMM_KERNEL8(q4_K, 144, 4, 8, 0)
GEMM_KERNEL8(q5_K, 176, 4, 4, 0)
GEMM_KERNEL8(q6_K, 210, 8, 2, 0)
GEMM_KERNEL8(iq4_xs, 136, 0, 1, 1)

#else

size_t moe_gemm8_scratch_bytes(size_t cols) { (void)cols; abort(); }
#define UNAVAILABLE_GEMM8(type)                                                                                    \
    void moe_gemm8_rows_##type(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens, \
                               float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate,           \
                               void *scratch) {                                                                    \
        (void)base; (void)row_bytes; (void)blocks; (void)acts; (void)tokens; (void)out; (void)ldo;                 \
        (void)row_begin; (void)row_end; (void)accumulate; (void)scratch;                                           \
        abort();                                                                                                   \
    }
UNAVAILABLE_GEMM8(q4_0)
UNAVAILABLE_GEMM8(q8_0)
UNAVAILABLE_GEMM8(q2_K)
UNAVAILABLE_GEMM8(q3_K)
UNAVAILABLE_GEMM8(q4_K)
UNAVAILABLE_GEMM8(q5_K)
UNAVAILABLE_GEMM8(q6_K)
UNAVAILABLE_GEMM8(iq4_xs)

#endif
