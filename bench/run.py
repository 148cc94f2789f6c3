#!/usr/bin/env python3
"""The benchmark driver behind scripts/bench.

Starts bench-endpoint once per transport (plain HTTP, and HTTPS with a CA
generated at start and trusted through AWS_CA_BUNDLE), then for each added
latency and each repetition runs the release worker and the baselines (the
Python boto3 one, bench/baseline.py, and the Node sqs-consumer one,
bench/node/baseline.mjs) against it, one after the other on the same
endpoint. CPU time comes from wait4's rusage of each child; peak memory is
the child's own VmHWM, read from /proc while it runs (wait4's ru_maxrss also
counts the Python parent's image that fork copied before exec). Throughput
is measured by the endpoint: from the first ReceiveMessage to the delete of
the last of N messages. Prints medians and spreads over the repetitions, the
bounds, the ratios and the targets as one Markdown report.

Usage: bench/run.py --root REPO [--reps 3] [--latencies 0,5,20] [--transports http,https] [--quick]
"""

import argparse
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

CONCURRENCY = 32  # the worker's default WORKER_CONCURRENCY
REGION = "ap-northeast-2"
QUEUE_PATH = "/123456789012/bench"
TABLE = "Students"
RUN_TIMEOUT_SECONDS = 300
WORKER = "student-worker"
PYTHON = "python-baseline"
NODE = "node-baseline"
# The targets. Throughput and CPU targets hold over plain HTTP; over HTTPS
# the same figures are reported and the difference explained.
TARGET_SHARE_OF_BOUND = 0.95  # of concurrency / the write time the endpoint really took, at 5 and 20 ms
TARGET_CALLS_PER_MESSAGE = 1.25
TARGET_CPU_RATIO_0MS = 25.0  # CPU per message at 0 ms: python-baseline / worker, net of start-up
TARGET_CPU_20MS_OVER_0MS = 1.3  # the worker's CPU per message at 20 ms over its figure at 0 ms
TARGET_RSS_MB = 30.0
TARGET_FIRST_RECEIVE_MS = 100.0
OPERATIONS = ["ReceiveMessage", "PutItem", "UpdateItem", "DeleteMessageBatch", "DeleteMessage",
              "ChangeMessageVisibilityBatch", "ChangeMessageVisibility", "GetQueueAttributes"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="repository root")
    p.add_argument("--reps", type=int, default=3, help="repetitions per setting (median and spread reported)")
    p.add_argument("--latencies", default="0,5,20", help="added latency per call, ms, comma-separated")
    p.add_argument("--transports", default="http,https", help="http, https or both (comma-separated)")
    p.add_argument("--baselines", default="python,node", help="which baselines to run: python, node (comma-separated)")
    p.add_argument("--messages", type=int, default=20000, help="worker messages per run at < 20 ms")
    # As many at 20 ms as at 0 and 5 ms: the share of the bound is a steady-state
    # figure, and the first receive's round trip and the last writes' tail
    # idle every slot for about 60 ms at 20 ms, 1.5 % of a 6,000-message run.
    p.add_argument("--messages-slow", type=int, default=20000, help="worker messages per run at >= 20 ms")
    p.add_argument("--baseline-messages", type=int, default=4000, help="baseline messages per run at < 20 ms")
    p.add_argument("--baseline-messages-slow", type=int, default=3000, help="baseline messages per run at >= 20 ms")
    p.add_argument("--throttle-rate", type=float, default=0.0, help="share of writes throttled")
    p.add_argument("--concurrency", type=int, default=CONCURRENCY)
    p.add_argument("--no-baseline", action="store_true", help="run the worker only")
    p.add_argument("--worker", help="another student-worker binary to measure (default: target/release/student-worker)")
    p.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                   help="an extra variable for the worker only (for A/B runs, e.g. TOKIO_WORKER_THREADS=2)")
    p.add_argument("--quick", action="store_true", help="1 repetition, small runs (a smoke test, not a measurement)")
    p.add_argument("--json", help="also write the raw results to this file")
    p.add_argument("--report-from", metavar="FILE", help="print the report of the raw results an earlier --json run wrote; run nothing")
    args = p.parse_args()
    if args.quick:
        args.reps, args.messages, args.messages_slow = 1, 3000, 1000
        args.baseline_messages, args.baseline_messages_slow = 1000, 600
    args.transports = [t for t in args.transports.split(",") if t]
    if not set(args.transports) <= {"http", "https"}:
        p.error("--transports takes http, https or both")
    args.baselines = [] if args.no_baseline else [b for b in args.baselines.split(",") if b]
    if not set(args.baselines) <= {"python", "node"}:
        p.error("--baselines takes python, node or both")
    return args


