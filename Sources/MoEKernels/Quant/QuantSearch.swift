// The scale searches that ggml's reference quantisers share (ggml-quants.c: `nearest_int`, `make_qx_quants`,
// `make_q3_quants`, `make_qkx2_quants`, `best_index_int8`, `quantize_row_iq4_nl_impl`), in the same arithmetic:
// every sum is accumulated in the same order and every product grouped as C groups it, so that the blocks written
// are bit for bit llama.cpp's (its quantiser runs in ggml-base, built without FMA contraction; Swift does not
// contract either). The block formats' `quantize` functions call these; kernels never do.

/// Rounds to the nearest integer, ties to even, through the float adder (ggml's `nearest_int`: exact for
/// |f| < 2^22; larger values give the same bits ggml's trick gives, never a trap).
@inline(__always)
func nearestInt(_ f: Float) -> Int {
    let v = f + 12_582_912
    return Int(Int32(bitPattern: v.bitPattern) & 0x007F_FFFF) - 0x0040_0000
}

/// Groups whose largest magnitude is below this are all zero (ggml's `GROUP_MAX_EPS`).
let groupMaxEpsilon: Float = 1e-15

/// Index of the grid value nearest to `x` (`grid` sorted ascending; ties to the lower one), as `best_index_int8`.
@inline(__always)
func nearestGridIndex(_ grid: SIMD16<Int8>, _ x: Float) -> Int {
    if x <= Float(grid[0]) { return 0 }
    if x >= Float(grid[15]) { return 15 }
    var lower = 0, upper = 15
    while upper - lower > 1 {
        let mid = (lower + upper) / 2
        if x < Float(grid[mid]) { upper = mid } else { lower = mid }
    }
    return x - Float(grid[upper - 1]) < Float(grid[upper]) - x ? upper - 1 : upper
}

/// Symmetric codes in [0, 2·nmax) for `n` values and the scale that minimises Σ x²·(x − scale·(L − nmax))², trying
/// 18 scales around nmax/max (`make_qx_quants` with rmse_type 1 and no importance weights: Q6_K's search).
func symmetricQuants(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ codes: UnsafeMutablePointer<Int8>) -> Float {
    var max: Float = 0, amax: Float = 0
    for i in 0..<n where abs(x[i]) > amax { amax = abs(x[i]); max = x[i] }
    if amax < groupMaxEpsilon {
        for i in 0..<n { codes[i] = 0 }
        return 0
    }
    @inline(__always) func clamped(_ l: Int) -> Int { Swift.max(-nmax, Swift.min(nmax - 1, l)) }
    var iscale = Float(-nmax) / max
    var sumlx: Float = 0, suml2: Float = 0
    for i in 0..<n {
        let l = clamped(nearestInt(iscale * x[i]))
        codes[i] = Int8(truncatingIfNeeded: l + nmax)
        let w = x[i] * x[i]
        sumlx += w * x[i] * Float(l)
        suml2 += w * Float(l) * Float(l)
    }
    var scale = suml2 != 0 ? sumlx / suml2 : 0
    var best = scale * sumlx
    for step in -9...9 where step != 0 {
        iscale = -(Float(nmax) + 0.1 * Float(step)) / max
        sumlx = 0; suml2 = 0
        for i in 0..<n {
            let l = clamped(nearestInt(iscale * x[i]))
            let w = x[i] * x[i]
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        if suml2 > 0 && sumlx * sumlx > best * suml2 {
            for i in 0..<n { codes[i] = Int8(truncatingIfNeeded: nmax + clamped(nearestInt(iscale * x[i]))) }
            scale = sumlx / suml2
            best = scale * sumlx
        }
    }
    return scale
}

/// Q3_K's search (`make_q3_quants` with rmse): codes in [0, 2·nmax) and the scale, refined by moving one code at a
/// time while the x²-weighted error falls (at most 5 passes).
func q3Quants(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ codes: UnsafeMutablePointer<Int8>) -> Float {
    var max: Float = 0, amax: Float = 0
    for i in 0..<n where abs(x[i]) > amax { amax = abs(x[i]); max = x[i] }
    if amax < groupMaxEpsilon {
        for i in 0..<n { codes[i] = 0 }
        return 0
    }
    @inline(__always) func clamped(_ l: Int) -> Int { Swift.max(-nmax, Swift.min(nmax - 1, l)) }
    let iscale = Float(-nmax) / max
    var sumlx: Float = 0, suml2: Float = 0
    for i in 0..<n {
        let l = clamped(nearestInt(iscale * x[i]))
        codes[i] = Int8(truncatingIfNeeded: l)
        let w = x[i] * x[i]
        sumlx += w * x[i] * Float(l)
        suml2 += w * Float(l) * Float(l)
    }
    for _ in 0..<5 {
        var changed = 0
        for i in 0..<n {
            let w = x[i] * x[i]
            var slx = sumlx - w * x[i] * Float(codes[i])
            guard slx > 0 else { continue }
            var sl2 = suml2 - w * Float(codes[i]) * Float(codes[i])
            let newL = clamped(nearestInt(x[i] * sl2 / slx))
            if newL != Int(codes[i]) {
                slx += w * x[i] * Float(newL)
                sl2 += w * Float(newL) * Float(newL)
                if sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                    codes[i] = Int8(truncatingIfNeeded: newL); sumlx = slx; suml2 = sl2
                    changed += 1
                }
            }
        }
        if changed == 0 { break }
    }
    for i in 0..<n { codes[i] = codes[i] &+ Int8(truncatingIfNeeded: nmax) }
    return suml2 > 0 ? sumlx / suml2 : 0
}

