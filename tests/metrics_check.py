#!/usr/bin/python3
"""Checks a coordinator's metrics (Prometheus text, --metrics-file) against
its log lines and what the client received, after N requests that all ended
by length on an idle cluster of R ranks.

  metrics_check.py METRICS COORD_LOG CLIENT_OUT N RANKS

CLIENT_OUT: moe-client --file --ids-out output ("<line> <id> <id> ...").
Exit 0: all holds; 3: the ranks' last heartbeats still show the requests
(sequences, cache blocks): ask again; 1: wrong.
"""
import math
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

path, log_path, client_path, n_req, n_ranks = sys.argv[1:6]
n_req, n_ranks = int(n_req), int(n_ranks)

with open(path, encoding="utf-8") as f:
    text = f.read()
fams = {fam.name: fam for fam in text_string_to_metric_families(text)}

errors = []
not_yet = []


def fail(msg):
    errors.append(msg)


want = {
    "moe:num_requests_running": "gauge", "moe:num_requests_waiting": "gauge", "moe:kv_cache_usage_perc": "gauge",
    "moe:prompt_tokens": "counter", "moe:generation_tokens": "counter", "moe:request_success": "counter",
    "moe:time_to_first_token_seconds": "histogram", "moe:inter_token_latency_seconds": "histogram",
    "moe:e2e_request_latency_seconds": "histogram", "moe:request_queue_time_seconds": "histogram",
    "moe:request_prefill_time_seconds": "histogram", "moe:request_decode_time_seconds": "histogram",
    "moe:rank_live": "gauge", "moe:rank_sequences": "gauge", "moe:rank_cache_blocks_used": "gauge",
    "moe:rank_cache_blocks_total": "gauge", "moe:rank_step_seconds": "histogram",
    "moe:rank_exchange_bytes_sent": "counter", "moe:rank_exchange_bytes_received": "counter",
    "moe:rank_expert_tokens": "counter", "moe:expert_load_balancedness": "gauge",
}
for name, typ in want.items():
    if name not in fams:
        fail(f"{name} is missing")
    elif fams[name].type != typ:
        fail(f"{name} is a {fams[name].type}, not a {typ}")
if errors:
    print("\n".join(errors))
    sys.exit(1)

for fam in fams.values():
    for s in fam.samples:
        if "model_name" not in s.labels:
            fail(f"{s.name} has no model_name label")


def value(name, **labels):
    found = [s.value for fam in fams.values() for s in fam.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    if len(found) != 1:
        fail(f"{name}{labels}: {len(found)} samples")
        return math.nan
    return found[0]


def hist(name, stat, **labels):
    found = [s.value for s in fams[name].samples
             if s.name == name + "_" + stat and all(s.labels.get(k) == v for k, v in labels.items())]
    return found[0] if len(found) == 1 else math.nan


# the coordinator's log: one "request finished" line per request
reqs = []
with open(log_path, encoding="utf-8", errors="replace") as f:
    for line in f:
        if "request finished" not in line:
            continue
        kv = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line))
        reqs.append(kv)
if len(reqs) != n_req:
    fail(f"{len(reqs)} 'request finished' log lines, {n_req} requests")
for kv in reqs:
    for k in ("id", "client", "prompt_tokens", "output_tokens", "ttft_s", "total_s", "finish_reason"):
        if k not in kv:
            fail(f"the log line {kv} has no {k}")
    if kv.get("finish_reason") != "length":
        fail(f"request {kv.get('id')} ended by {kv.get('finish_reason')}, not length")
    if "moe-client@zmq:" not in kv.get("client", ""):
        fail(f"request {kv.get('id')}: client {kv.get('client')} does not name the client")
    try:
        if not 0 <= float(kv["ttft_s"]) <= float(kv["total_s"]):
            fail(f"request {kv['id']}: TTFT {kv['ttft_s']} is not within the total {kv['total_s']}")
    except (KeyError, ValueError):
        fail(f"request {kv.get('id')}: times are not numbers")
prompt = sum(int(kv.get("prompt_tokens", 0)) for kv in reqs)
output = sum(int(kv.get("output_tokens", 0)) for kv in reqs)

# what the client received: the same completion lengths
with open(client_path, encoding="utf-8") as f:
    got = sorted(len(line.split()) - 1 for line in f if line.strip())
if got != sorted(int(kv.get("output_tokens", -1)) for kv in reqs):
    fail(f"the client received {got} tokens, the log says {[kv.get('output_tokens') for kv in reqs]}")

# request metrics equal the requests' usage
if value("moe:prompt_tokens_total") != prompt:
    fail(f"prompt_tokens_total {value('moe:prompt_tokens_total')}, the requests' usage {prompt}")
