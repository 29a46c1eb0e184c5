// Dot products of ggml block rows with f32 activations, for the CPU instructions Swift's SIMD types do not express
// well: byte-wide shuffles, shifts and sign-extensions of 32-byte vectors, and 8- and 16-bit integer products (AVX2).
// The activations are quantised to int16 per 32 values (≈1e-5 relative on a dot product; quant_dot16.c), or, on the
// fast path, to int8 as llama.cpp does (quant_dot8.c). MoEKernels calls these only when
// `moe_quant_avx2_available()` says the CPU has AVX2, FMA and F16C; elsewhere it uses its portable Swift kernels.
#ifndef MOE_QUANT_DOT_H
#define MOE_QUANT_DOT_H
#include <stddef.h>

/// 1 when the CPU running this has AVX2, FMA and F16C (and this file was built for x86-64), else 0.
int moe_quant_avx2_available(void);

/// out[r] (= or +=) Σ_i W[r, i]·x[i] for r in [row_begin, row_end): W's rows are `blocks` Q6_K blocks (210 bytes
/// each), row r at base + r·row_bytes.
void moe_dot_rows_q6_K(const void *base, size_t row_bytes, size_t blocks, const float *x, float *out,
                       size_t row_begin, size_t row_end, int accumulate);
/// The same for Q4_K rows (144-byte blocks).
void moe_dot_rows_q4_K(const void *base, size_t row_bytes, size_t blocks, const float *x, float *out,
                       size_t row_begin, size_t row_end, int accumulate);
/// The same for Q4_0 rows (`blocks` 18-byte blocks of 32 values).
void moe_dot_rows_q4_0(const void *base, size_t row_bytes, size_t blocks, const float *x, float *out,
                       size_t row_begin, size_t row_end, int accumulate);
/// The same for Q8_0 rows (`blocks` 34-byte blocks of 32 values).
void moe_dot_rows_q8_0(const void *base, size_t row_bytes, size_t blocks, const float *x, float *out,
                       size_t row_begin, size_t row_end, int accumulate);

/// Several tokens at once (batched decode): out[t·ldo + r] (= or +=) Σ_i W[r, i]·x[t·ldx + i] for t < tokens and
/// r in [row_begin, row_end); each row's codes are unpacked once for up to four tokens.
void moe_dot_rows_tokens_q4_0(const void *base, size_t row_bytes, size_t blocks, const float *x, size_t ldx,
                              size_t tokens, float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate);
void moe_dot_rows_tokens_q8_0(const void *base, size_t row_bytes, size_t blocks, const float *x, size_t ldx,
                              size_t tokens, float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate);
void moe_dot_rows_tokens_q4_K(const void *base, size_t row_bytes, size_t blocks, const float *x, size_t ldx,
                              size_t tokens, float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate);
void moe_dot_rows_tokens_q6_K(const void *base, size_t row_bytes, size_t blocks, const float *x, size_t ldx,
                              size_t tokens, float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate);

/// The fast path, on 8-bit activations as llama.cpp's kernels (quant_dot8.c). First the activations: each token's
/// x (`n` values, a multiple of `group`; token t at x + t·ldx) rounded to int8 with one scale per `group` values (32
/// for Q4_0 rows, 256 for the K-quants and IQ4_XS), written for tokens [token_begin, token_end) into `buffer` (float-aligned)
/// of `moe_activations8_bytes(n, tokens)` bytes.
size_t moe_activations8_bytes(size_t n, size_t tokens);
void moe_quantize_activations8(const float *x, size_t ldx, size_t n, size_t group, size_t token_begin, size_t token_end,
                               void *buffer);
/// Then out[t·ldo + r] (= or +=) Σ_i W[r, i]·x[t·ldx + i] for t < tokens and r in [row_begin, row_end), from those
/// activations (`acts`, the buffer above).
void moe_dot8_rows_q4_0(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                        float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate);
void moe_dot8_rows_q4_K(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                        float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate);
void moe_dot8_rows_q2_K(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                        float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate);
void moe_dot8_rows_q3_K(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                        float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate);
void moe_dot8_rows_q5_K(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                        float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate);
void moe_dot8_rows_iq4_xs(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                          float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate);
void moe_dot8_rows_mxfp4(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                          float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate);
void moe_dot8_rows_q6_K(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                        float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate);

/// Prefill (quant_gemm8.c): the same product for many tokens, from the same activations, for the K-quants, Q4_0 and
/// Q8_0: rows are repacked eight at a time into `scratch` (`moe_gemm8_scratch_bytes(cols)` bytes for rows of `cols`
/// values), then multiplied by four tokens at a time.
size_t moe_gemm8_scratch_bytes(size_t cols);
void moe_gemm8_rows_q4_0(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                         float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate, void *scratch);
void moe_gemm8_rows_q8_0(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                         float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate, void *scratch);
void moe_gemm8_rows_q2_K(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                         float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate, void *scratch);
void moe_gemm8_rows_q3_K(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                         float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate, void *scratch);
void moe_gemm8_rows_q4_K(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                         float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate, void *scratch);
void moe_gemm8_rows_q5_K(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                         float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate, void *scratch);
void moe_gemm8_rows_q6_K(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                         float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate, void *scratch);
void moe_gemm8_rows_iq4_xs(const void *base, size_t row_bytes, size_t blocks, const void *acts, size_t tokens,
                           float *out, size_t ldo, size_t row_begin, size_t row_end, int accumulate, void *scratch);

#endif