class Endpoint:
    """One bench-endpoint child process (plain or TLS) and its control routes."""

    def __init__(self, binary, transport, scratch):
        command = [binary, "--port", "0"]
        self.ca_bundle = None
        self.context = None
        if transport == "https":
            self.ca_bundle = os.path.join(scratch, "bench-ca.pem")
            command += ["--tls", "--ca-out", self.ca_bundle]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"bench: bench-endpoint did not start (said {line!r})")
        self.url = line.removeprefix("listening on ")
        if self.ca_bundle:
            self.context = ssl.create_default_context(cafile=self.ca_bundle)

    def _open(self, request):
        return urllib.request.urlopen(request, timeout=10, context=self.context).read()

    def reset(self, messages, latency_ms, throttle_rate, concurrency):
        # Half as many students as messages: each gets an upsert (PutItem)
        # then a patch (UpdateItem), so every run, whatever its length, has
        # the same half-and-half mix, and runs at different latencies or of
        # different implementations compare like with like.
        students = max(messages // 2, 1)
        query = (f"messages={messages}&latency_ms={latency_ms}&throttle_rate={throttle_rate}"
                 f"&concurrency={concurrency}&students={students}")
        self._open(urllib.request.Request(f"{self.url}/reset?{query}", method="POST"))

    def stats(self):
        return json.loads(self._open(f"{self.url}/stats"))

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def child_env(endpoint, concurrency):
    env = dict(os.environ)
    env.update({
        "AWS_ENDPOINT_URL": endpoint.url, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_EC2_METADATA_DISABLED": "true",
        "SQS_QUEUE_URL": endpoint.url + QUEUE_PATH, "DYNAMODB_TABLE_NAME": TABLE,
        "WORKER_CONCURRENCY": str(concurrency), "WORKER_EXIT_WHEN_EMPTY": "true",
        "LOG_FORMAT": "json", "RUST_LOG": "info",
    })
    for name in ("AWS_PROFILE", "AWS_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        env.pop(name, None)
    if endpoint.ca_bundle:
        # The one variable every implementation honours: the AWS CLI and boto3
        # natively, the worker and the Node baseline by reading it themselves.
        env["AWS_CA_BUNDLE"] = endpoint.ca_bundle
    return env


def run_once(command, env, endpoint, messages, latency_ms, throttle_rate):
    """Runs one child to completion against a fresh queue; returns its figures."""
    concurrency = int(env["WORKER_CONCURRENCY"])
    endpoint.reset(messages, latency_ms, throttle_rate, concurrency)
    cpu_before = cpu_ticks()
    with open(os.devnull, "w") as devnull:
        spawned = time.time()
        # Logs go to /dev/null: formatting them is part of the cost, a terminal is not.
        child = subprocess.Popen(command, env=env, stdout=devnull, stderr=subprocess.PIPE)
        status, usage, hwm_kib = wait_with_timeout(child)
        wall = time.time() - spawned
    cpu_after = cpu_ticks()
    stderr = child.stderr.read().decode(errors="replace")
    stats = endpoint.stats()
    if status != 0 or not stats["finished"]:
        raise SystemExit(f"bench: {command[-1]} failed (status {status}, {stats['deleted']}/{messages} deleted)\n"
                         f"{stderr[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    calls = stats["calls"]
    per = max(messages, 1)
    elapsed = stats["elapsed_seconds"]
    writes = calls.get("PutItem", 0) + calls.get("UpdateItem", 0)
    handshakes = stats.get("tls_handshakes", 0)
    return {
        "messages": messages,
        "rate": messages / elapsed if messages else 0.0,
        "cpu_us_per_message": cpu / per * 1e6,
        "cpu_seconds": cpu,
        "peak_rss_mb": hwm_kib / 1024,
        "wait4_maxrss_mb": usage.ru_maxrss / 1024,  # Linux reports KiB
        # How often the child slept (each wake-up starts with colder caches).
        "sleeps_per_message": usage.ru_nvcsw / per,
        "calls_per_message": sum(calls.values()) / per,
        "calls": {op: n / per for op, n in calls.items()},
        "first_receive_ms": (stats["first_receive_unix"] - spawned) * 1000,
        "wall_seconds": wall,
        "throttled": stats["throttled"],
        # Little's law: time writes spent at the endpoint over the run's length.
        "writes_in_flight": stats["write_busy_seconds"] / elapsed if messages else 0.0,
        # What a "5 ms" write really took at the endpoint (timer resolution, scheduling).
        "write_ms": stats["write_busy_seconds"] * 1000 / max(writes, 1),
        # The write slots' idle time as a share of all slot-time (concurrency x
        # the run), split by whether a received message was waiting to be
        # written: "starved" is the receive-ahead gap, "ready" the client's own
        # time between a message in hand and its write arriving.
        "idle_starved": stats["idle_slot_seconds_starved"] / (concurrency * elapsed) if messages else 0.0,
        "idle_ready": stats["idle_slot_seconds_ready"] / (concurrency * elapsed) if messages else 0.0,
        # The CPU the child used per second of the run (1.0 = one core busy).
        "cpu_busy": cpu / wall if wall else 0.0,
        "deliveries": stats["deliveries"],
        # The share of the machine's CPU time the hypervisor gave to others
        # during the run: the noise the figures carry.
        "steal": steal_share(cpu_before, cpu_after),
        "connections": stats.get("connections", 0),
        "tls_handshakes": handshakes,
        "calls_per_handshake": sum(calls.values()) / handshakes if handshakes else None,
    }


def cpu_ticks():
    """The machine's CPU time counters (/proc/stat's first line)."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def steal_share(before, after):
    delta = [b - a for a, b in zip(before, after)]
    total = sum(delta[:8])  # user .. steal; guest time is counted in user already
    return delta[7] / total if total else 0.0


def vm_hwm_kib(pid):
    """The process's own peak resident set (VmHWM), or None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wait_with_timeout(child):
    """Waits for the child, reading its VmHWM every few ms while it runs:
    the high-water mark only grows, and the last reading comes within 2 ms
    of the exit, after the work is done."""
    deadline = time.time() + RUN_TIMEOUT_SECONDS
    hwm = 0
    while True:
        hwm = max(hwm, vm_hwm_kib(child.pid) or 0)
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return child.returncode, usage, hwm
        if time.time() > deadline:
            child.kill()
            raise SystemExit(f"bench: {child.args[-1]} did not finish within {RUN_TIMEOUT_SECONDS} s")
        time.sleep(0.002)


def median(results, key):
    return statistics.median(r[key] for r in results)


def spread(results, key):
    """Max - min over the repetitions, as a share of the median."""
    values = [r[key] for r in results]
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid else 0.0


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


def measured_bound(c, rs):
    """concurrency / the write time the endpoint really took."""
    return c / (median(rs, "write_ms") / 1000)


def report(args, results, startup, load):
    """Prints the Markdown report: figures, spreads, calls, ratios, TLS, targets."""
    c = args.concurrency
    lines = [f"- machine: {machine()}", f"- load average before / after: {load}",
             f"- concurrency {c}, {args.reps} repetitions per setting (medians; spread = (max - min) / median), "
             f"throttle rate {args.throttle_rate}", ""]
    for (impl, transport), rs in startup.items():
        lines.append(f"start-up and exit on an empty queue, {impl} over {transport}: "
                     f"{median(rs, 'cpu_seconds') * 1000:.0f} ms CPU, peak RSS (VmHWM) {median(rs, 'peak_rss_mb'):.1f} MB, "
                     f"first receive after {median(rs, 'first_receive_ms'):.0f} ms")
    lines += ["", "| implementation | transport | added latency | messages | messages/s | nominal bound c/latency | share | "
              "measured bound c/write time | share | writes in flight (mean) | idle slots: none received | idle slots: message in hand | CPU busy (cores) | "
              "CPU µs/msg | CPU µs/msg net of start-up | peak RSS (VmHWM) MB | wait4 maxrss MB | API calls/msg | "
              "calls per TLS handshake | first receive ms | CPU stolen by the host |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (impl, transport, latency), rs in results.items():
        nominal = c / (latency / 1000) if latency else None
        measured = measured_bound(c, rs) if latency else None
        rate = median(rs, "rate")
        per_handshake = [r["calls_per_handshake"] for r in rs if r["calls_per_handshake"]]
        lines.append(
            f"| {impl} | {transport} | {latency} ms | {rs[0]['messages']:,} | {fmt(rate)} | "
            f"{fmt(nominal) if nominal else '(CPU-bound)'} | {f'{rate / nominal:.1%}' if nominal else '-'} | "
            f"{fmt(measured) if measured else '-'} | {f'{rate / measured:.1%}' if measured else '-'} | "
            f"{median(rs, 'writes_in_flight'):.1f} | {median(rs, 'idle_starved'):.1%} | {median(rs, 'idle_ready'):.1%} | "
            f"{median(rs, 'cpu_busy'):.2f} | "
            f"{fmt(median(rs, 'cpu_us_per_message'))} | {fmt(median(rs, 'net_cpu_us_per_message'))} | "
            f"{fmt(median(rs, 'peak_rss_mb'), 1)} | {fmt(median(rs, 'wait4_maxrss_mb'), 1)} | "
            f"{median(rs, 'calls_per_message'):.3f} | "
            f"{fmt(statistics.median(per_handshake)) if per_handshake else '-'} | "
            f"{fmt(median(rs, 'first_receive_ms'))} | {median(rs, 'steal'):.1%} |")
    lines += ["", "Spread over the repetitions ((max - min) / median):", "",
              "| implementation | transport | added latency | messages/s | CPU µs/msg | peak RSS | share of measured bound |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for (impl, transport, latency), rs in results.items():
        shares = [r["rate"] / (c / (r["write_ms"] / 1000)) for r in rs] if latency else []
        lines.append(f"| {impl} | {transport} | {latency} ms | {spread(rs, 'rate'):.1%} | "
                     f"{spread(rs, 'cpu_us_per_message'):.1%} | {spread(rs, 'peak_rss_mb'):.1%} | "
                     f"{f'{min(shares):.1%} - {max(shares):.1%}' if shares else '-'} |")
    lines += ["", "The repetition with the least CPU stolen by the host, per setting (on a shared machine, the "
              "closest to a quiet figure):", "",
              "| implementation | transport | added latency | stolen | messages/s | share of measured bound | "
              "idle slots: message in hand | CPU busy (cores) | CPU µs/msg net of start-up |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (impl, transport, latency), rs in results.items():
        r = min(rs, key=lambda r: r["steal"])
        share = f"{r['rate'] / (c / (r['write_ms'] / 1000)):.1%}" if latency else "-"
        lines.append(f"| {impl} | {transport} | {latency} ms | {r['steal']:.1%} | {fmt(r['rate'])} | {share} | "
                     f"{r['idle_ready']:.1%} | {r['cpu_busy']:.2f} | {fmt(r['net_cpu_us_per_message'])} |")
    lines += ["", "API calls per message by operation (medians):", "",
              "| implementation | transport | added latency | " + " | ".join(OPERATIONS) + " |",
              "| --- | --- | ---: |" + " ---: |" * len(OPERATIONS)]
    for (impl, transport, latency), rs in results.items():
        lines.append(f"| {impl} | {transport} | {latency} ms | "
                     + " | ".join(f"{median_calls(rs, op):.3f}" for op in OPERATIONS) + " |")
    lines += ratios(results)
    lines += tls_costs(results)
    lines += targets(args, results)
    print("\n".join(lines))


def ratios(results):
    out = ["", "worker vs each baseline (medians, same endpoint, same run):", "",
           "| baseline | transport | added latency | messages/s: worker / baseline | CPU per message: baseline / worker | "
           "same, net of start-up | peak RSS: baseline / worker |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for (impl, transport, latency), rs in results.items():
        if impl != WORKER:
            continue
        for baseline in (PYTHON, NODE):
            base = results.get((baseline, transport, latency))
            if not base:
                continue
            out.append(f"| {baseline} | {transport} | {latency} ms | {median(rs, 'rate') / median(base, 'rate'):.1f}x | "
                       f"{median(base, 'cpu_us_per_message') / median(rs, 'cpu_us_per_message'):.1f}x | "
                       f"{median(base, 'net_cpu_us_per_message') / median(rs, 'net_cpu_us_per_message'):.1f}x | "
                       f"{median(base, 'peak_rss_mb') / median(rs, 'peak_rss_mb'):.1f}x |")
    return out


def tls_costs(results):
    out = ["", "What TLS costs each implementation (https over http, medians, same run):", "",
           "| implementation | added latency | messages/s | CPU µs/msg net of start-up | extra CPU µs/msg | "
           "peak RSS MB | calls per TLS handshake |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (impl, transport, latency), rs in results.items():
        plain = results.get((impl, "http", latency))
        if transport != "https" or not plain:
            continue
        per_handshake = [r["calls_per_handshake"] for r in rs if r["calls_per_handshake"]]
        extra = median(rs, "net_cpu_us_per_message") - median(plain, "net_cpu_us_per_message")
        out.append(f"| {impl} | {latency} ms | {fmt(median(plain, 'rate'))} → {fmt(median(rs, 'rate'))} | "
                   f"{fmt(median(plain, 'net_cpu_us_per_message'))} → {fmt(median(rs, 'net_cpu_us_per_message'))} | "
                   f"{extra:+,.0f} | {median(plain, 'peak_rss_mb'):.1f} → {median(rs, 'peak_rss_mb'):.1f} | "
                   f"{fmt(statistics.median(per_handshake)) if per_handshake else '-'} |")
    return out


def targets(args, results):
    out = ["", "targets:", ""]

    def check(name, ok, detail):
        out.append(f"- [{'x' if ok else ' '}] {name}: {detail}")

    for transport in args.transports:
        worker = {lat: rs for (impl, t, lat), rs in results.items() if impl == WORKER and t == transport}
        if not worker:
            continue
        note = "" if transport == "http" else " (reported over https; the targets hold over http)"
        for lat in (5, 20):
            if lat not in worker:
                continue
            rate, measured = median(worker[lat], "rate"), measured_bound(args.concurrency, worker[lat])
            nominal = args.concurrency / (lat / 1000)
            check(f"{transport} {lat} ms: >= {TARGET_SHARE_OF_BOUND:.0%} of concurrency / measured write time{note}",
                  rate / measured >= TARGET_SHARE_OF_BOUND,
                  f"{rate / measured:.1%} ({fmt(rate)} of {fmt(measured)} msg/s at {median(worker[lat], 'write_ms'):.2f} ms "
                  f"per write; {rate / nominal:.1%} of the nominal {fmt(nominal)})")
        base = results.get((PYTHON, transport, 0))
        if 0 in worker and base:
            ratio = median(base, "net_cpu_us_per_message") / median(worker[0], "net_cpu_us_per_message")
            total = median(base, "cpu_us_per_message") / median(worker[0], "cpu_us_per_message")
            check(f"{transport} 0 ms: CPU per message >= {TARGET_CPU_RATIO_0MS:.0f}x lower than {PYTHON}{note}",
                  ratio >= TARGET_CPU_RATIO_0MS, f"{ratio:.1f}x net of start-up ({total:.1f}x counting start-up)")
        if 0 in worker and 20 in worker:
            growth = median(worker[20], "net_cpu_us_per_message") / median(worker[0], "net_cpu_us_per_message")
            check(f"{transport} 20 ms: CPU per message <= {TARGET_CPU_20MS_OVER_0MS}x the 0 ms figure{note}",
                  growth <= TARGET_CPU_20MS_OVER_0MS,
                  f"{growth:.2f}x ({fmt(median(worker[20], 'net_cpu_us_per_message'))} vs "
                  f"{fmt(median(worker[0], 'net_cpu_us_per_message'))} µs, net of start-up)")
        worst_calls = max(median(rs, "calls_per_message") for rs in worker.values())
        check(f"{transport}: API calls per message <= {TARGET_CALLS_PER_MESSAGE}", worst_calls <= TARGET_CALLS_PER_MESSAGE,
              f"worst {worst_calls:.3f}")
        worst_rss = max(median(rs, "peak_rss_mb") for rs in worker.values())
        check(f"{transport}: peak RSS (VmHWM) < {TARGET_RSS_MB:.0f} MB", worst_rss < TARGET_RSS_MB, f"worst {worst_rss:.1f} MB")
        worst_first = max(median(rs, "first_receive_ms") for rs in worker.values())
        check(f"{transport}: start to first receive < {TARGET_FIRST_RECEIVE_MS:.0f} ms",
              worst_first < TARGET_FIRST_RECEIVE_MS, f"worst {worst_first:.0f} ms")
    return out


def implementations(args, root):
    worker = [args.worker or os.path.join(root, "target/release/student-worker"), "run"]
    impls = [(WORKER, worker)]
    if "python" in args.baselines:
        impls.append((PYTHON, [sys.executable, os.path.join(root, "bench/baseline.py")]))
    if "node" in args.baselines:
        impls.append((NODE, ["node", os.path.join(root, "bench/node/baseline.mjs")]))
    return impls


def measure(args, impls, endpoint, transport, results, startup):
    """Every run of one transport: start-up on an empty queue, then each latency."""
    env = child_env(endpoint, args.concurrency)
    worker_env = dict(env, **dict(v.split("=", 1) for v in args.worker_env))
    env_of = {impl: worker_env if impl == WORKER else env for impl, _ in impls}
    # Start-up cost, measured on an empty queue, so per-message CPU can be shown without it.
    for _ in range(args.reps):
        for impl, command in impls:
            startup.setdefault((impl, transport), []).append(run_once(command, env_of[impl], endpoint, 0, 0, 0.0))
    for latency in [int(x) for x in args.latencies.split(",")]:
        slow = latency >= 20
        for rep in range(args.reps):
            for impl, command in impls:
                if impl == WORKER:
                    messages = args.messages_slow if slow else args.messages
                else:
                    messages = args.baseline_messages_slow if slow else args.baseline_messages
                r = run_once(command, env_of[impl], endpoint, messages, latency, args.throttle_rate)
                results.setdefault((impl, transport, latency), []).append(r)
                print(f"bench: {impl} {transport} {latency} ms rep {rep + 1}/{args.reps}: {r['rate']:,.0f} msg/s, "
                      f"{r['cpu_us_per_message']:.0f} µs CPU/msg, {r['peak_rss_mb']:.1f} MB, "
                      f"{r['calls_per_message']:.3f} calls/msg, first receive {r['first_receive_ms']:.0f} ms",
                      file=sys.stderr, flush=True)


def load(path):
    """The results and start-up figures an earlier run wrote with --json."""
    with open(path) as f:
        saved = json.load(f)
    startup = {tuple(k.split("/")): rs for k, rs in saved["startup"].items()}
    results = {}
    for key, rs in saved["runs"].items():
        impl_transport, latency = key.rsplit("@", 1)
        impl, transport = impl_transport.split("/")
        results[(impl, transport, int(latency.removesuffix("ms")))] = rs
    return results, startup, saved.get("load", "unknown")


def main():
    args = parse_args()
    if args.report_from:
        results, startup, load_before_after = load(args.report_from)
        args.reps = max(len(rs) for rs in results.values())
        args.transports = sorted({t for (_, t, _) in results}, key=["http", "https"].index)
        report(args, results, startup, load_before_after)
        return
    root = args.root
    impls = implementations(args, root)
    started_load = loadavg()
    results, startup = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        for transport in args.transports:
            endpoint = Endpoint(os.path.join(root, "target/release/bench-endpoint"), transport, scratch)
            try:
                measure(args, impls, endpoint, transport, results, startup)
            finally:
                endpoint.stop()
    for (impl, transport, _), rs in results.items():
        idle_cpu = median(startup[(impl, transport)], "cpu_seconds")
        for r in rs:
            r["net_cpu_us_per_message"] = max(r["cpu_seconds"] - idle_cpu, 0.0) / r["messages"] * 1e6
    # Keep the implementations of one transport and latency next to each other.
    order = {WORKER: 0, PYTHON: 1, NODE: 2}
    results = dict(sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][2], order[kv[0][0]])))
    load_before_after = f"{started_load} / {loadavg()}"
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load": load_before_after,
                       "startup": {f"{i}/{t}": rs for (i, t), rs in startup.items()},
                       "runs": {f"{i}/{t}@{l}ms": rs for (i, t, l), rs in results.items()}}, f, indent=1)
    report(args, results, startup, load_before_after)


if __name__ == "__main__":
    main()
