#!/usr/bin/env python3
"""mtp_ref.py — an independent float64 reference of a deepseek2 model and of
its multi-token-prediction (MTP) block, in numpy, reading the GGUF file on
its own (tests/gguf_read.py; F32 and F16 tensors only).  It shares no code
with the engine: the model's math is the fixtures' README, the MTP block's
docs/engine.md "MTP".

  mtp_ref.py fixture FIXTURES MODEL        the reference's own check: its logits for the
      fixture prompt and greedy tokens (teacher forcing) against expected/MODEL.exact
      (the fixtures' independent float64 implementation); max |d| <= 1e-5 on every row
  mtp_ref.py compare MODEL.gguf DIR TOKENS   the engine's rows (tests/mtp_dump.c wrote
      DIR/trunk.f32, one row per prompt position, and DIR/mtp.f32, the MTP block's draft
      row of each position but the last) against this reference: max |d| per row <= TOL
      (default 2e-3, the README's F32 rule; the run prints the largest d)

Exit 0 only if every row is within its bound."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_read import read_gguf  # noqa: E402


class Model:
    def __init__(self, path):
        kv, data, _, tensors = read_gguf(path)
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        self.kv, self.tensors = kv, tensors

        def load(name):
            ne, typ, off = tensors[name]
            count = int(np.prod(ne))
            dt = {0: "<f4", 1: "<f2"}.get(typ)
            assert dt, f"{name}: tensor type {typ} (the reference reads F32 and F16)"
            a = np.frombuffer(raw, dtype=dt, count=count, offset=data + off)
            return a.reshape(list(reversed(ne))).astype(np.float64)

        self.t = load
        A = "deepseek2."
        g = lambda k, d=None: kv.get(A + k, d)
        n_block = g("block_count")
        self.n_mtp = g("nextn_predict_layers", 0)
        self.n_layer = n_block - self.n_mtp
        self.H = g("attention.head_count")
        self.eps = g("attention.layer_norm_rms_epsilon")
        self.base = g("rope.freq_base", 10000.0)
        self.n_dense = g("leading_dense_block_count", 0)
        self.K = g("expert_used_count", 0)
        self.gating = g("expert_gating_func", 1)
        self.G = g("expert_group_count", 1)
        self.G_used = g("expert_group_used_count", 1)
        self.w_norm = g("expert_weights_norm", False)
        self.w_scale = g("expert_weights_scale", 1.0)
        self.yarn = g("rope.scaling.type", "none") == "yarn"
        if self.yarn:
            self.y_factor = g("rope.scaling.factor")
            self.y_orig = g("rope.scaling.original_context_length")
            self.y_logmul = g("rope.scaling.yarn_log_multiplier", 0.0)
        # shapes from the tensors themselves
        self.kv_lora = tensors["blk.0.attn_kv_a_norm.weight"][0][0]
        self.rope = tensors["blk.0.attn_kv_a_mqa.weight"][0][1] - self.kv_lora
        qname = "blk.0.attn_q_b.weight" if "blk.0.attn_q_b.weight" in tensors else "blk.0.attn_q.weight"
        self.nope = tensors[qname][0][1] // self.H - self.rope
        self.fused = "blk.0.attn_k_b.weight" not in tensors
        self.v = (tensors["blk.0.attn_kv_b.weight"][0][1] // self.H - self.nope if self.fused
                  else tensors["blk.0.attn_v_b.weight"][0][1])
        scale = 1.0 / np.sqrt(self.nope + self.rope)
        if self.yarn and self.y_factor > 1:
            scale *= (1.0 + self.y_logmul * np.log(self.y_factor)) ** 2
        self.scale = scale
        self.emb = load("token_embd.weight")
        self.out = load("output.weight") if "output.weight" in tensors else self.emb

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope_cs(self, p):
        n = self.rope
        i = np.arange(n // 2)
        extrap = p * self.base ** (-2.0 * i / n)
        if not self.yarn:
            return np.cos(extrap), np.sin(extrap)
        corr = lambda b: n * np.log(self.y_orig / (2 * np.pi * b)) / (2 * np.log(self.base))
        low, high = max(0.0, np.floor(corr(32))), min(n - 1.0, np.ceil(corr(1)))
        gamma = 1 - np.clip((i - low) / max(0.001, high - low), 0, 1)
        th = extrap / self.y_factor * (1 - gamma) + extrap * gamma
        return np.cos(th), np.sin(th)

    def rot(self, x, pos):  # x [..., T, rope]: adjacent pairs rotated by each row's position
        out = x.copy()
        for t, p in enumerate(pos):
            c, s = self.rope_cs(p)
            a, b = x[..., t, 0::2], x[..., t, 1::2]
            out[..., t, 0::2] = a * c - b * s
            out[..., t, 1::2] = a * s + b * c
        return out

    def swiglu(self, x, gate, up, down):
        gx = x @ gate.T
        return (gx / (1 + np.exp(-gx)) * (x @ up.T)) @ down.T

    def block(self, il, x, pos):
        """One transformer block over the rows x [T][dim] at positions pos (causal)."""
        t = lambda s: self.t(f"blk.{il}.{s}")
        H, T = self.H, x.shape[0]
        h = self.rms(x, t("attn_norm.weight"))
        if f"blk.{il}.attn_q_a.weight" in self.tensors:
            q = self.rms(h @ t("attn_q_a.weight").T, t("attn_q_a_norm.weight")) @ t("attn_q_b.weight").T
        else:
            q = h @ t("attn_q.weight").T
        q = q.reshape(T, H, self.nope + self.rope).transpose(1, 0, 2)  # [H][T][nope+rope]
        kva = h @ t("attn_kv_a_mqa.weight").T
        c = self.rms(kva[:, :self.kv_lora], t("attn_kv_a_norm.weight"))  # [T][kv_lora]
        kpe = self.rot(kva[:, self.kv_lora:], pos)  # [T][rope]
        q_nope, q_pe = q[:, :, :self.nope], self.rot(q[:, :, self.nope:], pos)
        if self.fused:
            kvb = t("attn_kv_b.weight").reshape(H, self.nope + self.v, self.kv_lora)
            k_nope, vals = np.einsum("hdk,tk->htd", kvb[:, :self.nope], c), np.einsum("hdk,tk->htd", kvb[:, self.nope:], c)
        else:
            kb, vb = t("attn_k_b.weight"), t("attn_v_b.weight")  # [H][kv_lora][nope], [H][v][kv_lora]
            k_nope, vals = np.einsum("hkd,tk->htd", kb, c), np.einsum("hdk,tk->htd", vb, c)
        s = self.scale * (np.einsum("hpd,htd->hpt", q_nope, k_nope) + np.einsum("hpd,td->hpt", q_pe, kpe))
        s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        o = np.einsum("hpt,htd->phd", p, vals).reshape(T, H * self.v)
        x = x + o @ t("attn_output.weight").T
        h = self.rms(x, t("ffn_norm.weight"))
        if il < self.n_dense:
            return x + self.swiglu(h, t("ffn_gate.weight"), t("ffn_up.weight"), t("ffn_down.weight"))
        logits = h @ t("ffn_gate_inp.weight").T
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs = probs / probs.sum(-1, keepdims=True) if self.gating == 1 else 1 / (1 + np.exp(-logits))
        sel = probs + t("exp_probs_b.bias") if f"blk.{il}.exp_probs_b.bias" in self.tensors else probs
        ge, ue, de = t("ffn_gate_exps.weight"), t("ffn_up_exps.weight"), t("ffn_down_exps.weight")
        E = ge.shape[0]
        y = np.zeros_like(x)
        for r in range(T):
            sc = sel[r].copy()
            if self.G > 1:
                per = E // self.G
                gs = [np.sort(sc[g * per:(g + 1) * per])[-2:].sum() for g in range(self.G)]
                keep = np.argsort(-np.array(gs), kind="stable")[:self.G_used]
                mask = np.full(E, -np.inf)
                for g in keep:
                    mask[g * per:(g + 1) * per] = 0
                sc = sc + mask
            ids = np.argsort(-sc, kind="stable")[:self.K]
            w = probs[r, ids]
            if self.w_norm:
                w = w / max(w.sum(), 6.103515625e-5)
            if self.w_scale not in (0.0, 1.0):
                w = w * self.w_scale
            for k, e in zip(w, ids):
                y[r] += k * self.swiglu(h[r], ge[e], ue[e], de[e])
        if f"blk.{il}.ffn_gate_shexp.weight" in self.tensors:
            y += self.swiglu(h, t("ffn_gate_shexp.weight"), t("ffn_up_shexp.weight"), t("ffn_down_shexp.weight"))
        return x + y

    def trunk(self, tokens):
        """(logits [T][vocab], last hidden states [T][dim]) of the sequence."""
        pos = list(range(len(tokens)))
        x = self.emb[tokens]
        for il in range(self.n_layer):
            x = self.block(il, x, pos)
        return self.rms(x, self.t("output_norm.weight")) @ self.out.T, x

    def mtp(self, tokens, hidden):
        """Draft logits of positions 0 .. T-2: row p from hidden[p] and tokens[p + 1]."""
        il = self.n_layer
        t = lambda s: self.t(f"blk.{il}.nextn.{s}")
        has = lambda s: f"blk.{il}.nextn.{s}" in self.tensors
        emb = t("embed_tokens.weight") if has("embed_tokens.weight") else self.emb
        head = t("shared_head_head.weight") if has("shared_head_head.weight") else self.out
        T = len(tokens) - 1
        e = self.rms(emb[tokens[1:]], t("enorm.weight"))
        h = self.rms(hidden[:T], t("hnorm.weight"))
        x = np.concatenate([e, h], axis=1) @ t("eh_proj.weight").T
        x = self.block(il, x, list(range(T)))
        return self.rms(x, t("shared_head_norm.weight")) @ head.T


def rows_f32(path, vocab):
    a = np.fromfile(path, dtype="<f4")
    assert a.size % vocab == 0, f"{path}: {a.size} floats is not rows of {vocab}"
    return a.reshape(-1, vocab).astype(np.float64)


def main():
    mode = sys.argv[1]
    if mode == "fixture":
        fx, name = sys.argv[2], sys.argv[3]
        m = Model(f"{fx}/models/{name}.gguf")
        want = {}
        for line in open(f"{fx}/expected/{name}.exact.txt"):
            k, _, v = line.strip().partition(" ")
            want[k] = v
        prompt = [int(v) for v in want["prompt"].split()]
        greedy = [int(v) for v in want["greedy"].split()]
        rows = int(want["rows"])
        toks = prompt + greedy[:rows - 1]
        logits, _ = m.trunk(np.array(toks))
        exp = rows_f32(f"{fx}/expected/{name}.exact.logits.f32", logits.shape[1])
        got = logits[len(prompt) - 1:]
        d = np.abs(got - exp).max(axis=1)
        print(f"mtp_ref: {name}: {rows} rows, max |d| {d.max():.3g} against the fixtures' exact reference")
        return 0 if d.max() <= 1e-5 else 1
    if mode == "compare":
        path, out_dir = sys.argv[2], sys.argv[3]
        toks = np.array([int(v) for v in sys.argv[4].split(",")])
        tol = float(sys.argv[5]) if len(sys.argv) > 5 else 2e-3
        m = Model(path)
        logits, hidden = m.trunk(toks)
        draft = m.mtp(toks, hidden)
        vocab = logits.shape[1]
        eng_t, eng_m = rows_f32(f"{out_dir}/trunk.f32", vocab), rows_f32(f"{out_dir}/mtp.f32", vocab)
        assert eng_t.shape == logits.shape and eng_m.shape == draft.shape, (eng_t.shape, eng_m.shape, draft.shape)
        dt, dm = np.abs(eng_t - logits).max(axis=1), np.abs(eng_m - draft).max(axis=1)
        agree = int((eng_m.argmax(1) == draft.argmax(1)).sum())
        print(f"mtp_ref: trunk {len(dt)} rows max |d| {dt.max():.3g}; MTP draft {len(dm)} rows max |d| {dm.max():.3g} "
              f"(bound {tol:g}); draft argmax equal on {agree} of {len(dm)} rows")
        return 0 if dt.max() <= tol and dm.max() <= tol else 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
