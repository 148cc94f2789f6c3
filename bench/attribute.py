#!/usr/bin/env python3
"""Attributes a perf profile of the worker to its owners: the AWS SDK, the
HTTP client (hyper), TLS (rustls, aws-lc), the async runtime (tokio), the
worker's own code (with its logging), the allocator, and the kernel.

Reads `perf script -F comm,ip,sym,dso` output (with call graphs) on stdin.
Each sample goes to the owner of its innermost frame that has one: a
`memmove` or `malloc` called by the SDK counts as the SDK's, a system call
made by hyper as the kernel's (the kernel is where the time went). Frames of
the allocator and libc are looked through to their caller; a sample whose
stack has no owner is "other".

Usage: perf script -i perf.data -F comm,ip,sym,dso --no-inline | bench/attribute.py
"""

import collections
import re
import sys

# First match wins, tried on each frame's symbol from the innermost out.
OWNERS = [
    ("TLS (rustls, aws-lc)", re.compile(r"rustls|aws_lc|tokio_rustls|hyper_rustls")),
    ("AWS SDK (orchestrator, SigV4, serde of requests)", re.compile(r"aws_smithy|aws_sdk|aws_sigv4|aws_runtime|aws_types|aws_credential|aws_config|aws_endpoint")),
    ("HTTP client (hyper, hyper-util, http)", re.compile(r"hyper|\bhttp::|h2::|httparse|want::")),
    ("worker: logging (tracing, JSON lines)", re.compile(r"tracing_subscriber|student_worker::observe::logging|tracing_core|\btracing::")),
    ("worker: its own code (decode, write plan, items, pipeline)", re.compile(r"student_worker|student_shared|serde_dynamo")),
    ("async runtime (tokio)", re.compile(r"tokio::|mio::")),
]
# Frames looked through to their caller: allocation, copying, formatting, JSON.
NEUTRAL = re.compile(r"^(_?mi_|mi_|__memmove|__memset|__memcpy|__memcmp|memcpy|memmove|malloc|free|realloc|calloc|"
                     r"core::|alloc::|std::|serde_json::|serde::|bytes::|hashbrown::|<?&?T as|<alloc|<core|<std|"
                     r"__rust|rust_|_rjem|hex::|itoa|ryu|futures_util|futures_core|pin_project|0x)")


def owner(frames):
    """frames: innermost first, as (symbol, dso)."""
    if frames and frames[0][1].startswith("[kernel"):
        return "kernel (system calls, TCP, scheduling)"
    for symbol, _ in frames:
        for name, pattern in OWNERS:
            if pattern.search(symbol):
                return name
    if frames and ("libc" in frames[0][1] or "ld-linux" in frames[0][1]):
        return "libc and start-up (looked through, no owner above)"
    return "other"


def samples(lines):
    frames = []
    for line in lines:
        if not line.strip():
            if frames:
                yield frames
            frames = []
            continue
        if not line[0].isspace():
            continue  # the comm line
        parts = line.strip().split(" ", 1)
        if len(parts) < 2:
            continue
        rest = parts[1]
        match = re.match(r"(.*) \((.*)\)$", rest)
        symbol, dso = (match.group(1), match.group(2)) if match else (rest, "")
        frames.append((symbol, dso))
    if frames:
        yield frames


def main():
    counts = collections.Counter()
    for frames in samples(sys.stdin):
        counts[owner(frames)] += 1
    total = sum(counts.values()) or 1
    print(f"| owner | samples | share |\n| --- | ---: | ---: |")
    for name, n in counts.most_common():
        print(f"| {name} | {n:,} | {n / total:.1%} |")
    print(f"| all | {total:,} | 100% |")


if __name__ == "__main__":
    main()
