// The prefill GEMM on 8-bit activations for the K-quants (Q2_K–Q6_K), as ik_llama.cpp converts rows for its
// large-batch kernels: each pair of rows is unpacked once per call into byte codes and 16-bit scale vectors (in the
// caller's scratch, where it stays in L1), then every group of four tokens passes over the pair with a 2 × 4 register
// tile of integer sums: per 32 values and (row, token) one vpmaddubsw, one vpmaddwd (which applies the sub-block scale)
// and one add, with each activation load shared by both rows and each code load by four tokens. Per 256-value block the
// eight sums are reduced together and scaled in one vector. The integer semantics are those of the decode kernels
// (quant_dot8.c), so the result is the same to f32 rounding.
//
// Every type unpacks into one layout: value = d·scale·code − dm·coef·(per 16 values), with codes unsigned bytes, so one
// kernel serves all five. (Q4_0, Q8_0 and IQ4_XS keep the other paths: their signed or per-32 f32 scales do not fit it.)
#include "moe_quant_dot.h"
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__)
#include "quant_blocks8.h"

/// One row unpacked, for `blocks` blocks of 256 values: codes[256·blocks]; scales: per 32 values a vector of 16
/// words (values 0–15's scale in words 0–7, 16–31's in 8–15); the offsets' coefficients, coef[16·blocks] one per 16
/// values, or for Q4_K and Q5_K coef32[8·blocks] one per 32; d, dm per block.
typedef struct {
    uint8_t *codes;
    int16_t *scales, *coef, *coef32;
    float *d, *dm;
} unpacked_row;

static size_t unpacked_row_bytes(size_t blocks) { return blocks * (256 + 512 + 32 + 16 + 8); }

static unpacked_row unpacked_view(uint8_t *p, size_t blocks) {
    int16_t *scales = (int16_t *)(p + 256 * blocks), *coef = scales + 256 * blocks, *coef32 = coef + 16 * blocks;
    float *d = (float *)(coef32 + 8 * blocks);
    return (unpacked_row){p, scales, coef, coef32, d, d + blocks};
}

INLINE void store(void *p, __m256i v) { _mm256_storeu_si256((__m256i *)p, v); }

// Unpacking, one 256-value block `b` into block `i` of `u`.

INLINE void q4_K_unpack(const uint8_t *b, unpacked_row u, size_t i) {
    __m256i scales;
    __m128i mins;
    k4_scales_mins(b + 4, &scales, &mins);
    const __m256i m0f = _mm256_set1_epi8(0x0F);
    for (int p = 0; p < 4; p++) {
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * p));
        store(u.codes + 256 * i + 64 * p, _mm256_and_si256(Q, m0f));
        store(u.codes + 256 * i + 64 * p + 32, _mm256_and_si256(_mm256_srli_epi16(Q, 4), m0f));
        store(u.scales + 256 * i + 32 * p, WORD(scales, 2 * p));
        store(u.scales + 256 * i + 32 * p + 16, WORD(scales, 2 * p + 1));
    }
    _mm_storeu_si128((__m128i *)(u.coef32 + 8 * i), mins);
    u.d[i] = half_at(b);
    u.dm[i] = half_at(b + 2);
}

INLINE void q5_K_unpack(const uint8_t *b, unpacked_row u, size_t i) {
    __m256i scales;
    __m128i mins;
    k4_scales_mins(b + 4, &scales, &mins);
    const __m256i m0f = _mm256_set1_epi8(0x0F), m10 = _mm256_set1_epi8(0x10);
    const __m256i QH = _mm256_loadu_si256((const __m256i *)(b + 16));
    for (int p = 0; p < 4; p++) {
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 48 + 32 * p));
        const __m256i H = _mm256_srli_epi16(QH, 2 * p);
        store(u.codes + 256 * i + 64 * p,
              _mm256_or_si256(_mm256_and_si256(Q, m0f), _mm256_and_si256(_mm256_slli_epi16(H, 4), m10)));
        store(u.codes + 256 * i + 64 * p + 32, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(Q, 4), m0f),
                                                               _mm256_and_si256(_mm256_slli_epi16(H, 3), m10)));
        store(u.scales + 256 * i + 32 * p, WORD(scales, 2 * p));
        store(u.scales + 256 * i + 32 * p + 16, WORD(scales, 2 * p + 1));
    }
    _mm_storeu_si128((__m128i *)(u.coef32 + 8 * i), mins);
    u.d[i] = half_at(b);
    u.dm[i] = half_at(b + 2);
}

/// The per-16 scales `sc` (int8) of Q2_K, Q3_K and Q6_K as the 8 scale vectors of a block.
INLINE void k16_store_scales(__m128i sc, unpacked_row u, size_t i) {
    const __m256i S = _mm256_broadcastsi128_si256(sc);
    for (int j = 0; j < 8; j++) store(u.scales + 256 * i + 16 * j, k16_scales(S, 2 * j));
}

