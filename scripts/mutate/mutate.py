#!/usr/bin/env python3
"""producers - mutation check (issue #26).

Applies one small mutation at a time to src/*.c and lua/producers/*.lua,
rebuilds (Lua 5.4 only, incrementally), runs the spec files that cover
the mutated file (scripts/mutate/map.txt) and says whether a spec fails
(killed), none does (survived), or the mutant is a known equivalent one,
or one this build cannot show (scripts/mutate/known.txt, with the
reason). The checkout is never written: the work happens in a copy of its tracked files under
build-mutate/tree (its own build folder build-mutate/tree/build), and the
mutated file of the copy is restored after each mutant, on Ctrl-C and
TERM too.

Operators (one change on one line):
  rel      boundary flip: < <=, <= <, > >=, >= >
  eq       == and != (Lua ~=) swapped
  logic    && || (Lua and/or) swapped
  cond     a one-line if condition made false: a dropped check
  drop     a call statement dropped (releases, checks, redaction,
           wake-ups: every statement that is one call on one line)
  swap     the two plain arguments of a two-argument call swapped
  num      a numeric literal changed: 0 -> 1, 1 -> 0, n -> n + 1
           (defaults, limits, sizes)

A mutant's id is file:line:operator:hash, the hash (8 hex digits) taken
over the file, operator, the line's text and the change, so it stays
the same when other lines move; known.txt keys on file:operator:hash.

Usage: scripts/mutate.sh [--seed N] [--count N] [--file REGEX] [--op REGEX]
                         [--id ID ...] [--spec FILE ...] [--list] [--report FILE]
                         [--timeout S] [--no-baseline] [--work DIR]
       scripts/mutate.sh --rejudge REPORT
"""
import argparse
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.join(ROOT, "scripts", "mutate")
# Every C file under src/ and Lua file under lua/producers/, at any depth
# (src/core/, src/kafka/, lua/producers/ngx/ ...).
DEFAULT_FILES = r"^(src/(?:[a-z_]+/)*[a-z_]+\.c|lua/producers/(?:[a-z_]+/)*[a-z_]+\.lua)$"
# Not mutated: generated tables (only .c and .lua files are, anyway).
SKIP_FILES = re.compile(r"(^|/)json_double_table\.h$|_gen\.py$")


# --------------------------------------------------------------- masking
def mask_lines(path, text):
    """Per line, the text with comments and string/char literals blanked
    (same length), so operators only see code."""
    lua = path.endswith(".lua")
    out, in_block = [], False
    for line in text.split("\n"):
        m, i, n = [], 0, len(line)
        while i < n:
            c = line[i]
            if in_block:
                end = "]]" if lua else "*/"
                j = line.find(end, i)
                if j < 0:
                    m.append(" " * (n - i)); i = n
                else:
                    m.append(" " * (j + 2 - i)); i = j + 2; in_block = False
                continue
            if lua and line.startswith("--[[", i) or lua and line.startswith("--[=", i):
                in_block = True; m.append("    "); i += 4; continue
            if lua and line.startswith("--", i) or not lua and line.startswith("//", i):
                m.append(" " * (n - i)); i = n; continue
            if not lua and line.startswith("/*", i):
                in_block = True; m.append("  "); i += 2; continue
            if lua and line.startswith("[[", i):
                in_block = True; m.append("  "); i += 2; continue
            if c in "\"'":
                j = i + 1
                while j < n and line[j] != c:
                    j += 2 if line[j] == "\\" else 1
                m.append(c + " " * (min(j, n) - i - 1) + (c if j < n else ""))
                i = j + 1
                continue
            m.append(c); i += 1
        s = "".join(m)
        if not lua and s.lstrip().startswith("#") and not re.match(r"\s*#\s*define", s):
            s = " " * len(s)          # preprocessor lines but #define
        out.append(s)
    return out


# ------------------------------------------------------------- operators
def balanced(s):
    d = 0
    for ch in s:
        d += ch == "("; d -= ch == ")"
        if d < 0:
            return False
    return d == 0


