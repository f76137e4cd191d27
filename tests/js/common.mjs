// Shared by the scripts that tests/integration/test_js_client.py runs with `node`.
//
// Each script reads the gateway from COGWAY_URL and COGWAY_TOKEN, takes its arguments as one
// JSON document in argv[2], and prints one JSON document on stdout for the Python test to check.
// Only the base URL and the token differ from what any Replicate user writes.
import Replicate from "replicate";

export function makeClient(options = {}) {
  const url = process.env.COGWAY_URL;
  const token = process.env.COGWAY_TOKEN;
  if (!url || !token) {
    throw new Error("COGWAY_URL and COGWAY_TOKEN must be set");
  }
  // Replicate's default is https://api.replicate.com/v1: the client joins routes onto baseUrl.
  return new Replicate({
    auth: token,
    baseUrl: `${url.replace(/\/+$/, "")}/v1`,
    ...options,
  });
}

export function args() {
  return JSON.parse(process.argv[2] ?? "{}");
}

// Run `body`, print what it returns as JSON; an exception exits 1 with its stack on stderr.
export async function main(body) {
  try {
    const result = await body(args());
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (err) {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  }
}
