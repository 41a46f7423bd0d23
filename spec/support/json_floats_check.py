#!/usr/bin/env python3
"""json_floats_check.py FILE: checks the builtin encoder's floats, written
by spec/json/floats_spec.lua, against Python: float() to read them
back, repr() as the shortest round-trip digits (repr gives the shortest
decimal that reads back as the double and, of those, the nearest: David
Gay's dtoa, mode 0).

Each line of FILE: a kind, a tab, the doubles' bits (16 hex digits each,
comma-separated), a tab, the encoder's bytes:
  a   an array of the doubles, in order
  k   an object with the one double as its key
Each number's text is checked:
  (a) float(text) has the double's bits (the sign of zero too);
  (b) it has as many significant digits as repr's;
  (c) they are repr's digits;
  (d) it is the text the contract gives: an integral value within 2^53 as
      that integer (-0.0 excepted), else repr's text.
Prints "ok N (R as repr, I as integers)" or the first mismatches; exits 1
on any.
"""
import json
import math
import struct
import sys


def double(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def bits_of(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def significant(text):
    """The significant digits of a number's text: no sign, point, exponent,
    leading or trailing zeros."""
    mantissa = text.lstrip("-").split("e")[0].split("E")[0].replace(".", "")
    return mantissa.strip("0") or "0"


def contract_text(x):
    if x.is_integer() and abs(x) <= 2.0 ** 53 and not (x == 0 and math.copysign(1, x) < 0):
        return str(int(x))
    return repr(x)


def check(bits, text):
    """None, or what is wrong."""
    x = double(bits)
    try:
        back = float(text)
    except ValueError:
        return f"{text!r} is not a number"
    if bits_of(back) != bits:
        return f"(a) {x!r} ({bits:016x}) written {text} reads back as {back!r} ({bits_of(back):016x})"
    want = significant(repr(x))
    got = significant(text)
    if len(got) != len(want):
        return f"(b) {x!r} written {text}: {len(got)} digits, repr has {len(want)}"
    if got != want:
        return f"(c) {x!r} written {text}: digits {got}, repr's {want}"
    if text != contract_text(x):
        return f"(d) {x!r} written {text}, not {contract_text(x)}"
    return None


def main(path):
    count, as_repr, as_integer, bad = 0, 0, 0, []
    with open(path, "r", encoding="ascii") as f:
        for n, line in enumerate(f, 1):
            kind, hexes, encoded = line.rstrip("\n").split("\t")
            bits = [int(h, 16) for h in hexes.split(",")]
            if kind == "a":
                texts = json.loads(encoded, parse_float=str, parse_int=str)
            elif kind == "k":
                texts = list(json.loads(encoded).keys())
            else:
                raise SystemExit(f"line {n}: unknown kind {kind!r}")
            if len(texts) != len(bits):
                bad.append(f"line {n}: {len(bits)} doubles, {len(texts)} numbers in {encoded[:200]}")
                continue
            for b, text in zip(bits, texts):
                count += 1
                wrong = check(b, text)
                if wrong:
                    bad.append(f"line {n}: {wrong}")
                elif text == repr(double(b)):
                    as_repr += 1
                else:
                    as_integer += 1
            if len(bad) >= 20:
                break
    if bad:
        print(f"{len(bad)} mismatches (first shown) in {count} numbers:")
        print("\n".join(bad))
        return 1
    print(f"ok {count} ({as_repr} as repr, {as_integer} as integers)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
