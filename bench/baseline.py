#!/usr/bin/env python3
"""The Python baseline for scripts/bench: the worker written the way the
boto3 example of docs/setup.md works, scaled out with a thread pool.

Each of WORKER_CONCURRENCY threads (32 by default, like the Rust worker)
loops: receive_message (10, long poll) -> put_item (or update_item for a
patch) per message with the same version condition the worker uses -> one
JSON log line per message -> delete_message_batch of what finished. A
thread stops at its first empty receive (the benchmark endpoint answers an
empty receive only once every message is deleted, or after the long poll).

Configuration is the worker's: SQS_QUEUE_URL, DYNAMODB_TABLE_NAME,
WORKER_CONCURRENCY, and the AWS SDK's own AWS_ENDPOINT_URL, AWS_REGION /
AWS_DEFAULT_REGION and credentials. For benchmarking only: no DLQ, no
deferral, no shutdown handling.
"""

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import boto3
from botocore.config import Config

BATCH = 10  # SQS returns at most 10 messages per receive
WAIT_SECONDS = 20  # longest SQS long poll
VISIBILITY_SECONDS = 60
NEWER = "attribute_not_exists(#StudentID) OR attribute_not_exists(#Version) OR #Version < :version"
ON_PREDECESSOR = "#Version = :prev AND attribute_not_exists(#Deleted)"
FIELDS = {"name": ("Name", "S"), "email": ("Email", "S"), "grade": ("Grade", "N"), "status": ("Status", "S")}

_log_lock = threading.Lock()


def now():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def attribute(kind, value):
    return {kind: str(value)} if kind == "N" else {kind: value}


def upsert(dynamodb, table, event):
    student = event["student"]
    item = {
        "StudentID": {"S": event["studentId"]},
        "Version": {"N": str(event["version"])},
        "EventID": {"S": event["eventId"]},
        "UpdatedAt": {"S": now()},
    }
    if event.get("occurredAt"):
        item["OccurredAt"] = {"S": event["occurredAt"]}
    for field, (name, kind) in FIELDS.items():
        if student.get(field) is not None:
            item[name] = attribute(kind, student[field])
    if student.get("courses"):
        item["Courses"] = {"L": [{"S": c} for c in student["courses"]]}
    dynamodb.put_item(
        TableName=table,
        Item=item,
        ConditionExpression=NEWER,
        ExpressionAttributeNames={"#StudentID": "StudentID", "#Version": "Version"},
        ExpressionAttributeValues={":version": {"N": str(event["version"])}},
    )


def patch(dynamodb, table, event):
    names = {"#Version": "Version", "#Deleted": "Deleted", "#EventID": "EventID", "#UpdatedAt": "UpdatedAt"}
    values = {
        ":version": {"N": str(event["version"])},
        ":prev": {"N": str(event["version"] - 1)},
        ":event": {"S": event["eventId"]},
        ":now": {"S": now()},
    }
    sets = ["#Version = :version", "#EventID = :event", "#UpdatedAt = :now"]
    for field, (name, kind) in FIELDS.items():
        if event["student"].get(field) is not None:
            names["#" + name] = name
            values[":" + name] = attribute(kind, event["student"][field])
            sets.append(f"#{name} = :{name}")
    dynamodb.update_item(
        TableName=table,
        Key={"StudentID": {"S": event["studentId"]}},
        UpdateExpression="SET " + ", ".join(sets),
        ConditionExpression=ON_PREDECESSOR,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def handle(dynamodb, table, message):
    """Writes one message's event; returns its outcome."""
    event = json.loads(message["Body"])
    write = patch if event["type"] == "StudentPatched" else upsert
    try:
        write(dynamodb, table, event)
        outcome = "applied"
    except dynamodb.exceptions.ConditionalCheckFailedException:
        outcome = "stale"
    line = json.dumps({"timestamp": now(), "level": "INFO", "message": "message", "message_id": message["MessageId"],
                       "student_id": event["studentId"], "version": event["version"], "outcome": outcome})
    with _log_lock:
        sys.stdout.write(line + "\n")
    return outcome


def consume(sqs, dynamodb, queue_url, table):
    """One thread's loop; returns the number of messages it finished."""
    finished = 0
    while True:
        response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=BATCH,
                                       WaitTimeSeconds=WAIT_SECONDS, VisibilityTimeout=VISIBILITY_SECONDS)
        messages = response.get("Messages", [])
        if not messages:
            return finished
        done = []
        for message in messages:
            handle(dynamodb, table, message)
            done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)
        finished += len(done)


def main():
    queue_url = os.environ["SQS_QUEUE_URL"]
    table = os.environ["DYNAMODB_TABLE_NAME"]
    threads = int(os.environ.get("WORKER_CONCURRENCY", "32"))
    # botocore keeps 10 connections per client by default: give every thread one.
    config = Config(max_pool_connections=threads * 2, retries={"mode": "standard"})
    session = boto3.session.Session()
    sqs = session.client("sqs", config=config)
    dynamodb = session.client("dynamodb", config=config)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(consume, sqs, dynamodb, queue_url, table) for _ in range(threads)]
        total = sum(f.result() for f in futures)
    print(json.dumps({"message": "baseline stopped", "finished": total}), file=sys.stderr)


if __name__ == "__main__":
    main()
