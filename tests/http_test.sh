#!/usr/bin/env bash
# The OpenAI-compatible HTTP API end to end: a real coordinator (--http on
# an ephemeral port, read from its own lines), a real mpirun worker job and
# curl.  The model is a generated one carrying DeepSeek-V3's tokenizer and
# chat template, so text and chat prompts work; every greedy or seeded
# answer is compared with moe-run's for the same prompt.
#
#   http_test.sh generate | logprobs | prefix | mtp | errors | health | disconnect | queuefull
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
fx=${MOE_FIXTURES:?MOE_FIXTURES not set}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-http.XXXXXX")
source "$here/proc.sh"

model=$tmp/m.gguf
"$bin/moe-mkmodel" --preset tiny --type q8_0 --vocab-from "$fx/tokenizer/deepseek-v3-vocab.gguf" -o "$model" 2>/dev/null \
  || fail "moe-mkmodel"

# start_coord [flags...]: the coordinator alone; $url from its first line
start_coord() {
  setsid "$bin/moe-coordinator" --model "$model" --listen none --http 127.0.0.1:0 --workers "ipc://$tmp/w" --ranks 1 \
      "$@" > "$tmp/coord.out" 2> "$tmp/coord.err" &
  coord=$!; pids+=("$coord")
  wait_for "$tmp/coord.err" "clients at http://" 30 || fail "the coordinator never listened"
  url=$(grep -Eo "http://127\.0\.0\.1:[0-9]+" "$tmp/coord.err" | head -1)
}
start_workers() {
  # shellcheck disable=SC2086 # worker_flags: words
  "$here/mpirun.sh" 1 300 "$bin/moe-worker" --model "$model" --coordinator "ipc://$tmp/w" --ignore-eos \
      ${worker_flags:-} > "$tmp/worker.out" 2> "$tmp/worker.err" &
  job=$!; pids+=("$job")
  wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  # the ready line names the bound port too
  [ "$(grep -Eo "http://127\.0\.0\.1:[0-9]+" "$tmp/coord.out")" = "$url" ] || fail "the ready line does not name $url"
}

# post PATH JSON: the body into $tmp/body, the status into $status
post() {
  status=$(curl -s -o "$tmp/body" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$2" "$url$1")
}
# the text of an SSE stream's choice $2 in file $1 (completions: .text, chat: .delta.content)
sse_text() {
  sed -n 's/^data: //p' "$1" | grep -v '^\[DONE\]$' |
    jq -j --argjson i "$2" '.choices[]? | select(.index == $i) | (.text // .delta.content // "")'
}
run_text() { "$bin/moe-run" --model "$model" --ignore-eos --text "$@" || fail "moe-run $*"; }

case ${1:?usage: http_test.sh CHECK} in
generate)
  start_coord
  start_workers
  # a whole completion and a stream: greedy, the text moe-run prints
  want=$(run_text --prompt "Hello world" -n 12)
  post /v1/completions '{"prompt": "Hello world", "max_tokens": 12, "temperature": 0}'
  [ "$status" = 200 ] || fail "completion: $status $(cat "$tmp/body")"
  [ "$(jq -r '.choices[0].text' "$tmp/body")" = "$want" ] || fail "completion '$(jq -r '.choices[0].text' "$tmp/body")' vs moe-run '$want'"
  [ "$(jq -r '.object, .choices[0].finish_reason, .usage.prompt_tokens, .usage.completion_tokens, .usage.total_tokens' "$tmp/body" | tr '\n' ' ')" \
    = "text_completion length 3 12 15 " ] || fail "completion fields: $(cat "$tmp/body")"
  curl -sN -D "$tmp/headers" "$url/v1/completions" \
      -d '{"prompt": "Hello world", "max_tokens": 12, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}' \
      > "$tmp/sse" || fail "stream"
  grep -qi '^content-type: text/event-stream' "$tmp/headers" || fail "stream content type: $(cat "$tmp/headers")"
  grep -qi '^transfer-encoding: chunked' "$tmp/headers" || fail "the stream is not chunked: $(cat "$tmp/headers")"
  [ "$(sse_text "$tmp/sse" 0)" = "$want" ] || fail "stream '$(sse_text "$tmp/sse" 0)' vs moe-run '$want'"
  [ "$(grep -c '^data: ' "$tmp/sse")" -ge 4 ] || fail "the stream came in fewer than 4 events"
  [ "$(tail -2 "$tmp/sse" | head -1)" = "data: [DONE]" ] || fail "the stream does not end with [DONE]"
  [ "$(sed -n 's/^data: //p' "$tmp/sse" | grep -v DONE | tail -1 | jq -c '[.choices, .usage.completion_tokens]')" = "[[],12]" ] \
    || fail "no usage chunk before [DONE]"
  [ "$(sed -n 's/^data: //p' "$tmp/sse" | grep -v DONE | jq -r '.choices[0].finish_reason // empty')" = "length" ] \
    || fail "the stream's finish_reason"
  echo "ok: a completion and a stream equal moe-run's greedy text: '$want'"

  # token ids as the prompt
  want=$("$bin/moe-run" --model "$model" --ignore-eos --text --tokens 0,19923,2058,11 -n 6) || fail "moe-run --tokens"
  post /v1/completions '{"prompt": [0, 19923, 2058, 11], "max_tokens": 6, "temperature": 0}'
  [ "$(jq -r '.choices[0].text' "$tmp/body")" = "$want" ] || fail "ids prompt: $(cat "$tmp/body") vs '$want'"
  # a stop string cuts the text before it, finish_reason stop
  long=$(run_text --prompt "Hello world" -n 12)
  stop=$(printf '%s' "$long" | cut -c6-8)
  before=${long%%"$stop"*}
  post /v1/completions "$(jq -nc --arg s "$stop" '{prompt: "Hello world", max_tokens: 12, temperature: 0, stop: [$s]}')"
  [ "$(jq -r '.choices[0].text' "$tmp/body")" = "$before" ] && [ "$(jq -r '.choices[0].finish_reason' "$tmp/body")" = stop ] \
    || fail "stop '$stop': $(cat "$tmp/body"), want '$before'"
  # echo: the prompt before the completion
  post /v1/completions '{"prompt": "Hello world", "max_tokens": 3, "temperature": 0, "echo": true}'
  case $(jq -r '.choices[0].text' "$tmp/body") in "Hello world"?*) ;; *) fail "echo: $(cat "$tmp/body")" ;; esac
  echo "ok: ids prompt, stop string ('$stop' -> '$before'), echo"

  # n = 2, seeded: choice i runs seed + i, as moe-run with that seed
  w0=$(run_text --prompt "Once" -n 8 --temp 0.9 --seed 41)
  w1=$(run_text --prompt "Once" -n 8 --temp 0.9 --seed 42)
  [ "$w0" != "$w1" ] || fail "seeds 41 and 42 gave one text: the n test proves nothing"
  post /v1/completions '{"prompt": "Once", "max_tokens": 8, "temperature": 0.9, "seed": 41, "n": 2}'
  [ "$(jq -r '.choices | length' "$tmp/body")" = 2 ] || fail "n=2: $(cat "$tmp/body")"
  [ "$(jq -r '.choices[] | select(.index == 0) | .text' "$tmp/body")" = "$w0" ] || fail "n=2 choice 0: $(cat "$tmp/body") vs '$w0'"
  [ "$(jq -r '.choices[] | select(.index == 1) | .text' "$tmp/body")" = "$w1" ] || fail "n=2 choice 1: $(cat "$tmp/body") vs '$w1'"
  [ "$(jq -r '.usage.completion_tokens' "$tmp/body")" = 16 ] || fail "n=2 usage: $(cat "$tmp/body")"
  curl -sN "$url/v1/completions" -d '{"prompt": "Once", "max_tokens": 8, "temperature": 0.9, "seed": 41, "n": 2, "stream": true}' > "$tmp/sse2"
  [ "$(sse_text "$tmp/sse2" 0)" = "$w0" ] && [ "$(sse_text "$tmp/sse2" 1)" = "$w1" ] || fail "n=2 stream: $(cat "$tmp/sse2")"
  echo "ok: n=2 gives seed 41's and seed 42's texts, whole and streamed (chunks carry their index)"

  # chat: the template's rendering, as moe-run --chat
  printf '%s\n' '{"messages": [{"role": "user", "content": "Hello"}]}' > "$tmp/chat.json"
  want=$(run_text --chat "$tmp/chat.json" -n 6)
  post /v1/chat/completions '{"messages": [{"role": "user", "content": "Hello"}], "max_completion_tokens": 6, "temperature": 0}'
  [ "$status" = 200 ] || fail "chat: $status $(cat "$tmp/body")"
  [ "$(jq -r '.object, .choices[0].message.role' "$tmp/body" | tr '\n' ' ')" = "chat.completion assistant " ] || fail "chat shape: $(cat "$tmp/body")"
  [ "$(jq -r '.choices[0].message.content' "$tmp/body")" = "$want" ] || fail "chat '$(jq -r '.choices[0].message.content' "$tmp/body")' vs moe-run '$want'"
  curl -sN "$url/v1/chat/completions" -d '{"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 6, "temperature": 0, "stream": true}' > "$tmp/sse3"
  [ "$(sse_text "$tmp/sse3" 0)" = "$want" ] || fail "chat stream '$(sse_text "$tmp/sse3" 0)' vs '$want'"
  [ "$(sed -n 's/^data: //p' "$tmp/sse3" | head -1 | jq -r '.object, .choices[0].delta.role' | tr '\n' ' ')" = "chat.completion.chunk assistant " ] \
    || fail "the first chat chunk: $(head -1 "$tmp/sse3")"
  echo "ok: chat completion, whole and streamed, equals moe-run --chat: '$want'"

  # /v1/models, /tokenize and /detokenize
  name=$(curl -s "$url/v1/models" | jq -r '.data[0].id')
  [ "$(curl -s "$url/v1/models" | jq -r '.object, .data[0].max_model_len' | tr '\n' ' ')" = "list 4096 " ] || fail "models: $(curl -s "$url/v1/models")"
  post /v1/completions "$(jq -nc --arg m "$name" '{model: $m, prompt: "Hi", max_tokens: 1}')"
  [ "$status" = 200 ] || fail "naming the served model '$name': $status"
  post /tokenize '{"prompt": "Hello world"}'
  [ "$(jq -c '.tokens' "$tmp/body")" = "[0,19923,2058]" ] && [ "$(jq -r '.count' "$tmp/body")" = 3 ] || fail "tokenize: $(cat "$tmp/body")"
  post /tokenize '{"prompt": "Hello world", "add_special_tokens": false}'
  toks=$(jq -c '.tokens' "$tmp/body")
  post /detokenize "{\"tokens\": $toks}"
  [ "$(jq -r '.prompt' "$tmp/body")" = "Hello world" ] || fail "detokenize($toks): $(cat "$tmp/body")"
  post /tokenize '{"messages": [{"role": "user", "content": "Hello"}]}'
  [ "$(jq -c '.tokens' "$tmp/body")" = "[0,128803,19923,128804]" ] || fail "tokenize messages: $(cat "$tmp/body")"
  echo "ok: /v1/models names '$name', tokenize/detokenize round trip ($toks)"

  # keep-alive: two requests, one connection
  curl -sv "$url/health" "$url/v1/models" -o /dev/null -o /dev/null 2> "$tmp/keepalive"
  grep -q "Re-using existing connection" "$tmp/keepalive" || fail "the connection was not kept alive"
  # /metrics: Prometheus text with the gauges
  curl -s "$url/metrics" > "$tmp/metrics"
  /usr/bin/python3 - "$tmp/metrics" "$name" <<'EOF' || fail "metrics: $(cat "$tmp/metrics")"
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
for g in ("moe:num_requests_running", "moe:num_requests_waiting"):
    s = fams[g].samples[0]
    assert s.labels == {"model_name": sys.argv[2]} and s.value == 0, (g, s)
