#!/usr/bin/env python3
"""Writes the benchmark's deterministic data set (standard library only).

Usage: python3 bench/gen.py [OUTDIR]          (default: bench/work/data)
Environment:
  BENCH_SCALE  size factor, default 1.0 (about 1 GiB); 0.1 gives about 100 MiB
  BENCH_SEED   random seed, default 20240601
  BENCH_FORCE  1: delete OUTDIR first if it exists (otherwise an existing OUTDIR is an error)

The same scale and seed always give the same bytes (the SQLite file included, for one SQLite
version). Contents, at scale 1:
  small/   ~20k text files of a few KiB in ~400 folders: notes (words), logs, code-like text,
           plus a few symlinks, empty files and an empty folder
  medium/  files of 1-20 MiB (~320 MiB): CSV, JSON lines and logs (compressible), media-like
           and gzip files (not compressible), and mixed text+binary bundles
  db/      app.sqlite, ~300 MiB: customers, products, orders, events, with indexes
  random/  incompressible random files (~150 MiB)
  dups/    identical copies and near-duplicates (bytes inserted, changed, cut) of other files
Every file and folder gets the same fixed mtime. A summary is written to OUTDIR.json.
"""

import gzip
import json
import os
import random
import shutil
import sqlite3
import sys

MIB = 1024 * 1024
GEN_TIME = 1704067200  # 2024-01-01T00:00:00Z

SYLLABLES = [
    "ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "da", "in", "or", "el", "an", "ter",
    "con", "pre", "ment", "ing", "tion", "al", "er", "ly", "st", "qu", "ab", "ex", "un", "re", "is",
]
LEVELS = ["INFO"] * 12 + ["DEBUG"] * 6 + ["WARN"] * 2 + ["ERROR"]
COMPONENTS = ["http", "db", "auth", "cache", "scheduler", "worker", "billing", "search", "mailer"]
CITIES = ["Berlin", "Lisbon", "Osaka", "Lima", "Austin", "Nairobi", "Oslo", "Pune", "Quebec",
          "Tartu", "Leeds", "Porto", "Cork", "Ghent", "Bergen", "Turin", "Brno", "Graz"]
COUNTRIES = ["DE", "PT", "JP", "PE", "US", "KE", "NO", "IN", "CA", "EE", "GB", "IE", "BE", "IT"]
STATUSES = ["new", "paid", "shipped", "delivered", "returned", "cancelled"]
EVENT_KINDS = ["login", "logout", "view", "search", "add_to_cart", "checkout", "refund"]


