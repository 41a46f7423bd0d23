#!/usr/bin/env python3
"""json_double_gen.py: writes src/core/json_double_table.h, the table of powers
of ten that src/core/json_double.c multiplies by, and proves, with exact
integers, the facts json_double.c relies on. `--check` compares the file
with what it would write (spec/json/floats_spec.lua runs it) and exits 1 when they differ.

    python3 src/core/json_double_gen.py            # writes src/core/json_double_table.h
    python3 src/core/json_double_gen.py --check    # the file is up to date, the proofs hold
    python3 src/core/json_double_gen.py --hard     # doubles hard for it, in hex (spec/json/floats_spec.lua tests them)

The table: for every k from K_MIN = -324 to K_MAX = 292 (the powers of
ten json_double.c scales by: k = floor(log10(2^q)) or floor(log10(3/4
2^q)) for the doubles' binary exponents q = -1074 .. 971), the 128-bit
integer g(k) = ceil(10^-k 2^-r), with r the one integer that puts g(k)
in [2^127, 2^128): exact where 10^-k 2^-r is an integer, else over by
less than one unit of its last bit. 617 entries of two uint64_t: 9,872
bytes of read-only data.

The proofs (json_double.c's header explains why each matters):

1. The integer formulas for floor(log10(2^q)), floor(log10(3/4 2^q)) and
   floor(log2(10^e)) are exact over every q and e used (and stay within
   a 32-bit int).
2. h = q + floor(log2(10^-k)) + 1 is in [0, 4], so cp = m << h < 2^59
   for every multiplier m (4c, 4c -+ 2, 4c - 1: below 2^55).
3. For every q (with its k) and every m < 2^55, x = m 2^q 10^-k is below
   2^64 and is an integer or at least 2^-69 from every integer (the
   smallest distance is printed: 2^-65.44). g's product errs by less than
   cp 2^-128 < 2^-69, so it gives floor(x) in its top 64 bits and a
   fraction below them exactly when x is no integer. The smallest
   distance of m n/d (= x, in lowest terms) from the integers over
   1 <= m <= M: 1/d when M >= d (the residues of m n mod d run through
   1..d-1), else the smallest at alpha's convergent denominators up to M
   (convergents are the best approximations: no other m comes nearer);
   checked against counting on small fractions.
4. The divisions by multiplication in json_double.c's digit_bytes.

`--hard` prints doubles whose multipliers are convergent denominators (or
small multiples of them): those whose x comes nearest to an integer,
where too little precision would show first.
"""
import math
import sys
from fractions import Fraction
from pathlib import Path

Q_MIN, Q_MAX = -1074, 971          # binary exponents: x = c 2^q
K_MIN, K_MAX = -324, 292
M_MAX = 1 << 55                     # cb = 4c + 2 < 2^55 for every c < 2^53

# floor(q log10(2)), floor(log10(3/4 2^q)) and floor(e log2(10)) as
# ((x * MUL + ADD + (BIAS << SHIFT)) >> SHIFT) - BIAS: nonnegative before
# the shift (C's >> of a negative int is implementation-defined) and below
# 2^31 (checked); the constants are searched for below and proven exact.
LOG10_SHIFT, LOG10_BIAS = 21, 400
LOG2_SHIFT, LOG2_BIAS = 16, 1100


def ratio(k, q, three_quarters=False):
    """10^k and 2^q (times 3/4) as integers n_l / d_l, n_r / d_r."""
    n_l, d_l = 10 ** max(k, 0), 10 ** max(-k, 0)
    n_r, d_r = 2 ** max(q, 0), 2 ** max(-q, 0)
    if three_quarters:
        n_r, d_r = 3 * n_r, 4 * d_r
    return n_l, d_l, n_r, d_r


def largest_k(q, three_quarters):
    """The largest k with 10^k <= 2^q (times 3/4), exactly."""
    k = math.floor(q * math.log10(2)) + 1
    while True:
        n_l, d_l, n_r, d_r = ratio(k, q, three_quarters)
        if n_l * d_r <= n_r * d_l:
            return k
        k -= 1


def floor_log10_pow2(q):
    return largest_k(q, False)


def floor_log10_34_pow2(q):
    return largest_k(q, True)


def floor_log2_pow10(e):
    """The largest r with 2^r <= 10^e (10^e is no power of two for e != 0)."""
    if e >= 0:
        return (10 ** e).bit_length() - 1
    return -(10 ** -e).bit_length()


def c_formula(x, mul, add, shift, bias):
    """What json_double.c computes: ((x * mul + add + (bias << shift)) >> shift) - bias."""
    v = x * mul + add + (bias << shift)
    assert 0 <= v < 2 ** 31, (x, v)
    return (v >> shift) - bias


