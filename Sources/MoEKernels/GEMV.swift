// Small-token Linear: out[t, o] = Σ_i x[t, i] · W[o, i] for tokens 1…8. W is streamed once, a block of 4 rows at a time
// (the rows share each x load); for several tokens, the 4-row block is re-read from L1 for each pair of tokens.
// The dot products keep full SIMD8 (one ymm) accumulators and reduce them once per row at the end.
// Every (element type, rows, tokens) variant is written out as its own function so that no variant depends on the
// optimiser's inlining decisions; they are generated from one template and differ only in their constants.

@inline(__always)
func load8F32(_ p: UnsafeRawPointer) -> SIMD8<Float> {
    p.loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
func load8BF16(_ p: UnsafeRawPointer) -> SIMD8<Float> {
    let h = p.loadUnaligned(as: SIMD8<UInt16>.self)
    return SIMD8<Float>(bf16Value(h[0]), bf16Value(h[1]), bf16Value(h[2]), bf16Value(h[3]),
                        bf16Value(h[4]), bf16Value(h[5]), bf16Value(h[6]), bf16Value(h[7]))
}

@inline(__always)
func load8F16(_ p: UnsafeRawPointer) -> SIMD8<Float> {
    let h = p.loadUnaligned(as: SIMD8<UInt16>.self)
    return SIMD8<Float>(f16Value(h[0]), f16Value(h[1]), f16Value(h[2]), f16Value(h[3]),
                        f16Value(h[4]), f16Value(h[5]), f16Value(h[6]), f16Value(h[7]))
}

@inline(__always)
func load8(_ p: UnsafeRawPointer, _ type: ElementType) -> SIMD8<Float> {
    switch type {
    case .f32: return load8F32(p)
    case .bf16: return load8BF16(p)
    case .f16: return load8F16(p)
    }
}

@inline(__always)
func loadScalar(_ p: UnsafeRawPointer, _ i: Int, _ type: ElementType) -> Float {
    switch type {
    case .f32: return p.load(fromByteOffset: i &* 4, as: Float.self)
    case .bf16: return bf16Value(p.load(fromByteOffset: i &* 2, as: UInt16.self))
    case .f16: return f16Value(p.load(fromByteOffset: i &* 2, as: UInt16.self))
    }
}

@inline(__always)
func hsum(_ v: SIMD8<Float>) -> Float {
    let b = v.lowHalf + v.highHalf
    let c = b.lowHalf + b.highHalf
    return c[0] + c[1]
}

@inline(__always)
func ldx8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

/// Adds the columns past the last full vector and stores one output.
@inline(never)
func finishDot(_ acc: SIMD8<Float>, _ w: UnsafeRawPointer, _ type: ElementType, _ x: UnsafePointer<Float>, _ k0: Int,
               _ cols: Int, _ o: UnsafeMutablePointer<Float>, _ accumulate: Bool) {
    var s = hsum(acc)
    var k = k0
    while k < cols { s += loadScalar(w, k, type) * x[k]; k &+= 1 }
    o.pointee = accumulate ? o.pointee + s : s
}

typealias DotKernel = (UnsafeRawPointer, Int, Int, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>, Int, Bool) -> Void

@inline(never)
func dot_f32_1x1(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let x0 = x + 0 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var k = 0
    var a02 = SIMD8<Float>(), a03 = SIMD8<Float>()
    while k &+ 32 <= cols {
        a00 = a00.addingProduct(load8F32(w0 + k &* 4), ldx8(x0 + k))
        a01 = a01.addingProduct(load8F32(w0 + (k &+ 8) &* 4), ldx8(x0 + (k &+ 8)))
        a02 = a02.addingProduct(load8F32(w0 + (k &+ 16) &* 4), ldx8(x0 + (k &+ 16)))
        a03 = a03.addingProduct(load8F32(w0 + (k &+ 24) &* 4), ldx8(x0 + (k &+ 24)))
        k &+= 32
    }
    a00 += a02; a01 += a03
    while k &+ 16 <= cols {
        let xa = ldx8(x0 + k), xb = ldx8(x0 + (k &+ 8))
        a00 = a00.addingProduct(load8F32(w0 + k &* 4), xa)
        a01 = a01.addingProduct(load8F32(w0 + (k &+ 8) &* 4), xb)
        k &+= 16
    }
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let wv0 = load8F32(w0 + k &* 4)
        a00 = a00.addingProduct(wv0, xv0)
        k &+= 8
    }
    finishDot(a00 + a01, w0, .f32, x0, k, cols, out + 0, accumulate)
}

@inline(never)
func dot_f32_1x2(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let x0 = x + 0 &* ldx
    let x1 = x + 1 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var k = 0
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let xv1 = ldx8(x1 + k)
        let wv0 = load8F32(w0 + k &* 4)
        a00 = a00.addingProduct(wv0, xv0)
        a01 = a01.addingProduct(wv0, xv1)
        k &+= 8
    }
    finishDot(a00, w0, .f32, x0, k, cols, out + (0 &* ldo &+ 0), accumulate)
    finishDot(a01, w0, .f32, x1, k, cols, out + (1 &* ldo &+ 0), accumulate)
}

