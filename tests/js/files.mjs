// replicate.run on a model with a file input and a file output. argv[2]:
// {"ref", "png": "<path of the input PNG>", "input": {...other inputs},
//  "fileEncodingStrategy": "default" | "upload", "inline": false}.
// The input goes in as a File (the client uploads it with POST /v1/files), or with
// "inline": true as a data: URI string built here. (replicate 1.4.0's own "data-uri" strategy
// is broken: transformFileInputs passes the client object as the inputs, so the request's
// input is the serialized client, API token included, and the file is missing.)
// The output (a URL string, or a FileOutput for https: URLs) is read back the way a JS user
// would, and printed as base64 with its sha256 and content type, with the final prediction
// (its logs carry the sha256 of what the model read and wrote).
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { main, makeClient } from "./common.mjs";

await main(async ({ ref, png, input = {}, fileEncodingStrategy = "default", inline = false }) => {
  const replicate = makeClient({ fileEncodingStrategy });
  const sent = await readFile(png);
  const image = inline
    ? `data:image/png;base64,${sent.toString("base64")}`
    : new File([sent], basename(png), { type: "image/png" });
  const updates = [];
  const output = await replicate.run(ref, { input: { ...input, image } }, (p) => updates.push(p));
  let url;
  let bytes;
  let contentType;
  if (output instanceof ReadableStream) {
    url = String(output);
    const blob = await output.blob();
    bytes = Buffer.from(await blob.arrayBuffer());
    contentType = blob.type;
  } else {
    url = output;
    const response = await fetch(output);
    if (!response.ok) {
      throw new Error(`GET ${output}: ${response.status} ${await response.text()}`);
    }
    bytes = Buffer.from(await response.arrayBuffer());
    contentType = response.headers.get("content-type");
  }
  const prediction = updates.at(-1);
  return {
    output_type: output instanceof ReadableStream ? "FileOutput" : typeof output,
    url,
    content_type: contentType,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    base64: bytes.toString("base64"),
    sent_sha256: createHash("sha256").update(sent).digest("hex"),
    input_image: prediction.input.image,
    logs: prediction.logs,
    status: prediction.status,
  };
});
