// The 8-bit activation layout and the K-quant block decoding shared by the 8-bit kernels (quant_dot8.c, decode) and
// the 8-bit GEMM (quant_gemm8.c, prefill); x86-64 only.
#ifndef MOE_QUANT_BLOCKS8_H
#define MOE_QUANT_BLOCKS8_H
#include "quant_common.h"

/// One token's activations. `q`: the int8 codes in order, x ≈ d[g]·q per group g of `group` values (32 or 256).
/// `sum16` / `sum32`: Σq per 16 / 32 values (the K-quants' offsets and minimums, Q4_0's offset in the GEMM); groups
/// of 32 also `dsum[g]` = d[g]·Σq (Q4_0's offset in the row kernels). Offsets use the sums of the quantised values,
/// so each kernel computes exactly Σ w·(d·q).
typedef struct {
    const int8_t *q;
    const float *d, *dsum;
    const int16_t *sum16, *sum32;
} activations8;

/// Bytes of one token's activations in the buffer of `moe_quantize_activations8`: n codes, n/32 floats d, n/32 floats
/// dsum, n/16 + n/32 int16 sums, rounded up to 32 bytes.
static inline size_t token_stride8(size_t n) {
    return (n + n / 32 * 2 * sizeof(float) + (n / 16 + n / 32) * sizeof(int16_t) + 31) & ~(size_t)31;
}

static inline activations8 token_view8(const uint8_t *p, size_t n) {
    const float *d = (const float *)(p + n), *dsum = d + n / 32;
    const int16_t *sum16 = (const int16_t *)(dsum + n / 32);
    return (activations8){(const int8_t *)p, d, dsum, sum16, sum16 + n / 16};
}

/// vpshufb controls loaded from tables rather than built from a loop counter: where the loop was not unrolled, the
/// compiler built each control with vmovd, vpbroadcast and vinserti128. One token, one thread, rows streamed from
/// memory, Gproducts/s with the tables: Q6_K 16.5 → 18.6, Q5_K 18.1 → 21.4, Q3_K 12.4 → 16.8, Q4_K 23.5 → 24.4.
/// Word j of each 128-bit lane (bytes 2j, 2j+1) in every word of the lane.
static const uint8_t word_controls[8][32] __attribute__((aligned(32))) = {
#define WORD_CONTROL(j) {2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, \
                         2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1, 2*j, 2*j+1}
    WORD_CONTROL(0), WORD_CONTROL(1), WORD_CONTROL(2), WORD_CONTROL(3),
    WORD_CONTROL(4), WORD_CONTROL(5), WORD_CONTROL(6), WORD_CONTROL(7),
#undef WORD_CONTROL
};

/// The 16-bit word `j` of each 128-bit lane of `s`, in every word of that lane.
#define WORD(s, j) _mm256_shuffle_epi8((s), _mm256_load_si256((const __m256i *)word_controls[j]))

/// The 12 bytes of 6-bit scales and mins of Q4_K and Q5_K (one each per 32 values): scales 0–3 / mins 0–3 are the
/// low 6 bits of bytes 0–3 / 4–7; scale / min j+4 takes its low 4 bits from byte j+8 (low / high nibble), its high 2
/// bits from the top of byte j / j+4. As int16: scales in each 128-bit lane of `scales`, mins in `mins`.
INLINE void k4_scales_mins(const uint8_t *p, __m256i *scales, __m128i *mins) {
    uint32_t w[3], sm[2], mn[2];
    memcpy(w, p, 12);
    sm[0] = w[0] & 0x3F3F3F3F;
    sm[1] = (w[2] & 0x0F0F0F0F) | (((w[0] >> 6) & 0x03030303) << 4);
    mn[0] = w[1] & 0x3F3F3F3F;
    mn[1] = ((w[2] >> 4) & 0x0F0F0F0F) | (((w[1] >> 6) & 0x03030303) << 4);
    *scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sm)));
    *mins = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)mn));
}

/// For the K-quants with a scale per 16 values (Q2_K, Q3_K, Q6_K; int8, in `S`'s lanes): the scales of values
/// 32k…32k+31 of a 128-value half `n` as int16 words, scale 8n+2k in the low lane (values 0–15), 8n+2k+1 in the high
/// lane; sign-extended from the byte copied into both halves of each word.
INLINE __m256i k16_scales(__m256i S, int j) {
    // Byte j in the low lane, j+1 in the high, for even j < 16: control j/2 of this table.
    static const uint8_t controls[8][32] __attribute__((aligned(32))) = {
#define K16_CONTROL(j) {j, j, j, j, j, j, j, j, j, j, j, j, j, j, j, j, \
                        j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1}
        K16_CONTROL(0), K16_CONTROL(2), K16_CONTROL(4), K16_CONTROL(6),
        K16_CONTROL(8), K16_CONTROL(10), K16_CONTROL(12), K16_CONTROL(14),
#undef K16_CONTROL
    };
    return _mm256_srai_epi16(_mm256_shuffle_epi8(S, _mm256_load_si256((const __m256i *)controls[j / 2])), 8);
}

/// Q3_K's 16 scales (6 bits each, minus 32) from its 12 bytes at `p`, as int8: the low nibbles are bytes 0–7 (scales
/// 0–7 low, 8–15 high), the high pairs bytes 8–11.
INLINE __m128i q3_K_scales(const uint8_t *p) {
    uint32_t aux[4];
    memcpy(aux, p, 12);
    const uint32_t high = aux[2];
    aux[2] = ((aux[0] >> 4) & 0x0F0F0F0F) | (((high >> 4) & 0x03030303) << 4);
    aux[3] = ((aux[1] >> 4) & 0x0F0F0F0F) | (((high >> 6) & 0x03030303) << 4);
    aux[0] = (aux[0] & 0x0F0F0F0F) | ((high & 0x03030303) << 4);
    aux[1] = (aux[1] & 0x0F0F0F0F) | (((high >> 2) & 0x03030303) << 4);
    return _mm_sub_epi8(_mm_loadu_si128((const __m128i *)aux), _mm_set1_epi8(32));
}

/// Q3_K's codes (0–7: 2-bit code + 4·high bit) of values 128n … 128n+127 of the block at `b`: q[k] holds values
/// 128n+32k … +31 — bits 2k–2k+1 of bytes 32n+l (from b + 32) and bit 4n+k of byte l (from b).
INLINE void q3_K_codes(const uint8_t *b, int n, __m256i q[4]) {
    const __m256i m03 = _mm256_set1_epi8(0x03), m04 = _mm256_set1_epi8(0x04);
    const __m256i H = _mm256_loadu_si256((const __m256i *)b);
    const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 32 + 32 * n));
    for (int k = 0; k < 4; k++)
        q[k] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(Q, 2 * k), m03),
                               _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(H, 4 * n + k), 2), m04));
}

/// IQ4_NL's (and IQ4_XS's) 16 signed values, in both lanes: vpshufb looks a code's value up.
INLINE __m256i iq4nl_grid_vector(void) {
    static const int8_t grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)grid));
}

/// IQ4_XS's eight 6-bit scales (minus 32) of the block at `b`, as int16 in each lane: low nibbles in bytes 4–7, high
/// pairs in the 16 bits at b + 2.
INLINE __m256i iq4_xs_scales(const uint8_t *b) {
    uint16_t high;
    memcpy(&high, b + 2, 2);
    int16_t ls[8];
    for (int g = 0; g < 8; g++) ls[g] = (int16_t)((((b[4 + g / 2] >> (4 * (g % 2))) & 0x0F) | (((high >> (2 * g)) & 3) << 4)) - 32);
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ls));
}

#endif
