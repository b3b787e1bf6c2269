#!/usr/bin/env python3
"""Changes about 2% of the benchmark's data set, deterministically (standard library only).

Usage: python3 bench/mutate.py [DATADIR]       (default: bench/work/data)
Environment: BENCH_SEED (default 20240601), as for gen.py.

What it does (the same every time for the same data set and seed):
  - small files: ~1% modified in the middle, ~0.5% deleted, ~1% added (some in a new folder),
    ~5% of the logs get lines appended
  - medium files: two modified in the middle (in place), every log appended to
  - random files: 1 MiB overwritten in the middle of the first one
  - SQLite: ~2% of the orders updated, new events inserted, some events deleted
Changed files get a fixed mtime one day after gen.py's. Refuses to run twice on the same data
(OUTDIR.json records it); run gen.py again (BENCH_FORCE=1) for fresh data.
"""

import json
import os
import random
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402

MUTATE_TIME = gen.GEN_TIME + 86400


def files_under(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(d, f)
            if not os.path.islink(p):
                out.append(p)
    return out


def touch(p):
    os.utime(p, (MUTATE_TIME, MUTATE_TIME), follow_symlinks=False)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    data = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "work", "data"))
    seed = int(os.environ.get("BENCH_SEED", "20240601"))
    stamp = data + ".json"
    if not os.path.isdir(data) or not os.path.exists(stamp):
        sys.exit("mutate.py: %s is not a data set made by gen.py (no %s)" % (data, stamp))
    summary = json.load(open(stamp))
    if summary.get("mutated"):
        sys.exit("mutate.py: %s was mutated already; regenerate it with BENCH_FORCE=1 gen.py"
                 % data)
    rng = random.Random(seed + 100)
    text = gen.Text(random.Random(seed + 101))
    changed = {"modified": 0, "deleted": 0, "added": 0, "appended": 0, "bytes_written": 0}

    small = files_under(os.path.join(data, "small"))
    small = [p for p in small if os.path.getsize(p) > 0]
    picks = rng.sample(small, max(1, len(small) // 100))
    for p in picks:
        b = open(p, "rb").read()
        mid = len(b) // 2
        new = text.prose(rng.randint(100, 500)).encode()
        b = b[:mid] + new + b[mid + rng.randint(0, len(new)):]
        open(p, "wb").write(b)
        touch(p)
        changed["modified"] += 1
        changed["bytes_written"] += len(new)
    picked = set(picks)
    rest = [p for p in small if p not in picked]
    for p in rng.sample(rest, max(1, len(small) // 200)):
        os.remove(p)
        changed["deleted"] += 1
    logs = [p for p in small if p.endswith(".log") and os.path.exists(p)]
    for p in rng.sample(logs, max(1, len(logs) // 20)):
        add = text.log(rng.randint(200, 2000)).encode()
        with open(p, "ab") as f:
            f.write(add)
        touch(p)
        changed["appended"] += 1
        changed["bytes_written"] += len(add)
    dirs = sorted({os.path.dirname(p) for p in small})
    n_new = max(1, len(small) // 100)
    for i in range(n_new):
        if i % 4 == 0:
            d = os.path.join(data, "small", "new_project", "part_%02d" % (i // 40))
        else:
            d = rng.choice(dirs)
        p = os.path.join(d, "added_%05d.md" % i)
        changed["bytes_written"] += gen.write(p, text.prose(rng.randint(500, 8000)))
        touch(p)
        changed["added"] += 1

    medium = files_under(os.path.join(data, "medium"))
    for p in rng.sample(medium, min(2, len(medium))):
        size = os.path.getsize(p)
        n = min(256 * 1024, size // 4)
        with open(p, "r+b") as f:
            f.seek(size // 2)
            f.write(rng.randbytes(n))
        touch(p)
        changed["modified"] += 1
        changed["bytes_written"] += n
    for p in medium:
        if p.endswith(".log"):
            add = text.log(max(4096, os.path.getsize(p) // 100)).encode()
            with open(p, "ab") as f:
                f.write(add)
            touch(p)
            changed["appended"] += 1
            changed["bytes_written"] += len(add)

    rnd = files_under(os.path.join(data, "random"))
    if rnd:
        p = rnd[0]
        size = os.path.getsize(p)
        n = min(1024 * 1024, size // 4)
        with open(p, "r+b") as f:
            f.seek(size // 2)
            f.write(rng.randbytes(n))
        touch(p)
        changed["modified"] += 1
        changed["bytes_written"] += n

    dbp = os.path.join(data, "db", "app.sqlite")
    if os.path.exists(dbp):
        db = sqlite3.connect(dbp)
        (n_orders,) = db.execute("SELECT max(id) FROM orders").fetchone()
        (n_events,) = db.execute("SELECT max(id) FROM events").fetchone()
        (n_cust,) = db.execute("SELECT max(id) FROM customers").fetchone()
        with db:
            # ~2% of the orders, spread over the whole table.
            ids = sorted(rng.sample(range(1, n_orders + 1), max(1, n_orders // 50)))
            db.executemany("UPDATE orders SET status = ?, notes = ? WHERE id = ?",
                           ((rng.choice(gen.STATUSES), rng.choice(text.sentences), i)
                            for i in ids))
            t = 1800000000
            db.executemany("INSERT INTO events VALUES (?,?,?,?,?)", (
                (n_events + k + 1, t + k, rng.choice(gen.EVENT_KINDS), rng.randint(1, n_cust),
                 json.dumps({"ms": rng.randint(1, 3000), "agent": rng.choice(text.idents)}))
                for k in range(max(1, n_events // 100))))
            gone = sorted(rng.sample(range(1, n_events + 1), max(1, n_events // 200)))
            db.executemany("DELETE FROM events WHERE id = ?", ((i,) for i in gone))
            db.execute("UPDATE customers SET balance = balance + 1 WHERE id % 97 = 0")
        db.close()
        touch(dbp)
        changed["sqlite_orders_updated"] = len(ids)
        changed["sqlite_events_deleted"] = len(gone)

    # Folders whose entries changed (SQLite's journal counts, too) get the fixed time as well.
    for d, _, _ in os.walk(data):
        if os.stat(d).st_mtime not in (gen.GEN_TIME, MUTATE_TIME):
            touch(d)
    summary["mutated"] = True
    summary["mutation"] = changed
    with open(stamp, "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    print("mutate.py: %s" % json.dumps(changed, sort_keys=True))


if __name__ == "__main__":
    main()