EOF
  ! grep -q "a client" "$tmp/coord.err" || fail "a normal answer was logged as a client going: $(grep "a client" "$tmp/coord.err")"
  # each finished request's log line names its HTTP client (address and port)
  grep -Eq 'request finished id=cmpl-[^ ]* client=http:127\.0\.0\.1:[0-9]+ prompt_tokens=[0-9]+ output_tokens=[0-9]+ ' "$tmp/coord.err" \
      || fail "no request line naming its HTTP client: $(grep 'request finished' "$tmp/coord.err" | head -3)"
  echo "ok: keep-alive, /metrics parses as Prometheus text"
  ;;

logprobs)
  # Logprobs over HTTP are the ranks' own (a moe-worker --batch run writes
  # them, tests/worker_test.sh checks that against the definition): a
  # completion's tokens with 3 alternatives, the prompt scored with echo and
  # max_tokens 0 (lm-evaluation-harness's loglikelihood), and chat's shape.
  start_coord
  start_workers
  printf '%s\n' "ids:0,5,6,7,8 4 logprobs=3" "ids:0,5,6,7,8 0 logprobs=2 prompt_logprobs=1" > "$tmp/reqs"
  mkdir -p "$tmp/d"
  "$here/mpirun.sh" 1 120 "$bin/moe-worker" --model "$model" --batch "$tmp/reqs" --ignore-eos --dump-logits "$tmp/d" \
      > "$tmp/batch.out" 2> "$tmp/batch.err" || fail "moe-worker --batch"
  post /v1/completions '{"prompt": [0, 5, 6, 7, 8], "max_tokens": 4, "temperature": 0, "logprobs": 3}'
  [ "$status" = 200 ] || fail "logprobs: $status $(cat "$tmp/body")"
  cp "$tmp/body" "$tmp/gen.json"
  post /v1/completions '{"prompt": [0, 5, 6, 7, 8], "max_tokens": 0, "echo": true, "logprobs": 2}'
  [ "$status" = 200 ] || fail "scoring: $status $(cat "$tmp/body")"
  cp "$tmp/body" "$tmp/score.json"
  post /v1/chat/completions '{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "temperature": 0, "logprobs": true, "top_logprobs": 2}'
  [ "$status" = 200 ] || fail "chat logprobs: $status $(cat "$tmp/body")"
  cp "$tmp/body" "$tmp/chat.json"
  python3 - "$tmp" <<'PY' || fail "logprobs differ from the ranks' batch run"
