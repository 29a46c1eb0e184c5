// AVX2 dot products of Q6_K and Q4_K rows with f32 activations (see include/moe_quant_dot.h). The block layouts
// are ggml's, declared in Sources/MoEKernels/Quant/Q6_K.swift and Q4_K.swift; the arithmetic is the Swift
// kernels' (codes assembled, widened to f32, multiplied with x, each group's sum scaled once), 32 values per
// byte operation instead of 8.
#include "moe_quant_dot.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

int moe_quant_avx2_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

#define TARGET __attribute__((target("avx2,fma,f16c")))

TARGET static inline float half_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

TARGET static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Eight signed / unsigned bytes (the low 8 of `v`) as f32.
TARGET static inline __m256 f8s(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }
TARGET static inline __m256 f8u(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }

// Σ q·x over 16 values whose codes are the 16 bytes of `q` (signed).
TARGET static inline __m256 dot16s(__m128i q, const float *x) {
    return _mm256_fmadd_ps(f8s(_mm_srli_si128(q, 8)), _mm256_loadu_ps(x + 8), _mm256_mul_ps(f8s(q), _mm256_loadu_ps(x)));
}

TARGET static float dot_q6_K(const uint8_t *b, const float *x, size_t blocks) {
    const __m256i m0f = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), b32 = _mm256_set1_epi8(32);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (size_t i = 0; i < blocks; i++, b += 210, x += 256) {
        const float d = half_at(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int n = 0; n < 2; n++) {
            const __m256i A = _mm256_loadu_si256((const __m256i *)(b + 64 * n));
            const __m256i B = _mm256_loadu_si256((const __m256i *)(b + 64 * n + 32));
            const __m256i H = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * n));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(A, m0f), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
            q[1] = _mm256_or_si256(_mm256_and_si256(B, m0f), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m0f), _mm256_and_si256(H, m30));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m0f),
                                   _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
            for (int k = 0; k < 4; k++) {
                const __m256i v = _mm256_sub_epi8(q[k], b32);
                const float *xk = x + 128 * n + 32 * k;
                const int s = 8 * n + 2 * k;
                acc[k] = _mm256_fmadd_ps(dot16s(_mm256_castsi256_si128(v), xk), _mm256_set1_ps(d * sc[s]), acc[k]);
                acc[k] = _mm256_fmadd_ps(dot16s(_mm256_extracti128_si256(v, 1), xk + 16), _mm256_set1_ps(d * sc[s + 1]), acc[k]);
            }
        }
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

// Q4_K's 6-bit scale and min of group j from the 12 packed bytes (ggml's get_scale_min_k4).
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63; *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Σ q·x over 32 values whose codes are the 32 bytes of `q` (unsigned).
TARGET static inline __m256 dot32u(__m256i q, const float *x) {
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m256 a = _mm256_mul_ps(f8u(lo), _mm256_loadu_ps(x));
    __m256 b = _mm256_mul_ps(f8u(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(x + 8));
    a = _mm256_fmadd_ps(f8u(hi), _mm256_loadu_ps(x + 16), a);
    b = _mm256_fmadd_ps(f8u(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(x + 24), b);
    return _mm256_add_ps(a, b);
}

// `group_sums`: Σx per 32 values (the same for every row, so computed once per call).
TARGET static float dot_q4_K(const uint8_t *b, const float *x, const float *group_sums, size_t blocks) {
    const __m256i m0f = _mm256_set1_epi8(0x0F);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float mins = 0;
    for (size_t i = 0; i < blocks; i++, b += 144, x += 256, group_sums += 8) {
        const float d = half_at(b), dmin = half_at(b + 2);
        for (int p = 0; p < 4; p++) {
            uint8_t s1, m1, s2, m2;
            scale_min_k4(2 * p, b + 4, &s1, &m1);
            scale_min_k4(2 * p + 1, b + 4, &s2, &m2);
            const __m256i Q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * p));
            acc0 = _mm256_fmadd_ps(dot32u(_mm256_and_si256(Q, m0f), x + 64 * p), _mm256_set1_ps(d * s1), acc0);
            acc1 = _mm256_fmadd_ps(dot32u(_mm256_and_si256(_mm256_srli_epi16(Q, 4), m0f), x + 64 * p + 32),
                                   _mm256_set1_ps(d * s2), acc1);
            mins += dmin * (m1 * group_sums[2 * p] + m2 * group_sums[2 * p + 1]);
        }
    }
    return hsum(_mm256_add_ps(acc0, acc1)) - mins;
}

void moe_dot_rows_q6_K(const void *base, size_t row_bytes, size_t blocks, const float *x, float *out,
                       size_t row_begin, size_t row_end, int accumulate) {
    for (size_t r = row_begin; r < row_end; r++) {
        const float s = dot_q6_K((const uint8_t *)base + r * row_bytes, x, blocks);
        out[r] = accumulate ? out[r] + s : s;
    }
}

void moe_dot_rows_q4_K(const void *base, size_t row_bytes, size_t blocks, const float *x, float *out,
                       size_t row_begin, size_t row_end, int accumulate) {
    float sums_on_stack[256];
    float *sums = blocks * 8 <= 256 ? sums_on_stack : malloc(blocks * 8 * sizeof(float));
    if (!sums) return;
    for (size_t g = 0; g < blocks * 8; g++) {
        float s = 0;
        for (int i = 0; i < 32; i++) s += x[32 * g + i];
        sums[g] = s;
    }
    for (size_t r = row_begin; r < row_end; r++) {
        const float s = dot_q4_K((const uint8_t *)base + r * row_bytes, x, sums, blocks);
        out[r] = accumulate ? out[r] + s : s;
    }
    if (sums != sums_on_stack) free(sums);
}

#else

int moe_quant_avx2_available(void) { return 0; }
void moe_dot_rows_q6_K(const void *base, size_t row_bytes, size_t blocks, const float *x, float *out,
                       size_t row_begin, size_t row_end, int accumulate) {
    (void)base; (void)row_bytes; (void)blocks; (void)x; (void)out; (void)row_begin; (void)row_end; (void)accumulate;
}
void moe_dot_rows_q4_K(const void *base, size_t row_bytes, size_t blocks, const float *x, float *out,
                       size_t row_begin, size_t row_end, int accumulate) {
    (void)base; (void)row_bytes; (void)blocks; (void)x; (void)out; (void)row_begin; (void)row_end; (void)accumulate;
}

#endif
