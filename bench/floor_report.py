"""bench/floor.sh's tables: counts per delivered message from the raw files in OUT.

usage: python3 bench/floor_report.py OUT [perf] [strace] [record] [callgrind]
"""
import glob
import json
import os
import re
import subprocess
import sys

OUT = sys.argv[1]
PASSES = sys.argv[2:] or ["perf", "strace", "record", "callgrind"]
ORDER = ["haproxy", "nginx-tls", "moat", "moat-embedded"]


def results(tag):
    """row -> the moat-bench JSON line of that row in pass/round `tag`."""
    path = os.path.join(OUT, tag + ".jsonl")
    if not os.path.exists(path):
        return {}
    rows = [json.loads(line) for line in open(path)]
    return {r["row"]: r for r in rows if r.get("received")}


def rounds(prefix):
    tags = sorted({os.path.basename(p)[: -len(".jsonl")] for p in glob.glob(os.path.join(OUT, prefix + ".*.jsonl"))})
    return [(t, results(t)) for t in tags]


def perf_counts(path):
    counts = {}
    for line in open(path):
        f = line.strip().split(",")
        if len(f) < 3 or not f[0] or f[0].startswith("<") or line.startswith("#"):
            continue
        name = f[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "all syscalls")
        counts[name] = float(f[0])
    return counts


def strace_counts(path):
    counts, errors, usecs = {}, {}, {}
    for line in open(path):
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+(\d+)\s+(\d+)\s+(\d*)\s*(\w+)\s*$", line)
        if m and m.group(4) != "total":
            counts[m.group(4)] = int(m.group(2))
            errors[m.group(4)] = int(m.group(3) or 0)
            usecs[m.group(4)] = int(m.group(1))
    return counts, errors, usecs


def table(head, rows):
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()


def per(v, n):
    return "–" if v is None or not n else f"{v / n:.2f}"


if "perf" in PASSES:
    print("## perf stat: system calls and context switches per delivered message (all threads)\n")
    runs = rounds("perf")
    names = set()
    data = []
    for tag, res in runs:
        for row in ORDER:
            f = os.path.join(OUT, f"{tag}.{row}.txt")
            if row in res and os.path.exists(f):
                c = perf_counts(f)
                data.append((tag, row, res[row], c))
                names |= {k for k, v in c.items() if v}
    calls = sorted(n for n in names if n not in ("all syscalls", "context-switches", "cpu-migrations", "task-clock"))
    head = ["round", "front door", "msgs", "all syscalls"] + calls + ["other", "ctx switches", "user / sys CPU s", "CPU µs/msg"]
    rows = []
    for tag, row, r, c in data:
        n = r["received"]
        other = c.get("all syscalls", 0) - sum(c.get(k, 0) for k in calls)
        cpu = r.get("front_cpu_s")
        rows.append([tag.split(".")[-1], row, f"{n:,.0f}", per(c.get("all syscalls"), n)]
                    + [per(c.get(k, 0), n) for k in calls]
                    + [per(other, n), per(c.get("context-switches"), n),
                       f"{r.get('front_user_s', 0):.2f} / {r.get('front_sys_s', 0):.2f}",
                       "–" if cpu is None else f"{cpu / n * 1e6:.0f}"])
    table(head, rows)

if "strace" in PASSES:
    print("## strace -c -f: calls per delivered message (errors, mostly EAGAIN, in brackets)\n")
    data, names = [], set()
    for tag, res in rounds("strace"):
        for row in ORDER:
            f = os.path.join(OUT, f"{tag}.{row}.txt")
            if row in res and os.path.exists(f):
                c, e, u = strace_counts(f)
                data.append((tag, row, res[row]["received"], c, e))
                names |= set(c)
    calls = sorted(names, key=lambda k: -max(d[3].get(k, 0) / d[2] for d in data))
    calls = [k for k in calls if max(d[3].get(k, 0) / d[2] for d in data) >= 0.01]
    rows = []
    for tag, row, n, c, e in data:
        cells = []
        for k in calls:
            v = c.get(k, 0)
            cells.append(per(v, n) + (f" ({e[k] / n:.2f})" if e.get(k) else ""))
        rows.append([tag.split(".")[-1], row, f"{n:,.0f}", per(sum(c.values()), n)] + cells)
    table(["round", "front door", "msgs", "all"] + calls, rows)

if "record" in PASSES:
    print("## perf record: where each front door's CPU goes (cpu-clock samples, self)\n")
    for row in ORDER:
        data = os.path.join(OUT, f"record.{row}.data")
        if not os.path.exists(data):
            continue
        rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio",
                              "-g", "none", "--percent-limit", "1.5"], capture_output=True, text=True).stdout
        kern = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso", "--stdio",
                               "-g", "none"], capture_output=True, text=True).stdout
        print(f"### {row}\n")
        print("```")
        for line in kern.splitlines():
            if re.match(r"\s+[\d.]+%", line):
                print(line.rstrip())
        print()
        for line in rep.splitlines():
            if re.match(r"\s+[\d.]+%", line):
                print(line.rstrip()[:150])
        print("```\n")

