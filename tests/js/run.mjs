// replicate.run(ref, {input, ...options}): by model name, or with {"pin": true} by
// "owner/name:version" where the version is the model's latest_version from models.get.
// Prints the output, the run's progress statuses and the final prediction, or the error thrown.
import { main, makeClient } from "./common.mjs";

async function plain(value) {
  if (value instanceof ReadableStream) {
    // A FileOutput (the client wraps https: and data: URLs): keep its URL.
    return { file_output: String(value) };
  }
  if (Array.isArray(value)) {
    return Promise.all(value.map(plain));
  }
  return value;
}

await main(async ({ ref, input, pin = false, ...options }) => {
  const replicate = makeClient();
  let target = ref;
  let version = null;
  if (pin) {
    const [owner, name] = ref.split("/");
    const model = await replicate.models.get(owner, name);
    version = model.latest_version.id;
    target = `${ref}:${version}`;
  }
  const updates = [];
  const progress = (prediction) => updates.push(prediction);
  try {
    const output = await replicate.run(target, { input, ...options }, progress);
    return {
      ref: target,
      version,
      output: await plain(output),
      statuses: updates.map((p) => p.status),
      prediction: updates.at(-1) ?? null,
    };
  } catch (err) {
    return {
      ref: target,
      version,
      error: String(err.message),
      statuses: updates.map((p) => p.status),
      prediction: updates.at(-1) ?? null,
    };
  }
});