import json, struct, sys
tmp = sys.argv[1]
f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]
def batch(i):  # "T|P index id logprob id:lp ..." per position
    rows = []
    for line in open(f"{tmp}/d/req{i}.logprobs"):
        k, _, _, lp, *top = line.split()
        rows.append((k, f32(float(lp)), sorted(f32(float(t.split(":")[1])) for t in top)))
    return rows
pairs = lambda obj: sorted(f32(v) for _, v in obj)  # alternatives may share a text: keep every value
load = lambda p: json.load(open(p), object_pairs_hook=lambda kv: kv if kv and isinstance(kv[0][1], float) else dict(kv))
gen = load(f"{tmp}/gen.json")["choices"][0]
want = batch(0)
lp = gen["logprobs"]
assert len(lp["tokens"]) == 4 == len(want), (lp, want)
for i, (k, v, top) in enumerate(want):
    assert k == "T" and f32(lp["token_logprobs"][i]) == v, (i, lp["token_logprobs"][i], v)
    assert pairs(lp["top_logprobs"][i]) == top, (i, lp["top_logprobs"][i], top)
score = load(f"{tmp}/score.json")
ch = score["choices"][0]
assert score["usage"]["completion_tokens"] == 0 and ch["finish_reason"] == "length", score
slp, want = ch["logprobs"], batch(1)
assert slp["token_logprobs"][0] is None and len(slp["token_logprobs"]) == 5 == len(want) + 1, (slp, want)
for i, (k, v, top) in enumerate(want):
    assert k == "P" and f32(slp["token_logprobs"][i + 1]) == v, (i, slp["token_logprobs"][i + 1], v)
    assert pairs(slp["top_logprobs"][i + 1]) == top, (i, slp["top_logprobs"][i + 1], top)
