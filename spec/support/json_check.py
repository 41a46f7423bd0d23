#!/usr/bin/env python3
"""json_check.py FILE: checks the encoder's output written by
json_roundtrip.lua against the Lua values it describes, with Python's own
json module as the reference parser.

Each line of FILE: a description of a Lua table, a tab, the encoder's
bytes. The bytes are parsed by json.loads (read as Latin-1, so each byte
is one character and strings compare as bytes), numbers kept as their
text. Checked: integers equal exactly and written as plain digits; floats
equal as doubles (the sign of zero too) and written as the contract says:
as an integer when integral within 2^53 (-0.0 excepted), else exactly
Python's repr; strings equal byte for byte; arrays, holes (null), objects
and their keys in order. Prints "ok N" or the first mismatches; exit 1 on
any mismatch.
"""
import json
import math
import sys


def float_text(x):
    """What the encoder must write for the float x."""
    if x.is_integer() and abs(x) <= 2.0 ** 53 and not (x == 0 and math.copysign(1, x) < 0):
        return str(int(x))
    return repr(x)


def number_text(desc):
    kind, text = desc
    if kind == "i":
        return str(int(text))
    return float_text(float.fromhex(text))


class Mismatch(Exception):
    pass


def check(desc, got, where):
    kind = desc[0]
    if kind in ("i", "f"):
        if not (isinstance(got, tuple) and got[0] == "num"):
            raise Mismatch(f"{where}: expected a number, got {got!r}")
        text = got[1]
        if kind == "i":
            if int(text) != int(desc[1]):
                raise Mismatch(f"{where}: integer {desc[1]} read back as {text}")
        else:
            x = float.fromhex(desc[1])
            y = float(text)
            if y != x or math.copysign(1, y) != math.copysign(1, x):
                raise Mismatch(f"{where}: float {desc[1]} ({x!r}) read back as {text}")
        want = number_text(desc)
        if text != want:
            raise Mismatch(f"{where}: {want} written as {text}")
    elif kind == "s":
        if not isinstance(got, str) or got.encode("latin-1") != bytes.fromhex(desc[1]):
            raise Mismatch(f"{where}: string {desc[1]} read back as {got!r}")
    elif kind == "b":
        if got is not desc[1]:
            raise Mismatch(f"{where}: {desc[1]} read back as {got!r}")
    elif kind == "n":
        if got is not None:
            raise Mismatch(f"{where}: null read back as {got!r}")
    elif kind == "a":
        if not isinstance(got, list) or len(got) != len(desc[1]):
            raise Mismatch(f"{where}: array of {len(desc[1])} read back as {got!r}")
        for i, (d, g) in enumerate(zip(desc[1], got)):
            check(d, g, f"{where}[{i + 1}]")
    elif kind == "o":
        if not (isinstance(got, tuple) and got[0] == "obj") or len(got[1]) != len(desc[1]):
            raise Mismatch(f"{where}: object of {len(desc[1])} read back as {got!r}")
        for (dk, dv), (gk, gv) in zip(desc[1], got[1]):
            if dk[0] == "s":
                want = bytes.fromhex(dk[1])
                if gk.encode("latin-1") != want:
                    raise Mismatch(f"{where}: key {want!r} read back as {gk!r}")
            elif gk != number_text(dk):
                raise Mismatch(f"{where}: number key {dk[1]} written as {gk!r}, want {number_text(dk)!r}")
            check(dv, gv, f"{where}.{gk!r}")
    else:
        raise Mismatch(f"{where}: bad description {desc!r}")


def refuse(text):
    raise ValueError(f"not JSON: {text}")


def main(path):
    count, bad = 0, []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            desc, _, encoded = line.rstrip(b"\n").partition(b"\t")
            count += 1
            try:
                got = json.loads(encoded.decode("latin-1"),
                                 parse_int=lambda t: ("num", t),
                                 parse_float=lambda t: ("num", t),
                                 parse_constant=refuse,
                                 object_pairs_hook=lambda pairs: ("obj", pairs))
                check(json.loads(desc), got, f"line {n}")
            except (Mismatch, ValueError) as e:
                bad.append(f"{e}\n    bytes: {encoded[:300]!r}")
                if len(bad) >= 20:
                    break
    if bad:
        print(f"{len(bad)} mismatches (first shown) in {count} tables:")
        print("\n".join(bad))
        return 1
    print(f"ok {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
