// log, exp, sigmoid and tanh of our own (twin of shaders/math.wgsl, same algorithm, same
// constants), so CUDA and WebGPU give the same results and both stay within 2 ULP of the
// correctly rounded result on every f32 input (docs/accuracy.md), whatever the flush mode:
// special values, subnormal inputs and subnormal results are handled on the bits, and no
// intermediate value is subnormal. Only correctly rounded + - * are assumed; fused or not,
// the bound holds, and division is corrected by its residual (div2_f).
#pragma once

#define MATH_LN2_HI 0.693145751953125f    // 0x3f317200: 12 trailing zero bits, k * LN2_HI is exact
#define MATH_LN2_LO 1.4286067653e-06f     // 0x35bfbe8e: ln 2 - LN2_HI
#define MATH_INV_LN2 1.4426950408889634f

// 2^k for -126 <= k <= 127, built on the bits.
__device__ __forceinline__ float pow2_f(int k) { return __uint_as_float((unsigned)(k + 127) << 23); }

// e^x: x = k ln 2 + r with |r| <= ln 2 / 2 (Cody-Waite, two-part ln 2), e^r by its Taylor
// polynomial to degree 8 (truncation < 2^-32), then 2^k on the bits; results below 2^-126
// are rounded to the subnormal grid as integers.
__device__ __forceinline__ float exp_f(float x) {
    const unsigned b = __float_as_uint(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return x;  // NaN
    }
    if (b < 0x80000000u && b > 0x42b17217u) {
        return __uint_as_float(0x7f800000u);  // above ln(FLT_MAX): +inf
    }
    if (b > 0xc2d00000u) {
        return 0.0f;  // below -104: under half the smallest subnormal
    }
    const float kf = rintf(x * MATH_INV_LN2);
    const float r = (x - kf * MATH_LN2_HI) - kf * MATH_LN2_LO;
    float q = 2.48015873015873e-05f;     // 1/8!
    q = q * r + 1.984126984126984e-04f;  // 1/7!
    q = q * r + 1.388888888888889e-03f;  // 1/6!
    q = q * r + 8.333333333333333e-03f;  // 1/5!
    q = q * r + 4.166666666666667e-02f;  // 1/4!
    q = q * r + 1.666666666666667e-01f;  // 1/3!
    q = q * r + 0.5f;
    const float p = 1.0f + (r + (r * r) * q);
    const int k = (int)kf;
    if (k <= -126) {
        // p 2^k is subnormal (or the smallest normal): its bits are p 2^(k + 149) rounded
        // to an integer (k + 149 >= -1, so the scaled value is normal).
        const float m = p * pow2_f(k + 149);
        return __uint_as_float((unsigned)rintf(m));
    }
    // Two exact scalings (k may be 128, and p 2^k may overflow to inf, as it should).
    const int k1 = k / 2;
    return (p * pow2_f(k1)) * pow2_f(k - k1);
}

