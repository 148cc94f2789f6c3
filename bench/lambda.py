#!/usr/bin/env python3
"""The Lambda benchmark behind `scripts/bench --lambda`.

Measures `student-worker lambda` locally, with no AWS and no Lambda: a small
Runtime API of its own (this file, http.server) hands the function SQS
events built from messages really received from bench-endpoint (the same
generated contract-v1 bodies as bench/run.py, half upserts and half
patches, real receipt handles), one invocation at a time in batches of 10,
as an event source mapping would;
the function's DynamoDB (and any SQS) calls go to bench-endpoint through
AWS_ENDPOINT_URL, with 0, 5 and 20 ms added per call.

For each added latency and repetition, one fresh function process:
- init: from spawning it to its first `GET /runtime/invocation/next`;
- duration per invocation: from handing out an event to its response;
- CPU per batch: utime + stime from /proc/PID/stat once it is idle again
  after the last response, less what it had used at its first `/next`
  (and the same from the process's CPU-time clock, which has ns, not
  10 ms ticks: init's CPU is read from it);
- peak memory: VmHWM from /proc/PID/status, read before it is stopped;
- every response must have an empty `batchItemFailures` (a failure or an
  error call is counted and shown), and the endpoint's call counts show
  one write per message.
Then prints a Markdown report: medians over the repetitions with their
range, and cost per million messages on Lambda (from the measured
durations) and on ECS Fargate (from docs/performance.md's figures).

Usage: bench/lambda.py --root REPO [--reps 3] [--latencies 0,5,20] [--quick]
"""

import argparse
import datetime
import json
import math
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from run import QUEUE_PATH, REGION, TABLE, Endpoint, child_env, loadavg, machine

ACCOUNT = "123456789012"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:bench"
FUNCTION_NAME = "student-worker-bench"
BATCH = 10  # messages per invocation: the template's BatchSize
CONCURRENCY = 10  # WORKER_CONCURRENCY: the template's WorkerConcurrency
TIMEOUT_SECONDS = 10  # the template's FunctionTimeoutSeconds: each event's deadline
WAIT_SECONDS = 60  # for the function to ask for an event or answer one
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Prices assumed (list prices, x86, us-east-1; free tiers ignored).
LAMBDA_GB_SECOND_USD = 0.0000166667
LAMBDA_REQUEST_USD = 0.20 / 1e6
LAMBDA_MB_PER_VCPU = 1769  # Lambda gives one vCPU's worth of CPU at 1,769 MB
FARGATE_VCPU_HOUR_USD = 0.04048
FARGATE_GB_HOUR_USD = 0.004445
ECS_TASK_VCPU, ECS_TASK_GB = 0.25, 0.5  # task-definition.json's cpu 256 / memory 512
HOURS_PER_MONTH = 730
# The ECS worker's figures over HTTPS, as on AWS: docs/performance.md, run 1 of
# bench/results/2026-12-03-run1.json (`scripts/bench`, medians of 3).
# added latency ms -> (messages/s at concurrency 32 on one core, CPU µs per message).
ECS_FIGURES = {0: (9486, 105), 5: (5612, 154), 20: (1534, 204)}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="repository root")
    p.add_argument("--reps", type=int, default=3, help="repetitions per latency (median reported)")
    p.add_argument("--latencies", default="0,5,20", help="added latency per AWS call, ms, comma-separated")
    p.add_argument("--batches", type=int, default=300, help="invocations of 10 messages per run at < 20 ms")
    p.add_argument("--batches-slow", type=int, default=200, help="invocations per run at >= 20 ms")
    p.add_argument("--memory-mb", type=int, default=256, help="the function's memory for the cost estimate "
                   "(the template's MemorySizeMiB)")
    p.add_argument("--worker", help="another student-worker binary (default: target/release/student-worker)")
    p.add_argument("--quick", action="store_true", help="1 repetition, 30 batches (a smoke test, not a measurement)")
    p.add_argument("--json", help="also write the raw results to this file")
    args = p.parse_args()
    if args.quick:
        args.reps, args.batches, args.batches_slow = 1, 30, 30
    return args


