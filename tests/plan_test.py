#!/usr/bin/env python3
"""plan_test.py BIN_DIR — moe-gguf --plan on header-faithful DeepSeek-V2-Lite
and DeepSeek-V3 files (moe-mkmodel --sparse: the real tensor table, the data
a file hole), checked against arithmetic done here from the published
configs and from this script's own reading of the GGUF tensor table:

* the tensor table: every name and shape the config implies, nothing else;
  in q8_0 files the bytes of the whole table from the config alone;
* per node: shared = every non-routed tensor, experts = the node's share
  under the contiguous placement (or a placement file with replicas),
  kv = the pool for max_seqs x (ctx + 1 + block) tokens of 576 float32 per
  layer and the prefix cache's bookkeeping per block, work within the
  engine's buffers, exchange the documented estimate;
* over the nodes: the weights sum to the tensor bytes plus (nodes - 1)
  copies of the shared part (plus the replicas), and the tensor bytes fit
  the file size less its header.
Exit 0 only if every check holds."""
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_read import read_gguf  # noqa: E402

BIN = sys.argv[1]
fails = 0
checks = 0


def check(cond, msg):
    global fails, checks
    checks += 1
    if not cond:
        fails += 1
        print("FAIL:", msg)


# Hugging Face config.json values (deepseek-ai/DeepSeek-V2-Lite, DeepSeek-V3)
CONFIGS = {
    "v2-lite": dict(num_hidden_layers=27, first_k_dense_replace=1, hidden_size=2048, num_attention_heads=16,
                    q_lora_rank=None, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                    n_routed_experts=64, num_experts_per_tok=6, n_shared_experts=2, moe_intermediate_size=1408,
                    intermediate_size=10944, vocab_size=102400, bias=False),
    "v3": dict(num_hidden_layers=61, first_k_dense_replace=3, hidden_size=7168, num_attention_heads=128,
               q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
               n_routed_experts=256, num_experts_per_tok=8, n_shared_experts=1, moe_intermediate_size=2048,
               intermediate_size=18432, vocab_size=129280, bias=True),
}

# ggml type: (elements a block, bytes a block)
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 10: (256, 84),
          11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 20: (32, 18), 23: (256, 136), 30: (1, 2)}


