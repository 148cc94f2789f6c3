#!/usr/bin/env node
// The Node.js baseline for scripts/bench: the worker written the usual Node
// way, with sqs-consumer and the AWS SDK for JavaScript v3, doing the job of
// bench/baseline.py under the same contract.
//
// Shape: ceil(WORKER_CONCURRENCY / 10) Consumer instances (32 -> 4) whose
// batch sizes add up to exactly WORKER_CONCURRENCY (4 x 8), each handling its
// batch with handleMessageBatch, the writes of a batch in parallel
// (Promise.all). That is how sqs-consumer is scaled in practice: a consumer
// per 10 messages, each batch processed concurrently and acknowledged by
// returning it, the library deleting it with one DeleteMessageBatch. At most
// WORKER_CONCURRENCY writes are in flight, as in the worker and baseline.py.
// Calls per message at 32: 1 write + 1/8 ReceiveMessage + 1/8
// DeleteMessageBatch = 1.25. The price of the library's per-consumer loop
// (receive -> the whole batch -> delete -> receive) is that a consumer's
// slots sit idle during its receive, its delete and the batch's slowest
// write: at a latency L per call it cannot pass WORKER_CONCURRENCY / 3L msg/s,
// where baseline.py's 32 sequential loops reach about 10 x 32 / 12L. Running
// 32 consumers that each write their batch sequentially would match that, but
// a sequential loop in a batch handler is not how Node code is written.
//
// Per message: PutItem (StudentUpserted) or UpdateItem (StudentPatched) with
// the same condition expressions as baseline.py, a ConditionalCheckFailed
// counted as "stale", one JSON log line on stdout. Each consumer stops at its
// first empty receive (the benchmark endpoint answers one only once every
// message is deleted, or after the long poll); the process exits 0 once all
// have stopped, or 1 at the first error event, with the error on stderr.
//
// Configuration is the worker's: SQS_QUEUE_URL, DYNAMODB_TABLE_NAME,
// WORKER_CONCURRENCY, and the SDK's AWS_ENDPOINT_URL, AWS_REGION (or
// AWS_DEFAULT_REGION, which the JS SDK ignores) and credentials from the
// environment. AWS_CA_BUNDLE, which the JS SDK does not read either, is
// honoured here. For benchmarking only: no DLQ, no deferral, no shutdown
// handling.

import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import tls from "node:tls";

import { ConditionalCheckFailedException, DynamoDBClient, PutItemCommand, UpdateItemCommand } from "@aws-sdk/client-dynamodb";
import { SQSClient } from "@aws-sdk/client-sqs";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { Consumer } from "sqs-consumer";

const BATCH = 10; // SQS returns at most 10 messages per receive
const WAIT_SECONDS = 20; // longest SQS long poll
const VISIBILITY_SECONDS = 60;
const NEWER = "attribute_not_exists(#StudentID) OR attribute_not_exists(#Version) OR #Version < :version";
const ON_PREDECESSOR = "#Version = :prev AND attribute_not_exists(#Deleted)";
const FIELDS = [["name", "Name", "S"], ["email", "Email", "S"], ["grade", "Grade", "N"], ["status", "Status", "S"]];

const queueUrl = required("SQS_QUEUE_URL");
const table = required("DYNAMODB_TABLE_NAME");
const concurrency = Number(process.env.WORKER_CONCURRENCY ?? "32");
if (!Number.isInteger(concurrency) || concurrency < 1) fail(`WORKER_CONCURRENCY must be a positive integer, not ${process.env.WORKER_CONCURRENCY}`);

