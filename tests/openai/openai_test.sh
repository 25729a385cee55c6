#!/usr/bin/env bash
# The official openai SDK (Node.js, tests/openai, pinned by its lockfile)
# against a real coordinator serving HTTP on an ephemeral loopback port and
# a real 2-rank worker job, on a tiny model carrying DeepSeek-V3's
# tokenizer and chat template.
#
#   openai_test.sh sdk    completions and chat completions, plain and
#                         streaming, greedy and seeded: text equal to
#                         moe-run's for the same prompt; the SDK's errors
#   openai_test.sh load   256 concurrent streaming requests (distinct
#                         prompts, lengths and seeds, greedy and seeded,
#                         some with n > 1) each equal to its undisturbed run
#                         (moe-worker --batch, one rank); then 64 clients
#                         that disconnect mid-stream leave no sequence behind
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
fx=${MOE_FIXTURES:?MOE_FIXTURES not set}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-openai.XXXXXX")
source "$here/../proc.sh"
[ -f "$here/node_modules/openai/package.json" ] || fail "the openai SDK is not installed (scripts/setup.sh runs npm ci in tests/openai)"
echo "node $(node --version), openai SDK $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$here/node_modules/openai/package.json")"

model=$tmp/m.gguf
"$bin/moe-mkmodel" --preset tiny --type q8_0 --vocab-from "$fx/tokenizer/deepseek-v3-vocab.gguf" -o "$model" 2>/dev/null \
  || fail "moe-mkmodel"

# start_cluster RANKS [coordinator flags...]: sets $url (http://127.0.0.1:PORT/v1)
start_cluster() {
  local ranks=$1; shift
  setsid "$bin/moe-coordinator" --model "$model" --listen none --http 127.0.0.1:0 --workers "ipc://$tmp/w" --ranks "$ranks" \
      "$@" > "$tmp/coord.out" 2> "$tmp/coord.err" &
  pids+=("$!")
  "$here/../mpirun.sh" "$ranks" 300 "$bin/moe-worker" --model "$model" --coordinator "ipc://$tmp/w" --ignore-eos \
      --max-seqs 128 > "$tmp/worker.out" 2> "$tmp/worker.err" &
  pids+=("$!")
  wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  url=$(grep -Eo 'http://127\.0\.0\.1:[0-9]+' "$tmp/coord.out" | head -1)
  [ -n "$url" ] || fail "the ready line names no HTTP address: $(cat "$tmp/coord.out")"
  url=$url/v1
}

case ${1:?usage: openai_test.sh sdk|load} in
sdk)
  start_cluster 2
  # expected texts: moe-run on the same prompts (--ignore-eos, as the worker job)
  run() { "$bin/moe-run" --model "$model" --text --ignore-eos "$@" || fail "moe-run $*"; }
  printf '%s\n' '{"messages":[{"role":"user","content":"Hello"}]}' > "$tmp/c1.json"
  printf '%s\n' '{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+2?"}]}' > "$tmp/c2.json"
  python3 - "$tmp/cases.json" \
    "$(run --prompt 'Once upon a time' -n 12)" \
    "$(run --prompt 'The capital of France' -n 9 --temp 0.8 --seed 7)" \
    "$(run --tokens 0,1000,2000,3000 -n 6 --temp 1.1 --top-k 40 --seed 99)" \
    "$(run --chat "$tmp/c1.json" -n 8)" \
    "$(run --chat "$tmp/c2.json" -n 10 --temp 0.7 --top-p 0.9 --seed 3)" <<'EOF' || fail "cases"
import json, sys
out, a, b, c, d, e = sys.argv[1:]
cases = [
  {"name": "greedy completion", "kind": "completion", "body": {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0}, "want": a},
  {"name": "seeded completion", "kind": "completion", "body": {"prompt": "The capital of France", "max_tokens": 9, "temperature": 0.8, "seed": 7}, "want": b},
  {"name": "token-id prompt", "kind": "completion", "body": {"prompt": [0, 1000, 2000, 3000], "max_tokens": 6, "temperature": 1.1, "top_k": 40, "seed": 99}, "want": c},
  {"name": "greedy chat", "kind": "chat", "body": {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8, "temperature": 0}, "want": d},
  {"name": "seeded chat", "kind": "chat", "body": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}], "max_completion_tokens": 10, "temperature": 0.7, "top_p": 0.9, "seed": 3}, "want": e},
]
json.dump(cases, open(out, "w"))
EOF
  node "$here/sdk_test.mjs" basic "$url" "$tmp/cases.json" || fail "the openai SDK"
  ;;
