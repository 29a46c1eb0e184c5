// Helpers shared by the AVX2 dot-product kernels (quant_dot16.c, quant_dot8.c); x86-64 only.
#ifndef MOE_QUANT_COMMON_H
#define MOE_QUANT_COMMON_H
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE TARGET static inline __attribute__((always_inline))

INLINE float half_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE int32_t hsum_i32x4(__m128i v) {
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4E));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xB1));
    return _mm_cvtsi128_si32(v);
}

INLINE int32_t hsum_i32(__m256i v) {
    return hsum_i32x4(_mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}

/// The largest |x| of 32 values (NaN dropped by max), and whether their sum is finite.
INLINE float amax32(const __m256 v[4], int *finite) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps(), s = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
        s = _mm256_add_ps(s, v[k]);
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    *finite = __builtin_isfinite(hsum(s));
    return _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
}

/// Q6_K's codes (0–63) of values 128n … 128n+127 of the block at `b`: q[k] holds values 128n+32k … +31 in order,
/// each the low nibble (from the 128 bytes at b) joined with its 2-bit high pair (from the 64 bytes at b+128).
INLINE void q6_K_codes(const uint8_t *b, int n, __m256i q[4]) {
    const __m256i m0f = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i A = _mm256_loadu_si256((const __m256i *)(b + 64 * n));
    const __m256i B = _mm256_loadu_si256((const __m256i *)(b + 64 * n + 32));
    const __m256i H = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * n));
    q[0] = _mm256_or_si256(_mm256_and_si256(A, m0f), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
    q[1] = _mm256_or_si256(_mm256_and_si256(B, m0f), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m0f), _mm256_and_si256(H, m30));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m0f), _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
}

/// Prefetches the `bytes` that lie `prefetch_distance` ahead of `p` (within the `left` bytes from p on): with two
/// threads streaming rows, the hardware prefetchers alone left the Q6_K/Q8_0 kernels 10–30 % slower (AMD EPYC).
enum { prefetch_distance = 4096 };
static inline void prefetch_ahead(const uint8_t *p, size_t bytes, size_t left) {
    for (size_t o = prefetch_distance; o < prefetch_distance + bytes && o < left; o += 64)
        _mm_prefetch((const char *)p + o, _MM_HINT_T0);
}

#endif