/// Asymmetric codes in [0, nmax] with a scale and a non-positive offset minimising the weighted error (squared, or
/// absolute with `absolute`), trying nstep+1 scales from (nmax + rmin)/(max − min) upwards (`make_qkx2_quants`: the
/// search of Q2_K, Q4_K and Q5_K). Returns the scale and −min.
func asymmetricQuants(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                      _ codes: UnsafeMutablePointer<UInt8>, _ trial: UnsafeMutablePointer<UInt8>,
                      rmin: Float, rdelta: Float, steps: Int, absolute: Bool) -> (scale: Float, negatedMin: Float) {
    var min = x[0], max = x[0]
    var sumW = weights[0]
    var sumX = sumW * x[0]
    for i in 1..<n {
        if x[i] < min { min = x[i] }
        if x[i] > max { max = x[i] }
        sumW += weights[i]
        sumX += weights[i] * x[i]
    }
    if min > 0 { min = 0 }
    if max == min {
        for i in 0..<n { codes[i] = 0 }
        return (0, -min)
    }
    @inline(__always) func error(_ d: Float) -> Float { absolute ? abs(d) : d * d }
    var iscale = Float(nmax) / (max - min)
    var scale = 1 / iscale
    var bestError: Float = 0
    for i in 0..<n {
        let l = Swift.max(0, Swift.min(nmax, nearestInt(iscale * (x[i] - min))))
        codes[i] = UInt8(truncatingIfNeeded: l)
        bestError += weights[i] * error(scale * Float(l) + min - x[i])
    }
    if steps < 1 { return (scale, -min) }
    for step in 0...steps {
        iscale = (rmin + rdelta * Float(step) + Float(nmax)) / (max - min)
        var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
        for i in 0..<n {
            let l = Swift.max(0, Swift.min(nmax, nearestInt(iscale * (x[i] - min))))
            trial[i] = UInt8(truncatingIfNeeded: l)
            let w = weights[i]
            sumL += w * Float(l)
            sumL2 += w * Float(l) * Float(l)
            sumXL += w * Float(l) * x[i]
        }
        let det = sumW * sumL2 - sumL * sumL
        guard det > 0 else { continue }
        var thisScale = (sumW * sumXL - sumX * sumL) / det
        var thisMin = (sumL2 * sumX - sumL * sumXL) / det
        if thisMin > 0 {
            thisMin = 0
            thisScale = sumXL / sumL2
        }
        var thisError: Float = 0
        for i in 0..<n { thisError += weights[i] * error(thisScale * Float(trial[i]) + thisMin - x[i]) }
        if thisError < bestError {
            for i in 0..<n { codes[i] = trial[i] }
            bestError = thisError
            scale = thisScale
            min = thisMin
        }
    }
    return (scale, -min)
}