@inline(never)
func dot_f32_2x1(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let x0 = x + 0 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var k = 0
    while k &+ 16 <= cols {
        let xa = ldx8(x0 + k), xb = ldx8(x0 + (k &+ 8))
        a00 = a00.addingProduct(load8F32(w0 + k &* 4), xa)
        a01 = a01.addingProduct(load8F32(w0 + (k &+ 8) &* 4), xb)
        a10 = a10.addingProduct(load8F32(w1 + k &* 4), xa)
        a11 = a11.addingProduct(load8F32(w1 + (k &+ 8) &* 4), xb)
        k &+= 16
    }
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let wv0 = load8F32(w0 + k &* 4)
        a00 = a00.addingProduct(wv0, xv0)
        let wv1 = load8F32(w1 + k &* 4)
        a10 = a10.addingProduct(wv1, xv0)
        k &+= 8
    }
    finishDot(a00 + a01, w0, .f32, x0, k, cols, out + 0, accumulate)
    finishDot(a10 + a11, w1, .f32, x0, k, cols, out + 1, accumulate)
}

@inline(never)
func dot_f32_2x2(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let x0 = x + 0 &* ldx
    let x1 = x + 1 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var k = 0
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let xv1 = ldx8(x1 + k)
        let wv0 = load8F32(w0 + k &* 4)
        a00 = a00.addingProduct(wv0, xv0)
        a01 = a01.addingProduct(wv0, xv1)
        let wv1 = load8F32(w1 + k &* 4)
        a10 = a10.addingProduct(wv1, xv0)
        a11 = a11.addingProduct(wv1, xv1)
        k &+= 8
    }
    finishDot(a00, w0, .f32, x0, k, cols, out + (0 &* ldo &+ 0), accumulate)
    finishDot(a01, w0, .f32, x1, k, cols, out + (1 &* ldo &+ 0), accumulate)
    finishDot(a10, w1, .f32, x0, k, cols, out + (0 &* ldo &+ 1), accumulate)
    finishDot(a11, w1, .f32, x1, k, cols, out + (1 &* ldo &+ 1), accumulate)
}

@inline(never)
func dot_f32_3x1(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let w2 = w + 2 &* rowBytes
    let x0 = x + 0 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var a20 = SIMD8<Float>(); var a21 = SIMD8<Float>()
    var k = 0
    while k &+ 16 <= cols {
        let xa = ldx8(x0 + k), xb = ldx8(x0 + (k &+ 8))
        a00 = a00.addingProduct(load8F32(w0 + k &* 4), xa)
        a01 = a01.addingProduct(load8F32(w0 + (k &+ 8) &* 4), xb)
        a10 = a10.addingProduct(load8F32(w1 + k &* 4), xa)
        a11 = a11.addingProduct(load8F32(w1 + (k &+ 8) &* 4), xb)
        a20 = a20.addingProduct(load8F32(w2 + k &* 4), xa)
        a21 = a21.addingProduct(load8F32(w2 + (k &+ 8) &* 4), xb)
        k &+= 16
    }
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let wv0 = load8F32(w0 + k &* 4)
        a00 = a00.addingProduct(wv0, xv0)
        let wv1 = load8F32(w1 + k &* 4)
        a10 = a10.addingProduct(wv1, xv0)
        let wv2 = load8F32(w2 + k &* 4)
        a20 = a20.addingProduct(wv2, xv0)
        k &+= 8
    }
    finishDot(a00 + a01, w0, .f32, x0, k, cols, out + 0, accumulate)
    finishDot(a10 + a11, w1, .f32, x0, k, cols, out + 1, accumulate)
    finishDot(a20 + a21, w2, .f32, x0, k, cols, out + 2, accumulate)
}

@inline(never)
func dot_f32_3x2(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let w2 = w + 2 &* rowBytes
    let x0 = x + 0 &* ldx
    let x1 = x + 1 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var a20 = SIMD8<Float>(); var a21 = SIMD8<Float>()
    var k = 0
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let xv1 = ldx8(x1 + k)
        let wv0 = load8F32(w0 + k &* 4)
        a00 = a00.addingProduct(wv0, xv0)
        a01 = a01.addingProduct(wv0, xv1)
        let wv1 = load8F32(w1 + k &* 4)
        a10 = a10.addingProduct(wv1, xv0)
        a11 = a11.addingProduct(wv1, xv1)
        let wv2 = load8F32(w2 + k &* 4)
        a20 = a20.addingProduct(wv2, xv0)
        a21 = a21.addingProduct(wv2, xv1)
        k &+= 8
    }
    finishDot(a00, w0, .f32, x0, k, cols, out + (0 &* ldo &+ 0), accumulate)
    finishDot(a01, w0, .f32, x1, k, cols, out + (1 &* ldo &+ 0), accumulate)
    finishDot(a10, w1, .f32, x0, k, cols, out + (0 &* ldo &+ 1), accumulate)
    finishDot(a11, w1, .f32, x1, k, cols, out + (1 &* ldo &+ 1), accumulate)
    finishDot(a20, w2, .f32, x0, k, cols, out + (0 &* ldo &+ 2), accumulate)
    finishDot(a21, w2, .f32, x1, k, cols, out + (1 &* ldo &+ 2), accumulate)
}

