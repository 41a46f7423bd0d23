/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * json_double.c: the shortest decimal that reads back as a double, of
 * those the nearest (Python's repr), with integer arithmetic only: no
 * printf, no strtod, no locale. Written for this library from the idea of
 * R. Giulietti, "The Schubfach way to render doubles" (2020; the algorithm
 * behind Java's Double.toString since JDK 19); U. Adams' Ryu (PLDI 2018)
 * solves the same problem with larger tables.
 *
 * The idea. A finite x > 0 is c 2^q (c and q integers: c in [2^52, 2^53)
 * for normal doubles, below 2^52 with q = -1074 for subnormals). strtod
 * gives x back for every decimal in x's rounding interval R: from
 * (c - 1/2) 2^q to (c + 1/2) 2^q, the ends included when c is even (ties
 * go to the even neighbour); from (c - 1/4) 2^q at c = 2^52 (but the
 * smallest normal), where the doubles below are twice as near. With
 * k = floor(log10(width of R)), the multiples of 10^k are at most as far
 * apart as R is wide, so one lies in R; those of 10^(k+1) are farther
 * apart than R is wide, so at most one does. Let s = floor(x / 10^k):
 *   - if exactly one of s' 10^(k+1) and (s' + 1) 10^(k+1) (s' = floor(s /
 *     10)) lies in R, it is the shortest decimal in R, and the only one
 *     that short (every other decimal of R has a digit at 10^k);
 *   - else the shortest are the multiples of 10^k in R, all as long, and
 *     the nearest to x is s 10^k or (s + 1) 10^k: the one in R, or of the
 *     two the nearer, s when even on a tie.
 * Four comparisons decide, and they need x, R's ends and the candidates
 * in one scale: 4 x 10^-k and the ends 4 (c -+ 1/2) 2^q 10^-k (or
 * c - 1/4), against 4 s (all of them multiples of 2^q 10^-k). Those
 * products are not exact, but rounded to odd (the integer part, its last
 * bit set when a fraction was dropped) they compare with even integers
 * exactly as the exact values would, which is all the comparisons ask.
 *
 * The table. 10^-k for k = -324 .. 292 (every k the doubles need) as a
 * 128-bit g(k) = ceil(10^-k 2^-r) in [2^127, 2^128), r picked for that:
 * exact where 10^-k 2^-r is an integer, else over by less than one unit.
 * 617 pairs of uint64_t, 9,872 bytes of read-only data, in
 * json_double_table.h, written by json_double_gen.py (python3, exact
 * integer arithmetic; `--check` says whether the file is what it writes
 * and re-runs its proofs). A multiplier m (4c, 4c + 2, 4c - 2 or 4c - 1:
 * below 2^55) shifted left by h = q + floor(log2(10^-k)) + 1 (0 to 4),
 * times g, is m 2^q 10^-k 2^128 plus less than cp = m 2^h < 2^59. So its
 * top 64 bits are floor(m 2^q 10^-k), and a fraction was dropped exactly
 * when the middle 64 bits are not 0 or the lowest reach 2^59: the
 * generator proves, for every q with its k and every m < 2^55, that
 * m 2^q 10^-k is an integer or at least 2^-65.4 from one, more than the
 * 2^-69 (2^59 of 2^128) the error can reach (continued fractions: no m
 * brings m alpha nearer an integer than alpha's convergents do). Each
 * scaled value costs two 64x64-bit multiplications (unsigned __int128
 * where the compiler has it, four 32x32-bit ones otherwise); no step is
 * approximate. The digits are then written eight at a time, in the
 * lanes of a 64-bit word, without a loop over them.
 *
 * What differs from Java's Double.toString: Java shows at least two
 * digits (4.9E-324 for 5e-324), so it skips the coarser step for s < 100
 * and scales tiny subnormals by 10 first; here the shortest is shortest
 * (5e-324, as Python). Java's g has 126 bits and its sticky test 63; here
 * 128 bits and the test above. The algorithm's proof is the paper's, the
 * precision's json_double_gen.py's; spec/json/floats_spec.lua checks the output against
 * Python's repr on some 130,000 doubles, the hardest for this precision
 * among them (json_double_gen.py --hard).
 */
#include <stdint.h>
#include <string.h>

#include "core/json_double.h"
#include "core/json_double_table.h"

/* JSON_DOUBLE_PORTABLE defined: the code for compilers without unsigned
 * __int128 or __builtin_clzll and for big-endian machines, also here (to
 * test it). */

#define SIGNIFICAND_BITS 52
#define HIDDEN_BIT ((uint64_t)1 << SIGNIFICAND_BITS)
#define Q_MIN (-1074)

/* floor(x * mul + add over 2^shift), made exact over the range used by
 * json_double_gen.py's choice of constants; the bias keeps the shifted
 * value nonnegative (C's >> of a negative int is implementation-defined). */
#define FLOOR_LOG10_POW2(q) \
    ((((q) * JSON_DOUBLE_LOG10_2_MUL + JSON_DOUBLE_LOG10_2_ADD + \
       (JSON_DOUBLE_LOG10_BIAS << JSON_DOUBLE_LOG10_SHIFT)) >> JSON_DOUBLE_LOG10_SHIFT) - \
     JSON_DOUBLE_LOG10_BIAS)
#define FLOOR_LOG10_THREE_QUARTERS_POW2(q) \
    ((((q) * JSON_DOUBLE_LOG10_2_MUL + JSON_DOUBLE_LOG10_34_ADD + \
       (JSON_DOUBLE_LOG10_BIAS << JSON_DOUBLE_LOG10_SHIFT)) >> JSON_DOUBLE_LOG10_SHIFT) - \
     JSON_DOUBLE_LOG10_BIAS)
#define FLOOR_LOG2_POW10(e) \
    ((((e) * JSON_DOUBLE_LOG2_10_MUL + JSON_DOUBLE_LOG2_10_ADD + \
       (JSON_DOUBLE_LOG2_BIAS << JSON_DOUBLE_LOG2_SHIFT)) >> JSON_DOUBLE_LOG2_SHIFT) - \
     JSON_DOUBLE_LOG2_BIAS)

/* a * b as two 64-bit halves */
static inline uint64_t mul_64x64(uint64_t a, uint64_t b, uint64_t *low)
{
#if defined(__SIZEOF_INT128__) && !defined(JSON_DOUBLE_PORTABLE)
    __extension__ typedef unsigned __int128 u128;
    u128 p = (u128)a * b;

    *low = (uint64_t)p;
    return (uint64_t)(p >> 64);
#else
    uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;

    *low = (mid << 32) | (uint32_t)p00;
    return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
#endif
}

/* g cp 2^-128 rounded to odd: its integer part, the last bit set when a
 * fraction was dropped. g is over by less than one, so the product by
 * less than cp < 2^59 units of its lowest word: a fraction is there when
 * the middle word is not 0 or the lowest reaches 2^59 (see above). */
static inline uint64_t scaled(const uint64_t g[2], uint64_t cp)
{
    uint64_t l0, l1 = mul_64x64(g[1], cp, &l0);
    uint64_t h0, h1 = mul_64x64(g[0], cp, &h0);
    uint64_t middle = h0 + l1;

    h1 += middle < h0;                  /* the carry */
    return h1 | ((middle | (l0 >> 59)) != 0);
}

/* x (finite, > 0) as the shortest decimal that reads back as x, of those
 * the nearest: its digits returned (below 10^17, maybe with trailing
 * zeros), the power of ten of the last in *exp10. */
static inline uint64_t shortest(double x, int *exp10)
{
    uint64_t bits, c, cb, cbl, cbr, cp, vb, vbl, vbr, s, t, out;
    const uint64_t *g;
    int biased, q, k, h;

    memcpy(&bits, &x, sizeof bits);
    c = bits & (HIDDEN_BIT - 1);
    biased = (int)(bits >> SIGNIFICAND_BITS) & 0x7ff;
    if (biased) {
        q = biased - 1075;
        c |= HIDDEN_BIT;
    } else {
        q = Q_MIN;
    }
    out = c & 1;                        /* odd: R's ends are not in R */
    cb = c << 2;
    cbr = cb + 2;
    if (c != HIDDEN_BIT || biased <= 1) {
        cbl = cb - 2;
        k = FLOOR_LOG10_POW2(q);
    } else {                            /* the doubles below are nearer */
        cbl = cb - 1;
        k = FLOOR_LOG10_THREE_QUARTERS_POW2(q);
    }
    *exp10 = k;
    h = q + FLOOR_LOG2_POW10(-k) + 1;
    g = json_double_g[k - JSON_DOUBLE_K_MIN];
    cp = cb << h;
    vb = scaled(g, cp);                 /* 4 x 10^-k */
    vbl = scaled(g, cbl << h);          /* R's ends, the same way */
    vbr = scaled(g, cbr << h);

    s = vb >> 2;                        /* floor(x 10^-k) */
    {
        uint64_t sp = s / 10 * 10, tp = sp + 10;   /* the multiples of 10^(k+1) around x */
        int upin = vbl + out <= sp << 2;        /* false for sp = 0: vbl >= 2 */
        int wpin = (tp << 2) + out <= vbr;

        if (upin != wpin)
            return upin ? sp : tp;
    }
    t = s + 1;
    {
        int uin = vbl + out <= s << 2;
        int win = (t << 2) + out <= vbr;
        uint64_t mid = (s << 2) + 2;

        if (uin != win)
            return uin ? s : t;
        /* both: the nearer, the even one on a tie */
        return vb < mid || (vb == mid && !(s & 1)) ? s : t;
    }
}

/* Digits, eight at a time, in one 64-bit word: v < 10^8 as its eight
 * digits' values (0 to 9, leading zeros too), one a byte, the first in
 * the lowest. The halves v / 10^4 and v % 10^4 go in 32-bit lanes; each
 * lane is split by 100 into 16-bit lanes and those by 10 into bytes, all
 * lanes at once: x * 10486 >> 20 is x / 100 for x < 10^4, x * 103 >> 10
 * is x / 10 for x < 100 (json_double_gen.py checks both), no lane's
 * product reaches the next lane, and the masks drop what a shift brings
 * down from the lane above. */
static inline uint64_t digit_bytes(uint32_t v)
{
    uint64_t m = (v / 10000) | ((uint64_t)(v % 10000) << 32);
    uint64_t t = ((m * 10486) >> 20) & 0x0000007f0000007fu;

    m = t | ((m - 100 * t) << 16);
    t = ((m * 103) >> 10) & 0x000f000f000f000fu;
    return t | ((m - 10 * t) << 8);
}

/* The number of zero bytes at the top of w (nonzero). */
static inline int top_zero_bytes(uint64_t w)
{
#if defined(__GNUC__) && !defined(JSON_DOUBLE_PORTABLE)
    return __builtin_clzll(w) >> 3;
#else
    int n = 0;

    while (!(w >> 56)) {
        w <<= 8;
        n++;
    }
    return n;
#endif
}

/* The eight digits of digit_bytes(v) at out, as text. */
static inline void put_eight(char *out, uint64_t bytes)
{
    bytes += 0x3030303030303030u;       /* '0' each */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    !defined(JSON_DOUBLE_PORTABLE)
    memcpy(out, &bytes, 8);
#else
    {
        int i;

        for (i = 0; i < 8; i++)
            out[i] = (char)(bytes >> (8 * i));
    }
#endif
}

static const char pairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* f (nonzero, below 10^16) as its digits, no trailing zero: their count */
static int few_digits(char *out, uint64_t f, int e, int *exp10)
{
    char text[20], *end = text + sizeof text, *p = end;

    while (f % 10 == 0) {
        f /= 10;
        e++;
    }
    while (f >= 100) {
        p -= 2;
        memcpy(p, pairs + (f % 100) * 2, 2);
        f /= 100;
    }
    if (f >= 10) {
        p -= 2;
        memcpy(p, pairs + f * 2, 2);
    } else {
        *--p = (char)('0' + f);
    }
    memcpy(out, p, (size_t)(end - p));
    *exp10 = e + (int)(end - p) - 1;
    return (int)(end - p);
}

int json_double_digits(double x, char *out, int *exp10)
{
    int e, n;
    uint64_t f = shortest(x, &e);       /* below 10^17 */
    uint64_t high = f / 100000000, high_bytes, low_bytes;
    uint32_t low = (uint32_t)(f % 100000000);

    /* A normal double's f has 16 or 17 digits (it is about c 2^q 10^-k,
     * c >= 2^52, 2^q 10^-k >= 1): written in fixed places, eight at a
     * time; fewer (subnormals) the slow way. */
    if (f >= 10000000000000000u) {
        *out++ = (char)('0' + high / 100000000);
        high %= 100000000;
        n = 17;
        if (!(high | low)) {            /* 10^16: 1e+16, say */
            *exp10 = e + 16;
            return 1;
        }
    } else if (f >= 1000000000000000u) {
        n = 16;
    } else {
        return few_digits(out, f, e, exp10);
    }
    *exp10 = e + n - 1;
    high_bytes = digit_bytes((uint32_t)high);
    put_eight(out, high_bytes);
    if (low) {
        low_bytes = digit_bytes(low);
        put_eight(out + 8, low_bytes);
        return n - top_zero_bytes(low_bytes);       /* the trailing zeros */
    }
    return n - 8 - top_zero_bytes(high_bytes);  /* high_bytes is not 0 */
}