/// IQ4_NL and IQ4_XS (`quantize_row_iq4_nl_impl`, no importance matrix, 7 trial scales each side): `count` values
/// in groups of 32 on the non-linear grid. One group (IQ4_NL) keeps its f16 scale; several (IQ4_XS) get 6-bit
/// scales relative to an f16 super-scale. Writes the f16 scale to `scaleBits`, the 4-bit indices to `packed`
/// (16 bytes per group) and, for several groups, the scale bits to `scalesHigh`/`scalesLow`.
func iq4Quantize(_ x: UnsafePointer<Float>, count: Int, scaleBits: inout UInt16, packed: UnsafeMutableRawPointer,
                 scalesHigh: inout UInt16, scalesLow: UnsafeMutableRawPointer?) {
    let grid = iq4nlValues, tries = 7, groups = count / 32
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: count) { codes in
    withUnsafeTemporaryAllocation(of: Float.self, capacity: groups) { scales in
        let L = codes.baseAddress!
        var maxScale: Float = 0, amaxScale: Float = 0
        for g in 0..<groups {
            let xb = x + 32 * g
            let Lb = L + 32 * g
            var amax: Float = 0, max: Float = 0
            for j in 0..<32 where abs(xb[j]) > amax { amax = abs(xb[j]); max = xb[j] }
            if amax < groupMaxEpsilon {
                scales[g] = 0
                continue
            }
            var d = -max / Float(grid[0])
            var id = 1 / d
            var sumqx: Float = 0, sumq2: Float = 0
            for j in 0..<32 {
                let l = nearestGridIndex(grid, id * xb[j])
                Lb[j] = UInt8(l)
                let q = Float(grid[l]), w = xb[j] * xb[j]
                sumqx += w * q * xb[j]
                sumq2 += w * q * q
            }
            d = sumq2 > 0 ? sumqx / sumq2 : 0
            var best = d * sumqx
            for t in -tries...tries {
                id = Float(t + Int(grid[0])) / max
                sumqx = 0; sumq2 = 0
                for j in 0..<32 {
                    let q = Float(grid[nearestGridIndex(grid, id * xb[j])]), w = xb[j] * xb[j]
                    sumqx += w * q * xb[j]
                    sumq2 += w * q * q
                }
                if sumq2 > 0 && sumqx * sumqx > best * sumq2 {
                    d = sumqx / sumq2
                    best = d * sumqx
                }
            }
            scales[g] = d
            if abs(d) > amaxScale { amaxScale = abs(d); maxScale = d }
        }
        if groups > 1 {
            scalesHigh = 0
            let d = -maxScale / 32
            scaleBits = f16Bits(d)
            let id: Float = d != 0 ? 1 / d : 0
            for g in 0..<groups {
                let l = Swift.max(-32, Swift.min(31, nearestInt(id * scales[g])))
                let dl = d * Float(l)
                let idl: Float = dl != 0 ? 1 / dl : 0
                for j in 0..<32 { L[32 * g + j] = UInt8(nearestGridIndex(grid, idl * x[32 * g + j])) }
                let biased = UInt8(l + 32)
                let low = scalesLow!.advanced(by: g / 2).assumingMemoryBound(to: UInt8.self)
                low.pointee = g % 2 == 0 ? biased & 0x0F : low.pointee | ((biased & 0x0F) << 4)
                scalesHigh |= UInt16(biased >> 4) << UInt16(2 * (g % 8))
            }
        } else {
            scaleBits = f16Bits(scales[0])
            let id: Float = scales[0] != 0 ? 1 / scales[0] : 0
            for j in 0..<32 { L[j] = UInt8(nearestGridIndex(grid, id * x[j])) }
        }
        for g in 0..<groups {
            for j in 0..<16 { packed.storeBytes(of: L[32 * g + j] | (L[32 * g + 16 + j] << 4), toByteOffset: 16 * g + j, as: UInt8.self) }
        }
    }
    }
}