@inline(never)
func dot_f32_4x1(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let w2 = w + 2 &* rowBytes
    let w3 = w + 3 &* rowBytes
    let x0 = x + 0 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var a20 = SIMD8<Float>(); var a21 = SIMD8<Float>()
    var a30 = SIMD8<Float>(); var a31 = SIMD8<Float>()
    var k = 0
    while k &+ 16 <= cols {
        let xa = ldx8(x0 + k), xb = ldx8(x0 + (k &+ 8))
        a00 = a00.addingProduct(load8F32(w0 + k &* 4), xa)
        a01 = a01.addingProduct(load8F32(w0 + (k &+ 8) &* 4), xb)
        a10 = a10.addingProduct(load8F32(w1 + k &* 4), xa)
        a11 = a11.addingProduct(load8F32(w1 + (k &+ 8) &* 4), xb)
        a20 = a20.addingProduct(load8F32(w2 + k &* 4), xa)
        a21 = a21.addingProduct(load8F32(w2 + (k &+ 8) &* 4), xb)
        a30 = a30.addingProduct(load8F32(w3 + k &* 4), xa)
        a31 = a31.addingProduct(load8F32(w3 + (k &+ 8) &* 4), xb)
        k &+= 16
    }
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let wv0 = load8F32(w0 + k &* 4)
        a00 = a00.addingProduct(wv0, xv0)
        let wv1 = load8F32(w1 + k &* 4)
        a10 = a10.addingProduct(wv1, xv0)
        let wv2 = load8F32(w2 + k &* 4)
        a20 = a20.addingProduct(wv2, xv0)
        let wv3 = load8F32(w3 + k &* 4)
        a30 = a30.addingProduct(wv3, xv0)
        k &+= 8
    }
    finishDot(a00 + a01, w0, .f32, x0, k, cols, out + 0, accumulate)
    finishDot(a10 + a11, w1, .f32, x0, k, cols, out + 1, accumulate)
    finishDot(a20 + a21, w2, .f32, x0, k, cols, out + 2, accumulate)
    finishDot(a30 + a31, w3, .f32, x0, k, cols, out + 3, accumulate)
}

@inline(never)
func dot_f32_4x2(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let w2 = w + 2 &* rowBytes
    let w3 = w + 3 &* rowBytes
    let x0 = x + 0 &* ldx
    let x1 = x + 1 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var a20 = SIMD8<Float>(); var a21 = SIMD8<Float>()
    var a30 = SIMD8<Float>(); var a31 = SIMD8<Float>()
    var k = 0
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let xv1 = ldx8(x1 + k)
        let wv0 = load8F32(w0 + k &* 4)
        a00 = a00.addingProduct(wv0, xv0)
        a01 = a01.addingProduct(wv0, xv1)
        let wv1 = load8F32(w1 + k &* 4)
        a10 = a10.addingProduct(wv1, xv0)
        a11 = a11.addingProduct(wv1, xv1)
        let wv2 = load8F32(w2 + k &* 4)
        a20 = a20.addingProduct(wv2, xv0)
        a21 = a21.addingProduct(wv2, xv1)
        let wv3 = load8F32(w3 + k &* 4)
        a30 = a30.addingProduct(wv3, xv0)
        a31 = a31.addingProduct(wv3, xv1)
        k &+= 8
    }
    finishDot(a00, w0, .f32, x0, k, cols, out + (0 &* ldo &+ 0), accumulate)
    finishDot(a01, w0, .f32, x1, k, cols, out + (1 &* ldo &+ 0), accumulate)
    finishDot(a10, w1, .f32, x0, k, cols, out + (0 &* ldo &+ 1), accumulate)
    finishDot(a11, w1, .f32, x1, k, cols, out + (1 &* ldo &+ 1), accumulate)
    finishDot(a20, w2, .f32, x0, k, cols, out + (0 &* ldo &+ 2), accumulate)
    finishDot(a21, w2, .f32, x1, k, cols, out + (1 &* ldo &+ 2), accumulate)
    finishDot(a30, w3, .f32, x0, k, cols, out + (0 &* ldo &+ 3), accumulate)
    finishDot(a31, w3, .f32, x1, k, cols, out + (1 &* ldo &+ 3), accumulate)
}

@inline(never)
func dot_bf16_1x1(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let x0 = x + 0 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var k = 0
    var a02 = SIMD8<Float>(), a03 = SIMD8<Float>()
    while k &+ 32 <= cols {
        a00 = a00.addingProduct(load8BF16(w0 + k &* 2), ldx8(x0 + k))
        a01 = a01.addingProduct(load8BF16(w0 + (k &+ 8) &* 2), ldx8(x0 + (k &+ 8)))
        a02 = a02.addingProduct(load8BF16(w0 + (k &+ 16) &* 2), ldx8(x0 + (k &+ 16)))
        a03 = a03.addingProduct(load8BF16(w0 + (k &+ 24) &* 2), ldx8(x0 + (k &+ 24)))
        k &+= 32
    }
    a00 += a02; a01 += a03
    while k &+ 16 <= cols {
        let xa = ldx8(x0 + k), xb = ldx8(x0 + (k &+ 8))
        a00 = a00.addingProduct(load8BF16(w0 + k &* 2), xa)
        a01 = a01.addingProduct(load8BF16(w0 + (k &+ 8) &* 2), xb)
        k &+= 16
    }
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let wv0 = load8BF16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        k &+= 8
    }
    finishDot(a00 + a01, w0, .bf16, x0, k, cols, out + 0, accumulate)
}