chat = json.load(open(f"{tmp}/chat.json"))["choices"][0]["logprobs"]["content"]
assert len(chat) == 3, chat
for t in chat:
    assert t["logprob"] <= 0 and len(t["top_logprobs"]) == 2 and t["top_logprobs"][0]["logprob"] >= t["top_logprobs"][1]["logprob"], t
    assert bytes(t["bytes"]).decode("utf-8", "replace") == t["token"] or "\ufffd" in bytes(t["bytes"]).decode("utf-8", "replace"), t
print(f"ok: 4 completion tokens and 4 scored prompt positions equal the ranks' batch logprobs (float32 bits); chat logprobs {len(chat)} tokens")
PY
  ;;
prefix)
  # Prefix caching: a prompt that starts like an earlier one reuses the
  # rank's cached blocks (usage.prompt_tokens_details.cached_tokens: whole
  # 16-token blocks, short of the last token), answers bitwise as its cold
  # run did (tokens and float logprobs), and /metrics counts the tokens.
  # Isolation: with --prefix-cache-scope client another client (another
  # source address) finds nothing, and a cache_salt shares only with the
  # same salt.
  start_coord --prefix-cache-scope client
  start_workers
  long=$(seq 10 59 | paste -sd, -)   # 50 ids
  short=$(seq 10 49 | paste -sd, -)  # its first 40
  ask() { # IDS NAME [SALT [CURL-FLAGS...]]
    local ids=$1 name=$2 salt=${3:-} body
    shift 3 2>/dev/null || shift $#
    body="{\"prompt\": [$ids], \"max_tokens\": 6, \"temperature\": 0, \"logprobs\": 2${salt:+, \"cache_salt\": \"$salt\"}}"
    status=$(curl -s "$@" -o "$tmp/$name.json" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$body" "$url/v1/completions")
    [ "$status" = 200 ] || fail "prefix $name: $status $(cat "$tmp/$name.json")"
  }
  ask "$long" cold          # nothing cached yet
  ask "$short" part         # 32 of its 40 from the first one's blocks
  ask "$long" warm          # 48 of 50
  ask "$short" other "" --interface 127.0.0.2   # another client: nothing
  ask "$long" salt_a a      # salted: nothing of the unsalted ones
  ask "$short" salt_b b     # another salt: nothing
  ask "$short" salt_a2 a    # the same salt: 32
  python3 - "$tmp" "$url" "$here" <<'PY' || fail "prefix caching over HTTP"
import json, sys
tmp, url = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
from metrics_wait import wait
names = ("cold", "part", "warm", "other", "salt_a", "salt_b", "salt_a2")
j = {k: json.load(open(f"{tmp}/{k}.json")) for k in names}
cached = {k: v["usage"]["prompt_tokens_details"]["cached_tokens"] for k, v in j.items()}
assert cached == {"cold": 0, "part": 32, "warm": 48, "other": 0, "salt_a": 0, "salt_b": 0, "salt_a2": 32}, cached
for k in ("warm", "salt_a"):
    assert j[k]["choices"] == j["cold"]["choices"], (k, j[k]["choices"], j["cold"]["choices"])
for k in ("part", "other", "salt_b", "salt_a2"):
    assert j[k]["choices"] == j["part"]["choices"], (k, j[k]["choices"], j["part"]["choices"])
want = {"moe:prefix_cache_queries_total": 310, "moe:prefix_cache_hits_total": 112}
m = wait(url, "moe:prefix_cache_", lambda m: m == want)
assert m == want, m
print(f"ok: cached_tokens {cached}; warm answers equal the cold ones (tokens, logprobs); metrics {m}")
PY
  post /v1/completions "{\"prompt\": [1, 2], \"max_tokens\": 1, \"cache_salt\": 5}"
  [ "$status" = 400 ] && grep -q cache_salt "$tmp/body" || fail "a numeric cache_salt: $status $(cat "$tmp/body")"
  ;;
mtp)
  # MTP speculative decoding served (moe-worker --mtp on a model with an MTP
  # block): the answers are moe-run's without MTP, greedy and seeded, and
  # /metrics counts the drafts
  model=$tmp/mtp.gguf
  "$bin/moe-mkmodel" --preset tiny --type q8_0 --mtp 1 --vocab-from "$fx/tokenizer/deepseek-v3-vocab.gguf" -o "$model" \
      2>/dev/null || fail "moe-mkmodel"
  start_coord
  worker_flags=--mtp start_workers
  want=$(run_text --prompt "Hello world" -n 24)
  post /v1/completions '{"prompt": "Hello world", "max_tokens": 24, "temperature": 0}'
  [ "$status" = 200 ] && [ "$(jq -r '.choices[0].text' "$tmp/body")" = "$want" ] || fail "greedy with MTP: $(cat "$tmp/body") vs '$want'"
  want=$(run_text --prompt "Hello world" -n 24 --temp 0.9 --seed 7)
  post /v1/completions '{"prompt": "Hello world", "max_tokens": 24, "temperature": 0.9, "seed": 7}'
  [ "$status" = 200 ] && [ "$(jq -r '.choices[0].text' "$tmp/body")" = "$want" ] || fail "seeded with MTP: $(cat "$tmp/body") vs '$want'"
  python3 - "$url" "$here" <<'PY' || fail "spec decode metrics"
