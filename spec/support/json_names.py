#!/usr/bin/env python3
"""json_names.py FILE: reads FILE's lines, one JSON text each (as Latin-1,
so each byte is one character), with Python's own json module, and prints
one line for each: "dup NAME" when an object has the member name NAME
twice (json.loads would keep the last silently), "bad ERROR" when the text
is not JSON, else the value again in a canonical form (json.dumps with
sorted keys), for spec/json/edges_spec.lua to compare.
"""
import json
import sys


class Duplicate(Exception):
    pass


def pairs_hook(pairs):
    seen = set()
    for name, _ in pairs:
        if name in seen:
            raise Duplicate(name)
        seen.add(name)
    return dict(pairs)


def verdict(text):
    try:
        value = json.loads(text, object_pairs_hook=pairs_hook)
    except Duplicate as e:
        return "dup " + e.args[0]
    except ValueError as e:
        return "bad " + str(e)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def main():
    with open(sys.argv[1], encoding="latin-1", newline="\n") as f:
        for line in f:
            print(verdict(line.rstrip("\n")))


if __name__ == "__main__":
    main()
