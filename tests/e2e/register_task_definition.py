"""Registers a task definition file with ECS through boto3, so the real
client's model validates its shape (unknown or mistyped fields, wrong types)
and the service (the local emulator in tests) accepts it.

Usage: register_task_definition.py FILE
Endpoint, region and credentials come from the environment (AWS_ENDPOINT_URL,
AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
Prints the registered task definition as JSON on stdout.
"""

import json
import os
import sys

import boto3


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        definition = json.load(f)
    ecs = boto3.client("ecs", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    registered = ecs.register_task_definition(**definition)["taskDefinition"]
    json.dump(registered, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