def sqs_call(endpoint_url, operation, request):
    """One SQS JSON-protocol call to bench-endpoint (it checks no signature)."""
    req = urllib.request.Request(endpoint_url + "/", data=json.dumps(request).encode(), method="POST", headers={
        "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"AmazonSQS.{operation}"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read() or b"{}")


def receive_batches(endpoint_url, batches):
    """Receives batches × 10 messages, hidden for an hour, as SQS events of 10 records."""
    url = endpoint_url + QUEUE_PATH
    messages = []
    while len(messages) < batches * BATCH:
        got = sqs_call(endpoint_url, "ReceiveMessage", {
            "QueueUrl": url, "MaxNumberOfMessages": BATCH, "VisibilityTimeout": 3600, "WaitTimeSeconds": 1,
            "AttributeNames": ["All"]}).get("Messages", [])
        if not got:
            raise SystemExit(f"bench: the endpoint's queue ran dry after {len(messages)} messages")
        messages += got
    now_ms = str(int(time.time() * 1000))
    records = [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": {"ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"],
                       "SentTimestamp": now_ms, "SenderId": ACCOUNT, "ApproximateFirstReceiveTimestamp": now_ms},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": QUEUE_ARN,
        "awsRegion": REGION,
    } for m in messages]
    return [json.dumps({"Records": records[i:i + BATCH]}).encode() for i in range(0, len(records), BATCH)]