import sys
url = sys.argv[1]
sys.path.insert(0, sys.argv[2])
from metrics_wait import wait
m = wait(url, "moe:spec_decode_", lambda m: m.get("moe:spec_decode_num_draft_tokens_total", 0) >= 40)
d, a = m.get("moe:spec_decode_num_draft_tokens_total", 0), m.get("moe:spec_decode_num_accepted_tokens_total", -1)
assert d >= 40 and 0 <= a <= d and m.get("moe:spec_decode_num_accepted_tokens_per_pos_total") == a, m
print(f"ok: greedy and seeded answers with MTP equal moe-run's without it; metrics {m}")
PY
  ;;
errors)
  start_coord --api-key sekrit --max-body 4096
  start_workers
  auth=(-H "Authorization: Bearer sekrit")
  : > "$tmp/messages"
  # expect STATUS PARAM PATH BODY: the status, an error body of the API's shape naming PARAM ("-": null)
  expect() {
    local st=$1 param=$2 path=$3 body=$4
    status=$(curl -s -o "$tmp/body" -w '%{http_code}' "${auth[@]}" --data-binary "$body" "$url$path")
    [ "$status" = "$st" ] || fail "$path $body: status $status, want $st: $(cat "$tmp/body")"
    jq -e '.error | (.message | type) == "string" and (.type | type) == "string" and has("param") and has("code")' \
        "$tmp/body" > /dev/null || fail "$path $body: not an error body: $(cat "$tmp/body")"
    local got; got=$(jq -r '.error.param // "-"' "$tmp/body")
    [ "$got" = "$param" ] || fail "$path $body: param '$got', want '$param': $(cat "$tmp/body")"
    jq -r '.error.message' "$tmp/body" >> "$tmp/messages"
    n_cases=$((n_cases + 1))
  }
  n_cases=0
  c=/v1/completions
  expect 400 prompt $c '{"max_tokens": 2}'
  expect 400 prompt $c '{"prompt": 5}'
  expect 400 prompt $c '{"prompt": []}'
  expect 400 prompt $c '{"prompt": [1, 2, 99999999]}'
  expect 400 prompt $c '{"prompt": [1, -2]}'
  expect 400 prompt $c '{"prompt": [1, "a"]}'
  expect 400 prompt $c '{"prompt": ["a", "b"]}'
  expect 400 - $c '{"prompt": "a\u0000b"}'
  expect 400 model $c '{"prompt": "a", "model": 5}'
  expect 400 max_tokens $c '{"prompt": "a", "max_tokens": -1}'
  expect 400 max_tokens $c '{"prompt": "a", "max_tokens": "many"}'
  expect 400 max_tokens $c '{"prompt": "a", "max_tokens": 2.5}'
  expect 400 max_tokens $c '{"prompt": "a", "max_tokens": 0}'
  expect 400 temperature $c '{"prompt": "a", "temperature": -1}'
  expect 400 temperature $c '{"prompt": "a", "temperature": "hot"}'
  expect 400 top_p $c '{"prompt": "a", "top_p": 0}'
  expect 400 top_p $c '{"prompt": "a", "top_p": 1.5}'
  expect 400 top_k $c '{"prompt": "a", "top_k": -2}'
  expect 400 top_k $c '{"prompt": "a", "top_k": 1.5}'
  expect 400 min_p $c '{"prompt": "a", "min_p": 2}'
  expect 400 repetition_penalty $c '{"prompt": "a", "repetition_penalty": 0}'
  expect 400 seed $c '{"prompt": "a", "seed": -1}'
  expect 400 seed $c '{"prompt": "a", "seed": "x"}'
  expect 400 stop $c '{"prompt": "a", "stop": 5}'
  expect 400 stop $c '{"prompt": "a", "stop": [""]}'
  expect 400 stop $c '{"prompt": "a", "stop": [1]}'
  expect 400 stop $c "{\"prompt\": \"a\", \"stop\": $(jq -nc '[range(17) | tostring]')}"
  expect 400 n $c '{"prompt": "a", "n": 0}'
  expect 400 n $c '{"prompt": "a", "n": 17}'
  expect 400 echo $c '{"prompt": "a", "echo": "yes"}'
  expect 400 logprobs $c '{"prompt": "a", "logprobs": 21}'
  expect 400 logprobs $c '{"prompt": "a", "logprobs": -1}'
  expect 400 stream $c '{"prompt": "a", "stream": 1}'
  expect 400 stream_options $c '{"prompt": "a", "stream_options": {"include_usage": true}}'
  expect 400 stream_options $c '{"prompt": "a", "stream": true, "stream_options": 3}'
  expect 400 include_usage $c '{"prompt": "a", "stream": true, "stream_options": {"include_usage": 1}}'
  expect 400 ignore_eos $c '{"prompt": "a", "ignore_eos": "no"}'
  expect 400 min_tokens $c '{"prompt": "a", "min_tokens": -1}'
  expect 400 min_tokens $c '{"prompt": "a", "max_tokens": 2, "min_tokens": 3}'
  expect 400 user $c '{"prompt": "a", "user": 5}'
  expect 404 model $c '{"prompt": "a", "model": "gpt-4"}'
  # refused by the shared request checks (request.c), after tokenization
  expect 400 - $c '{"prompt": "a b c", "max_tokens": 4095}'
  h=/v1/chat/completions
  expect 400 messages $h '{"max_tokens": 2}'
  expect 400 messages $h '{"messages": "hi"}'
  expect 400 messages $h '{"messages": []}'
  expect 400 messages $h '{"messages": [5]}'
  expect 400 messages $h '{"messages": [{"content": "hi"}]}'
  expect 400 messages $h '{"messages": [{"role": "robot", "content": "hi"}]}'
  expect 400 messages $h '{"messages": [{"role": "user", "content": 5}]}'
  expect 400 messages $h '{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}'
  expect 400 max_completion_tokens $h '{"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 0}'
  expect 400 logprobs $h '{"messages": [{"role": "user", "content": "hi"}], "logprobs": 3}'
  expect 400 top_logprobs $h '{"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}'
  expect 400 top_logprobs $h '{"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 21}'
  expect 400 add_generation_prompt $h '{"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": 1}'
  expect 400 prompt /tokenize '{"text": "a"}'
  expect 400 prompt /tokenize '{"prompt": 5}'
  expect 400 tokens /detokenize '{"tokens": [1, 999999999]}'
  expect 400 tokens /detokenize '{"tokens": "1"}'
  # bad JSON, a truncated body, not an object, over the limit
  expect 400 - $c '{"prompt": "a",}'
  expect 400 - $c '{"prompt": "a", "max_tokens'
  expect 400 - $c '[1, 2]'
  expect 400 - $c '{"prompt": "a", "prompt": "b"}'
  expect 413 - $c "{\"prompt\": \"$(head -c 5000 /dev/zero | tr '\0' a)\"}"
  # a body shorter than its Content-Length, then the connection closes: no
  # answer is possible; the server drops it and serves the next
  port=${url##*:}
  exec 3<> "/dev/tcp/127.0.0.1/$port"
  printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekrit\r\nContent-Length: 100\r\n\r\n{"prompt": "a"' >&3
  exec 3>&-
  dups=$(sort "$tmp/messages" | uniq -d)
  [ -z "$dups" ] || fail "two bad inputs share one message: $dups"
  echo "ok: $n_cases bad inputs, each its own status, error body, param and message"
  # unknown fields are ignored (vLLM's rule)
  post_auth() { status=$(curl -s -o "$tmp/body" -w '%{http_code}' "${auth[@]}" --data-binary "$2" "$url$1"); }
  post_auth $c '{"prompt": "a", "max_tokens": 1, "logit_bias": {}, "best_of": 3, "whatever": [1]}'
  # (the server also survived the cut body above)
  [ "$status" = 200 ] || fail "unknown fields: $status $(cat "$tmp/body")"
  # methods, paths, keys
  st() { curl -s -o "$tmp/body" -w '%{http_code}' "$@"; }
  [ "$(st -D "$tmp/h405" "${auth[@]}" "$url$c")" = 405 ] || fail "GET $c: $(cat "$tmp/body")"
  grep -qi '^allow: POST' "$tmp/h405" || fail "405 without Allow: $(cat "$tmp/h405")"
  grep -q '"type":"method_not_allowed"' "$tmp/body" || fail "405 body: $(cat "$tmp/body")"
  [ "$(st -X POST "$url/health")" = 405 ] || fail "POST /health"
  [ "$(st -X DELETE "${auth[@]}" "$url/v1/models")" = 405 ] || fail "DELETE /v1/models"
  [ "$(st "${auth[@]}" "$url/v1/nothing")" = 404 ] || fail "unknown path"
  [ "$(st -d '{"prompt": "a", "max_tokens": 1}' "$url$c")" = 401 ] || fail "no key"
  [ "$(st -H "Authorization: Bearer wrong" -d '{"prompt": "a", "max_tokens": 1}' "$url$c")" = 401 ] || fail "wrong key"
  [ "$(st -H "Authorization: Bearer sekrit2" "$url/v1/models")" = 401 ] || fail "a longer wrong key"
  [ "$(st -H "Authorization: Basic sekrit" "$url/v1/models")" = 401 ] || fail "not a bearer key"
  [ "$(st "${auth[@]}" "$url/v1/models")" = 200 ] || fail "the right key"
  [ "$(st "$url/health")" = 200 ] || fail "/health needs no key"
  grep -Eq "Segmentation|ASSERT|internal" "$tmp/coord.err" && fail "the coordinator complained: $(cat "$tmp/coord.err")"
  kill -0 "$coord" || fail "the coordinator died"
  echo "ok: 405 (with Allow), 404, 401 for a missing, wrong or non-bearer key; /health open"
  ;;

health)
  start_coord
  # before the ranks say hello
  [ "$(curl -s -o "$tmp/body" -w '%{http_code}' "$url/health")" = 503 ] || fail "health while starting: $(cat "$tmp/body")"
  jq -r '.error.message' "$tmp/body" | grep -q "^starting" || fail "no reason while starting: $(cat "$tmp/body")"
  echo "ok: starting: $(jq -r '.error.message' "$tmp/body")"
  start_workers
  [ "$(curl -s -o "$tmp/body" -w '%{http_code}' "$url/health")" = 200 ] || fail "health when ready: $(cat "$tmp/body")"
  # draining: a long stream runs, SIGTERM, health is 503 and new requests are refused
  curl -sN "$url/v1/completions" -d '{"prompt": "Hi", "max_tokens": 2500, "stream": true}' > "$tmp/long.out" &
  long=$!; pids+=("$long")
  wait_for "$tmp/long.out" "^data: " 30 || fail "the long stream never started"
  kill -TERM "$coord"
  wait_for "$tmp/coord.err" "draining" 10 || fail "no drain"
  [ "$(curl -s -o "$tmp/body" -w '%{http_code}' "$url/health")" = 503 ] || fail "health while draining: $(cat "$tmp/body")"
  jq -r '.error.message' "$tmp/body" | grep -q "^draining" || fail "no reason while draining: $(cat "$tmp/body")"
  echo "ok: draining: $(jq -r '.error.message' "$tmp/body")"
  [ "$(curl -s -o "$tmp/body" -w '%{http_code}' -d '{"prompt": "a"}' "$url/v1/completions")" = 503 ] \
    || fail "a new request while draining: $(cat "$tmp/body")"
  grep -q '"code":"shutting_down"' "$tmp/body" || fail "refusal while draining: $(cat "$tmp/body")"
  wait "$long" || fail "the long stream failed"
  [ "$(tail -2 "$tmp/long.out" | head -1)" = "data: [DONE]" ] || fail "the long stream was cut: $(tail -3 "$tmp/long.out")"
  wait "$coord"; rc=$?
  [ "$rc" = 0 ] || fail "the coordinator exited $rc"
  echo "ok: the stream in flight finished, then the coordinator exited 0"
  ;;

disconnect)
  start_coord --worker-timeout-ms 1500
  start_workers
  curl -sN "$url/v1/completions" -d '{"prompt": "Hi", "max_tokens": 4000, "stream": true}' > "$tmp/cut.out" &
  cut=$!; pids+=("$cut")
  wait_for "$tmp/cut.out" "^data: " 30 || fail "the stream never started"
  wait_for "$tmp/coord.err" "rank 0: 1 active" 10 || fail "the sequence never showed as active"
  kill -KILL "$cut"
  wait_for "$tmp/coord.err" "a client disconnected before its answer was complete; released 1" 10 \
    || fail "the disconnect did not release the request"
  # the rank's heartbeat shows the sequence gone: 0 active after 1 active
  gone() { awk 'index($0, "rank 0: 1 active") { seen = 1 } seen && index($0, "rank 0: 0 active") { found = 1 } END { exit !found }' "$tmp/coord.err"; }
  for _ in $(seq 1 200); do gone && break; sleep 0.05; done
  gone || fail "the sequence was not released on the rank"
  [ "$(curl -s "$url/metrics" | grep '^moe:num_requests_running' | awk '{ print $2 }')" = 0 ] || fail "still running per /metrics"
  echo "ok: a client gone mid-stream freed its sequence on the rank"
  # no live rank: 503 with the reason
  pkill -KILL -f "^$bin/moe-worker --model $model --coordinator ipc://$tmp/w"
  for _ in $(seq 1 200); do
    [ "$(curl -s -o "$tmp/body" -w '%{http_code}' "$url/health")" = 503 ] && break
    sleep 0.05
  done
  jq -r '.error.message' "$tmp/body" | grep -q "no worker rank is alive" || fail "health with no rank: $(cat "$tmp/body")"
  echo "ok: no live rank: $(jq -r '.error.message' "$tmp/body")"
  ;;
