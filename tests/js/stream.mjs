// replicate.stream(ref, {input}): every server-sent event with the wall-clock time (ms since
// the epoch) it reached this process, the prediction as created and as finally stored, and the
// output concatenated as a JS user would print it (String(event) for output events).
import { main, makeClient } from "./common.mjs";

await main(async ({ ref, input }) => {
  // The client does not hand out the prediction it created to stream from; a fetch wrapper
  // reads it from the POST's answer so the prediction can be fetched once the stream ends.
  let created = null;
  const fetchAndWatch = async (url, init) => {
    const response = await fetch(url, init);
    if (init && init.method === "POST" && /\/predictions$/.test(new URL(url).pathname)) {
      created = await response.clone().json();
    }
    return response;
  };
  const replicate = makeClient({ fetch: fetchAndWatch });
  const started = Date.now();
  const events = [];
  let output = "";
  for await (const event of replicate.stream(ref, { input })) {
    events.push({
      at: Date.now(),
      event: event.event,
      id: event.id ?? null,
      data: typeof event.data === "string" ? event.data : String(event.data),
    });
    output += String(event);
  }
  const finished = Date.now();
  const prediction = created ? await replicate.predictions.get(created.id) : null;
  return { started, finished, created, prediction, events, output };
});