def search(xs, exact, value, shift, bias):
    """MUL and ADD making c_formula(x) == exact(x) over xs: MUL near value
    2^shift, ADD the middle of the interval that works with it."""
    want = [(x, exact(x)) for x in xs]
    mul0 = math.floor(value * 2 ** shift)
    for mul in (mul0, mul0 + 1, mul0 - 1, mul0 + 2):
        # floor((x mul + add) / 2^shift) == w  <=>  w 2^shift - x mul <= add < (w + 1) 2^shift - x mul
        lo = max(w * 2 ** shift - x * mul for x, w in want)
        hi = min((w + 1) * 2 ** shift - x * mul for x, w in want) - 1
        if lo <= hi:
            add = (lo + hi) // 2
            assert all(c_formula(x, mul, add, shift, bias) == w for x, w in want)
            return mul, add
    raise SystemExit("no exact constants for shift %d" % shift)


def constants():
    """The C formulas' constants: floor(log10(2^q)) and floor(log10(3/4 2^q))
    share MUL (their ADDs differ), floor(log2(10^e))."""
    qs = range(Q_MIN, Q_MAX + 1)
    es = range(-K_MAX, -K_MIN + 1)
    log10_2, log10_2_add = search(qs, floor_log10_pow2, math.log10(2), LOG10_SHIFT, LOG10_BIAS)
    want = [(q, floor_log10_34_pow2(q)) for q in qs]
    lo = max(w * 2 ** LOG10_SHIFT - q * log10_2 for q, w in want)
    hi = min((w + 1) * 2 ** LOG10_SHIFT - q * log10_2 for q, w in want) - 1
    assert lo <= hi, "no ADD for floor(log10(3/4 2^q))"
    log10_34 = (lo + hi) // 2
    assert all(c_formula(q, log10_2, log10_34, LOG10_SHIFT, LOG10_BIAS) == w for q, w in want)
    log2_10, log2_10_add = search(es, floor_log2_pow10, math.log2(10), LOG2_SHIFT, LOG2_BIAS)
    return log10_2, log10_2_add, log10_34, log2_10, log2_10_add