if value("moe:generation_tokens_total") != output:
    fail(f"generation_tokens_total {value('moe:generation_tokens_total')}, the requests' usage {output}")
if value("moe:request_success_total", finished_reason="length") != n_req:
    fail("request_success_total{finished_reason=length} is not the request count")
for r in ("stop", "cancelled", "deadline", "error"):
    if value("moe:request_success_total", finished_reason=r) != 0:
        fail(f"request_success_total{{finished_reason={r}}} is not 0")
for h in ("time_to_first_token_seconds", "e2e_request_latency_seconds", "request_queue_time_seconds",
          "request_prefill_time_seconds", "request_decode_time_seconds"):
    if hist("moe:" + h, "count") != n_req:
        fail(f"{h}_count is {hist('moe:' + h, 'count')}, not {n_req}")
if hist("moe:inter_token_latency_seconds", "count") != output - n_req:
    fail(f"inter_token_latency_seconds_count {hist('moe:inter_token_latency_seconds', 'count')}, not {output - n_req}")
# buckets are cumulative and end at the count
for fam in fams.values():
    if fam.type != "histogram":
        continue
    series = {}
    for s in fam.samples:
        if s.name.endswith("_bucket"):
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            series.setdefault(key, []).append((float(s.labels["le"]), s.value))
    for key, b in series.items():
        vals = [v for _, v in b]
        if vals != sorted(vals) or b[-1][0] != math.inf:
            fail(f"{fam.name}{key}: buckets not cumulative or no +Inf")
if value("moe:num_requests_running") != 0 or value("moe:num_requests_waiting") != 0:
    fail("requests still running or waiting")

# per rank: alive, stepped; then idle again (sequences 0, cache free)
for k in map(str, range(n_ranks)):
    if value("moe:rank_live", rank=k) != 1:
        fail(f"rank {k} is not live")
    if not hist("moe:rank_step_seconds", "count", rank=k) > 0:
        not_yet.append(f"rank {k} reports no step")
    if not value("moe:rank_cache_blocks_total", rank=k) > 0:
        not_yet.append(f"rank {k} reports no cache blocks")
    if n_ranks > 1 and not value("moe:rank_exchange_bytes_sent_total", rank=k) > 0:
        not_yet.append(f"rank {k} sent no exchange bytes")
    if value("moe:rank_sequences", rank=k) != 0 or value("moe:rank_cache_blocks_used", rank=k) != 0:
        not_yet.append(f"rank {k}: {value('moe:rank_sequences', rank=k)} sequences, "
                       f"{value('moe:rank_cache_blocks_used', rank=k)} cache blocks in use")
if value("moe:kv_cache_usage_perc") != 0:
    not_yet.append(f"kv_cache_usage_perc {value('moe:kv_cache_usage_perc')}")

# expert work: every token fed visits the same number of experts in every
# MoE layer: per layer, the ranks' pairs add up to K x (prompt + fed back)
fed = prompt + output - n_req
layers = {}
for s in fams["moe:rank_expert_tokens"].samples:
    layers[s.labels["layer"]] = layers.get(s.labels["layer"], 0) + s.value
# (the ranks' heartbeats may not have caught up yet: then ask again)
if not layers:
    not_yet.append("no expert tokens reported")
for layer, total in layers.items():
    if total <= 0 or total % fed != 0 or total != next(iter(layers.values())):
        not_yet.append(f"layer {layer}: {total} (token, expert) pairs for {fed} tokens fed")
bal = [s for s in fams["moe:expert_load_balancedness"].samples]
if any(not (0 < s.value <= 1) for s in bal):
    fail(f"expert_load_balancedness out of (0, 1]: {[(s.labels.get('layer'), s.value) for s in bal]}")
# within the first minute the window is "since start": the balancedness is
# mean/max of the per-rank totals
per_rank = {}
for s in fams["moe:rank_expert_tokens"].samples:
    per_rank.setdefault(s.labels["layer"], []).append(s.value)
for s in bal:
    v = per_rank.get(s.labels["layer"], [0])
    if max(v) > 0 and abs(s.value - sum(v) / len(v) / max(v)) > 1e-9:
        not_yet.append(f"layer {s.labels['layer']}: balancedness {s.value}, per-rank totals {v}")
if len(bal) != len(layers) or not bal:
    not_yet.append(f"expert_load_balancedness: {[(s.labels.get('layer'), s.value) for s in bal]}")

if errors:
    print("\n".join(errors))
    sys.exit(1)
if not_yet:
    print("not yet: " + "; ".join(not_yet))
    sys.exit(3)
print(f"ok: {len(fams)} metric families parse; {n_req} requests, {prompt} prompt and {output} generated tokens "
      f"in the metrics as in the usage; ranks idle again; {len(layers)} MoE layers, "
      f"balancedness {[round(s.value, 3) for s in bal]}")