@inline(never)
func dot_bf16_1x2(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let x0 = x + 0 &* ldx
    let x1 = x + 1 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var k = 0
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let xv1 = ldx8(x1 + k)
        let wv0 = load8BF16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        a01 = a01.addingProduct(wv0, xv1)
        k &+= 8
    }
    finishDot(a00, w0, .bf16, x0, k, cols, out + (0 &* ldo &+ 0), accumulate)
    finishDot(a01, w0, .bf16, x1, k, cols, out + (1 &* ldo &+ 0), accumulate)
}

@inline(never)
func dot_bf16_2x1(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let x0 = x + 0 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var k = 0
    while k &+ 16 <= cols {
        let xa = ldx8(x0 + k), xb = ldx8(x0 + (k &+ 8))
        a00 = a00.addingProduct(load8BF16(w0 + k &* 2), xa)
        a01 = a01.addingProduct(load8BF16(w0 + (k &+ 8) &* 2), xb)
        a10 = a10.addingProduct(load8BF16(w1 + k &* 2), xa)
        a11 = a11.addingProduct(load8BF16(w1 + (k &+ 8) &* 2), xb)
        k &+= 16
    }
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let wv0 = load8BF16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        let wv1 = load8BF16(w1 + k &* 2)
        a10 = a10.addingProduct(wv1, xv0)
        k &+= 8
    }
    finishDot(a00 + a01, w0, .bf16, x0, k, cols, out + 0, accumulate)
    finishDot(a10 + a11, w1, .bf16, x0, k, cols, out + 1, accumulate)
}

@inline(never)
func dot_bf16_2x2(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let x0 = x + 0 &* ldx
    let x1 = x + 1 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var k = 0
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let xv1 = ldx8(x1 + k)
        let wv0 = load8BF16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        a01 = a01.addingProduct(wv0, xv1)
        let wv1 = load8BF16(w1 + k &* 2)
        a10 = a10.addingProduct(wv1, xv0)
        a11 = a11.addingProduct(wv1, xv1)
        k &+= 8
    }
    finishDot(a00, w0, .bf16, x0, k, cols, out + (0 &* ldo &+ 0), accumulate)
    finishDot(a01, w0, .bf16, x1, k, cols, out + (1 &* ldo &+ 0), accumulate)
    finishDot(a10, w1, .bf16, x0, k, cols, out + (0 &* ldo &+ 1), accumulate)
    finishDot(a11, w1, .bf16, x1, k, cols, out + (1 &* ldo &+ 1), accumulate)
}

@inline(never)
func dot_bf16_3x1(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let w2 = w + 2 &* rowBytes
    let x0 = x + 0 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var a20 = SIMD8<Float>(); var a21 = SIMD8<Float>()
    var k = 0
    while k &+ 16 <= cols {
        let xa = ldx8(x0 + k), xb = ldx8(x0 + (k &+ 8))
        a00 = a00.addingProduct(load8BF16(w0 + k &* 2), xa)
        a01 = a01.addingProduct(load8BF16(w0 + (k &+ 8) &* 2), xb)
        a10 = a10.addingProduct(load8BF16(w1 + k &* 2), xa)
        a11 = a11.addingProduct(load8BF16(w1 + (k &+ 8) &* 2), xb)
        a20 = a20.addingProduct(load8BF16(w2 + k &* 2), xa)
        a21 = a21.addingProduct(load8BF16(w2 + (k &+ 8) &* 2), xb)
        k &+= 16
    }
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let wv0 = load8BF16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        let wv1 = load8BF16(w1 + k &* 2)
        a10 = a10.addingProduct(wv1, xv0)
        let wv2 = load8BF16(w2 + k &* 2)
        a20 = a20.addingProduct(wv2, xv0)
        k &+= 8
    }
    finishDot(a00 + a01, w0, .bf16, x0, k, cols, out + 0, accumulate)
    finishDot(a10 + a11, w1, .bf16, x0, k, cols, out + 1, accumulate)
    finishDot(a20 + a21, w2, .bf16, x0, k, cols, out + 2, accumulate)
}