def ops_for(path, line, masked):
    """Yields (op, start, end, replacement) for one line."""
    lua = path.endswith(".lua")
    # rel: not ->, <<, >>, <<=, >>=, nor #include <x>
    for mt in re.finditer(r"(?<![<>\-=])(<=|>=|<|>)(?![<>=])", masked):
        tok = mt.group(1)
        if tok == ">" and mt.start() > 0 and masked[mt.start() - 1] == "-":
            continue
        rep = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}[tok]
        yield "rel", mt.start(), mt.end(), rep
    ne = "~=" if lua else "!="
    for mt in re.finditer(r"==|" + re.escape(ne), masked):
        yield "eq", mt.start(), mt.end(), ne if mt.group(0) == "==" else "=="
    if lua:
        for mt in re.finditer(r"\b(and|or)\b", masked):
            yield "logic", mt.start(), mt.end(), "or" if mt.group(1) == "and" else "and"
    else:
        for mt in re.finditer(r"&&|\|\|", masked):
            yield "logic", mt.start(), mt.end(), "||" if mt.group(0) == "&&" else "&&"
    # cond: a one-line if
    if lua:
        mt = re.match(r"(\s*(?:else)?if\s+)(.+?)(\s+then\b)", masked)
        if mt and "function" not in mt.group(2):
            yield "cond", mt.start(2), mt.end(2), "false"
    else:
        mt = re.match(r"\s*(?:}\s*else\s+)?if\s*\(", masked)
        if mt:
            start, d = mt.end() - 1, 0
            for k in range(start, len(masked)):
                d += masked[k] == "("; d -= masked[k] == ")"
                if d == 0:
                    yield "cond", start + 1, k, "0"
                    break
    # drop: a statement that is one call on one line
    if lua:
        mt = re.match(r"^(\s*)([A-Za-z_][\w.:\[\]\"']*\s*\(.*\))\s*$", masked)
        if mt and balanced(mt.group(2)) and not re.match(r"(local|return|if|elseif|while|until|for|function)\b", mt.group(2)):
            yield "drop", mt.start(2), mt.end(2), "do end"
    else:
        mt = re.match(r"^(\s*)((?:\(void\)\s*)?[A-Za-z_][\w.>\-]*\s*\(.*\)\s*;)\s*$", masked)
        # lua_* stack calls are left out: dropping one unbalances the stack
        # (a crash, not a question for the specs); luaL_unref & co. stay.
        if mt and balanced(mt.group(2)) and not re.match(r"(return|if|while|for|switch|sizeof|lua_|\(void\)\s*lua_)", mt.group(2)):
            yield "drop", mt.start(2), mt.end(2), "(void)0;"
    # swap: f(a, b) with two plain arguments
    for mt in re.finditer(r"\b([A-Za-z_]\w*)\(\s*([\w.]+(?:->\w+)?)\s*,\s*([\w.]+(?:->\w+)?)\s*\)", masked):
        a, b = mt.group(2), mt.group(3)
        if a != b and "L" not in (a, b) and mt.group(1) not in ("if", "while", "for", "sizeof", "switch", "return"):
            yield "swap", mt.start(2), mt.end(3), b + ", " + a
    # num: decimal literals not part of a name or a float's exponent
    for mt in re.finditer(r"(?<![\w.])(\d+)(?![\w.])", masked):
        if not lua and re.search(r"\blua(L?)_\w+\([^()]*$", masked[:mt.start()]):
            continue                  # a Lua stack index: a crash, not a default
        v = int(mt.group(1))
        rep = {0: "1", 1: "0"}.get(v, str(v + 1))
        yield "num", mt.start(), mt.end(), rep


def mutants_of(path):
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    lines = text.split("\n")
    masked = mask_lines(path, text)
    out, twins = [], {}
    for no, (line, ml) in enumerate(zip(lines, masked), 1):
        if not ml.strip():
            continue
        seen = {}
        for op, s, e, rep in ops_for(path, line, ml):
            new = line[:s] + rep + line[e:]
            if new == line:
                continue
            key = (op, s)
            if key in seen:
                continue
            seen[key] = 1
            # not the path: a file moved to another folder keeps its ids' hashes
            base = f"{op}\0{line.strip()}\0{s - (len(line) - len(line.lstrip()))}\0{rep}"
            twins[base] = twins.get(base, 0) + 1        # the same line twice in a file
            h = hashlib.sha1(f"{base}\0{twins[base]}".encode()).hexdigest()[:8]
            out.append({
                "file": path, "line": no, "op": op, "hash": h,
                "id": f"{path}:{no}:{op}:{h}", "key": f"{path}:{op}:{h}",
                "old": line, "new": new,
                # the column too: a line may have the same operator twice
                "what": (f"`{line[s:e].strip()}` -> `{rep}` (col {s + 1})" if op != "drop"
                         else f"dropped `{line[s:e].strip()}`"),
            })
    return out