class RuntimeApi:
    """A Lambda Runtime API on 127.0.0.1 serving a fixed list of events, one at a time."""

    def __init__(self, events, on_first_next):
        self.events = queue.Queue()
        for n, event in enumerate(events):
            self.events.put((f"request-{n + 1}", event))
        self.on_first_next = on_first_next
        self.lock = threading.Lock()
        self.nexts = []  # arrival times (monotonic) of GET /next
        self.handed = {}  # request id -> monotonic time the event was handed out
        self.answers = {}  # request id -> (monotonic arrival, "response" | "error", body)
        self.init_errors = []
        self.changed = threading.Condition(self.lock)
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Lambda's Runtime API

            def setup(self):
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *_):
                pass

            def do_GET(self):
                if self.path.rstrip("/") != "/2018-06-01/runtime/invocation/next":
                    return self.answer(404, b'{"errorMessage":"no such path"}')
                api.arrived_next()
                item = api.events.get()
                if item is None:  # stopping
                    return self.answer(500, b"{}")
                request_id, event = item
                deadline_ms = int(time.time() * 1000) + TIMEOUT_SECONDS * 1000
                self.answer(200, event, {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION_NAME}",
                    "Lambda-Runtime-Trace-Id": f"Root=1-00000000-{request_id:0>24};Sampled=0",
                })
                with api.lock:
                    api.handed[request_id] = time.monotonic()

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.monotonic()
                parts = self.path.removeprefix("/2018-06-01/runtime/").split("/")
                if parts == ["init", "error"]:
                    with api.lock:
                        api.init_errors.append(body.decode(errors="replace"))
                        api.changed.notify_all()
                    return self.answer(202, b'{"status":"OK"}')
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    with api.lock:
                        api.answers[parts[1]] = (arrived, parts[2], body)
                        api.changed.notify_all()
                    return self.answer(202, b'{"status":"OK"}')
                self.answer(404, b'{"errorMessage":"no such path"}')

            def answer(self, status, body, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # The last GET /next is answered after the process is gone: nothing to say about it.
        self.server.handle_error = lambda *_: None
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def arrived_next(self):
        now = time.monotonic()
        with self.lock:
            first = not self.nexts
            self.nexts.append(now)
            self.changed.notify_all()
        if first:
            self.on_first_next(now)

    def wait_for(self, predicate, what, process):
        """Waits until predicate() (under the lock) holds, the process exits, or WAIT_SECONDS pass."""
        deadline = time.monotonic() + WAIT_SECONDS
        with self.lock:
            while not predicate():
                if process.poll() is not None or self.init_errors:
                    return False
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench: the function did not {what} within {WAIT_SECONDS} s")
                self.changed.wait(0.05)
        return True

    def stop(self):
        for _ in range(4):
            self.events.put(None)
        self.server.shutdown()
        self.server.server_close()


def cpu_seconds(pid):
    """utime + stime of the whole process (every thread, living or ended), in 10 ms ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def cpu_clock_seconds(pid):
    """The same total from the process's CPU-time clock (clock_getcpuclockid), in ns: for init's few ms."""
    return time.clock_gettime(((~pid) << 3) | 2)  # CPUCLOCK_SCHED of process pid


def memory_kib(pid):
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0])
    return found


def function_env(endpoint, runtime_api, memory_mb):
    env = child_env(endpoint, CONCURRENCY)
    for name in ("SQS_QUEUE_URL", "WORKER_EXIT_WHEN_EMPTY"):  # `run`'s, not the function's
        env.pop(name)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": runtime_api, "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb), "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench", "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
        "DYNAMODB_TABLE_NAME": TABLE,
    })
    return env


def run_once(binary, endpoint, batches, latency_ms, memory_mb):
    """One fresh function process serving `batches` events; returns its figures."""
    # Half the students' ids of the run: every student gets an upsert (PutItem)
    # then a patch (UpdateItem), the mix of the ECS figures at 0 and 5 ms.
    messages = batches * BATCH
    query = f"messages={messages}&latency_ms={latency_ms}&throttle_rate=0&students={max(messages // 2, BATCH)}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint.url}/reset?{query}", method="POST"), timeout=10).read()
    events = receive_batches(endpoint.url, batches)
    calls_before = endpoint.stats()["calls"]
    at_first_next = {}

    def on_first_next(now):
        at_first_next["time"] = now
        at_first_next["cpu_clock"] = cpu_clock_seconds(process.pid)
        at_first_next["cpu"] = cpu_seconds(process.pid)

    api = RuntimeApi(events, on_first_next)
    env = function_env(endpoint, api.address, memory_mb)
    devnull, stderr = open(os.devnull, "w"), tempfile.TemporaryFile()
    spawned = time.monotonic()
    # Logs (JSON lines at info and an EMF line per invocation, on stdout) go
    # to /dev/null: formatting them is part of the cost, a terminal is not.
    process = subprocess.Popen([binary, "lambda"], env=env, stdout=devnull, stderr=stderr)
    try:
        # Idle again after the last answer: it asks for one more event.
        finished = api.wait_for(lambda: len(api.nexts) > batches, "answer every event", process)
        if not finished:
            stderr.seek(0)
            raise SystemExit(f"bench: the function stopped (status {process.poll()}), init errors {api.init_errors}, "
                             f"{len(api.answers)} of {batches} events answered\n"
                             f"{stderr.read().decode(errors='replace')[-2000:]}")
        cpu_end, cpu_clock_end = cpu_seconds(process.pid), cpu_clock_seconds(process.pid)
        memory = memory_kib(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        api.stop()
        devnull.close()
        stderr.close()
    calls_after = endpoint.stats()["calls"]
    calls = {op: n - calls_before.get(op, 0) for op, n in calls_after.items() if n - calls_before.get(op, 0)}
    durations, failures, errors = [], 0, []
    for request_id, handed in api.handed.items():
        arrived, kind, body = api.answers[request_id]
        durations.append((arrived - handed) * 1000)
        if kind == "error":
            errors.append(body.decode(errors="replace"))
        else:
            failures += len(json.loads(body)["batchItemFailures"])
    last_answer = max(arrived for arrived, _, _ in api.answers.values())
    cpu = cpu_end - at_first_next["cpu"]
    return {
        "batches": batches, "latency_ms": latency_ms,
        "init_ms": (at_first_next["time"] - spawned) * 1000,
        "init_cpu_ms": at_first_next["cpu_clock"] * 1000,
        "wall_ms_per_batch": (last_answer - at_first_next["time"]) * 1000 / batches,
        "duration_ms_median": statistics.median(durations),
        "duration_ms_p90": statistics.quantiles(durations, n=10)[-1],
        "duration_ms_max": max(durations),
        "cpu_ms_per_batch": cpu * 1000 / batches,
        "cpu_seconds": cpu,
        "cpu_clock_ms_per_batch": (cpu_clock_end - at_first_next["cpu_clock"]) * 1000 / batches,
        "vm_hwm_mb": memory["VmHWM"] / 1024, "vm_rss_mb": memory["VmRSS"] / 1024,
        "failures": failures, "errors": errors,
        "calls_per_message": {op: n / (batches * BATCH) for op, n in sorted(calls.items())},
    }


def spread(results, key, digits=1):
    """'median (min-max)' over the repetitions."""
    values = [r[key] for r in results]
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def lambda_cost(duration_ms, memory_mb):
    """USD per million messages at 10 per invocation, billed per ms (rounded up)."""
    invocations = 1e6 / BATCH
    gb_seconds = invocations * math.ceil(duration_ms) / 1000 * memory_mb / 1024
    return invocations * LAMBDA_REQUEST_USD + gb_seconds * LAMBDA_GB_SECOND_USD, gb_seconds


def report(args, results, started_load, started_at):
    task_hour = ECS_TASK_VCPU * FARGATE_VCPU_HOUR_USD + ECS_TASK_GB * FARGATE_GB_HOUR_USD
    vcpu_share = args.memory_mb / LAMBDA_MB_PER_VCPU
    lines = [f"measured {started_at:%Y-%m-%d %H:%M} UTC, locally, on one machine: {machine()}",
             f"load average before / after: {started_load} / {loadavg()}",
             f"`student-worker lambda` against bench/lambda.py's Runtime API and bench-endpoint, "
             f"{BATCH} messages per invocation, WORKER_CONCURRENCY {CONCURRENCY}, "
             f"AWS_LAMBDA_FUNCTION_MEMORY_SIZE {args.memory_mb} (not enforced locally: the function had a whole core), "
             f"{args.reps} repetitions per latency, one fresh process each; median (min-max) over the repetitions",
             ""]
    every = [r for rs in results.values() for r in rs]
    lines.append(f"init, process start to first `GET /next`: {spread(every, 'init_ms')} ms over {len(every)} starts, "
                 f"{spread(every, 'init_cpu_ms')} ms CPU (process CPU clock)")
    lines += ["", "| added latency | invocations | duration ms (median per run) | duration ms p90 | "
              "wall ms per invocation (first /next to last response) | CPU ms per invocation (/proc/PID/stat) | "
              "CPU µs per message | same from the CPU clock, ms per invocation | peak memory VmHWM MB | batchItemFailures | error calls |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for latency, rs in results.items():
        for r in rs:
            r["cpu_us_per_message"] = r["cpu_ms_per_batch"] * 1000 / BATCH
        lines.append(
            f"| {latency} ms | {rs[0]['batches']:,} | {spread(rs, 'duration_ms_median', 2)} | "
            f"{spread(rs, 'duration_ms_p90', 2)} | {spread(rs, 'wall_ms_per_batch', 2)} | "
            f"{spread(rs, 'cpu_ms_per_batch', 2)} | {spread(rs, 'cpu_us_per_message', 0)} | "
            f"{spread(rs, 'cpu_clock_ms_per_batch', 2)} | "
            f"{spread(rs, 'vm_hwm_mb')} | {sum(r['failures'] for r in rs)} | {sum(len(r['errors']) for r in rs)} |")
    lines += ["", "AWS calls per message at the endpoint (medians):", ""]
    for latency, rs in results.items():
        ops = sorted({op for r in rs for op in r["calls_per_message"]})
        detail = ", ".join(f"{op} {statistics.median(r['calls_per_message'].get(op, 0) for r in rs):.3f}" for op in ops)
        lines.append(f"- {latency} ms: {detail}")
    lines += ["", f"cost per million messages (estimate; Lambda x86 {LAMBDA_GB_SECOND_USD:.10f} USD per GB-s and "
              f"{LAMBDA_REQUEST_USD * 1e6:.2f} USD per 1M requests; Fargate {FARGATE_VCPU_HOUR_USD} USD per vCPU-h and "
              f"{FARGATE_GB_HOUR_USD} USD per GB-h; us-east-1; free tiers, SQS and DynamoDB left out):", "",
              f"| added latency | Lambda {args.memory_mb} MB, measured duration (billed ms) | "
              f"same if the CPU ran at {args.memory_mb} MB's {vcpu_share:.2f} vCPU (billed ms) | "
              f"ECS {ECS_TASK_VCPU} vCPU / {ECS_TASK_GB} GB task fully used (msg/s per task) |",
              "| ---: | ---: | ---: | ---: |"]
    for latency, rs in results.items():
        duration = statistics.median(r["duration_ms_median"] for r in rs)
        cpu = statistics.median(r["cpu_ms_per_batch"] for r in rs)
        slowed = duration + cpu * (1 / vcpu_share - 1)  # every CPU ms stretched, none overlapped with waiting
        measured, _ = lambda_cost(duration, args.memory_mb)
        scaled, _ = lambda_cost(slowed, args.memory_mb)
        ecs = ""
        if latency in ECS_FIGURES:
            rate, cpu_us = ECS_FIGURES[latency]
            per_task = min(rate, ECS_TASK_VCPU / (cpu_us / 1e6))
            ecs = f"{task_hour / (per_task * 3600) * 1e6:.4f} USD ({per_task:,.0f} msg/s)"
        lines.append(f"| {latency} ms | {measured:.4f} USD ({math.ceil(duration)} ms) | "
                     f"{scaled:.4f} USD ({math.ceil(slowed)} ms) | {ecs or '-'} |")
    lines.append(f"\nECS task: {task_hour:.4f} USD an hour, {task_hour * HOURS_PER_MONTH:.2f} USD a month, "
                 "paid whether messages come or not; per million messages that is the month's cost divided by "
                 "its millions of messages when the task is not fully used.")
    print("\n".join(lines))


def main():
    args = parse_args()
    binary = args.worker or os.path.join(args.root, "target/release/student-worker")
    # Plain HTTP: the function's TLS costs are the same as `run`'s, measured by bench/run.py.
    endpoint = Endpoint(os.path.join(args.root, "target/release/bench-endpoint"), "http", tempfile.gettempdir())
    started_load, started_at = loadavg(), datetime.datetime.now(datetime.timezone.utc)
    results = {}
    try:
        for latency in [int(x) for x in args.latencies.split(",")]:
            batches = args.batches_slow if latency >= 20 else args.batches
            for rep in range(args.reps):
                r = run_once(binary, endpoint, batches, latency, args.memory_mb)
                results.setdefault(latency, []).append(r)
                print(f"bench: lambda {latency} ms rep {rep + 1}/{args.reps}: init {r['init_ms']:.1f} ms, "
                      f"duration {r['duration_ms_median']:.2f} ms (median), {r['cpu_ms_per_batch']:.2f} ms CPU/batch, "
                      f"VmHWM {r['vm_hwm_mb']:.1f} MB, {r['failures']} batchItemFailures, {len(r['errors'])} errors",
                      file=sys.stderr, flush=True)
    finally:
        endpoint.stop()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(latency): rs for latency, rs in results.items()}, f, indent=1)
    report(args, results, started_load, started_at)


if __name__ == "__main__":
    main()