@inline(never)
func dot_bf16_3x2(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let w2 = w + 2 &* rowBytes
    let x0 = x + 0 &* ldx
    let x1 = x + 1 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var a20 = SIMD8<Float>(); var a21 = SIMD8<Float>()
    var k = 0
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let xv1 = ldx8(x1 + k)
        let wv0 = load8BF16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        a01 = a01.addingProduct(wv0, xv1)
        let wv1 = load8BF16(w1 + k &* 2)
        a10 = a10.addingProduct(wv1, xv0)
        a11 = a11.addingProduct(wv1, xv1)
        let wv2 = load8BF16(w2 + k &* 2)
        a20 = a20.addingProduct(wv2, xv0)
        a21 = a21.addingProduct(wv2, xv1)
        k &+= 8
    }
    finishDot(a00, w0, .bf16, x0, k, cols, out + (0 &* ldo &+ 0), accumulate)
    finishDot(a01, w0, .bf16, x1, k, cols, out + (1 &* ldo &+ 0), accumulate)
    finishDot(a10, w1, .bf16, x0, k, cols, out + (0 &* ldo &+ 1), accumulate)
    finishDot(a11, w1, .bf16, x1, k, cols, out + (1 &* ldo &+ 1), accumulate)
    finishDot(a20, w2, .bf16, x0, k, cols, out + (0 &* ldo &+ 2), accumulate)
    finishDot(a21, w2, .bf16, x1, k, cols, out + (1 &* ldo &+ 2), accumulate)
}

@inline(never)
func dot_bf16_4x1(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let w2 = w + 2 &* rowBytes
    let w3 = w + 3 &* rowBytes
    let x0 = x + 0 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var a20 = SIMD8<Float>(); var a21 = SIMD8<Float>()
    var a30 = SIMD8<Float>(); var a31 = SIMD8<Float>()
    var k = 0
    while k &+ 16 <= cols {
        let xa = ldx8(x0 + k), xb = ldx8(x0 + (k &+ 8))
        a00 = a00.addingProduct(load8BF16(w0 + k &* 2), xa)
        a01 = a01.addingProduct(load8BF16(w0 + (k &+ 8) &* 2), xb)
        a10 = a10.addingProduct(load8BF16(w1 + k &* 2), xa)
        a11 = a11.addingProduct(load8BF16(w1 + (k &+ 8) &* 2), xb)
        a20 = a20.addingProduct(load8BF16(w2 + k &* 2), xa)
        a21 = a21.addingProduct(load8BF16(w2 + (k &+ 8) &* 2), xb)
        a30 = a30.addingProduct(load8BF16(w3 + k &* 2), xa)
        a31 = a31.addingProduct(load8BF16(w3 + (k &+ 8) &* 2), xb)
        k &+= 16
    }
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let wv0 = load8BF16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        let wv1 = load8BF16(w1 + k &* 2)
        a10 = a10.addingProduct(wv1, xv0)
        let wv2 = load8BF16(w2 + k &* 2)
        a20 = a20.addingProduct(wv2, xv0)
        let wv3 = load8BF16(w3 + k &* 2)
        a30 = a30.addingProduct(wv3, xv0)
        k &+= 8
    }
    finishDot(a00 + a01, w0, .bf16, x0, k, cols, out + 0, accumulate)
    finishDot(a10 + a11, w1, .bf16, x0, k, cols, out + 1, accumulate)
    finishDot(a20 + a21, w2, .bf16, x0, k, cols, out + 2, accumulate)
    finishDot(a30 + a31, w3, .bf16, x0, k, cols, out + 3, accumulate)
}

@inline(never)
func dot_bf16_4x2(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let w2 = w + 2 &* rowBytes
    let w3 = w + 3 &* rowBytes
    let x0 = x + 0 &* ldx
    let x1 = x + 1 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var a20 = SIMD8<Float>(); var a21 = SIMD8<Float>()
    var a30 = SIMD8<Float>(); var a31 = SIMD8<Float>()
    var k = 0
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let xv1 = ldx8(x1 + k)
        let wv0 = load8BF16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        a01 = a01.addingProduct(wv0, xv1)
        let wv1 = load8BF16(w1 + k &* 2)
        a10 = a10.addingProduct(wv1, xv0)
        a11 = a11.addingProduct(wv1, xv1)
        let wv2 = load8BF16(w2 + k &* 2)
        a20 = a20.addingProduct(wv2, xv0)
        a21 = a21.addingProduct(wv2, xv1)
        let wv3 = load8BF16(w3 + k &* 2)
        a30 = a30.addingProduct(wv3, xv0)
        a31 = a31.addingProduct(wv3, xv1)
        k &+= 8
    }
    finishDot(a00, w0, .bf16, x0, k, cols, out + (0 &* ldo &+ 0), accumulate)
    finishDot(a01, w0, .bf16, x1, k, cols, out + (1 &* ldo &+ 0), accumulate)
    finishDot(a10, w1, .bf16, x0, k, cols, out + (0 &* ldo &+ 1), accumulate)
    finishDot(a11, w1, .bf16, x1, k, cols, out + (1 &* ldo &+ 1), accumulate)
    finishDot(a20, w2, .bf16, x0, k, cols, out + (0 &* ldo &+ 2), accumulate)
    finishDot(a21, w2, .bf16, x1, k, cols, out + (1 &* ldo &+ 2), accumulate)
    finishDot(a30, w3, .bf16, x0, k, cols, out + (0 &* ldo &+ 3), accumulate)
    finishDot(a31, w3, .bf16, x1, k, cols, out + (1 &* ldo &+ 3), accumulate)
}