# ------------------------------------------------------------ data files
def read_map():
    rules = []
    for raw in open(os.path.join(HERE, "map.txt"), encoding="utf-8"):
        raw = raw.split("#", 1)[0].strip()
        if raw:
            pat, *specs = raw.split()
            rules.append((pat, specs))
    return rules


def pattern(pat):
    """map.txt's path pattern as a regex: **/ any folders (none too), **
    anything, * any part of a name."""
    out, i = [], 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out.append("(?:[^/]+/)*"); i += 3
        elif pat.startswith("**", i):
            out.append(".*"); i += 2
        elif pat[i] == "*":
            out.append("[^/]*"); i += 1
        else:
            out.append(re.escape(pat[i])); i += 1
    return "".join(out)


def specs_for(path, rules):
    for pat, specs in rules:
        if re.fullmatch(pattern(pat), path):
            return specs
    return []


# Kinds of known.txt not run: equivalent (no program can tell the mutant
# from the original), elsewhere (none can in the Lua 5.4 build the check
# runs, e.g. a line only Lua 5.1/LuaJIT or another build runs; the
# reason says where it is or is not caught). Neither counts in the rate.
NOT_RUN = ("equivalent", "elsewhere")


class Known(dict):
    """known.txt: key (path:op:hash) -> (kind, reason). A lookup that
    misses the exact key tries the file's name in any folder, then the
    operator and hash alone when one entry has them, so an entry still
    applies after its file moved (src/x.c -> src/core/x.c) or was split
    (lua/producers/ngx.lua -> lua/producers/ngx/*.lua); the hash does
    not cover the path. --rewrite-known writes the current paths back."""

    def find(self, key):
        """The entry's own key for a mutant's key, or None. Only entries
        whose file is gone are matched loosely: the same line in two files
        has the same hash."""
        if key in self:
            return key
        path, op, h = key.rsplit(":", 2)
        gone = [k for k in self if k.endswith(f":{op}:{h}") and not os.path.isfile(os.path.join(ROOT, k.rsplit(":", 2)[0]))]
        name = os.path.basename(path)
        by_name = [k for k in gone if os.path.basename(k.rsplit(":", 2)[0]) == name]
        if len(by_name) == 1:
            return by_name[0]
        return gone[0] if len(gone) == 1 and not by_name else None

    def get(self, key, default=None):
        k = self.find(key)
        return self[k] if k else default


def read_known():
    known = Known()
    for raw in open(os.path.join(HERE, "known.txt"), encoding="utf-8"):
        if raw.strip() and not raw.startswith("#"):
            kind, key, reason = raw.rstrip("\n").split(None, 2)
            known[key] = (kind, reason)
    return known


def id_matches(i, m, pool):
    """--id i names mutant m: its id or key, or (the file moved) its file's
    name with the operator and hash, or the operator and hash alone when
    no other mutant has them."""
    if i in (m["id"], m["key"]):
        return True
    parts = i.split(":")
    if len(parts) < 2 or parts[-2:] != [m["op"], m["hash"]]:
        return False
    if len(parts) >= 3 and os.path.basename(parts[0]) == os.path.basename(m["file"]):
        return True
    return sum(o["op"] == m["op"] and o["hash"] == m["hash"] for o in pool) == 1