queuefull)
  # one running, one queued: the next is 429 queue_full; with n=2 the choice
  # that found room is released with the refusal
  start_coord --queue 1 --max-running 1
  start_workers
  curl -sN "$url/v1/completions" -d '{"prompt": "Hi", "max_tokens": 4000, "stream": true}' > "$tmp/a.out" &
  a=$!; pids+=("$a")
  wait_for "$tmp/a.out" "^data: " 30 || fail "the first stream never started"
  curl -sN "$url/v1/completions" -d '{"prompt": "Ho", "max_tokens": 10, "stream": true}' > "$tmp/b.out" &
  b=$!; pids+=("$b")
  waiting() { curl -s "$url/metrics" | awk '$1 ~ /^moe:num_requests_waiting/ { print $2 }'; }
  for _ in $(seq 1 200); do [ "$(waiting)" = 1 ] && break; sleep 0.05; done
  [ "$(waiting)" = 1 ] || fail "the second request never queued"
  post /v1/completions '{"prompt": "a", "max_tokens": 1}'
  [ "$status" = 429 ] && grep -q '"code":"queue_full"' "$tmp/body" || fail "a third request: $status $(cat "$tmp/body")"
  kill -KILL "$b"
  for _ in $(seq 1 200); do [ "$(waiting)" = 0 ] && break; sleep 0.05; done
  post /v1/completions '{"prompt": "a", "max_tokens": 1, "n": 2}'
  [ "$status" = 429 ] || fail "n=2 with room for one: $status $(cat "$tmp/body")"
  wait_for "$tmp/coord.err" "a client had a choice refused; released 1" 10 || fail "the admitted choice was not released"
  [ "$(waiting)" = 0 ] || fail "the admitted choice stayed queued"
  echo "ok: a full queue is 429 queue_full; a refused choice releases its admitted sibling"
  ;;
*) echo "unknown check $1"; exit 2 ;;
esac