INLINE void q6_K_unpack(const uint8_t *b, unpacked_row u, size_t i) {
    for (int n = 0; n < 2; n++) {
        __m256i q[4];
        q6_K_codes(b, n, q);
        for (int k = 0; k < 4; k++) store(u.codes + 256 * i + 128 * n + 32 * k, q[k]);
    }
    const __m128i sc = _mm_loadu_si128((const __m128i *)(b + 192));
    k16_store_scales(sc, u, i);
    // d·scale·(q − 32): the offset 32·scale per 16 values, at the block's own scale.
    store(u.coef + 16 * i, _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc), 5));
    u.d[i] = u.dm[i] = half_at(b + 208);
}

INLINE void q3_K_unpack(const uint8_t *b, unpacked_row u, size_t i) {
    const __m256i m03 = _mm256_set1_epi8(0x03), m04 = _mm256_set1_epi8(0x04);
    const __m256i H = _mm256_loadu_si256((const __m256i *)b);
    for (int n = 0; n < 2; n++) {
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 32 + 32 * n));
        for (int k = 0; k < 4; k++) {
            const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(Q, 2 * k), m03);
            const __m256i hi = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(H, 4 * n + k), 2), m04);
            store(u.codes + 256 * i + 128 * n + 32 * k, _mm256_or_si256(lo, hi));
        }
    }
    const __m128i sc = q3_K_scales(b + 96);
    k16_store_scales(sc, u, i);
    // d·scale·(q + 4·high − 4): the offset 4·scale.
    store(u.coef + 16 * i, _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc), 2));
    u.d[i] = u.dm[i] = half_at(b + 108);
}

INLINE void q2_K_unpack(const uint8_t *b, unpacked_row u, size_t i) {
    const __m128i sm = _mm_loadu_si128((const __m128i *)b);
    const __m128i m0f = _mm_set1_epi8(0x0F);
    const __m256i m03 = _mm256_set1_epi8(0x03);
    for (int n = 0; n < 2; n++) {
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * n));
        for (int k = 0; k < 4; k++)
            store(u.codes + 256 * i + 128 * n + 32 * k, _mm256_and_si256(_mm256_srli_epi16(Q, 2 * k), m03));
    }
    k16_store_scales(_mm_and_si128(sm, m0f), u, i);
    store(u.coef + 16 * i, _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m0f)));
    u.d[i] = half_at(b + 80);
    u.dm[i] = half_at(b + 82);
}

/// The sums of the lanes of v[r][t], r < 2, t < 4, as one vector: lane 4r + t.
INLINE __m256i reduce_2x4(const __m256i v[2][4]) {
    __m256i x[2];
    for (int r = 0; r < 2; r++)
        x[r] = _mm256_hadd_epi32(_mm256_hadd_epi32(v[r][0], v[r][1]), _mm256_hadd_epi32(v[r][2], v[r][3]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(x[0], x[1], 0x20), _mm256_permute2x128_si256(x[0], x[1], 0x31));
}

/// How a type's offsets (the dm·coef terms) reach the sums: separately per 16 values (Q2_K); separately with one
/// coefficient per 32 values (Q4_K, Q5_K: two rows share each product); or, where dm is the block's own scale
/// (Q3_K, Q6_K), subtracted from the integer sums before they are reduced.
enum { offsets_per16, offsets_per32, offsets_folded };

/// Rows u[0], u[1] times four tokens a[0…3]: lane 4r + t of the result is row r · token t.
INLINE __m256 tile_2x4(const unpacked_row u[2], const activations8 a[4], size_t blocks, int offsets) {
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < blocks; i++) {
        __m256i sum[2][4];
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 4; t++) sum[r][t] = _mm256_setzero_si256();
        // Not unrolled: unrolled, the compiler interleaved sub-blocks and spilled the sums.
#pragma clang loop unroll(disable)
        for (int j = 0; j < 8; j++) {
            const size_t x = 256 * i + 32 * j;
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(u[0].codes + x));
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(u[1].codes + x));
            const __m256i s0 = _mm256_loadu_si256((const __m256i *)(u[0].scales + 256 * i + 16 * j));
            const __m256i s1 = _mm256_loadu_si256((const __m256i *)(u[1].scales + 256 * i + 16 * j));
            for (int t = 0; t < 4; t++) {
                const __m256i y = _mm256_loadu_si256((const __m256i *)(a[t].q + x));
                sum[0][t] = _mm256_add_epi32(sum[0][t], _mm256_madd_epi16(_mm256_maddubs_epi16(w0, y), s0));
                sum[1][t] = _mm256_add_epi32(sum[1][t], _mm256_madd_epi16(_mm256_maddubs_epi16(w1, y), s1));
            }
        }
        if (offsets == offsets_folded)
            for (int r = 0; r < 2; r++) {
                const __m256i c = _mm256_loadu_si256((const __m256i *)(u[r].coef + 16 * i));
                for (int t = 0; t < 4; t++)
                    sum[r][t] = _mm256_sub_epi32(sum[r][t], _mm256_madd_epi16(c, _mm256_loadu_si256((const __m256i *)(a[t].sum16 + 16 * i))));
            }
        const __m128 dt4 = _mm_setr_ps(a[0].d[i], a[1].d[i], a[2].d[i], a[3].d[i]);
        const __m256 dt = _mm256_set_m128(dt4, dt4);
        const __m256 d = _mm256_mul_ps(_mm256_set_m128(_mm_set1_ps(u[1].d[i]), _mm_set1_ps(u[0].d[i])), dt);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce_2x4(sum)), d, acc);
        if (offsets == offsets_folded) continue;
        __m256i off;
        if (offsets == offsets_per32) {
            // Row 0's eight coefficients in the low lane, row 1's in the high, against each token's sums per 32
            // in both: two hadd levels leave lane 4r + t.
            const __m256i c = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(u[1].coef32 + 8 * i)),
                                               _mm_loadu_si128((const __m128i *)(u[0].coef32 + 8 * i)));
            __m256i p[4];
            for (int t = 0; t < 4; t++)
                p[t] = _mm256_madd_epi16(c, _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a[t].sum32 + 8 * i))));
            off = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        } else {
            for (int r = 0; r < 2; r++) {
                const __m256i c = _mm256_loadu_si256((const __m256i *)(u[r].coef + 16 * i));
                for (int t = 0; t < 4; t++)
                    sum[r][t] = _mm256_madd_epi16(c, _mm256_loadu_si256((const __m256i *)(a[t].sum16 + 16 * i)));
            }
            off = reduce_2x4(sum);
        }
        const __m256 dm = _mm256_mul_ps(_mm256_set_m128(_mm_set1_ps(u[1].dm[i]), _mm_set1_ps(u[0].dm[i])), dt);
        acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(off), dm, acc);
    }
    return acc;
}

