// The official openai Node.js SDK against moe-coordinator --http.
//
//   node sdk_test.mjs basic BASE_URL CASES.json
//       each case {name, kind: "completion"|"chat", body, want}: the request
//       is sent twice, plain and streaming, and both texts must equal want
//       (what moe-run printed for the same prompt and sampling)
//   node sdk_test.mjs load BASE_URL CASES.json
//       every case at once, streaming ({name, body, want: [text per choice]});
//       then cases with "abort_after": N are cut after N chunks by the client
//
// Prints one line per check; exits 1 at the first difference.
import OpenAI from "openai";
import { readFileSync } from "node:fs";

const [mode, baseURL, casesPath] = process.argv.slice(2);
if (!mode || !baseURL || !casesPath) {
  console.error("usage: node sdk_test.mjs basic|load BASE_URL CASES.json");
  process.exit(2);
}
const cases = JSON.parse(readFileSync(casesPath, "utf8"));
const client = new OpenAI({ baseURL, apiKey: process.env.MOE_API_KEY || "none", maxRetries: 0, timeout: 120000 });

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

function textOf(kind, choice) {
  return kind === "chat" ? choice.message.content : choice.text;
}

function deltaOf(kind, choice) {
  return (kind === "chat" ? choice.delta?.content : choice.text) ?? "";
}

async function create(kind, body, opts) {
  return kind === "chat" ? client.chat.completions.create(body, opts) : client.completions.create(body, opts);
}

// A streaming request: text per choice index, the finish reasons, the usage chunk.
async function streamed(kind, body, abortAfter) {
  const controller = new AbortController();
  const stream = await create(kind, { ...body, stream: true, stream_options: { include_usage: true } },
                              { signal: controller.signal });
  const texts = [], finish = [];
  let usage = null, chunks = 0;
  try {
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        texts[c.index] = (texts[c.index] ?? "") + deltaOf(kind, c);
        if (c.finish_reason) finish[c.index] = c.finish_reason;
      }
      if (abortAfter && ++chunks >= abortAfter) {
        controller.abort();
        return { aborted: true, texts };
      }
    }
  } catch (e) {
    if (abortAfter && controller.signal.aborted) return { aborted: true, texts };
    throw e;
  }
  return { texts, finish, usage };
}

async function basic() {
  const models = await client.models.list();
  const ids = models.data.map((m) => m.id);
  if (ids.length < 1) fail("GET /v1/models listed no model");
  console.log(`models: ${ids.join(", ")}`);
  for (const c of cases) {
    const body = { model: ids[0], ...c.body };
    const r = await create(c.kind, body);
    const got = textOf(c.kind, r.choices[0]);
    if (got !== c.want) fail(`${c.name}: plain text ${JSON.stringify(got)} != moe-run ${JSON.stringify(c.want)}`);
    if (!r.usage || r.usage.completion_tokens < 1 || r.usage.prompt_tokens < 1) fail(`${c.name}: usage ${JSON.stringify(r.usage)}`);
    if (!["stop", "length"].includes(r.choices[0].finish_reason)) fail(`${c.name}: finish_reason ${r.choices[0].finish_reason}`);
    const s = await streamed(c.kind, body);
    if (s.texts[0] !== c.want) fail(`${c.name}: streamed text ${JSON.stringify(s.texts[0])} != moe-run ${JSON.stringify(c.want)}`);
    if (!s.usage || s.usage.completion_tokens !== r.usage.completion_tokens)
      fail(`${c.name}: streamed usage ${JSON.stringify(s.usage)} vs ${JSON.stringify(r.usage)}`);
    if (s.finish[0] !== r.choices[0].finish_reason) fail(`${c.name}: streamed finish ${s.finish[0]}`);
    console.log(`ok ${c.name}: ${r.usage.prompt_tokens} + ${r.usage.completion_tokens} tokens, ${r.choices[0].finish_reason}, plain = streamed = moe-run`);
  }
  // the SDK surfaces the server's errors as APIError with the status
  try {
    await client.completions.create({ model: ids[0], prompt: "x", max_tokens: 4, temperature: -1 });
    fail("temperature -1 was accepted");
  } catch (e) {
    if (!(e instanceof OpenAI.APIError) || e.status !== 400) fail(`temperature -1: ${e}`);
    console.log(`ok bad field: ${e.status} ${e.message}`);
  }
  try {
    await client.completions.create({ model: "no-such-model", prompt: "x", max_tokens: 4 });
    fail("an unknown model was accepted");
  } catch (e) {
    if (!(e instanceof OpenAI.APIError) || e.status !== 404) fail(`unknown model: ${e}`);
    console.log(`ok unknown model: ${e.status}`);
  }
}

async function load() {
  const model = (await client.models.list()).data[0].id;
  const whole = cases.filter((c) => !c.abort_after);
  const cut = cases.filter((c) => c.abort_after);
  const t0 = Date.now();
  const results = await Promise.all(whole.map((c) => streamed("completion", { model, ...c.body })));
  let tokens = 0;
  whole.forEach((c, i) => {
    const r = results[i];
    const n = c.want.length;
    if (r.texts.length !== n) fail(`${c.name}: ${r.texts.length} choices, want ${n}`);
    for (let k = 0; k < n; k++)
      if (r.texts[k] !== c.want[k])
        fail(`${c.name} choice ${k}: ${JSON.stringify(r.texts[k])} != undisturbed ${JSON.stringify(c.want[k])}`);
    tokens += r.usage.completion_tokens;
  });
  console.log(`ok ${whole.length} concurrent streaming requests (${tokens} tokens in ${(Date.now() - t0) / 1000} s), each equal to its undisturbed run`);
  const aborted = await Promise.all(cut.map((c) => streamed("completion", { model, ...c.body }, c.abort_after)));
  if (aborted.some((a) => !a.aborted)) fail("a request meant to be cut finished first");
  console.log(`ok ${cut.length} clients disconnected mid-stream`);
}

try {
  await (mode === "basic" ? basic() : mode === "load" ? load() : Promise.reject(new Error(`unknown mode ${mode}`)));
} catch (e) {
  fail(e.stack || String(e));
}
