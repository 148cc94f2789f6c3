#!/usr/bin/env python3
"""The benchmark driver behind scripts/bench.

Starts bench-endpoint once, then for each added latency and each repetition
runs the release worker and the Python baseline (bench/baseline.py) against
it, one after the other on the same endpoint, each as a child process whose
CPU time and peak RSS come from wait4's rusage. Throughput is measured by
the endpoint: from the first ReceiveMessage to the delete of the last of N
messages. Prints medians over the repetitions, the bounds, the ratios and
the issue's targets as one Markdown report.

Usage: bench/run.py --root REPO [--reps 3] [--latencies 0,5,20] [--quick]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request

CONCURRENCY = 32  # the worker's default WORKER_CONCURRENCY
REGION = "ap-northeast-2"
QUEUE_PATH = "/123456789012/bench"
TABLE = "Students"
RUN_TIMEOUT_SECONDS = 300
# Targets from the performance issue.
TARGET_SHARE_OF_BOUND = 0.90  # at 5 ms
TARGET_CALLS_PER_MESSAGE = 1.25
TARGET_CPU_RATIO = 10.0
TARGET_RSS_MB = 30.0
TARGET_FIRST_RECEIVE_MS = 100.0
OPERATIONS = ["ReceiveMessage", "PutItem", "UpdateItem", "DeleteMessageBatch", "DeleteMessage",
              "ChangeMessageVisibilityBatch", "ChangeMessageVisibility", "GetQueueAttributes"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="repository root")
    p.add_argument("--reps", type=int, default=3, help="repetitions per setting (median reported)")
    p.add_argument("--latencies", default="0,5,20", help="added latency per call, ms, comma-separated")
    p.add_argument("--messages", type=int, default=20000, help="worker messages per run at < 20 ms")
    p.add_argument("--messages-slow", type=int, default=6000, help="worker messages per run at >= 20 ms")
    p.add_argument("--baseline-messages", type=int, default=4000, help="baseline messages per run at < 20 ms")
    p.add_argument("--baseline-messages-slow", type=int, default=3000, help="baseline messages per run at >= 20 ms")
    p.add_argument("--throttle-rate", type=float, default=0.0, help="share of writes throttled")
    p.add_argument("--concurrency", type=int, default=CONCURRENCY)
    p.add_argument("--no-baseline", action="store_true", help="run the worker only")
    p.add_argument("--worker", help="another student-worker binary to measure (default: target/release/student-worker)")
    p.add_argument("--quick", action="store_true", help="1 repetition, small runs (a smoke test, not a measurement)")
    p.add_argument("--json", help="also write the raw results to this file")
    args = p.parse_args()
    if args.quick:
        args.reps, args.messages, args.messages_slow = 1, 3000, 1000
        args.baseline_messages, args.baseline_messages_slow = 1000, 600
    return args


class Endpoint:
    """The bench-endpoint child process and its control routes."""

    def __init__(self, binary):
        self.process = subprocess.Popen([binary, "--port", "0"], stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"bench: bench-endpoint did not start (said {line!r})")
        self.url = line.removeprefix("listening on ")

    def reset(self, messages, latency_ms, throttle_rate):
        query = f"messages={messages}&latency_ms={latency_ms}&throttle_rate={throttle_rate}"
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/reset?{query}", method="POST"), timeout=10).read()

    def stats(self):
        return json.loads(urllib.request.urlopen(f"{self.url}/stats", timeout=10).read())

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def child_env(endpoint_url, concurrency):
    env = dict(os.environ)
    env.update({
        "AWS_ENDPOINT_URL": endpoint_url, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_EC2_METADATA_DISABLED": "true",
        "SQS_QUEUE_URL": endpoint_url + QUEUE_PATH, "DYNAMODB_TABLE_NAME": TABLE,
        "WORKER_CONCURRENCY": str(concurrency), "WORKER_EXIT_WHEN_EMPTY": "true",
        "LOG_FORMAT": "json", "RUST_LOG": "info",
    })
    env.pop("AWS_PROFILE", None)
    return env


def run_once(command, env, endpoint, messages, latency_ms, throttle_rate):
    """Runs one child to completion against a fresh queue; returns its figures."""
    endpoint.reset(messages, latency_ms, throttle_rate)
    with open(os.devnull, "w") as devnull:
        spawned = time.time()
        # Logs go to /dev/null: formatting them is part of the cost, a terminal is not.
        child = subprocess.Popen(command, env=env, stdout=devnull, stderr=subprocess.PIPE)
        _, status, usage = wait_with_timeout(child)
        wall = time.time() - spawned
    stderr = child.stderr.read().decode(errors="replace")
    stats = endpoint.stats()
    if status != 0 or not stats["finished"]:
        raise SystemExit(f"bench: {command[0]} failed (status {status}, {stats['deleted']}/{messages} deleted)\n"
                         f"{stderr[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    calls = stats["calls"]
    per = max(messages, 1)
    return {
        "messages": messages,
        "rate": messages / stats["elapsed_seconds"] if messages else 0.0,
        "cpu_us_per_message": cpu / per * 1e6,
        "cpu_seconds": cpu,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux reports KiB
        "calls_per_message": sum(calls.values()) / per,
        "calls": {op: n / per for op, n in calls.items()},
        "first_receive_ms": (stats["first_receive_unix"] - spawned) * 1000,
        "wall_seconds": wall,
        "throttled": stats["throttled"],
        # Little's law: time writes spent at the endpoint over the run's length.
        "writes_in_flight": stats["write_busy_seconds"] / stats["elapsed_seconds"] if messages else 0.0,
        # What a "5 ms" write really took at the endpoint (timer resolution, scheduling).
        "write_ms": stats["write_busy_seconds"] * 1000 / max(calls.get("PutItem", 0) + calls.get("UpdateItem", 0), 1),
        "deliveries": stats["deliveries"],
    }


def wait_with_timeout(child):
    deadline = time.time() + RUN_TIMEOUT_SECONDS
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return pid, child.returncode, usage
        if time.time() > deadline:
            child.kill()
            raise SystemExit(f"bench: {child.args[0]} did not finish within {RUN_TIMEOUT_SECONDS} s")
        time.sleep(0.005)


def median(results, key):
    return statistics.median(r[key] for r in results)


def median_calls(results, op):
    return statistics.median(r["calls"].get(op, 0.0) for r in results)


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return f"{os.cpu_count()} CPUs ({model}), {mem_kib / 1024 / 1024:.1f} GiB RAM, {platform.system()} {platform.release()}"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fmt(value, digits=0):
    return f"{value:,.{digits}f}"


def report(args, results, startup, started_load):
    """Prints the Markdown report: figures, calls by operation, ratios, targets."""
    c = args.concurrency
    lines = [f"machine: {machine()}", f"load average before / after: {started_load} / {loadavg()}",
             f"concurrency {c}, {args.reps} repetitions per setting (medians), throttle rate {args.throttle_rate}", ""]
    for impl, rs in startup.items():
        lines.append(f"start-up and exit on an empty queue, {impl}: {median(rs, 'cpu_seconds') * 1000:.0f} ms CPU, "
                     f"peak RSS {median(rs, 'peak_rss_mb'):.1f} MB, first receive after {median(rs, 'first_receive_ms'):.0f} ms")
    lines += ["", "| implementation | added latency | messages | messages/s | bound c/latency | share of bound | "
              "write time at endpoint ms | writes in flight (mean) | CPU µs/msg | CPU µs/msg net of start-up | peak RSS MB | API calls/msg | "
              "first receive ms |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (impl, latency), rs in results.items():
        bound = c / (latency / 1000) if latency else None
        rate = median(rs, "rate")
        lines.append(
            f"| {impl} | {latency} ms | {rs[0]['messages']:,} | {fmt(rate)} | {fmt(bound) if bound else '(CPU-bound)'} | "
            f"{f'{rate / bound:.0%}' if bound else '-'} | {median(rs, 'write_ms'):.2f} | "
            f"{median(rs, 'writes_in_flight'):.1f} | "
            f"{fmt(median(rs, 'cpu_us_per_message'))} | "
            f"{fmt(median(rs, 'net_cpu_us_per_message'))} | "
            f"{fmt(median(rs, 'peak_rss_mb'), 1)} | {median(rs, 'calls_per_message'):.3f} | "
            f"{fmt(median(rs, 'first_receive_ms'))} |")
    lines += ["", "API calls per message by operation (medians):", "",
              "| implementation | added latency | " + " | ".join(OPERATIONS) + " |",
              "| --- | ---: |" + " ---: |" * len(OPERATIONS)]
    for (impl, latency), rs in results.items():
        lines.append(f"| {impl} | {latency} ms | " + " | ".join(f"{median_calls(rs, op):.3f}" for op in OPERATIONS) + " |")
    lines += ratios(results)
    lines += targets(args, results)
    print("\n".join(lines))


def ratios(results):
    out = ["", "worker vs baseline (medians, same endpoint, same run):", "",
           "| added latency | messages/s ratio | CPU per message: baseline / worker | same, net of start-up | "
           "peak RSS: baseline / worker |",
           "| ---: | ---: | ---: | ---: | ---: |"]
    for (impl, latency), rs in results.items():
        base = results.get(("python-baseline", latency))
        if impl != "student-worker" or not base:
            continue
        out.append(f"| {latency} ms | {median(rs, 'rate') / median(base, 'rate'):.1f}x | "
                   f"{median(base, 'cpu_us_per_message') / median(rs, 'cpu_us_per_message'):.1f}x | "
                   f"{median(base, 'net_cpu_us_per_message') / median(rs, 'net_cpu_us_per_message'):.1f}x | "
                   f"{median(base, 'peak_rss_mb') / median(rs, 'peak_rss_mb'):.1f}x |")
    return out


def targets(args, results):
    worker = {lat: rs for (impl, lat), rs in results.items() if impl == "student-worker"}
    out = ["", "targets:", ""]

    def check(name, ok, detail):
        out.append(f"- [{'x' if ok else ' '}] {name}: {detail}")

    if 5 in worker:
        bound = args.concurrency / 0.005
        share = median(worker[5], "rate") / bound
        measured = args.concurrency / (median(worker[5], "write_ms") / 1000)
        check("5 ms: >= 90 % of concurrency/latency", share >= TARGET_SHARE_OF_BOUND,
              f"{share:.0%} ({fmt(median(worker[5], 'rate'))} of {fmt(bound)} msg/s; "
              f"{median(worker[5], 'rate') / measured:.0%} of concurrency / the write time the endpoint really took, "
              f"{fmt(measured)} msg/s)")
    worst_calls = max(median(rs, "calls_per_message") for rs in worker.values())
    check("API calls per message <= 1.25", worst_calls <= TARGET_CALLS_PER_MESSAGE, f"worst {worst_calls:.3f}")
    for lat, rs in worker.items():
        base = results.get(("python-baseline", lat))
        if base:
            ratio = median(base, "net_cpu_us_per_message") / median(rs, "net_cpu_us_per_message")
            total = median(base, "cpu_us_per_message") / median(rs, "cpu_us_per_message")
            check(f"{lat} ms: CPU per message >= 10x lower than the baseline", ratio >= TARGET_CPU_RATIO,
                  f"{ratio:.1f}x net of start-up ({total:.1f}x counting start-up)")
    worst_rss = max(median(rs, "peak_rss_mb") for rs in worker.values())
    check("peak RSS < 30 MB", worst_rss < TARGET_RSS_MB, f"worst {worst_rss:.1f} MB")
    worst_first = max(median(rs, "first_receive_ms") for rs in worker.values())
    check("start to first receive < 100 ms", worst_first < TARGET_FIRST_RECEIVE_MS, f"worst {worst_first:.0f} ms")
    return out


def main():
    args = parse_args()
    root = args.root
    endpoint = Endpoint(os.path.join(root, "target/release/bench-endpoint"))
    env = child_env(endpoint.url, args.concurrency)
    worker = [args.worker or os.path.join(root, "target/release/student-worker"), "run"]
    baseline = [sys.executable, os.path.join(root, "bench/baseline.py")]
    started_load = loadavg()
    results, startup = {}, {}
    try:
        # Start-up cost, measured on an empty queue, so per-message CPU can be shown without it.
        for rep in range(args.reps):
            for impl, command in [("student-worker", worker)] + ([] if args.no_baseline else [("python-baseline", baseline)]):
                startup.setdefault(impl, []).append(run_once(command, env, endpoint, 0, 0, 0.0))
        for latency in [int(x) for x in args.latencies.split(",")]:
            slow = latency >= 20
            for rep in range(args.reps):
                runs = [("student-worker", worker, args.messages_slow if slow else args.messages)]
                if not args.no_baseline:
                    runs.append(("python-baseline", baseline,
                                 args.baseline_messages_slow if slow else args.baseline_messages))
                for impl, command, messages in runs:
                    r = run_once(command, env, endpoint, messages, latency, args.throttle_rate)
                    results.setdefault((impl, latency), []).append(r)
                    print(f"bench: {impl} {latency} ms rep {rep + 1}/{args.reps}: {r['rate']:,.0f} msg/s, "
                          f"{r['cpu_us_per_message']:.0f} µs CPU/msg, {r['peak_rss_mb']:.1f} MB, "
                          f"{r['calls_per_message']:.3f} calls/msg, first receive {r['first_receive_ms']:.0f} ms",
                          file=sys.stderr, flush=True)
    finally:
        endpoint.stop()
    for (impl, _), rs in results.items():
        idle_cpu = median(startup[impl], "cpu_seconds")
        for r in rs:
            r["net_cpu_us_per_message"] = max(r["cpu_seconds"] - idle_cpu, 0.0) / r["messages"] * 1e6
    # Keep the worker and the baseline of a latency next to each other.
    results = dict(sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0] != "student-worker")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"startup": startup, "runs": {f"{i}@{l}ms": rs for (i, l), rs in results.items()}}, f, indent=1)
    report(args, results, startup, started_load)


if __name__ == "__main__":
    main()