def g_of(k):
    r = floor_log2_pow10(-k) - 127
    num = 10 ** max(-k, 0) * 2 ** max(-r, 0)
    den = 10 ** max(k, 0) * 2 ** max(r, 0)
    g = -(-num // den)                  # the ceiling: exact where 10^-k 2^-r is an integer
    assert 2 ** 127 <= g < 2 ** 128, k
    return g, r


def min_distance(n, d, m_max):
    """Smallest nonzero distance of m n / d (n / d in lowest terms) from an
    integer over 1 <= m <= m_max, as a Fraction; None if every one is an
    integer."""
    if d == 1:
        return None
    if m_max >= d:
        return Fraction(1, d)

    def dist(m):
        r = m * n % d
        return min(r, d - r)

    # the convergent denominators of n / d up to m_max: q_0 = 1, then
    # q_j = a_j q_(j-1) + q_(j-2) for the continued fraction's terms a_1...
    best = dist(1)
    a, b = d, n % d                     # n / d = a_0 + b / d: a_1... are those of d / b
    q_prev, q_cur = 0, 1
    while b:
        t = a // b
        a, b = b, a - t * b
        q_prev, q_cur = q_cur, t * q_cur + q_prev
        if q_cur > m_max:
            break
        best = min(best, dist(q_cur))
    assert best != 0
    return Fraction(best, d)


def convergent_denominators(n, d, m_max):
    """q_0 = 1 and the continued fraction's other convergent denominators up to m_max."""
    out = [1]
    a, b = d, n % d
    q_prev, q_cur = 0, 1
    while b:
        t = a // b
        a, b = b, a - t * b
        q_prev, q_cur = q_cur, t * q_cur + q_prev
        if q_cur > m_max:
            break
        out.append(q_cur)
    return out


def hard_doubles():
    """Doubles whose scaled values come nearest to integers: for each q and
    its k, the multipliers m that are convergent denominators of 2^q 10^-k
    (or small multiples of them) and are some double's cb = 4c, cbl = 4c - 2
    or cbr = 4c + 2. Their bits, for spec/json/floats_spec.lua."""
    found = set()
    for q in range(Q_MIN, Q_MAX + 1):
        for k in (floor_log10_pow2(q),):
            n, d = 2 ** max(q, 0) * 10 ** max(-k, 0), 2 ** max(-q, 0) * 10 ** max(k, 0)
            common = math.gcd(n, d)
            n, d = n // common, d // common
            for qd in convergent_denominators(n, d, M_MAX):
                for times in range(1, 9):
                    m = qd * times
                    for c4 in (m, m + 2, m - 2):
                        if c4 % 4:
                            continue
                        c = c4 // 4
                        if q == Q_MIN and 1 <= c < 2 ** 53:
                            biased = 1 if c >= 2 ** 52 else 0
                        elif 2 ** 52 <= c < 2 ** 53:
                            biased = q + 1075
                        else:
                            continue
                        found.add(biased << 52 | (c & (2 ** 52 - 1)))
    return sorted(found)


def prove():
    log = []
    # 1. the integer formulas (search() accepts only exact ones)
    constants()
    log.append("the integer logarithms are exact for q in [%d, %d] and e in [%d, %d]"
               % (Q_MIN, Q_MAX, -K_MAX, -K_MIN))
    # the division by multiplication of json_double.c's digit_bytes, lane by lane
    assert all((x * 10486) >> 20 == x // 100 for x in range(10 ** 4))
    assert (10 ** 4 - 1) * 10486 < 2 ** 32           # a 32-bit lane's product stays in it
    assert all((x * 103) >> 10 == x // 10 for x in range(100))
    assert 99 * 103 < 2 ** 16                        # a 16-bit lane's too
    log.append("x * 10486 >> 20 = x / 100 (x < 10^4) and x * 103 >> 10 = x / 10 (x < 100), within their lanes")
    # min_distance against counting, on small fractions
    import random
    rng = random.Random(29)
    for _ in range(300):
        d = rng.randrange(2, 20000)
        n = rng.randrange(1, 10 * d)
        common = math.gcd(n, d)
        n, d = n // common, d // common
        m_max = rng.randrange(1, 3 * d)
        brute = min((min(m * n % d, d - m * n % d) for m in range(1, m_max + 1) if m * n % d), default=None)
        got = min_distance(n, d, m_max)
        assert (got is None and brute is None) or got == Fraction(brute, d), (n, d, m_max, got, brute)
    log.append("min_distance agrees with counting on 300 small fractions")
    # 2 and 3, for every (q, k) json_double.c meets
    cases = []
    for q in range(Q_MIN, Q_MAX + 1):
        cases.append((q, floor_log10_pow2(q)))
        if q != Q_MIN:                  # c = 2^52 with q > Q_MIN: the uneven gap
            cases.append((q, floor_log10_34_pow2(q)))
    worst = None
    ks = set()
    for q, k in cases:
        assert K_MIN <= k <= K_MAX, (q, k)
        ks.add(k)
        h = q + floor_log2_pow10(-k) + 1
        assert 0 <= h <= 4, (q, k, h)
        n, d = 2 ** max(q, 0) * 10 ** max(-k, 0), 2 ** max(-q, 0) * 10 ** max(k, 0)
        common = math.gcd(n, d)
        n, d = n // common, d // common
        # x = m alpha < 2^64 for every m < 2^55: floor(x) fits the top word
        assert M_MAX * n < 2 ** 64 * d, (q, k)
        dist = min_distance(n, d, M_MAX)
        if dist is not None:
            assert dist >= Fraction(1, 2 ** 69), (q, k, float(dist))
            if worst is None or dist < worst[0]:
                worst = (dist, q, k)
    assert ks == set(range(K_MIN, K_MAX + 1)), "the table holds every k used, and only those"
    dist, q, k = worst
    log.append("h in [0, 4]; every x = m 2^q 10^-k (m < 2^55) is an integer or at least "
               "2^%.2f from one (the nearest: q = %d, k = %d); 2^-69 is needed"
               % (math.log2(dist.numerator) - math.log2(dist.denominator), q, k))
    return log


def table():
    log10_2, log10_2_add, log10_34, log2_10, log2_10_add = constants()
    lines = [
        "/* Generated by src/core/json_double_gen.py: do not edit. */",
        "/* g(k) = ceil(10^-k 2^-r) in [2^127, 2^128), k = %d .. %d: {high, low} */" % (K_MIN, K_MAX),
        "#define JSON_DOUBLE_K_MIN (%d)" % K_MIN,
        "#define JSON_DOUBLE_K_MAX %d" % K_MAX,
        "#define JSON_DOUBLE_LOG10_SHIFT %d" % LOG10_SHIFT,
        "#define JSON_DOUBLE_LOG10_BIAS %d" % LOG10_BIAS,
        "#define JSON_DOUBLE_LOG10_2_MUL %d" % log10_2,
        "#define JSON_DOUBLE_LOG10_2_ADD (%d)" % log10_2_add,
        "#define JSON_DOUBLE_LOG10_34_ADD (%d)" % log10_34,
        "#define JSON_DOUBLE_LOG2_SHIFT %d" % LOG2_SHIFT,
        "#define JSON_DOUBLE_LOG2_BIAS %d" % LOG2_BIAS,
        "#define JSON_DOUBLE_LOG2_10_MUL %d" % log2_10,
        "#define JSON_DOUBLE_LOG2_10_ADD (%d)" % log2_10_add,
        "static const uint64_t json_double_g[%d][2] = {" % (K_MAX - K_MIN + 1),
    ]
    for k in range(K_MIN, K_MAX + 1):
        g, _ = g_of(k)
        lines.append("    { 0x%016xu, 0x%016xu }, /* %d */" % (g >> 64, g & (2 ** 64 - 1), k))
    lines.append("};")
    return "\n".join(lines) + "\n"


def main():
    out = Path(__file__).resolve().parent / "json_double_table.h"
    if "--hard" in sys.argv[1:]:
        for bits in hard_doubles():
            print("%016x" % bits)
        return 0
    for line in prove():
        print(line)
    text = table()
    if "--check" in sys.argv[1:]:
        if not out.exists() or out.read_text() != text:
            print("%s differs from what json_double_gen.py writes" % out)
            return 1
        print("%s is up to date" % out.name)
        return 0
    out.write_text(text)
    print("wrote %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