@inline(never)
func dot_f16_1x1(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let x0 = x + 0 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var k = 0
    var a02 = SIMD8<Float>(), a03 = SIMD8<Float>()
    while k &+ 32 <= cols {
        a00 = a00.addingProduct(load8F16(w0 + k &* 2), ldx8(x0 + k))
        a01 = a01.addingProduct(load8F16(w0 + (k &+ 8) &* 2), ldx8(x0 + (k &+ 8)))
        a02 = a02.addingProduct(load8F16(w0 + (k &+ 16) &* 2), ldx8(x0 + (k &+ 16)))
        a03 = a03.addingProduct(load8F16(w0 + (k &+ 24) &* 2), ldx8(x0 + (k &+ 24)))
        k &+= 32
    }
    a00 += a02; a01 += a03
    while k &+ 16 <= cols {
        let xa = ldx8(x0 + k), xb = ldx8(x0 + (k &+ 8))
        a00 = a00.addingProduct(load8F16(w0 + k &* 2), xa)
        a01 = a01.addingProduct(load8F16(w0 + (k &+ 8) &* 2), xb)
        k &+= 16
    }
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let wv0 = load8F16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        k &+= 8
    }
    finishDot(a00 + a01, w0, .f16, x0, k, cols, out + 0, accumulate)
}

@inline(never)
func dot_f16_1x2(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let x0 = x + 0 &* ldx
    let x1 = x + 1 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var k = 0
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let xv1 = ldx8(x1 + k)
        let wv0 = load8F16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        a01 = a01.addingProduct(wv0, xv1)
        k &+= 8
    }
    finishDot(a00, w0, .f16, x0, k, cols, out + (0 &* ldo &+ 0), accumulate)
    finishDot(a01, w0, .f16, x1, k, cols, out + (1 &* ldo &+ 0), accumulate)
}

@inline(never)
func dot_f16_2x1(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let x0 = x + 0 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var k = 0
    while k &+ 16 <= cols {
        let xa = ldx8(x0 + k), xb = ldx8(x0 + (k &+ 8))
        a00 = a00.addingProduct(load8F16(w0 + k &* 2), xa)
        a01 = a01.addingProduct(load8F16(w0 + (k &+ 8) &* 2), xb)
        a10 = a10.addingProduct(load8F16(w1 + k &* 2), xa)
        a11 = a11.addingProduct(load8F16(w1 + (k &+ 8) &* 2), xb)
        k &+= 16
    }
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let wv0 = load8F16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        let wv1 = load8F16(w1 + k &* 2)
        a10 = a10.addingProduct(wv1, xv0)
        k &+= 8
    }
    finishDot(a00 + a01, w0, .f16, x0, k, cols, out + 0, accumulate)
    finishDot(a10 + a11, w1, .f16, x0, k, cols, out + 1, accumulate)
}

@inline(never)
func dot_f16_2x2(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let x0 = x + 0 &* ldx
    let x1 = x + 1 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var k = 0
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let xv1 = ldx8(x1 + k)
        let wv0 = load8F16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        a01 = a01.addingProduct(wv0, xv1)
        let wv1 = load8F16(w1 + k &* 2)
        a10 = a10.addingProduct(wv1, xv0)
        a11 = a11.addingProduct(wv1, xv1)
        k &+= 8
    }
    finishDot(a00, w0, .f16, x0, k, cols, out + (0 &* ldo &+ 0), accumulate)
    finishDot(a01, w0, .f16, x1, k, cols, out + (1 &* ldo &+ 0), accumulate)
    finishDot(a10, w1, .f16, x0, k, cols, out + (0 &* ldo &+ 1), accumulate)
    finishDot(a11, w1, .f16, x1, k, cols, out + (1 &* ldo &+ 1), accumulate)
}

@inline(never)
func dot_f16_3x1(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let w2 = w + 2 &* rowBytes
    let x0 = x + 0 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var a20 = SIMD8<Float>(); var a21 = SIMD8<Float>()
    var k = 0
    while k &+ 16 <= cols {
        let xa = ldx8(x0 + k), xb = ldx8(x0 + (k &+ 8))
        a00 = a00.addingProduct(load8F16(w0 + k &* 2), xa)
        a01 = a01.addingProduct(load8F16(w0 + (k &+ 8) &* 2), xb)
        a10 = a10.addingProduct(load8F16(w1 + k &* 2), xa)
        a11 = a11.addingProduct(load8F16(w1 + (k &+ 8) &* 2), xb)
        a20 = a20.addingProduct(load8F16(w2 + k &* 2), xa)
        a21 = a21.addingProduct(load8F16(w2 + (k &+ 8) &* 2), xb)
        k &+= 16
    }
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let wv0 = load8F16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        let wv1 = load8F16(w1 + k &* 2)
        a10 = a10.addingProduct(wv1, xv0)
        let wv2 = load8F16(w2 + k &* 2)
        a20 = a20.addingProduct(wv2, xv0)
        k &+= 8
    }
    finishDot(a00 + a01, w0, .f16, x0, k, cols, out + 0, accumulate)
    finishDot(a10 + a11, w1, .f16, x0, k, cols, out + 1, accumulate)
    finishDot(a20 + a21, w2, .f16, x0, k, cols, out + 2, accumulate)
}

