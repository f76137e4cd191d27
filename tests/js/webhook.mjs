// validateWebhook from the package, on a delivery the Python side's receiver captured.
// argv[2]: {"delivery": "<path of a JSON file {headers, body}>"}. The signing secret comes from
// the gateway through the client (replicate.webhooks.default.secret.get()), as a user gets it.
// Prints the secret and the verdicts for the genuine delivery (in each calling convention the
// package supports), a tampered body, and a wrong secret.
import { readFile } from "node:fs/promises";
import { webcrypto } from "node:crypto";
import { validateWebhook } from "replicate";
import { main, makeClient } from "./common.mjs";

await main(async ({ delivery: path }) => {
  const { headers, body } = JSON.parse(await readFile(path, "utf8"));
  const replicate = makeClient();
  const { key: secret } = await replicate.webhooks.default.secret.get();
  const parts = {
    id: headers["webhook-id"],
    timestamp: headers["webhook-timestamp"],
    signature: headers["webhook-signature"],
  };
  const request = new Request("http://receiver.test/hook", {
    method: "POST",
    headers,
    body,
  });
  const tampered = body.replace(/"status":\s*"succeeded"/, '"status": "failed"');
  if (tampered === body) {
    throw new Error("the delivery's body has no succeeded status to tamper with");
  }
  const otherKey = `whsec_${Buffer.from(webcrypto.getRandomValues(new Uint8Array(32))).toString("base64")}`;
  return {
    secret,
    genuine: {
      request: await validateWebhook(request, secret),
      headers: await validateWebhook({ headers, body }, secret),
      parts: await validateWebhook({ ...parts, body, secret }),
      parts_with_crypto: await validateWebhook({ ...parts, body, secret }, webcrypto),
    },
    tampered: await validateWebhook({ ...parts, body: tampered, secret }),
    tampered_request: await validateWebhook(
      new Request("http://receiver.test/hook", { method: "POST", headers, body: tampered }),
      secret
    ),
    wrong_secret: await validateWebhook({ ...parts, body, secret: otherKey }),
  };
});