def rewrite_known(pool, known):
    """Rewrites known.txt's keys that match a mutant under another path
    to that mutant's key; lists the entries no mutant matches (their line
    changed: judge them again or delete them)."""
    path = os.path.join(HERE, "known.txt")
    now = {}
    for m in pool:
        k = known.find(m["key"])
        if k:
            now[k] = m["key"]
    out, moved, stale = [], 0, []
    for raw in open(path, encoding="utf-8"):
        if raw.strip() and not raw.startswith("#"):
            kind, key, reason = raw.rstrip("\n").split(None, 2)
            if key in now and now[key] != key:
                raw = raw.replace(key, now[key], 1)
                moved += 1
            elif key not in now:
                stale.append(key)
        out.append(raw)
    open(path, "w", encoding="utf-8").write("".join(out))
    print(f"known.txt: {moved} keys rewritten to their file's current path")
    for key in stale:
        print(f"known.txt: no mutant matches {key} (its line changed?)")
    return 1 if stale else 0


# ---------------------------------------------------------------- runner
def killpg(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


class Tree:
    """The copy of the checkout the mutants are built and run in."""

    def __init__(self, work):
        self.work = work
        self.dir = os.path.join(work, "tree")
        self.build = os.path.join(self.dir, "build")
        self.dirty = None            # (path, original bytes) while mutated

    def sync(self):
        os.makedirs(self.dir, exist_ok=True)
        # tracked files and untracked ones git does not ignore, as they are
        files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                               capture_output=True).stdout.split(b"\0")
        for f in files:
            if not f:
                continue
            f = f.decode()
            src, dst = os.path.join(ROOT, f), os.path.join(self.dir, f)
            if not os.path.isfile(src):
                continue
            if os.path.isfile(dst) and open(src, "rb").read() == open(dst, "rb").read():
                continue
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)

    def make(self, log):
        if not os.path.exists(os.path.join(self.build, "CMakeCache.txt")):
            r = subprocess.run(["cmake", "-S", self.dir, "-B", self.build,
                                "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DPRODUCERS_LUA=5.4",
                                "-DPRODUCERS_BENCH=OFF"], stdout=log, stderr=log)
            if r.returncode:
                return False
        r = subprocess.run(["nice", "cmake", "--build", self.build, "-j", "1"], stdout=log, stderr=log)
        return r.returncode == 0

    def apply(self, m):
        p = os.path.join(self.dir, m["file"])
        orig = open(os.path.join(ROOT, m["file"]), "rb").read()
        self.dirty = (p, orig)
        lines = orig.decode("utf-8").split("\n")
        assert lines[m["line"] - 1] == m["old"], "source changed since listing"
        lines[m["line"] - 1] = m["new"]
        open(p, "wb").write("\n".join(lines).encode("utf-8"))

    def restore(self):
        if self.dirty:
            p, orig = self.dirty
            open(p, "wb").write(orig)
            self.dirty = None

    def spec(self, spec, timeout, log):
        """None when the spec passes, else a short reason."""
        env = dict(os.environ, PRODUCERS_BUILD_DIR=self.build, PRODUCERS_LUA="lua5.4")
        # Its own process group, ended whole on a timeout or an interrupt
        # (busted runs lua5.4 under sh, which may start nginx, kcat, ...).
        proc = subprocess.Popen(["nice", "busted", "--lua=lua5.4", "-o", "TAP", spec],
                                cwd=self.dir, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            killpg(proc)
            log.write(f"timeout after {timeout} s\n")
            return f"timeout ({timeout} s)"
        except BaseException:
            killpg(proc)
            raise
        killpg(proc)                  # anything it left behind
        r = subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
        log.write(r.stdout + r.stderr)
        if r.returncode == 0:
            return None
        first = re.search(r"^not ok \d+ - (.*)$", r.stdout, re.M)
        return first.group(1)[:90] if first else f"exit {r.returncode}"


def main():
    ap = argparse.ArgumentParser(description="mutation check (see scripts/mutate/mutate.py)")
    ap.add_argument("--seed", type=int, default=26, help="the sample's seed (default 26)")
    ap.add_argument("--count", type=int, default=40, help="mutants in the sample (default 40)")
    ap.add_argument("--file", default=DEFAULT_FILES, help="regex on the path")
    ap.add_argument("--op", default=None, help="regex on the operator")
    ap.add_argument("--id", action="append", default=[], help="run these ids (file:line:op:hash or file:op:hash)")
    ap.add_argument("--spec", action="append", default=[],
                    help="run these spec files instead of map.txt's (to prove a new spec kills a mutant)")
    ap.add_argument("--list", action="store_true", help="list the sample, run nothing")
    ap.add_argument("--report", default=None, help="markdown report (default build-mutate/report.md)")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per spec file; a timeout kills")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the specs")
    ap.add_argument("--rewrite-known", action="store_true",
                    help="rewrite known.txt's keys to the files' current paths (after a move), run nothing")
    ap.add_argument("--rejudge", metavar="REPORT", help="re-read known.txt into an existing report's survived rows, run nothing")
    ap.add_argument("--work", default=os.path.join(ROOT, "build-mutate"),
                    help="the copy and its build (default build-mutate/)")
    a = ap.parse_args()

    if a.rejudge:
        return rejudge(a.rejudge, read_known())
    files = sorted(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                  check=True).stdout.split())
    files = [f for f in files if re.search(DEFAULT_FILES, f) and re.search(a.file, f) and not SKIP_FILES.search(f)]
    rules, known = read_map(), read_known()
    if a.spec:
        rules = [("**", a.spec)]
    if a.rewrite_known:
        return rewrite_known([m for f in files for m in mutants_of(f)], known)
    unmapped = [f for f in files if not specs_for(f, rules)]
    if unmapped:
        print("mutate: not mutated, map.txt gives no spec file for: " + ", ".join(unmapped), file=sys.stderr)
    pool = [m for f in files for m in mutants_of(f) if not a.op or re.search(a.op, m["op"])]
    pool = [m for m in pool if specs_for(m["file"], rules)]
    if a.id:
        # file:line:op:hash, path:op:hash, or op:hash alone (any file,
        # any line: an id from before a file moved still finds its mutant)
        sample = [m for m in pool if any(id_matches(i, m, pool) for i in a.id)]
    else:
        # Stratified: each operator's mutants shuffled with the seed, then
        # taken in turn, so a small sample still has every operator.
        # The pool in hash order, not path order: a file that moves keeps
        # its mutants' places, so the sample changes only where code does.
        rng, by_op = random.Random(a.seed), {}
        for m in sorted(pool, key=lambda m: (m["hash"], m["file"], m["line"])):
            by_op.setdefault(m["op"], []).append(m)
        lists = [rng.sample(by_op[op], len(by_op[op])) for op in sorted(by_op)]
        sample = []
        while len(sample) < min(a.count, len(pool)):
            for lst in lists:
                if lst and len(sample) < a.count:
                    sample.append(lst.pop())
        sample.sort(key=lambda m: (m["file"], m["line"], m["op"]))
    if a.list:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        for m in sample:
            print(m["id"], m["what"], "|", m["old"].strip())
        print(f"{len(sample)} of {len(pool)} mutants", file=sys.stderr)
        return 0

    os.makedirs(a.work, exist_ok=True)
    tree = Tree(a.work)
    report = a.report or os.path.join(a.work, "report.md")
    log = open(os.path.join(a.work, "mutate.log"), "w")

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    rows, t0, interrupted = [], time.time(), False
    try:
        tree.sync()
        if not tree.make(log):
            sys.exit("mutate: the unmutated tree does not build; see " + log.name)
        need = sorted({s for m in sample if known.get(m["key"], (None,))[0] not in NOT_RUN
                       for s in specs_for(m["file"], rules)})
        if not a.no_baseline:
            for s in need:
                print(f"baseline {s}", flush=True)
                why = tree.spec(s, a.timeout, log)
                if why:
                    sys.exit(f"mutate: {s} fails unmutated ({why}); fix or leave it out of map.txt")
        for n, m in enumerate(sample, 1):
            kind, reason = known.get(m["key"], (None, None))
            row = dict(m, result=None, by="")
            if kind in NOT_RUN:
                row.update(result=kind, by=reason)
            else:
                log.write(f"\n==== {m['id']}\n{m['old']}\n{m['new']}\n")
                try:
                    tree.apply(m)
                    if not tree.make(log):
                        row.update(result="invalid", by="does not build")
                    else:
                        for s in specs_for(m["file"], rules):
                            why = tree.spec(s, a.timeout, log)
                            if why:
                                row.update(result="killed", by=f"{os.path.relpath(s, 'spec')}: {why}")
                                break
                        else:
                            row.update(result="survived", by=("gap: " + reason) if kind == "gap" else "")
                finally:
                    tree.restore()
            rows.append(row)
            print(f"[{n}/{len(sample)}] {row['result']:10} {m['id']} {m['what']}  {row['by']}", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("mutate: interrupted; the copy is restored", file=sys.stderr)
    finally:
        tree.restore()
        # leave the build matching the unmutated sources, and report what ran
        tree.make(log)
        write_report(report, rows, a, len(pool), time.time() - t0, interrupted)
    print(f"report: {report}")
    return 130 if interrupted else 0


def write_report(path, rows, a, pool, secs, interrupted):
    count = {k: sum(r["result"] == k for r in rows) for k in ("killed", "survived", "equivalent", "elsewhere", "invalid")}
    judged = count["killed"] + count["survived"]
    rate = f"{100.0 * count['killed'] / judged:.1f}%" if judged else "n/a"
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    cmd = "scripts/mutate.sh " + (" ".join(f"--id {i}" for i in a.id) if a.id else
                                  f"--seed {a.seed} --count {a.count}" +
                                  (f" --file '{a.file}'" if a.file != DEFAULT_FILES else "") +
                                  (f" --op '{a.op}'" if a.op else "")) + \
        (" --no-baseline" if a.no_baseline else "")
    with open(path, "w") as f:
        f.write("# Mutation report\n\n")
        f.write(f"Written by `{cmd}` at commit {head} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                f"{secs / 60:.1f} minutes{', INTERRUPTED' if interrupted else ''}). "
                f"{len(rows)} mutants sampled from {pool}.\n\n")
        f.write(f"**Kill rate: {rate}** of non-equivalent mutants ({count['killed']} killed, "
                f"{count['survived']} survived; {count['equivalent']} known equivalent, "
                f"{count['elsewhere']} not observable in this build (elsewhere) and "
                f"{count['invalid']} that do not build are not counted).\n\n")
        f.write("| id | file:line | mutation | result | killing spec (first failing case) or reason |\n")
        f.write("|---|---|---|---|---|\n")
        for r in rows:
            cell = lambda s: s.replace("|", "\\|").replace("\n", " ")
            f.write(f"| `{r['id']}` | {r['file']}:{r['line']} | {cell(r['what'])} | {r['result']} | {cell(r['by'])} |\n")