if "callgrind" in PASSES:
    res = results("callgrind")
    dumps = sorted(glob.glob(os.path.join(OUT, "callgrind.out.*.1")))
    if res.get("moat") and dumps:
        n = res["moat"]["received"]
        ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dumps[-1]],
                             capture_output=True, text=True).stdout
        excl = subprocess.run(["callgrind_annotate", "--threshold=100", dumps[-1]],
                              capture_output=True, text=True).stdout
        total = None
        for line in ann.splitlines():
            m = re.match(r"\s*([\d,]+)\s+(\(100\.0%\)\s+)?PROGRAM TOTALS", line)
            if m:
                total = int(m.group(1).replace(",", ""))
        print(f"## callgrind: moat's user-space instructions, publishing phase ({n:,.0f} messages)\n")
        if total:
            print(f"{total:,} instructions, {total / n:,.0f} per delivered message\n")

        def top(text, k):
            out = []
            for line in text.splitlines():
                m = re.match(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(\S.*)$", line)
                if m and "PROGRAM TOTALS" not in line:
                    ir = int(m.group(1).replace(",", ""))
                    out.append([f"{ir / n:,.0f}", m.group(2) + " %", m.group(3)[:140].replace("|", "\\|")])
                if len(out) >= k:
                    break
            return out

        print("Top functions, inclusive:\n")
        table(["instr/msg", "share", "function"], top(ann, 45))
        # Self cost read from the dump itself: every cost line except the one after `calls=`
        # (that one is the callee's inclusive cost). Attributed to the source file the
        # instructions came from (fl/fi/fe: inlined code counts where it was written).
        names, self_fn, self_file = {}, {}, {}
        fn = fl = cur = None
        after_call = False
        for line in open(dumps[-1], errors="replace"):
            m = re.match(r"(fl|fi|fe|fn|cfn|cfi|cfl|ob|cob)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
            if m:
                key, ident, name = m.group(1), m.group(2), m.group(3)
                kind = "fn" if key in ("fn", "cfn") else "ob" if key in ("ob", "cob") else "fl"
                if name is not None:
                    names[(kind, ident)] = name
                if key == "fn":
                    fn = names.get(("fn", ident), ident)
                    cur = fl
                elif key == "fl":
                    fl = cur = names.get(("fl", ident), ident)
                elif key in ("fi", "fe"):
                    cur = names.get(("fl", ident), ident)
                continue
            if line.startswith("calls="):
                after_call = True
                continue
            m = re.match(r"[+-]?\d+|\*", line)
            if m and fn is not None:
                parts = line.split()
                if len(parts) >= 2 and not after_call:
                    ir = int(parts[1])
                    self_fn[fn] = self_fn.get(fn, 0) + ir
                    self_file[cur] = self_file.get(cur, 0) + ir
                after_call = False
        groups = [
            ("TLS: ring AES-GCM/GHASH", r"/ring-"),
            ("TLS: rustls record layer", r"/rustls-"),
            ("tokio: scheduler, I/O driver, timers, sync", r"/tokio-|/mio-"),
            ("moat: session driver and reader", r"src/session/(driver|reader|mod|upstream)"),
            ("moat: session machine (MQTT rules)", r"src/session/machine"),
            ("moat: MQTT codec", r"src/mqtt/"),
            ("moat: policy / ACL cache", r"src/policy/"),
            ("moat: TLS seam (tls_stream)", r"src/transport/"),
            ("moat: broker link, ACK pacer", r"src/broker/"),
            ("moat: stats, shutdown, admission, other", r"/src/(stats|shutdown|admission|server|ops)"),
            ("tracing (spans)", r"/tracing-"),
            ("allocation (glibc malloc/free, RawVec)", r"malloc/|/alloc/src/|raw_vec"),
            ("memcpy/memmove/memset", r"memmove|memset|memcpy|memcmp|string/"),
            ("std/core: time, SipHash, UTF-8, atomics", r"/library/(std|core)/"),
            ("bytes crate", r"/bytes-"),
            ("libc / libm (pow, clock_gettime, ...)", r"sysdeps|math/|time/|nptl/"),
        ]
        sums = {}
        for f, ir in self_file.items():
            for g, rx in groups:
                if re.search(rx, f or ""):
                    break
            else:
                g = "other"
            sums[g] = sums.get(g, 0) + ir
        total_self = sum(sums.values()) or 1
        print("Self cost by component (by the source file of the instructions):\n")
        table(["instr/msg", "share", "component"],
              [[f"{v / n:,.0f}", f"{100 * v / total_self:.1f} %", g] for g, v in sorted(sums.items(), key=lambda x: -x[1]) if v])
        print("Top functions, self:\n")
        table(["instr/msg", "share", "function"],
              [[f"{v / n:,.0f}", f"{100 * v / total_self:.1f} %", k[:140].replace("|", "\\|")]
               for k, v in sorted(self_fn.items(), key=lambda x: -x[1])[:30]])
