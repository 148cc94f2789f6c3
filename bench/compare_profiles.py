#!/usr/bin/env python3
"""Compares two perf profiles of the worker per message: why the same work
costs more at one setting than at another (for instance 20 ms of added
latency against 0 ms).

For each profile, the samples per 1,000 messages: by owner (as
bench/attribute.py gives them), then by the symbol a sample was taken in
(its own time), largest growth first, then for two kinds of code that do the
same work per call at any rate:

- compute-bound: SHA-256 (SigV4 hashes every request), whose data fits in
  the first-level cache, so its cost per call is the processor's speed;
- memory-bound: the SDK's configuration lookups (type-erased maps and
  layers built per call), the allocator's fast path and copies, which chase
  pointers and so cost what the caches make them cost.

If both kinds grow alike, the processor ran slower; if only the
memory-bound kind grows, the same instructions waited on memory: the caches
were cold, as after the processor sat idle or ran another guest.

Each input is `perf script -F comm,ip,sym,dso --no-inline` output, with the
number of messages its run processed.

Usage: bench/compare_profiles.py A.txt MESSAGES_A B.txt MESSAGES_B
"""

import collections
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attribute import owner, samples  # noqa: E402

KINDS = [
    ("compute-bound: SHA-256", re.compile(r"sha2::|sha256")),
    ("memory-bound: SDK config lookups", re.compile(
        r"ConfigBag::sourced_get|RuntimeComponentsBuilder::merge_from|<T as core::any::Any>::type_id|"
        r"drop_in_place<aws_smithy_types::type_erasure")),
    ("memory-bound: allocation", re.compile(r"^_?mi_")),
    ("memory-bound: copies", re.compile(r"__memmove|__memcpy")),
]
TOP = 25


def symbol(frame):
    name, dso = frame
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    name = re.sub(r"\+0x[0-9a-f]+$", "", name)
    return ("[kernel] " if dso.startswith("[kernel") else "") + name[:140]


def load(path):
    owners, own_time = collections.Counter(), collections.Counter()
    with open(path, encoding="utf-8", errors="replace") as lines:
        for frames in samples(lines):
            owners[owner(frames)] += 1
            own_time[symbol(frames[0])] += 1
    return owners, own_time


def per_thousand(counter, messages):
    return {key: 1000 * n / messages for key, n in counter.items()}


def table(title, a, b, keys):
    print(f"\n{title}\n\n| | A | B | B / A |\n| --- | ---: | ---: | ---: |")
    for key in keys:
        x, y = a.get(key, 0.0), b.get(key, 0.0)
        ratio = f"{y / x:.2f}" if x else "-"
        print(f"| {key} | {x:.1f} | {y:.1f} | {ratio} |")


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__.rsplit("Usage: ", 1)[1].strip())
    (a_path, a_messages, b_path, b_messages) = sys.argv[1:]
    a_owners, a_own = load(a_path)
    b_owners, b_own = load(b_path)
    a_n, b_n = int(a_messages), int(b_messages)

    print("samples per 1,000 messages")
    a, b = per_thousand(a_owners, a_n), per_thousand(b_owners, b_n)
    a["all"], b["all"] = sum(a.values()), sum(b.values())
    table("by owner", a, b, sorted(set(a) | set(b), key=lambda k: -b.get(k, 0.0)))

    a, b = per_thousand(a_own, a_n), per_thousand(b_own, b_n)
    growth = sorted(set(a) | set(b), key=lambda k: -(b.get(k, 0.0) - a.get(k, 0.0)))
    table(f"own time, the {TOP} symbols that grew most", a, b, growth[:TOP])

    def kind_sums(own):
        return {name: sum(v for k, v in own.items() if pattern.search(k.removeprefix("[kernel] ")))
                for name, pattern in KINDS}
    table("the same work per call, two kinds", kind_sums(a), kind_sums(b), [name for name, _ in KINDS])


if __name__ == "__main__":
    main()