@inline(never)
func dot_f16_3x2(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let w2 = w + 2 &* rowBytes
    let x0 = x + 0 &* ldx
    let x1 = x + 1 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var a20 = SIMD8<Float>(); var a21 = SIMD8<Float>()
    var k = 0
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let xv1 = ldx8(x1 + k)
        let wv0 = load8F16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        a01 = a01.addingProduct(wv0, xv1)
        let wv1 = load8F16(w1 + k &* 2)
        a10 = a10.addingProduct(wv1, xv0)
        a11 = a11.addingProduct(wv1, xv1)
        let wv2 = load8F16(w2 + k &* 2)
        a20 = a20.addingProduct(wv2, xv0)
        a21 = a21.addingProduct(wv2, xv1)
        k &+= 8
    }
    finishDot(a00, w0, .f16, x0, k, cols, out + (0 &* ldo &+ 0), accumulate)
    finishDot(a01, w0, .f16, x1, k, cols, out + (1 &* ldo &+ 0), accumulate)
    finishDot(a10, w1, .f16, x0, k, cols, out + (0 &* ldo &+ 1), accumulate)
    finishDot(a11, w1, .f16, x1, k, cols, out + (1 &* ldo &+ 1), accumulate)
    finishDot(a20, w2, .f16, x0, k, cols, out + (0 &* ldo &+ 2), accumulate)
    finishDot(a21, w2, .f16, x1, k, cols, out + (1 &* ldo &+ 2), accumulate)
}

@inline(never)
func dot_f16_4x1(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let w2 = w + 2 &* rowBytes
    let w3 = w + 3 &* rowBytes
    let x0 = x + 0 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var a20 = SIMD8<Float>(); var a21 = SIMD8<Float>()
    var a30 = SIMD8<Float>(); var a31 = SIMD8<Float>()
    var k = 0
    while k &+ 16 <= cols {
        let xa = ldx8(x0 + k), xb = ldx8(x0 + (k &+ 8))
        a00 = a00.addingProduct(load8F16(w0 + k &* 2), xa)
        a01 = a01.addingProduct(load8F16(w0 + (k &+ 8) &* 2), xb)
        a10 = a10.addingProduct(load8F16(w1 + k &* 2), xa)
        a11 = a11.addingProduct(load8F16(w1 + (k &+ 8) &* 2), xb)
        a20 = a20.addingProduct(load8F16(w2 + k &* 2), xa)
        a21 = a21.addingProduct(load8F16(w2 + (k &+ 8) &* 2), xb)
        a30 = a30.addingProduct(load8F16(w3 + k &* 2), xa)
        a31 = a31.addingProduct(load8F16(w3 + (k &+ 8) &* 2), xb)
        k &+= 16
    }
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let wv0 = load8F16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        let wv1 = load8F16(w1 + k &* 2)
        a10 = a10.addingProduct(wv1, xv0)
        let wv2 = load8F16(w2 + k &* 2)
        a20 = a20.addingProduct(wv2, xv0)
        let wv3 = load8F16(w3 + k &* 2)
        a30 = a30.addingProduct(wv3, xv0)
        k &+= 8
    }
    finishDot(a00 + a01, w0, .f16, x0, k, cols, out + 0, accumulate)
    finishDot(a10 + a11, w1, .f16, x0, k, cols, out + 1, accumulate)
    finishDot(a20 + a21, w2, .f16, x0, k, cols, out + 2, accumulate)
    finishDot(a30 + a31, w3, .f16, x0, k, cols, out + 3, accumulate)
}

@inline(never)
func dot_f16_4x2(_ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let w0 = w + 0 &* rowBytes
    let w1 = w + 1 &* rowBytes
    let w2 = w + 2 &* rowBytes
    let w3 = w + 3 &* rowBytes
    let x0 = x + 0 &* ldx
    let x1 = x + 1 &* ldx
    var a00 = SIMD8<Float>(); var a01 = SIMD8<Float>()
    var a10 = SIMD8<Float>(); var a11 = SIMD8<Float>()
    var a20 = SIMD8<Float>(); var a21 = SIMD8<Float>()
    var a30 = SIMD8<Float>(); var a31 = SIMD8<Float>()
    var k = 0
    while k &+ 8 <= cols {
        let xv0 = ldx8(x0 + k)
        let xv1 = ldx8(x1 + k)
        let wv0 = load8F16(w0 + k &* 2)
        a00 = a00.addingProduct(wv0, xv0)
        a01 = a01.addingProduct(wv0, xv1)
        let wv1 = load8F16(w1 + k &* 2)
        a10 = a10.addingProduct(wv1, xv0)
        a11 = a11.addingProduct(wv1, xv1)
        let wv2 = load8F16(w2 + k &* 2)
        a20 = a20.addingProduct(wv2, xv0)
        a21 = a21.addingProduct(wv2, xv1)
        let wv3 = load8F16(w3 + k &* 2)
        a30 = a30.addingProduct(wv3, xv0)
        a31 = a31.addingProduct(wv3, xv1)
        k &+= 8
    }
    finishDot(a00, w0, .f16, x0, k, cols, out + (0 &* ldo &+ 0), accumulate)
    finishDot(a01, w0, .f16, x1, k, cols, out + (1 &* ldo &+ 0), accumulate)
    finishDot(a10, w1, .f16, x0, k, cols, out + (0 &* ldo &+ 1), accumulate)
    finishDot(a11, w1, .f16, x1, k, cols, out + (1 &* ldo &+ 1), accumulate)
    finishDot(a20, w2, .f16, x0, k, cols, out + (0 &* ldo &+ 2), accumulate)
    finishDot(a21, w2, .f16, x1, k, cols, out + (1 &* ldo &+ 2), accumulate)
    finishDot(a30, w3, .f16, x0, k, cols, out + (0 &* ldo &+ 3), accumulate)
    finishDot(a31, w3, .f16, x1, k, cols, out + (1 &* ldo &+ 3), accumulate)
}