load)
  # 256 requests that run whole (distinct prompts, lengths, seeds; every
  # 8th has n = 2 or 3) and 64 that the client cuts after 2 chunks
  python3 - "$tmp" <<'EOF' || fail "requests"
import json, random, sys
tmp = sys.argv[1]
rng = random.Random(11)
cases, lines = [], []
for i in range(256 + 64):
    ids = [rng.randrange(3, 128000) for _ in range(rng.randint(1, 24))]
    n_tok = rng.randint(4, 24)
    seeded = i % 3 != 0
    seed = 1000 + 17 * i
    temp = round(rng.uniform(0.6, 1.2), 2) if seeded else 0
    # seeded requests keep the top_k best: without it the sampler sorts the
    # whole 129,280-token vocabulary per token (~10 ms), which would make
    # this test minutes long
    top_k = rng.randint(20, 60) if seeded else 0
    n = (2 + (i // 8) % 2) if i % 8 == 4 and i < 256 else 1
    body = {"prompt": ids, "max_tokens": n_tok, "temperature": temp, "n": n}
    if seeded: body.update(seed=seed, top_k=top_k)
    case = {"name": f"request {i}", "body": body}
    if i >= 256:
        case["abort_after"] = 2
        body["max_tokens"] = 400
    else:
        # choice k of a request with seed s runs with seed s + k (docs/http.md)
        case["lines"] = list(range(len(lines), len(lines) + n))
        for k in range(n):
            opt = f" temp={temp} top_k={top_k} seed={seed + k}" if seeded else ""
            lines.append(f"ids:{','.join(map(str, ids))} {n_tok}{opt}")
    cases.append(case)
open(f"{tmp}/reqs", "w").write("\n".join(lines) + "\n")
json.dump(cases, open(f"{tmp}/cases.partial.json", "w"))
EOF
  # the undisturbed runs: the same requests as one batch on one rank
  "$here/../mpirun.sh" 1 300 "$bin/moe-worker" --model "$model" --batch "$tmp/reqs" --ignore-eos > "$tmp/batch.out" 2> "$tmp/batch.err" \
    || fail "moe-worker --batch"
  python3 - "$tmp" "$bin/moe-tokenize" "$model" <<'EOF' || fail "expected texts"
import json, subprocess, sys
tmp, tok, model = sys.argv[1:]
# moe-worker --batch prints one line of ids per request, in file order
by_line = [l.split() for l in open(f"{tmp}/batch.out").read().splitlines()]
if len(by_line) != sum(len(c.get("lines", [])) for c in json.load(open(f"{tmp}/cases.partial.json"))):
    sys.exit(f"moe-worker --batch printed {len(by_line)} lines")
cases = json.load(open(f"{tmp}/cases.partial.json"))
for c in cases:
    if "lines" in c:
        c["want"] = [subprocess.run([tok, "-m", model, "--decode", "--served"], input=" ".join(by_line[l]),
                                    capture_output=True, text=True, check=True).stdout for l in c.pop("lines")]
json.dump(cases, open(f"{tmp}/cases.json", "w"))
EOF
  # one host standing for 320 clients: no per-client limits (docs/limits.md)
  start_cluster 2 --queue 2048 --client-in-flight 0 --client-queue 0
  node "$here/sdk_test.mjs" load "$url" "$tmp/cases.json" || fail "concurrent requests"
  # every sequence freed: the ranks' heartbeats report no active sequence
  for _ in $(seq 1 200); do
    curl -fsS "${url%/v1}/metrics" > "$tmp/metrics" 2>/dev/null &&
      awk '/^moe:rank_sequences/ { n += $NF } END { exit !(NR > 0 && n == 0) }' "$tmp/metrics" && break
    sleep 0.05
  done
  grep '^moe:rank_sequences' "$tmp/metrics" || fail "no per-rank sequence metric"
  awk '/^moe:rank_sequences/ { n += $NF } END { exit n != 0 }' "$tmp/metrics" || fail "sequences left on the ranks after the disconnects"
  echo "ok: the 64 disconnected requests left no sequence on any rank"
  ;;
*) fail "unknown check $1" ;;
esac
