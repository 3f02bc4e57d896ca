"""bench/scheduler.sh helper: in-process lateness and state write cost, and reloads.

    scheduler-inproc.py lateness WORK JOBS   markdown rows, then a WRITES line
    scheduler-inproc.py reload SUPD WORK     markdown rows, then a TERM line
"""
import glob
import os
import re
import signal
import statistics
import subprocess
import sys
import time


def field(line, key):
    m = re.search(r"\b" + key + r"=(\d+)", line)
    return int(m.group(1)) if m else None


def logged(files):
    """lateness_ms of the `job ran` lines."""
    return sorted(
        field(l, "lateness_ms")
        for f in files
        for l in open(f)
        if "job ran" in l and field(l, "lateness_ms") is not None
    )


def arrivals(pattern):
    """ms after the minute boundary of each nanosecond timestamp line."""
    return sorted(
        (int(l) % 60_000_000_000) / 1e6 for f in glob.glob(pattern) for l in open(f)
    )


def fmt(xs):
    if not xs:
        return "- | - | 0"
    return f"{statistics.median(xs):.1f} ms | {max(xs):.1f} ms | {len(xs)}"


def lateness(work):
    rows = [
        ("in-process supd, `lateness_ms` logged (due → delivery)",
         logged(glob.glob(f"{work}/inproc-*.log"))),
        ("in-process supd, callback started (its first command)",
         arrivals(f"{work}/inproc-arrivals-*")),
        ("`supd scheduler`, `lateness_ms` logged (due → delivery)",
         logged([f"{work}/scheduler.log"])),
        ("`supd scheduler`, connection accepted by the listener",
         arrivals(f"{work}/arrivals-*")),
    ]
    sc = arrivals(f"{work}/sc-arrivals-*")
    if sc:
        rows.append(("supercronic, command started", sc))
    for name, xs in rows:
        print(f"| {name} | {fmt(xs)} |")
    writes = [
        (field(l, "render_us"), field(l, "write_us"))
        for f in glob.glob(f"{work}/inproc-*.log")
        for l in open(f)
        if "file written" in l and "state-" in l
    ]
    if writes:
        r = sorted(w[0] for w in writes)
        w = sorted(w[1] for w in writes)
        print(f"WRITES {statistics.median(r):.0f} {max(r)} {statistics.median(w):.0f} {max(w)} {len(writes)}")
    else:
        print("WRITES - - - - 0")


def lines(n, service):
    return "".join(f"{k % 60} {(k // 60) % 24} * * * {service} a{k}\n" for k in range(n))


def stamp(line):
    """A log line's UTC timestamp (2026-12-01T10:54:17.664Z) as epoch seconds."""
    t = time.strptime(line[:19], "%Y-%m-%dT%H:%M:%S")
    return time.mktime(t) - time.timezone + int(line[20:23]) / 1000


def reload_once(supd, work, n, term_after=None):
    d = f"{work}/reload-{n}"
    os.makedirs(d, exist_ok=True)
    cron = f"{d}/s.cron"
    open(cron, "w").write(lines(n, "svc"))
    p = subprocess.Popen(
        [supd, "scheduler", "--file", cron, "--socket-dir", d, "--state-dir", d, "-v"],
        stderr=subprocess.PIPE,
        text=True,
    )

    def until(pred):
        for line in p.stderr:
            if pred(line):
                return line
        raise SystemExit(f"supd scheduler ended before the expected line ({n} lines)")

    until(lambda l: "file written" in l)  # the start's state sync is done
    tmp = cron + ".tmp"
    open(tmp, "w").write(lines(n, "other"))
    os.rename(tmp, cron)  # the watch sees it too; SIGHUP starts the clock
    t0 = time.time()
    p.send_signal(signal.SIGHUP)
    if term_after is not None:
        time.sleep(term_after)
        t1 = time.time()
        p.send_signal(signal.SIGTERM)
        p.stderr.read()
        p.wait()
        return time.time() - t1
    reloaded = until(lambda l: "schedule reloaded" in l)
    written = until(lambda l: "file written" in l and "scheduler.json" in l)
    p.send_signal(signal.SIGTERM)
    p.stderr.read()
    p.wait()
    return (
        stamp(reloaded) - t0,
        stamp(written) - t0,
        field(written, "render_us"),
        field(written, "write_us"),
        field(written, "bytes"),
    )


def reload(supd, work):
    for n in (1000, 10000, 100000):
        a, b, render, write, size = reload_once(supd, work, n)
        print(
            f"| {n:,} lines, every job changed | {a * 1000:.0f} ms | {b * 1000:.0f} ms | "
            f"{render / 1000:.1f} ms + {write / 1000:.1f} ms ({size / 1e6:.1f} MB) |"
        )
    worst = max(reload_once(supd, work, 100000, t) for t in (0.05, 0.3, 0.6, 1.0))
    print(f"TERM {worst * 1000:.0f}")


if __name__ == "__main__":
    if sys.argv[1] == "lateness":
        lateness(sys.argv[2])
    else:
        reload(sys.argv[2], sys.argv[3])