def rejudge(path, known):
    """Survivors of a finished run that known.txt now lists: equivalent
    ones leave the rate, gaps get their note. Nothing runs."""
    text = open(path).read()
    out, n = [], {"killed": 0, "survived": 0, "equivalent": 0, "elsewhere": 0, "invalid": 0}
    for line in text.split("\n"):
        cells = line.split(" | ")
        if line.startswith("| `") and len(cells) == 5:
            i = cells[0][3:-1]
            f, _, op, h = i.rsplit(":", 3)
            kind, reason = known.get(f"{f}:{op}:{h}", (None, None))
            if cells[3] in ("survived",) + NOT_RUN and kind:
                cells[3] = kind if kind in NOT_RUN else "survived"
                cells[4] = (reason if kind in NOT_RUN else "gap: " + reason).replace("|", "\\|") + " |"
                line = " | ".join(cells)
            n[cells[3]] = n.get(cells[3], 0) + 1
        out.append(line)
    text = "\n".join(out)
    judged = n["killed"] + n["survived"]
    rate = f"{100.0 * n['killed'] / judged:.1f}%" if judged else "n/a"
    text = re.sub(r"\*\*Kill rate: .*", f"**Kill rate: {rate}** of non-equivalent mutants ({n['killed']} killed, "
                  f"{n['survived']} survived; {n['equivalent']} known equivalent, {n['elsewhere']} not observable in "
                  f"this build (elsewhere) and {n['invalid']} that do not "
                  f"build are not counted; survivors rejudged against scripts/mutate/known.txt with "
                  f"`scripts/mutate.sh --rejudge`, nothing rerun).", text)
    open(path, "w").write(text)
    print(f"{path}: kill rate {rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
