"""An independent publisher: sends each line of a JSONL file to an SQS queue
with boto3's send_message_batch, as an upstream team's service would.

Usage: publish_boto3.py QUEUE_URL FILE
Endpoint, region and credentials come from the environment (AWS_ENDPOINT_URL,
AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
"""

import os
import sys

import boto3


def main() -> int:
    queue_url, path = sys.argv[1], sys.argv[2]
    sqs = boto3.client(
        "sqs",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        region_name=os.environ["AWS_REGION"],
    )
    with open(path, encoding="utf-8") as f:
        bodies = [line.rstrip("\n") for line in f if line.strip()]
    sent = 0
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)]
        out = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if out.get("Failed"):
            print(f"failed: {out['Failed']}", file=sys.stderr)
            return 1
        sent += len(chunk)
    print(f"sent {sent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