@inline(__always)
func dotKernel(_ type: ElementType, _ nr: Int, _ nt: Int) -> DotKernel {
    switch (type, nr, nt) {
    case (.f32, 1, 1): return dot_f32_1x1
    case (.f32, 1, 2): return dot_f32_1x2
    case (.f32, 2, 1): return dot_f32_2x1
    case (.f32, 2, 2): return dot_f32_2x2
    case (.f32, 3, 1): return dot_f32_3x1
    case (.f32, 3, 2): return dot_f32_3x2
    case (.f32, 4, 1): return dot_f32_4x1
    case (.f32, 4, 2): return dot_f32_4x2
    case (.bf16, 1, 1): return dot_bf16_1x1
    case (.bf16, 1, 2): return dot_bf16_1x2
    case (.bf16, 2, 1): return dot_bf16_2x1
    case (.bf16, 2, 2): return dot_bf16_2x2
    case (.bf16, 3, 1): return dot_bf16_3x1
    case (.bf16, 3, 2): return dot_bf16_3x2
    case (.bf16, 4, 1): return dot_bf16_4x1
    case (.bf16, 4, 2): return dot_bf16_4x2
    case (.f16, 1, 1): return dot_f16_1x1
    case (.f16, 1, 2): return dot_f16_1x2
    case (.f16, 2, 1): return dot_f16_2x1
    case (.f16, 2, 2): return dot_f16_2x2
    case (.f16, 3, 1): return dot_f16_3x1
    case (.f16, 3, 2): return dot_f16_3x2
    case (.f16, 4, 1): return dot_f16_4x1
    case (.f16, 4, 2): return dot_f16_4x2
    default: fatalError("dotKernel: unsupported block")
    }
}

func gemvRows(_ rows: Range<Int>, _ x: UnsafePointer<Float>, _ ldx: Int, _ tokens: Int,
              _ w: WeightMatrix, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let rb = w.rowBytes, cols = w.cols, type = w.type
    var t = 0
    // One kernel per (rows, tokens) shape; the 4-row kernel runs over the bulk of the range.
    while t < tokens {
        let nt = min(2, tokens &- t)
        // One token: rows one after another (a single sequential stream for the prefetchers).
        let fullRows = nt == 1 ? 1 : 4
        let full = dotKernel(type, fullRows, nt)
        let xt = x + t &* ldx
        var r = rows.lowerBound
        while r &+ fullRows <= rows.upperBound {
            full(w.base + r &* rb, rb, cols, xt, ldx, out + (t &* ldo &+ r), ldo, accumulate)
            r &+= fullRows
        }
        if r < rows.upperBound {
            dotKernel(type, rows.upperBound &- r, nt)(w.base + r &* rb, rb, cols, xt, ldx, out + (t &* ldo &+ r), ldo, accumulate)
        }
        t &+= 2
    }
}

/// The small-token path of `linear`: rows split into contiguous chunks over the pool.
func gemvSmall(_ x: UnsafePointer<Float>, _ ldx: Int, _ tokens: Int, _ w: WeightMatrix,
               _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool, _ pool: WorkerPool) {
    let bytes = w.rows &* w.rowBytes
    var chunks = 1
    if pool.threads > 1 && w.rows >= 8 && bytes &* tokens >= 96 << 10 {
        chunks = bytes >= 16 << 20 ? pool.threads * 8 : pool.threads
        chunks = min(chunks, (w.rows + 3) / 4)
    }
    if tokens == 1 && w.type == .bf16 {
        let split = splitEvenOdd(x, cols: w.cols)
        let xe = UnsafePointer(split), xo = UnsafePointer(split + w.cols / 2)
        if chunks == 1 { gemvBF16Rows(0..<w.rows, w, x, xe, xo, out, accumulate); return }
        pool.parallelFor(chunks) { c in
            gemvBF16Rows(splitRange(w.rows, parts: chunks, index: c, align: 4), w, x, xe, xo, out, accumulate)
        }
        return
    }
    if chunks == 1 {
        gemvRows(0..<w.rows, x, ldx, tokens, w, out, ldo, accumulate)
        return
    }
    pool.parallelFor(chunks) { c in
        let rows = splitRange(w.rows, parts: chunks, index: c, align: 4)
        if !rows.isEmpty { gemvRows(rows, x, ldx, tokens, w, out, ldo, accumulate) }
    }
}