function required(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is not set`);
  return value;
}

function fail(problem) {
  // stderr is synchronous for files and pipes on Linux: nothing is lost by exiting at once.
  process.stderr.write(JSON.stringify({ message: "baseline failed", error: String(problem?.stack ?? problem) }) + "\n");
  process.exit(1);
}

// The https agent trusts the default roots plus AWS_CA_BUNDLE when given (the
// benchmark's HTTPS endpoint). It gets them as one prebuilt secureContext, not
// as `ca`: https.Agent appends `ca` to its pool key on every request (about
// 216 kB with the roots) and parses it on every new connection, which
// nearly doubled the CPU per message.
const bundle = process.env.AWS_CA_BUNDLE;
const secureContext = bundle
  ? tls.createSecureContext({ ca: [...tls.rootCertificates, readFileSync(bundle, "utf8")] })
  : undefined;

// The SDK's default agents allow 50 sockets; size the pools to the concurrency
// (twice, as baseline.py does) so no request waits for a connection, and keep
// them alive so connections are reused.
function requestHandler() {
  const sockets = concurrency * 2;
  return new NodeHttpHandler({
    httpAgent: new http.Agent({ keepAlive: true, maxSockets: sockets }),
    httpsAgent: new https.Agent({ keepAlive: true, maxSockets: sockets, secureContext }),
  });
}

const region = process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || undefined;
// md5: false because bench-endpoint sends no MD5OfBody, which the SDK would
// otherwise check on every received message and reject (real SQS sends it).
const sqs = new SQSClient({ region, requestHandler: requestHandler(), md5: false });
const dynamodb = new DynamoDBClient({ region, requestHandler: requestHandler() });

const now = () => new Date().toISOString();
const attribute = (kind, value) => ({ [kind]: kind === "N" ? String(value) : value });

function upsert(event) {
  const student = event.student;
  const item = {
    StudentID: { S: event.studentId },
    Version: { N: String(event.version) },
    EventID: { S: event.eventId },
    UpdatedAt: { S: now() },
  };
  if (event.occurredAt) item.OccurredAt = { S: event.occurredAt };
  for (const [field, name, kind] of FIELDS) {
    if (student[field] != null) item[name] = attribute(kind, student[field]);
  }
  if (student.courses?.length) item.Courses = { L: student.courses.map((c) => ({ S: c })) };
  return new PutItemCommand({
    TableName: table,
    Item: item,
    ConditionExpression: NEWER,
    ExpressionAttributeNames: { "#StudentID": "StudentID", "#Version": "Version" },
    ExpressionAttributeValues: { ":version": { N: String(event.version) } },
  });
}

function patch(event) {
  const names = { "#Version": "Version", "#Deleted": "Deleted", "#EventID": "EventID", "#UpdatedAt": "UpdatedAt" };
  const values = {
    ":version": { N: String(event.version) },
    ":prev": { N: String(event.version - 1) },
    ":event": { S: event.eventId },
    ":now": { S: now() },
  };
  const sets = ["#Version = :version", "#EventID = :event", "#UpdatedAt = :now"];
  for (const [field, name, kind] of FIELDS) {
    if (event.student[field] != null) {
      names[`#${name}`] = name;
      values[`:${name}`] = attribute(kind, event.student[field]);
      sets.push(`#${name} = :${name}`);
    }
  }
  return new UpdateItemCommand({
    TableName: table,
    Key: { StudentID: { S: event.studentId } },
    UpdateExpression: `SET ${sets.join(", ")}`,
    ConditionExpression: ON_PREDECESSOR,
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  });
}

// Writes one message's event and logs its outcome; any other error rejects.
async function handle(message) {
  const event = JSON.parse(message.Body);
  let outcome = "applied";
  try {
    await dynamodb.send(event.type === "StudentPatched" ? patch(event) : upsert(event));
  } catch (err) {
    if (!(err instanceof ConditionalCheckFailedException)) throw err;
    outcome = "stale";
  }
  process.stdout.write(JSON.stringify({
    timestamp: now(), level: "INFO", message: "message", message_id: message.MessageId,
    student_id: event.studentId, version: event.version, outcome,
  }) + "\n");
}

// Split the concurrency over as few consumers as the 10-message receive allows.
const count = Math.ceil(concurrency / BATCH);
let running = count;
let finished = 0;
for (let i = 0; i < count; i++) {
  const consumer = Consumer.create({
    queueUrl,
    sqs,
    batchSize: Math.floor(concurrency / count) + (i < concurrency % count ? 1 : 0),
    waitTimeSeconds: WAIT_SECONDS,
    visibilityTimeout: VISIBILITY_SECONDS,
    strictReturn: true,
    // Returning the batch acknowledges it: sqs-consumer then deletes it with one DeleteMessageBatch.
    handleMessageBatch: async (messages) => {
      await Promise.all(messages.map(handle));
      return messages;
    },
  });
  consumer.on("message_processed", () => finished++);
  consumer.on("empty", () => consumer.stop());
  consumer.on("stopped", () => {
    if (--running > 0) return;
    process.stderr.write(JSON.stringify({ message: "baseline stopped", finished }) + "\n");
    // Idle keep-alive sockets are all that is left: close them and let the process end.
    sqs.destroy();
    dynamodb.destroy();
  });
  for (const event of ["error", "processing_error", "timeout_error"]) consumer.on(event, (err) => fail(err));
  consumer.start();
}