class Text:
    """Deterministic text of several flavours, fast enough for hundreds of MiB in pure Python."""

    def __init__(self, rng):
        self.rng = rng
        self.words = []
        for _ in range(3000):
            n = rng.choice([1, 1, 2, 2, 2, 3, 3, 4])
            self.words.append("".join(rng.choice(SYLLABLES) for _ in range(n)))
        # Zipf-like word frequencies, as in real prose.
        self.cum = []
        total = 0.0
        for i in range(len(self.words)):
            total += 1.0 / (i + 1)
            self.cum.append(total)
        self.sentences = [self._sentence() for _ in range(20000)]
        self.idents = ["_".join(rng.sample(self.words[:400], rng.choice([1, 2, 2, 3])))
                       for _ in range(1500)]

    def _sentence(self):
        ws = self.rng.choices(self.words, cum_weights=self.cum, k=self.rng.randint(5, 18))
        return " ".join(ws).capitalize() + self.rng.choice([".", ".", ".", "?", "!", ";"])

    def prose(self, size):
        out, n = [], 0
        r = self.rng
        while n < size:
            para = " ".join(r.choices(self.sentences, k=r.randint(2, 7)))
            if r.random() < 0.3:
                para += " (ref %d-%04x)" % (r.randint(1, 9999), r.getrandbits(16))
            out.append(para)
            n += len(para) + 2
        return ("\n\n".join(out))[:size] + "\n"

    def log(self, size, t0=None):
        r = self.rng
        t = t0 if t0 is not None else 1700000000 + r.randint(0, 10**7)
        out, n = [], 0
        while n < size:
            t += r.randint(0, 3)
            line = "2023-%02d-%02dT%02d:%02d:%02dZ %-5s %s[%d]: %s req=%08x dur=%dms\n" % (
                (t // 2592000) % 12 + 1, (t // 86400) % 28 + 1, (t // 3600) % 24, (t // 60) % 60,
                t % 60, r.choice(LEVELS), r.choice(COMPONENTS), r.randint(100, 9999),
                r.choice(self.sentences), r.getrandbits(32), r.randint(0, 5000))
            out.append(line)
            n += len(line)
        return "".join(out)

    def code(self, size):
        r = self.rng
        out, n = [], 0
        while n < size:
            name = r.choice(self.idents)
            args = ", ".join(r.sample(self.idents, r.randint(0, 3)))
            body = []
            for _ in range(r.randint(2, 9)):
                v = r.choice(self.idents)
                kind = r.random()
                if kind < 0.4:
                    body.append("    %s = %s(%s) + %d" % (v, r.choice(self.idents),
                                                         r.choice(self.idents), r.randint(0, 999)))
                elif kind < 0.7:
                    body.append("    if %s > %d:\n        return %s" % (v, r.randint(0, 99),
                                                                      r.choice(self.idents)))
                else:
                    body.append("    # %s" % r.choice(self.sentences))
            fn = "def %s(%s):\n    \"\"\"%s\"\"\"\n%s\n    return %s\n\n" % (
                name, args, r.choice(self.sentences), "\n".join(body), r.choice(self.idents))
            out.append(fn)
            n += len(fn)
        return "".join(out)

    def csv(self, size):
        r = self.rng
        out = ["id,date,customer,city,amount,currency,status,comment\n"]
        n, i = len(out[0]), 0
        while n < size:
            i += 1
            line = "%d,2023-%02d-%02d,%s,%s,%d.%02d,EUR,%s,\"%s\"\n" % (
                i, r.randint(1, 12), r.randint(1, 28), r.choice(self.idents), r.choice(CITIES),
                r.randint(1, 99999), r.randint(0, 99), r.choice(STATUSES),
                r.choice(self.sentences))
            out.append(line)
            n += len(line)
        return "".join(out)

    def jsonl(self, size):
        r = self.rng
        out, n = [], 0
        while n < size:
            doc = {"id": r.getrandbits(48), "user": r.choice(self.idents),
                   "kind": r.choice(EVENT_KINDS), "city": r.choice(CITIES),
                   "score": round(r.random() * 100, 3), "text": r.choice(self.sentences),
                   "tags": r.sample(self.words[:200], r.randint(0, 4))}
            line = json.dumps(doc, sort_keys=True) + "\n"
            out.append(line)
            n += len(line)
        return "".join(out)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def gen_small(root, rng, text, count):
    """~count text files of a few KiB, ~50 per folder, in projects/{docs,src,logs}."""
    folders = max(1, count // 50)
    written = 0
    files = 0
    for p in range(folders):
        proj = os.path.join(root, "small", "project_%03d" % (p // 3))
        sub = ["docs", "src", "logs"][p % 3]
        d = os.path.join(proj, sub, "part_%03d" % p)
        per = count // folders + (1 if p < count % folders else 0)
        for i in range(per):
            size = int(rng.lognormvariate(8.0, 0.6))  # median ~3 KiB
            size = max(200, min(size, 32 * 1024))
            if sub == "docs":
                name, body = "note_%04d.md" % i, "# %s\n\n%s" % (rng.choice(text.sentences),
                                                               text.prose(size))
            elif sub == "src":
                name, body = "mod_%04d.py" % i, text.code(size)
            else:
                name, body = "app_%04d.log" % i, text.log(size)
            written += write(os.path.join(d, name), body)
            files += 1
    # Edge cases a backup must keep: symlinks, empty files, an empty folder.
    base = os.path.join(root, "small", "project_000")
    os.makedirs(os.path.join(base, "empty_folder"), exist_ok=True)
    write(os.path.join(base, "empty_file"), b"")
    os.symlink("docs/part_000/note_0000.md", os.path.join(base, "README.md"))
    os.symlink("../does/not/exist", os.path.join(base, "dangling_link"))
    return written, files + 2


def gen_medium(root, rng, text, budget):
    written, i = 0, 0
    kinds = ["csv", "jsonl", "log", "media", "gz", "bundle"]
    names = []
    while written < budget:
        kind = kinds[i % len(kinds)]
        size = min(rng.randint(1 * MIB, 20 * MIB), max(budget - written, 256 * 1024))
        path = os.path.join(root, "medium", "%s_%02d.%s" % (kind, i, {
            "csv": "csv", "jsonl": "jsonl", "log": "log", "media": "jpg", "gz": "gz",
            "bundle": "bin"}[kind]))
        if kind == "csv":
            data = text.csv(size)
        elif kind == "jsonl":
            data = text.jsonl(size)
        elif kind == "log":
            data = text.log(size)
        elif kind == "media":
            data = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + rng.randbytes(size - 11)
        elif kind == "gz":
            data = gzip.compress(text.log(size * 2).encode(), compresslevel=6, mtime=0)
        else:  # text and binary sections, like an archive
            parts, n = [], 0
            while n < size:
                chunk = rng.randint(64 * 1024, 1 * MIB)
                parts.append(text.prose(chunk).encode() if rng.random() < 0.5
                             else rng.randbytes(chunk))
                n += chunk
            data = b"".join(parts)[:size]
        written += write(path, data)
        names.append(path)
        i += 1
    return written, names


def gen_random(root, rng, budget):
    written, i, names = 0, 0, []
    while written < budget:
        size = min(rng.randint(8 * MIB, 60 * MIB), max(budget - written, 64 * 1024))
        path = os.path.join(root, "random", "blob_%02d.bin" % i)
        written += write(path, rng.randbytes(size))
        names.append(path)
        i += 1
    return written, names


def gen_sqlite(root, rng, text, budget):
    path = os.path.join(root, "db", "app.sqlite")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript("""
        PRAGMA page_size = 4096;
        PRAGMA journal_mode = OFF;
        PRAGMA synchronous = OFF;
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
            city TEXT, country TEXT, created_at TEXT, balance REAL);
        CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT UNIQUE, title TEXT,
            description TEXT, price REAL);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
            product_id INTEGER REFERENCES products(id), quantity INTEGER, unit_price REAL,
            status TEXT, created_at TEXT, shipping_address TEXT, notes TEXT);
        CREATE TABLE events (id INTEGER PRIMARY KEY, ts INTEGER, kind TEXT, customer_id INTEGER,
            payload TEXT);
        CREATE INDEX orders_by_customer ON orders(customer_id);
        CREATE INDEX events_by_ts ON events(ts);
        CREATE INDEX customers_by_email ON customers(email);
    """)
    n_cust = max(100, int(budget / 1500))
    n_prod = max(50, n_cust // 20)
    db.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?,?)", (
        (i, "%s %s" % (rng.choice(text.idents).title(), rng.choice(text.words).title()),
         "%s.%d@example.org" % (rng.choice(text.idents), i), rng.choice(CITIES),
         rng.choice(COUNTRIES), "2022-%02d-%02d" % (rng.randint(1, 12), rng.randint(1, 28)),
         round(rng.uniform(-500, 5000), 2)) for i in range(1, n_cust + 1)))
    db.executemany("INSERT INTO products VALUES (?,?,?,?,?)", (
        (i, "SKU-%06d" % i, rng.choice(text.sentences)[:40], text.prose(rng.randint(100, 600)),
         round(rng.uniform(1, 900), 2)) for i in range(1, n_prod + 1)))
    db.commit()
    oid, eid, t = 0, 0, 1672531200
    while os.path.getsize(path) < budget:
        orders, events = [], []
        for _ in range(5000):
            oid += 1
            orders.append((oid, rng.randint(1, n_cust), rng.randint(1, n_prod),
                           rng.randint(1, 9), round(rng.uniform(1, 900), 2),
                           rng.choice(STATUSES),
                           "2023-%02d-%02d %02d:%02d" % (rng.randint(1, 12), rng.randint(1, 28),
                                                         rng.randint(0, 23), rng.randint(0, 59)),
                           "%d %s Street, %s" % (rng.randint(1, 300), rng.choice(text.words).title(),
                                                 rng.choice(CITIES)),
                           rng.choice(text.sentences) if rng.random() < 0.4 else None))
            for _ in range(2):
                eid += 1
                t += rng.randint(0, 20)
                events.append((eid, t, rng.choice(EVENT_KINDS), rng.randint(1, n_cust),
                               json.dumps({"ip": "10.%d.%d.%d" % (rng.randint(0, 255),
                                                                 rng.randint(0, 255),
                                                                 rng.randint(0, 255)),
                                           "agent": rng.choice(text.idents),
                                           "ms": rng.randint(1, 3000)})))
        db.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?)", orders)
        db.executemany("INSERT INTO events VALUES (?,?,?,?,?)", events)
        db.commit()
    db.close()
    return os.path.getsize(path), {"customers": n_cust, "products": n_prod, "orders": oid,
                                   "events": eid}


def gen_dups(root, rng, sources, budget):
    """Identical copies and near-duplicates of earlier files, up to budget bytes."""
    written, i = 0, 0
    sources = sorted(sources)
    while written < budget and sources:
        src = sources[i % len(sources)]
        data = open(src, "rb").read()
        base = os.path.basename(src)
        if i % 2 == 0:
            dst = os.path.join(root, "dups", "copy_%02d_%s" % (i, base))
        else:
            # Near-duplicate: bytes inserted a third in, a few changed at two thirds, end cut.
            a, b = len(data) // 3, 2 * len(data) // 3
            data = (data[:a] + b"--- inserted by an editor ---\n" + rng.randbytes(777) +
                    data[a:b] + b"CHANGED" + data[b + 7:len(data) - len(data) // 50])
            dst = os.path.join(root, "dups", "near_%02d_%s" % (i, base))
        written += write(dst, data)
        i += 1
    return written


def set_times(root, when):
    for d, dirs, files in os.walk(root, topdown=False):
        for n in files + dirs:
            os.utime(os.path.join(d, n), (when, when), follow_symlinks=False)
    os.utime(root, (when, when))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "work", "data"))
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    seed = int(os.environ.get("BENCH_SEED", "20240601"))
    if scale <= 0:
        sys.exit("gen.py: BENCH_SCALE must be > 0")
    if os.path.exists(out):
        if os.environ.get("BENCH_FORCE") == "1":
            shutil.rmtree(out)
        else:
            sys.exit("gen.py: %s exists; remove it or set BENCH_FORCE=1" % out)
    os.makedirs(out)
    rng = random.Random(seed)
    text = Text(random.Random(seed + 1))
    summary = {"scale": scale, "seed": seed, "mutated": False}
    print("gen.py: writing the data set (scale %g, seed %d) into %s" % (scale, seed, out),
          flush=True)
    b, n = gen_small(out, random.Random(seed + 2), text, max(50, int(20000 * scale)))
    summary["small"] = {"bytes": b, "files": n}
    print("  small files: %d, %.1f MiB" % (n, b / MIB), flush=True)
    b, medium = gen_medium(out, random.Random(seed + 3), text, int(320 * MIB * scale))
    summary["medium"] = {"bytes": b, "files": len(medium)}
    print("  medium files: %d, %.1f MiB" % (len(medium), b / MIB), flush=True)
    b, rows = gen_sqlite(out, random.Random(seed + 4), text, int(300 * MIB * scale))
    summary["sqlite"] = {"bytes": b, "rows": rows}
    print("  sqlite: %.1f MiB, %s" % (b / MIB, rows), flush=True)
    b, rnd = gen_random(out, random.Random(seed + 5), int(150 * MIB * scale))
    summary["random"] = {"bytes": b, "files": len(rnd)}
    print("  random files: %d, %.1f MiB" % (len(rnd), b / MIB), flush=True)
    b = gen_dups(out, random.Random(seed + 6), medium[:6] + rnd[:1], int(150 * MIB * scale))
    summary["dups"] = {"bytes": b}
    print("  duplicates: %.1f MiB" % (b / MIB), flush=True)
    set_times(out, GEN_TIME)
    total = sum(v["bytes"] for v in summary.values() if isinstance(v, dict))
    summary["total_bytes"] = total
    with open(out + ".json", "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    print("gen.py: %.1f MiB in total" % (total / MIB), flush=True)


if __name__ == "__main__":
    main()
