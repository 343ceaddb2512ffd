// log, exp, sigmoid and tanh of our own (twin of cuda/math.cuh), concatenated in front of the
// map and zip kernels. WGSL's built-in log and exp are only bounded to an absolute 2^-21
// near 1 and 3 + 2|x| ULP, and differ by platform; these are within 2 ULP of the correctly
// rounded result on every f32 input (docs/accuracy.md), whatever the device does with
// subnormals: special values, subnormal inputs and subnormal results are handled on the
// bits, and no intermediate value is subnormal. The algorithm only assumes correctly
// rounded + - * (which WGSL guarantees); it stays within the bound whether or not the
// compiler fuses a multiply and an add, and it does not trust division to better than
// a few ULP (div2 corrects the quotient).

const LN2_HI: f32 = 0.693145751953125;       // 0x3f317200: 12 trailing zero bits, k * LN2_HI is exact
const LN2_LO: f32 = 1.4286067653e-06;        // 0x35bfbe8e: ln 2 - LN2_HI
const INV_LN2: f32 = 1.4426950408889634;

// inf and NaN made at run time: a constant expression may not be infinite or NaN (Chromium's
// Tint rejects `bitcast<f32>(0x7f800000u)`; naga accepts it).
fn bits_f32(b: u32) -> f32 {
    var v = b;
    return bitcast<f32>(v);
}

// 2^k for -126 <= k <= 127, built on the bits.
fn pow2_f(k: i32) -> f32 {
    return bitcast<f32>(u32(k + 127) << 23u);
}

// e^x: x = k ln 2 + r with |r| <= ln 2 / 2 (Cody-Waite, two-part ln 2), e^r by its Taylor
// polynomial to degree 8 (truncation < 2^-32), then 2^k on the bits; results below 2^-126
// are rounded to the subnormal grid as integers.
fn exp_f(x: f32) -> f32 {
    let b = bitcast<u32>(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return x; // NaN
    }
    if (b < 0x80000000u && b > 0x42b17217u) {
        return bits_f32(0x7f800000u); // above ln(f32::MAX): +inf
    }
    if (b > 0xc2d00000u) {
        return 0.0; // below -104: under half the smallest subnormal
    }
    let kf = round(x * INV_LN2);
    let r = (x - kf * LN2_HI) - kf * LN2_LO;
    var q = 2.48015873015873e-05;            // 1/8!
    q = q * r + 1.984126984126984e-04;       // 1/7!
    q = q * r + 1.388888888888889e-03;       // 1/6!
    q = q * r + 8.333333333333333e-03;       // 1/5!
    q = q * r + 4.166666666666667e-02;       // 1/4!
    q = q * r + 1.666666666666667e-01;       // 1/3!
    q = q * r + 0.5;
    let p = 1.0 + (r + (r * r) * q);
    let k = i32(kf);
    if (k <= -126) {
        // p 2^k is subnormal (or the smallest normal): its bits are p 2^(k + 149) rounded
        // to an integer (k + 149 >= -1, so the scaled value is normal).
        let m = p * pow2_f(k + 149);
        return bitcast<f32>(u32(round(m)));
    }
    // Two exact scalings (k may be 128, and p 2^k may overflow to inf, as it should).
    let k1 = k / 2;
    return (p * pow2_f(k1)) * pow2_f(k - k1);
}