def expected_tensors(c):
    """name -> ne (ggml order) as llama.cpp's converter writes deepseek2."""
    D, H, V = c["hidden_size"], c["num_attention_heads"], c["vocab_size"]
    kv, nope, rope, v = c["kv_lora_rank"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    E, eff, S = c["n_routed_experts"], c["moe_intermediate_size"], c["n_shared_experts"]
    t = {"token_embd.weight": [D, V], "output_norm.weight": [D], "output.weight": [D, V]}
    for i in range(c["num_hidden_layers"]):
        b = "blk.%d." % i
        t[b + "attn_norm.weight"] = [D]
        if c["q_lora_rank"]:
            q = c["q_lora_rank"]
            t[b + "attn_q_a_norm.weight"] = [q]
            t[b + "attn_q_a.weight"] = [D, q]
            t[b + "attn_q_b.weight"] = [q, H * (nope + rope)]
        else:
            t[b + "attn_q.weight"] = [D, H * (nope + rope)]
        t[b + "attn_kv_a_norm.weight"] = [kv]
        t[b + "attn_kv_a_mqa.weight"] = [D, kv + rope]
        t[b + "attn_k_b.weight"] = [nope, kv, H]
        t[b + "attn_v_b.weight"] = [kv, v, H]
        t[b + "attn_output.weight"] = [H * v, D]
        t[b + "ffn_norm.weight"] = [D]
        if i < c["first_k_dense_replace"]:
            ff = c["intermediate_size"]
            t[b + "ffn_gate.weight"] = [D, ff]
            t[b + "ffn_down.weight"] = [ff, D]
            t[b + "ffn_up.weight"] = [D, ff]
        else:
            t[b + "ffn_gate_inp.weight"] = [D, E]
            if c["bias"]:
                t[b + "exp_probs_b.bias"] = [E]
            t[b + "ffn_gate_exps.weight"] = [D, eff, E]
            t[b + "ffn_down_exps.weight"] = [eff, D, E]
            t[b + "ffn_up_exps.weight"] = [D, eff, E]
            t[b + "ffn_gate_shexp.weight"] = [D, eff * S]
            t[b + "ffn_down_shexp.weight"] = [eff * S, D]
            t[b + "ffn_up_shexp.weight"] = [D, eff * S]
    return t


def read_table(path):
    """(data offset, alignment, {name: (ne, type, offset)}) from the GGUF header."""
    _, data, align, tensors = read_gguf(path)
    return data, align, tensors


def numel(ne):
    n = 1
    for x in ne:
        n *= x
    return n


def tbytes(ne, typ):
    be, bb = BLOCKS[typ]
    assert ne[0] % be == 0
    return numel(ne) // be * bb


def parse_plan(out):
    rows = {}
    lines = out.splitlines()
    i = lines.index("  bytes")
    for ln in lines[i + 2:]:
        f = ln.split()
        if not f or not f[0].isdigit():
            break
        rows[int(f[0])] = dict(zip(["shared", "experts", "kv", "work", "xchg", "total"], map(int, f[1:7])))
    gib = {}
    for ln in lines:
        f = ln.split()
        if len(f) == 7 and f[0].isdigit() and "." in f[6]:
            gib[int(f[0])] = float(f[6])
    return rows, gib


def xchg_estimate(c, R, N):
    K, D, E = c["num_experts_per_tok"], c["hidden_size"], c["n_routed_experts"]
    rows, pairs = N * min(K, R), N * K
    grown = rows * (2 * (D + K) + 3 * K) + pairs * (3 + 2 * D)
    return grown * 4 // 2 * 3 + (pairs * 2 * D + 2 * (E + 1)) * 4


def work_floor(c, N, T, ctx, dec_min=32):
    """Bytes of the engine's float and index buffers (not its small structs)."""
    D, H, V = c["hidden_size"], c["num_attention_heads"], c["vocab_size"]
    kv, nope, rope, v = c["kv_lora_rank"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    E, eff, S, K = c["n_routed_experts"], c["moe_intermediate_size"], c["n_shared_experts"], c["num_experts_per_tok"]
    ql = c["q_lora_rank"] or 0
    fmax = max(c["intermediate_size"], S * eff)
    NK = N * K
    fl = [N * D] * 3 + [max(N * ql, 1), N * H * (nope + rope), N * (kv + rope), N * rope, N * H * v, N * fmax,
                        N * fmax, N * D, N * E, NK, NK * D, NK * eff, NK * eff, NK * D, N * V]
    b = 4 * sum(fl) + N * 4 + N * 8 + 3 * NK * 4 + (E + 1) * 4
    # per thread: scores, the latent queries and contexts of one absorbed
    # task (up to 16 rows of a group of ceil(H / T) heads, at most 65536
    # floats unless one row's heads need more), the decompressed K|V, the softmax state
    hg = -(-H // T)
    lat = max(1, min(16, 65536 // (hg * kv))) * hg * kv
    per = max(ctx, 32) * H + 2 * lat + (ctx * (nope + v) if dec_min > 0 else 0) + 2 * H
    return b + 4 * per * T


def plan(path, nodes, *extra):
    r = subprocess.run([os.path.join(BIN, "moe-gguf"), "--plan", "--nodes", str(nodes)] + list(extra) + [path],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise SystemExit("moe-gguf --plan failed: " + r.stderr)
    return r.stdout


with tempfile.TemporaryDirectory() as tmp:
    for preset, c in CONFIGS.items():
        for ftype in ("q8_0", "q4_k_m"):
            path = os.path.join(tmp, "%s-%s.gguf" % (preset, ftype))
            subprocess.run([os.path.join(BIN, "moe-mkmodel"), "--preset", preset, "--type", ftype, "--sparse", "-o",
                            path], check=True, capture_output=True, timeout=60)
            size = os.path.getsize(path)
            used = os.stat(path).st_blocks * 512
            check(used < 64 << 20, "%s: the sparse file uses %d bytes of disk" % (path, used))
            data, align, table = read_table(path)
            want = expected_tensors(c)
            check(set(table) == set(want), "%s: tensor names differ from the config's: %s" % (
                path, sorted(set(table) ^ set(want))[:6]))
            for name, ne in want.items():
                if name in table:
                    check(table[name][0] == ne, "%s: %s has shape %s, config says %s" % (path, name, table[name][0], ne))
            sizes = {n: tbytes(ne, typ) for n, (ne, typ, off) in table.items()}
            total = sum(sizes.values())
            check(data + total <= size < data + total + align * len(table),
                  "%s: %d tensor bytes do not fill the file (%d, data at %d)" % (path, total, size, data))
            if ftype == "q8_0":
                # from the config alone: q8_0 matrices (34 bytes a 32), f32 vectors and router
                ind = sum(numel(ne) * 4 if len(ne) == 1 or n.endswith("ffn_gate_inp.weight") else numel(ne) // 32 * 34
                          for n, ne in want.items())
                check(total == ind, "%s: tensor bytes %d, config arithmetic %d" % (path, total, ind))
            exps = {n: s for n, s in sizes.items() if "_exps." in n}
            shared = total - sum(exps.values())
            E, L = c["n_routed_experts"], c["num_hidden_layers"]
            per_expert = sum(exps.values()) // E
            check(per_expert * E == sum(exps.values()), "%s: expert tensors do not split evenly" % path)
            for nodes in (2, 4, 8):
                ctx, seqs = 8192, 4
                # the float path's buffers (work_floor); the default int8 path adds its
                # quantized activations to work, and its exchange dispatches quantized
                # rows (a quarter of the floats' bytes, plus the quantized input rows):
                # less exchange memory on 2 or more ranks
                rows, gib = parse_plan(plan(path, nodes, "--ctx", str(ctx), "--seqs", str(seqs), "--exact"))
                q8rows, _ = parse_plan(plan(path, nodes, "--ctx", str(ctx), "--seqs", str(seqs)))
                for r, x in rows.items():
                    y = q8rows[r]
                    check(y["work"] > x["work"] and y["xchg"] < x["xchg"] and
                          all(y[k] == x[k] for k in ("shared", "experts", "kv")),
                          "%s/%d node %d: the int8 plan %s, the float plan %s" % (path, nodes, r, y, x))
                check(sorted(rows) == list(range(nodes)), "%s: %d nodes, rows %s" % (path, nodes, sorted(rows)))
                # --repack: work grows by the repacked copies of the dense Q8_0
                # and Q4_K matrices (kern.h's layouts: 16-row groups; Q8_0 per
                # block pair 64 bytes of scales and 512 bytes a block, Q4_K 2368
                # bytes a super-block), counted here from the table
                if nodes == 2:
                    rp_names = ("attn_q.", "attn_q_a.", "attn_q_b.", "attn_kv_a_mqa.", "attn_k_b.", "attn_v_b.",
                                "attn_output.", "ffn_gate.", "ffn_up.", "ffn_down.", "ffn_gate_shexp.",
                                "ffn_up_shexp.", "ffn_down_shexp.")
                    rp_want = 0
                    out_name = "output.weight" if "output.weight" in table else "token_embd.weight"  # tied
                    for n, (ne, typ, off) in table.items():
                        if not (n == out_name or (n.startswith("blk.") and any(("." + k) in n for k in rp_names))):
                            continue
                        nrows = 1
                        for d in ne[1:]:
                            nrows *= d
                        groups = -(-nrows // 16)
                        if typ == 8 and ne[0] % 32 == 0 and ne[0] <= 32768:
                            nb = ne[0] // 32
                            rp_want += groups * (-(-nb // 2) * 64 + nb * 512)
                        elif typ == 12 and ne[0] % 256 == 0 and ne[0] <= 32768:
                            rp_want += groups * (ne[0] // 256) * 2368
                    rpout = plan(path, nodes, "--ctx", str(ctx), "--seqs", str(seqs), "--repack")
                    rprows, _ = parse_plan(rpout)
                    for r, y in rprows.items():
                        check(y["work"] == q8rows[r]["work"] + rp_want and y["total"] == q8rows[r]["total"] + rp_want,
                              "%s/%d node %d: --repack work %d, int8 work %d + repacked %d" % (
                                  path, nodes, r, y["work"], q8rows[r]["work"], rp_want))
                    check(("(%d bytes) a node" % rp_want) in rpout, "%s: --repack's line is missing or wrong" % path)
                    check(rp_want > 0, "%s: no dense Q8_0 or Q4_K matrix to repack" % path)
                wsum = 0
                for r, x in rows.items():
                    hosted = sum(1 for e in range(E) if e * nodes // E == r)
                    check(x["shared"] == shared, "%s/%d node %d: shared %d, want %d" % (path, nodes, r, x["shared"], shared))
                    check(x["experts"] == hosted * per_expert,
                          "%s/%d node %d: experts %d, want %d" % (path, nodes, r, x["experts"], hosted * per_expert))
                    blocks = -(-seqs * (ctx + 1 + 16) // 16)
                    pool = blocks * 16 * L * (c["kv_lora_rank"] + c["qk_rope_head_dim"]) * 4
                    tables = blocks * 4 + seqs * (-(-(ctx + 1) // 16)) * 4
                    # prefix caching's bookkeeping per block: 16 tokens (4 bytes) and tags
                    # (1 byte), up to two bucket heads (4 bytes), a record of at most 64 bytes
                    tables += blocks * (16 * 5 + 8)
                    check(pool + tables <= x["kv"] <= pool + tables + 64 * blocks + 4096 + 64 * seqs,
                          "%s/%d node %d: kv %d, pool %d + tables %d" % (path, nodes, r, x["kv"], pool, tables))
                    wf = work_floor(c, 1024, 1, ctx + 1)
                    check(wf <= x["work"] <= wf + 1024 * c["num_attention_heads"] * 32 + 64 * 1024,
                          "%s/%d node %d: work %d, buffers %d" % (path, nodes, r, x["work"], wf))
                    check(x["xchg"] == xchg_estimate(c, nodes, 1024),
                          "%s/%d node %d: exchange %d, want %d" % (path, nodes, r, x["xchg"], xchg_estimate(c, nodes, 1024)))
                    check(x["total"] == sum(x[k] for k in ("shared", "experts", "kv", "work", "xchg")),
                          "%s/%d node %d: total is not the sum" % (path, nodes, r))
                    check(abs(gib[r] - x["total"] / 2**30) < 0.006, "%s/%d node %d: GiB column" % (path, nodes, r))
                    wsum += x["shared"] + x["experts"]
                check(wsum == total + (nodes - 1) * shared,
                      "%s/%d: weights over nodes %d != tensor bytes %d + %d x shared %d" % (
                          path, nodes, wsum, total, nodes - 1, shared))
            if preset == "v2-lite" and ftype == "q4_k_m":
                # replicas: node 1 also hosts experts 0-7 of every layer
                pf = os.path.join(tmp, "repl.txt")
                with open(pf, "w") as f:
                    f.write("* 0 0-31\n* 1 32-63 0-7\n")
                rows, _ = parse_plan(plan(path, 2, "--placement", pf))
                check(rows[0]["experts"] == 32 * per_expert and rows[1]["experts"] == 40 * per_expert,
                      "placement file: experts %d / %d" % (rows[0]["experts"], rows[1]["experts"]))
                check(rows[0]["shared"] + rows[0]["experts"] + rows[1]["shared"] + rows[1]["experts"] ==
                      total + shared + 8 * per_expert, "placement file: weights do not add up")

    # bad flags end with a message, not a plan
    bad = [["--plan", "x.gguf"], ["--plan", "--nodes", "0", "x.gguf"], ["--plan", "--nodes", "99999", "x.gguf"],
           ["--nodes", "2", "x.gguf"], ["--plan", "--nodes", "2", "--ctx", "-5", "x.gguf"],
           ["--plan", "--nodes", "2", "--seqs", "1e9", "x.gguf"], ["--plan", "--summary", "--nodes", "2", "x.gguf"],
           ["--repack", "x.gguf"], ["--plan", "--nodes", "2", "--exact", "--repack", "x.gguf"]]
    for args in bad:
        r = subprocess.run([os.path.join(BIN, "moe-gguf")] + args, capture_output=True, text=True, timeout=60)
        check(r.returncode == 2 and "moe-gguf:" in r.stderr, "%s: exit %d, %r" % (args, r.returncode, r.stderr))
    r = subprocess.run([os.path.join(BIN, "moe-gguf"), "--plan", "--nodes", "65", os.path.join(tmp, "v2-lite-q8_0.gguf")],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "64 experts" in r.stderr, "65 nodes over 64 experts: %d %r" % (r.returncode, r.stderr))

print("plan_test: %d checks, %d failed" % (checks, fails))
sys.exit(1 if fails else 0)
