// s3rver for the test suite (see photo_pipeline_tests/conftest.py: `s3rver_server`).
//
//   node serve.js NODE_MODULES DATA_DIR ACCESS_KEY_ID SECRET_ACCESS_KEY
//
// Listens on 127.0.0.1, on a port the system picks (so parallel sessions never collide), checks
// every signature (allowMismatchedSignatures stays false), registers the suite's test credentials
// beside s3rver's own S3RVER/S3RVER, and prints one line, {"port": N}, once it listens. Ends on
// SIGTERM or when its parent's stdin closes (the suite died without stopping it).
"use strict";

const [modules, directory, accessKeyId, secretAccessKey] = process.argv.slice(2);
if (!modules || !directory || !accessKeyId || !secretAccessKey) {
  console.error("usage: node serve.js NODE_MODULES DATA_DIR ACCESS_KEY_ID SECRET_ACCESS_KEY");
  process.exit(2);
}
const load = (name) => require(require.resolve(name, { paths: [modules] }));
const S3rver = load("@20minutes/s3rver");
const { DUMMY_ACCOUNT } = load("@20minutes/s3rver/lib/models/account");

DUMMY_ACCOUNT.createKeyPair(accessKeyId, secretAccessKey);

const server = new S3rver({
  address: "127.0.0.1",
  port: 0,
  directory,
  silent: true,
  allowMismatchedSignatures: false,
  vhostBuckets: false, // path-style only, as the suite's clients address buckets
});

server.run().then(
  ({ port }) => {
    process.stdout.write(JSON.stringify({ port }) + "\n");
  },
  (error) => {
    console.error(`s3rver did not start: ${error.stack || error}`);
    process.exit(1);
  },
);

const stop = () => server.close().finally(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.resume();