// ln x: x = 2^e f with f in [sqrt(1/2), sqrt(2)) taken from the bits (subnormals
// normalised with countLeadingZeros), ln f = ln(1 + u) with u = f - 1 exact, by its Taylor
// series to degree 18 (truncation < 2^-28 relative), then e ln 2 in two parts.
fn log_f(x: f32) -> f32 {
    let b = bitcast<u32>(x);
    if (b >= 0x7f800000u) {
        if (b == 0x7f800000u) {
            return x; // +inf
        }
        if (b == 0x80000000u) {
            return bits_f32(0xff800000u); // -0: -inf
        }
        return bits_f32(0x7fc00000u); // NaN and negative: NaN
    }
    if (b == 0u) {
        return bits_f32(0xff800000u); // +0: -inf
    }
    var e: i32;
    var mant: u32;
    if (b < 0x00800000u) {
        let p = 31 - i32(countLeadingZeros(b));
        e = p - 149;
        mant = (b << u32(23 - p)) & 0x007fffffu;
    } else {
        e = i32(b >> 23u) - 127;
        mant = b & 0x007fffffu;
    }
    var f: f32;
    if (mant > 0x003504f3u) {
        f = bitcast<f32>(0x3f000000u | mant);
        e = e + 1;
    } else {
        f = bitcast<f32>(0x3f800000u | mant);
    }
    let u = f - 1.0;
    var q = -0.05555555555555555;            // -1/18
    q = q * u + 0.058823529411764705;        // 1/17
    q = q * u - 0.0625;                      // -1/16
    q = q * u + 0.06666666666666667;         // 1/15
    q = q * u - 0.07142857142857142;         // -1/14
    q = q * u + 0.07692307692307693;         // 1/13
    q = q * u - 0.08333333333333333;         // -1/12
    q = q * u + 0.09090909090909091;         // 1/11
    q = q * u - 0.1;                         // -1/10
    q = q * u + 0.1111111111111111;          // 1/9
    q = q * u - 0.125;                       // -1/8
    q = q * u + 0.14285714285714285;         // 1/7
    q = q * u - 0.16666666666666666;         // -1/6
    q = q * u + 0.2;                         // 1/5
    q = q * u - 0.25;                        // -1/4
    q = q * u + 0.3333333333333333;          // 1/3
    q = q * u - 0.5;                         // -1/2
    let lf = u + (u * u) * q;
    let ef = f32(e);
    return ef * LN2_HI + (lf + ef * LN2_LO);
}

// a / (bh + bl), |bl| <= ulp(bh) / 2: the quotient corrected by its residual, so a
// division that is off by a few ULP (WGSL allows 2.5) does not show in the result.
fn div2_f(a: f32, bh: f32, bl: f32) -> f32 {
    let q0 = a / bh;
    let r = (a - q0 * bh) - q0 * bl;
    return q0 + r / bh;
}

// 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below, with 1 + e kept exactly as a
// two-part sum; below -87, e^x / (1 + e^x) rounds to e^x (which may be subnormal).
fn sigmoid_f(x: f32) -> f32 {
    let b = bitcast<u32>(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return x; // NaN
    }
    if (b > 0xc2ae0000u) {
        return exp_f(x);
    }
    var num: f32;
    var e: f32;
    if (b < 0x80000000u) {
        e = exp_f(-x);
        num = 1.0;
    } else {
        e = exp_f(x);
        num = e;
    }
    let dh = 1.0 + e;
    let dl = e - (dh - 1.0);
    return div2_f(num, dh, dl);
}

// tanh x, odd: computed at a = |x| with the sign of x put back on the bits. Below 2^-12 it
// is x (tanh x = x - x^3/3 rounds to x; subnormals and -0 pass through the bits); below
// 0.55 its Taylor polynomial to degree 19 (truncation under 0.1 ULP); above,
// 1 - 2e / (1 + e) with e = e^(-2a) <= 1/3 and 1 + e kept as a two-part sum (1 from
// a = 9.1 on, e = 0 past 44). NaN stays NaN.
fn tanh_f(x: f32) -> f32 {
    let b = bitcast<u32>(x);
    let ab = b & 0x7fffffffu;
    if (ab > 0x7f800000u || ab < 0x39800000u) {
        return x; // NaN, or |x| < 2^-12
    }
    let a = bitcast<f32>(ab);
    var t: f32;
    if (a < 0.55) {
        let s = a * a;
        var p = -2.3912911424e-4;
        p = p * s + 5.9002744095e-4;
        p = p * s + -1.4558343871e-3;
        p = p * s + 3.5921280366e-3;
        p = p * s + -8.8632355299e-3;
        p = p * s + 2.1869488536e-2;
        p = p * s + -5.3968253968e-2;
        p = p * s + 1.3333333333e-1;
        p = p * s + -3.3333333333e-1;
        t = a + a * (s * p);
    } else {
        let e = exp_f(-2.0 * a);
        let dh = 1.0 + e;
        let dl = e - (dh - 1.0);
        t = 1.0 - div2_f(2.0 * e, dh, dl);
    }
    return bitcast<f32>(bitcast<u32>(t) | (b & 0x80000000u));
}
