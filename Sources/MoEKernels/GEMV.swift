// Small-token Linear: out[t, o] = Σ_i x[t, i] · W[o, i] for tokens 1…8. W is streamed once, a block of 4 rows at a time
// (several rows share each x load); for several tokens, the 4-row block is re-read from L1 for each pair of tokens.
// The dot products keep full SIMD8 (one ymm) accumulators and reduce them once per row at the end.
// The 4×2 accumulator blocks are written out so that every variant keeps its accumulators in registers.

@inline(__always)
func load8(_ p: UnsafeRawPointer, _ type: ElementType) -> SIMD8<Float> {
    switch type {
    case .f32:
        return p.loadUnaligned(as: SIMD8<Float>.self)
    case .bf16:
        let h = p.loadUnaligned(as: SIMD8<UInt16>.self)
        var r = SIMD8<Float>()
        for i in 0..<8 { r[i] = bf16Value(h[i]) }
        return r
    case .f16:
        let h = p.loadUnaligned(as: SIMD8<UInt16>.self)
        var r = SIMD8<Float>()
        for i in 0..<8 { r[i] = f16Value(h[i]) }
        return r
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

/// `nr` (1…4) rows of W starting at `w` times `nt` (1…2) tokens of x; nr, nt and type are constants after inlining.
@inline(__always)
func dotBlock(_ nr: Int, _ nt: Int, _ type: ElementType, _ w: UnsafeRawPointer, _ rowBytes: Int, _ cols: Int,
              _ x: UnsafePointer<Float>, _ ldx: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let es = type.byteSize

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
    if nt == 1 {
        while k &+ 16 <= cols {
            let xa = ldx8(x0 + k), xb = ldx8(x0 + (k &+ 8))
            if nr > 0 { a00 = a00.addingProduct(load8(w0 + k &* es, type), xa); a01 = a01.addingProduct(load8(w0 + (k &+ 8) &* es, type), xb) }
            if nr > 1 { a10 = a10.addingProduct(load8(w1 + k &* es, type), xa); a11 = a11.addingProduct(load8(w1 + (k &+ 8) &* es, type), xb) }
            if nr > 2 { a20 = a20.addingProduct(load8(w2 + k &* es, type), xa); a21 = a21.addingProduct(load8(w2 + (k &+ 8) &* es, type), xb) }
            if nr > 3 { a30 = a30.addingProduct(load8(w3 + k &* es, type), xa); a31 = a31.addingProduct(load8(w3 + (k &+ 8) &* es, type), xb) }
            k &+= 16
        }
    }
    while k &+ 8 <= cols {
        let xv0 = nt > 0 ? ldx8(x0 + k) : SIMD8<Float>()
        let xv1 = nt > 1 ? ldx8(x1 + k) : SIMD8<Float>()
        if nr > 0 {
            let wv = load8(w0 + k &* es, type)
            if nt > 0 { a00 = a00.addingProduct(wv, xv0) }
            if nt > 1 { a01 = a01.addingProduct(wv, xv1) }
        }
        if nr > 1 {
            let wv = load8(w1 + k &* es, type)
            if nt > 0 { a10 = a10.addingProduct(wv, xv0) }
            if nt > 1 { a11 = a11.addingProduct(wv, xv1) }
        }
        if nr > 2 {
            let wv = load8(w2 + k &* es, type)
            if nt > 0 { a20 = a20.addingProduct(wv, xv0) }
            if nt > 1 { a21 = a21.addingProduct(wv, xv1) }
        }
        if nr > 3 {
            let wv = load8(w3 + k &* es, type)
            if nt > 0 { a30 = a30.addingProduct(wv, xv0) }
            if nt > 1 { a31 = a31.addingProduct(wv, xv1) }
        }
        k &+= 8
    }
    if nt == 1 {
        a00 += a01
        a10 += a11
        a20 += a21
        a30 += a31
    }
    if nr > 0 {
        if nt > 0 {
            var s = hsum(a00)
            var kk = k
            while kk < cols { s += loadScalar(w0, kk, type) * x0[kk]; kk &+= 1 }
            let o = out + 0 &* ldo + 0
            o.pointee = accumulate ? o.pointee + s : s
        }
        if nt > 1 {
            var s = hsum(a01)
            var kk = k
            while kk < cols { s += loadScalar(w0, kk, type) * x1[kk]; kk &+= 1 }
            let o = out + 1 &* ldo + 0
            o.pointee = accumulate ? o.pointee + s : s
        }
    }
    if nr > 1 {
        if nt > 0 {
            var s = hsum(a10)
            var kk = k
            while kk < cols { s += loadScalar(w1, kk, type) * x0[kk]; kk &+= 1 }
            let o = out + 0 &* ldo + 1
            o.pointee = accumulate ? o.pointee + s : s
        }
        if nt > 1 {
            var s = hsum(a11)
            var kk = k
            while kk < cols { s += loadScalar(w1, kk, type) * x1[kk]; kk &+= 1 }
            let o = out + 1 &* ldo + 1
            o.pointee = accumulate ? o.pointee + s : s
        }
    }
    if nr > 2 {
        if nt > 0 {
            var s = hsum(a20)
            var kk = k
            while kk < cols { s += loadScalar(w2, kk, type) * x0[kk]; kk &+= 1 }
            let o = out + 0 &* ldo + 2
            o.pointee = accumulate ? o.pointee + s : s
        }
        if nt > 1 {
            var s = hsum(a21)
            var kk = k
            while kk < cols { s += loadScalar(w2, kk, type) * x1[kk]; kk &+= 1 }
            let o = out + 1 &* ldo + 2
            o.pointee = accumulate ? o.pointee + s : s
        }
    }
    if nr > 3 {
        if nt > 0 {
            var s = hsum(a30)
            var kk = k
            while kk < cols { s += loadScalar(w3, kk, type) * x0[kk]; kk &+= 1 }
            let o = out + 0 &* ldo + 3
            o.pointee = accumulate ? o.pointee + s : s
        }
        if nt > 1 {
            var s = hsum(a31)
            var kk = k
            while kk < cols { s += loadScalar(w3, kk, type) * x1[kk]; kk &+= 1 }
            let o = out + 1 &* ldo + 3
            o.pointee = accumulate ? o.pointee + s : s
        }
    }
}

@inline(__always)
func gemvRowsTyped(_ type: ElementType, _ rows: Range<Int>, _ x: UnsafePointer<Float>, _ ldx: Int, _ tokens: Int,
                   _ w: WeightMatrix, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let rb = w.rowBytes, cols = w.cols
    var r = rows.lowerBound
    while r < rows.upperBound {
        let nr = min(4, rows.upperBound &- r)
        let wr = w.base + r &* rb
        var t = 0
        while t < tokens {
            let nt = min(2, tokens &- t)
            let xt = x + t &* ldx
            let ot = out + t &* ldo + r
            switch (nr, nt) {
            case (4, 2): dotBlock(4, 2, type, wr, rb, cols, xt, ldx, ot, ldo, accumulate)
            case (4, 1): dotBlock(4, 1, type, wr, rb, cols, xt, ldx, ot, ldo, accumulate)
            case (3, 2): dotBlock(3, 2, type, wr, rb, cols, xt, ldx, ot, ldo, accumulate)
            case (3, 1): dotBlock(3, 1, type, wr, rb, cols, xt, ldx, ot, ldo, accumulate)
            case (2, 2): dotBlock(2, 2, type, wr, rb, cols, xt, ldx, ot, ldo, accumulate)
            case (2, 1): dotBlock(2, 1, type, wr, rb, cols, xt, ldx, ot, ldo, accumulate)
            case (1, 2): dotBlock(1, 2, type, wr, rb, cols, xt, ldx, ot, ldo, accumulate)
            case (1, 1): dotBlock(1, 1, type, wr, rb, cols, xt, ldx, ot, ldo, accumulate)
            default: break
            }
            t &+= 2
        }
        r &+= 4
    }
}

@inline(never)
func gemvRows(_ rows: Range<Int>, _ x: UnsafePointer<Float>, _ ldx: Int, _ tokens: Int,
              _ w: WeightMatrix, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    switch w.type {
    case .f32: gemvRowsTyped(.f32, rows, x, ldx, tokens, w, out, ldo, accumulate)
    case .bf16: gemvRowsTyped(.bf16, rows, x, ldx, tokens, w, out, ldo, accumulate)
    case .f16: gemvRowsTyped(.f16, rows, x, ldx, tokens, w, out, ldo, accumulate)
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
    if chunks == 1 {
        gemvRows(0..<w.rows, x, ldx, tokens, w, out, ldo, accumulate)
        return
    }
    pool.parallelFor(chunks) { c in
        let rows = splitRange(w.rows, parts: chunks, index: c, align: 4)
        if !rows.isEmpty { gemvRows(rows, x, ldx, tokens, w, out, ldo, accumulate) }
    }
}