// ln x: x = 2^e f with f in [sqrt(1/2), sqrt(2)) taken from the bits (subnormals
// normalised with __clz), ln f = ln(1 + u) with u = f - 1 exact, by its Taylor series to
// degree 18 (truncation < 2^-28 relative), then e ln 2 in two parts.
__device__ __forceinline__ float log_f(float x) {
    const unsigned b = __float_as_uint(x);
    if (b >= 0x7f800000u) {
        if (b == 0x7f800000u) {
            return x;  // +inf
        }
        if (b == 0x80000000u) {
            return __uint_as_float(0xff800000u);  // -0: -inf
        }
        return __uint_as_float(0x7fc00000u);  // NaN and negative: NaN
    }
    if (b == 0u) {
        return __uint_as_float(0xff800000u);  // +0: -inf
    }
    int e;
    unsigned mant;
    if (b < 0x00800000u) {
        const int p = 31 - __clz((int)b);
        e = p - 149;
        mant = (b << (unsigned)(23 - p)) & 0x007fffffu;
    } else {
        e = (int)(b >> 23) - 127;
        mant = b & 0x007fffffu;
    }
    float f;
    if (mant > 0x003504f3u) {
        f = __uint_as_float(0x3f000000u | mant);
        e = e + 1;
    } else {
        f = __uint_as_float(0x3f800000u | mant);
    }
    const float u = f - 1.0f;
    float q = -0.05555555555555555f;      // -1/18
    q = q * u + 0.058823529411764705f;    // 1/17
    q = q * u - 0.0625f;                  // -1/16
    q = q * u + 0.06666666666666667f;     // 1/15
    q = q * u - 0.07142857142857142f;     // -1/14
    q = q * u + 0.07692307692307693f;     // 1/13
    q = q * u - 0.08333333333333333f;     // -1/12
    q = q * u + 0.09090909090909091f;     // 1/11
    q = q * u - 0.1f;                     // -1/10
    q = q * u + 0.1111111111111111f;      // 1/9
    q = q * u - 0.125f;                   // -1/8
    q = q * u + 0.14285714285714285f;     // 1/7
    q = q * u - 0.16666666666666666f;     // -1/6
    q = q * u + 0.2f;                     // 1/5
    q = q * u - 0.25f;                    // -1/4
    q = q * u + 0.3333333333333333f;      // 1/3
    q = q * u - 0.5f;                     // -1/2
    const float lf = u + (u * u) * q;
    const float ef = (float)e;
    return ef * MATH_LN2_HI + (lf + ef * MATH_LN2_LO);
}

// a / (bh + bl), |bl| <= ulp(bh) / 2: the quotient corrected by its residual.
__device__ __forceinline__ float div2_f(float a, float bh, float bl) {
    const float q0 = a / bh;
    const float r = (a - q0 * bh) - q0 * bl;
    return q0 + r / bh;
}

// 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below, with 1 + e kept exactly as a
// two-part sum; below -87, e^x / (1 + e^x) rounds to e^x (which may be subnormal).
__device__ __forceinline__ float sigmoid_f(float x) {
    const unsigned b = __float_as_uint(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return x;  // NaN
    }
    if (b > 0xc2ae0000u) {
        return exp_f(x);
    }
    float num, e;
    if (b < 0x80000000u) {
        e = exp_f(-x);
        num = 1.0f;
    } else {
        e = exp_f(x);
        num = e;
    }
    const float dh = 1.0f + e;
    const float dl = e - (dh - 1.0f);
    return div2_f(num, dh, dl);
}

// tanh x, odd: computed at a = |x| with the sign of x put back on the bits. Below 2^-12 it
// is x (tanh x = x - x^3/3 rounds to x; subnormals and -0 pass through the bits); below
// 0.55 its Taylor polynomial to degree 19 (truncation under 0.1 ULP); above,
// 1 - 2e / (1 + e) with e = e^(-2a) <= 1/3 and 1 + e kept as a two-part sum (1 from
// a = 9.1 on, e = 0 past 44). NaN stays NaN.
__device__ __forceinline__ float tanh_f(float x) {
    const unsigned b = __float_as_uint(x);
    const unsigned ab = b & 0x7fffffffu;
    if (ab > 0x7f800000u || ab < 0x39800000u) {
        return x;  // NaN, or |x| < 2^-12
    }
    const float a = __uint_as_float(ab);
    float t;
    if (a < 0.55f) {
        const float s = a * a;
        float p = -2.3912911424e-4f;
        p = p * s + 5.9002744095e-4f;
        p = p * s + -1.4558343871e-3f;
        p = p * s + 3.5921280366e-3f;
        p = p * s + -8.8632355299e-3f;
        p = p * s + 2.1869488536e-2f;
        p = p * s + -5.3968253968e-2f;
        p = p * s + 1.3333333333e-1f;
        p = p * s + -3.3333333333e-1f;
        t = a + a * (s * p);
    } else {
        const float e = exp_f(-2.0f * a);
        const float dh = 1.0f + e;
        const float dl = e - (dh - 1.0f);
        t = 1.0f - div2_f(2.0f * e, dh, dl);
    }
    return __uint_as_float(__float_as_uint(t) | (b & 0x80000000u));
}