size_t moe_gemm8_scratch_bytes(size_t blocks) { return 2 * unpacked_row_bytes(blocks); }

/// `moe_gemm8_rows_<type>`: rows two at a time, each pair unpacked once into `scratch`, then every four tokens.
#define GEMM_KERNEL8(type, block_bytes, offsets)                                                                   \
    TARGET void moe_gemm8_rows_##type(const void *base, size_t row_bytes, size_t blocks, const void *acts,         \
                                      size_t tokens, float *out, size_t ldo, size_t row_begin, size_t row_end,     \
                                      int accumulate, void *scratch) {                                             \
        const size_t n = blocks * 256, stride = token_stride8(n);                                                 \
        unpacked_row u[2] = {unpacked_view((uint8_t *)scratch, blocks),                                            \
                             unpacked_view((uint8_t *)scratch + unpacked_row_bytes(blocks), blocks)};              \
        for (size_t r = row_begin; r < row_end; r += 2) {                                                          \
            const int rows = row_end - r >= 2 ? 2 : 1;                                                             \
            for (int k = 0; k < 2; k++) {                                                                          \
                /* A lone last row is unpacked twice; its copy's results are dropped. */                           \
                const uint8_t *b = (const uint8_t *)base + (r + (k < rows ? k : 0)) * row_bytes;                  \
                for (size_t i = 0; i < blocks; i++) type##_unpack(b + i * block_bytes, u[k], i);                   \
            }                                                                                                      \
            for (size_t t = 0; t < tokens; t += 4) {                                                               \
                const int nt = tokens - t < 4 ? (int)(tokens - t) : 4;                                             \
                activations8 a[4];                                                                                 \
                for (int k = 0; k < 4; k++)                                                                        \
                    a[k] = token_view8((const uint8_t *)acts + (t + (k < nt ? k : nt - 1)) * stride, n);           \
                float s[8];                                                                                        \
                _mm256_storeu_ps(s, tile_2x4(u, a, blocks, offsets));                                              \
                for (int k = 0; k < rows; k++)                                                                     \
                    for (int j = 0; j < nt; j++) {                                                                 \
                        float *o = out + (t + j) * ldo + r + k;                                                    \
                        *o = accumulate ? *o + s[4 * k + j] : s[4 * k + j];                                        \
                    }                                                                                              \
            }                                                                                                      \
        }                                                                                                          \
    }

GEMM_KERNEL8(q2_K, 84, offsets_per16)
GEMM_KERNEL8(q3_K, 110, offsets_folded)
GEMM_KERNEL8(q4_K, 144, offsets_per32)
GEMM_KERNEL8(q5_K, 176, offsets_per32)
GEMM_KERNEL8(q6_K, 210, offsets_folded)

#else

size_t moe_gemm8_scratch_bytes(size_t blocks) { (void)blocks; abort(); }
#define UNAVAILABLE_GEMM8(type)                                                                                    \
    void moe_gemm8_rows_##type(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens, \
                               float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate,           \
                               void *scratch) {                                                                    \
        (void)base; (void)row_bytes; (void)blocks; (void)acts; (void)tokens; (void)out; (void)ldo;                 \
        (void)row_begin; (void)row_end; (void)accumulate; (void)scratch;                                           \
        abort();                                                                                                   \
    }
UNAVAILABLE_GEMM8(q2_K)
UNAVAILABLE_GEMM8(q3_K)
UNAVAILABLE_GEMM8(q4_K)
UNAVAILABLE_GEMM8(q5_K)
UNAVAILABLE_GEMM8(q6_K)

#endif
