#!/usr/bin/env python3
"""align_ref.py: PyTorch (autograd) reference of the eosin-align model.

The same model as lib/train/align.c, written with torch operations and autograd,
in float64 (the text decoder's ITG, MLM and PLM too, with the same seeded MLM
choices as lib/train/align.c), in float64: projection heads (Linear, or Linear-GELU(tanh)-Linear, then L2
normalisation), the pre-LN Q-Former (learned queries, self-attention,
cross-attention to the patches plus a 2-D sinusoidal encoding of pos/extent,
GELU feed-forward, final LayerNorm, mean over queries), the symmetric InfoNCE
loss with a clamped log-parameterised temperature, and CVTA (multi-positive
InfoNCE of each patch against its bag's top-k keywords).

Modes:
  grads  DUMP BAGS.jsonl          load the initial weights and the C gradients
                                  that `eosin-align --dump-grads DUMP` wrote,
                                  compute loss and gradients on the same batch
                                  (all training bags), compare
  train  DUMP BAGS.jsonl METRICS  run the same AdamW steps (schedule, clipping)
                                  and compare each step's loss with the C
                                  metrics file
  check  DUMP BAGS.jsonl METRICS  both of the above in one run
  bench  BAGS.jsonl               time training steps (for bench/align.sh)
Options give the training settings used for the C run (--lr, --wd, ...).
Exit 0 when everything is within tolerance, 1 otherwise.
"""
import argparse, base64, json, math, struct, sys, time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["grads", "train", "check", "bench"])
ap.add_argument("files", nargs="+")
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--min-lr", type=float, default=0.0)
ap.add_argument("--warmup", type=int, default=0)
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--wd", type=float, default=0.05)
ap.add_argument("--clip", type=float, default=1.0)
ap.add_argument("--grad-tol", type=float, default=1e-4)
ap.add_argument("--loss-tol", type=float, default=1e-3)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--dtype", default="float64")
# bench: the model, when there is no checkpoint to read it from
ap.add_argument("--config", default=None, help="bench: JSON of the model config")
ap.add_argument("--batch", type=int, default=0)
ap.add_argument("--seed", type=int, default=1, help="eosin-align's --seed (MLM's choices)")
a = ap.parse_args()
torch.set_num_threads(a.threads)
DT = torch.float64 if a.dtype == "float64" else torch.float32


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    hdr = json.loads(raw[8:8 + n])
    meta = hdr.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, t in hdr.items():
        b, e = t["data_offsets"]
        vals = struct.unpack("<%df" % ((e - b) // 4), data[b:e])
        out[name] = torch.tensor(vals, dtype=torch.float64).reshape(t["shape"])
    return out, meta


def read_vec(v):
    raw = base64.b64decode(v["data"]["$base64"])
    n = v.get("n", 1)
    vals = struct.unpack("<%df" % (len(raw) // 4), raw)
    return torch.tensor(vals, dtype=torch.float64).reshape(n, v["dim"])


def read_bags(path):
    bags = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("k") != "bag":
                continue
            b = {"img": read_vec(r["img_emb"]), "txt": read_vec(r["txt_emb"]),
                 "val": r.get("split") == "val"}
            b["pos"] = read_vec(r["pos"]) if "pos" in r else None
            b["extent"] = float(r.get("extent", 224) or 224)
            b["kw"] = read_vec(r["kw_emb"]) if "kw_emb" in r else None
            b["parent"] = r.get("parent_index")
            b["region"] = r.get("region")
            b["nregions"] = r.get("nregions", 0)
            b["sent"] = read_vec(r["sent_emb"]) if "sent_emb" in r else None
            b["tok"] = r.get("tokens")
            bags.append(b)
    return bags


def posenc2d(pos, extent, C):
    half = C // 2
    pe = torch.zeros(pos.shape[0], C, dtype=torch.float64)
    i = torch.arange(half // 2, dtype=torch.float64)
    w = torch.pow(10000.0, -(2 * i) / half)
    for ax in range(2):
        p = (pos[:, ax:ax + 1] / extent) * w[None, :]
        pe[:, ax * half + 0:ax * half + half:2] = torch.sin(p)
        pe[:, ax * half + 1:ax * half + half:2] = torch.cos(p)
    return pe


class Model:
    def __init__(self, params, cfg):
        self.p = params
        self.c = cfg

    def head(self, side, x):
        p = self.p
        if self.c["hidden"] > 0:
            h = F.gelu(F.linear(x, p[side + ".fc1.weight"], p[side + ".fc1.bias"]),
                       approximate="tanh")
            y = F.linear(h, p[side + ".fc2.weight"], p[side + ".fc2.bias"])
        else:
            y = F.linear(x, p[side + ".fc1.weight"], p[side + ".fc1.bias"])
        return F.normalize(y, dim=-1, eps=1e-12)

    def attention(self, q, k, v):
        H = self.c["heads"]
        Tq, C = q.shape
        hd = C // H
        q = q.reshape(Tq, H, hd).transpose(0, 1)
        k = k.reshape(-1, H, hd).transpose(0, 1)
        v = v.reshape(-1, H, hd).transpose(0, 1)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd), dim=-1)
        return (att @ v).transpose(0, 1).reshape(Tq, C)

    def qformer(self, bag, prefix="qformer", x_in=None, pos=None):
        """the Q-Former `prefix` over x_in at pos (default: the bag's patches)"""
        p, c = self.p, self.c
        W = c["qdim"]
        if x_in is None:
            x_in, pos = bag["img"], bag["pos"]
        kv = F.linear(x_in, p[prefix + ".kv_in.weight"], p[prefix + ".kv_in.bias"])
        if pos is not None:
            kv = kv + posenc2d(pos, bag["extent"], W).to(kv.dtype)
        x = p[prefix + ".queries"]
        self.last_qkv = []  # each block's query rows' q, k, v: the text decoder reads k, v
        for l in range(c["layers"]):
            g = lambda s: p["%s.%d.%s" % (prefix, l, s)]
            a = F.layer_norm(x, (W,), g("ln1.weight"), g("ln1.bias"), 1e-5)
            qkv = F.linear(a, g("self.qkv.weight"), g("self.qkv.bias"))
            self.last_qkv.append(qkv)
            s = self.attention(qkv[:, :W], qkv[:, W:2 * W], qkv[:, 2 * W:])
            x = x + F.linear(s, g("self.out.weight"), g("self.out.bias"))
            a = F.layer_norm(x, (W,), g("ln2.weight"), g("ln2.bias"), 1e-5)
            cq = F.linear(a, g("cross.q.weight"), g("cross.q.bias"))
            ckv = F.linear(kv, g("cross.kv.weight"), g("cross.kv.bias"))
            s = self.attention(cq, ckv[:, :W], ckv[:, W:])
            x = x + F.linear(s, g("cross.out.weight"), g("cross.out.bias"))
            a = F.layer_norm(x, (W,), g("ln3.weight"), g("ln3.bias"), 1e-5)
            h = F.gelu(F.linear(a, g("ffn.fc1.weight"), g("ffn.fc1.bias")), approximate="tanh")
            x = x + F.linear(h, g("ffn.fc2.weight"), g("ffn.fc2.bias"))
        x = F.layer_norm(x, (W,), p[prefix + ".ln_f.weight"], p[prefix + ".ln_f.bias"], 1e-5)
        return x.mean(0, keepdim=True)

    def decoder(self, prefix, qkv_q, inp, plen, target):
        """the text side over the queries' keys/values of the Q-Former
        `prefix`: token row i sees every query and token rows j < plen or
        j <= i; summed cross-entropy over rows whose target is >= 0"""
        p, c = self.p, self.c
        W, H = c["qdim"], c["heads"]
        T = len(inp)
        h = p["dec.tok_emb"][torch.tensor(inp)] + p["dec.pos_emb"][:T]
        i = torch.arange(T)[:, None]
        j = torch.arange(T)[None, :]
        allowed = torch.cat([torch.ones(T, qkv_q[0].shape[0], dtype=torch.bool),
                             (j < plen) | (j <= i)], 1)
        hd = W // H
        for l in range(c["layers"]):
            g = lambda s: p["%s.%d.%s" % (prefix, l, s)]
            d = lambda s: p["dec.%d.%s" % (l, s)]
            a_ = F.layer_norm(h, (W,), g("ln1.weight"), g("ln1.bias"), 1e-5)
            qkv = F.linear(a_, g("self.qkv.weight"), g("self.qkv.bias"))
            q = qkv[:, :W].reshape(T, H, hd).transpose(0, 1)
            k = torch.cat([qkv_q[l][:, W:2 * W], qkv[:, W:2 * W]]).reshape(-1, H, hd).transpose(0, 1)
            v = torch.cat([qkv_q[l][:, 2 * W:], qkv[:, 2 * W:]]).reshape(-1, H, hd).transpose(0, 1)
            sc = q @ k.transpose(1, 2) / math.sqrt(hd)
            sc = sc.masked_fill(~allowed[None], -float("inf"))
            s = (torch.softmax(sc, -1) @ v).transpose(0, 1).reshape(T, W)
            h = h + F.linear(s, g("self.out.weight"), g("self.out.bias"))
            a_ = F.layer_norm(h, (W,), d("ln.weight"), d("ln.bias"), 1e-5)
            f = F.gelu(F.linear(a_, d("ffn.fc1.weight"), d("ffn.fc1.bias")), approximate="tanh")
            h = h + F.linear(f, d("ffn.fc2.weight"), d("ffn.fc2.bias"))
        z = F.layer_norm(h, (W,), p["dec.ln_f.weight"], p["dec.ln_f.bias"], 1e-5)
        rows = [t for t in range(T) if target[t] >= 0]
        logits = z[rows] @ p["dec.tok_emb"].t() + p["dec.head.bias"]
        return F.cross_entropy(logits, torch.tensor([target[t] for t in rows]), reduction="sum")

    def hierarchical(self):
        return self.c["queries"] > 0 and self.c.get("w_region", 0) > 0

    def region_slide(self, bag):
        """PathFLIP: Region Q-Former per region, Slide Q-Former over them"""
        if bag["region"] is None:
            parts = [torch.arange(bag["img"].shape[0])]
        else:
            reg = torch.tensor(bag["region"])
            parts = [torch.nonzero(reg == q)[:, 0] for q in range(bag["nregions"])]
        feats, rpos = [], []
        for idx in parts:
            pos = bag["pos"][idx] if bag["pos"] is not None else None
            feats.append(self.qformer(bag, "qformer", bag["img"][idx], pos))
            if pos is not None:
                rpos.append(pos.mean(0))
        regions = torch.cat(feats)
        rp = torch.stack(rpos) if bag["pos"] is not None else None
        return regions, self.qformer(bag, "slide_qformer", regions, rp)

    @staticmethod
    def group_nce(l, gid, sid):
        """multi-positive InfoNCE both ways: region g and sentence s are
        positives when gid[g] == sid[s]; rows, columns without one left out"""
        pos = torch.tensor(gid)[:, None] == torch.tensor(sid)[None, :]
        neg_inf = torch.full_like(l, -float("inf"))
        rows = pos.any(1)
        cols = pos.any(0)
        lr = (torch.logsumexp(l, 1) - torch.logsumexp(torch.where(pos, l, neg_inf), 1))[rows]
        lc = (torch.logsumexp(l, 0) - torch.logsumexp(torch.where(pos, l, neg_inf), 0))[cols]
        return 0.5 * (lr.mean() + lc.mean())

    def per_patch(self, bag):
        n = bag["img"].shape[0]
        return self.c["queries"] == 0 and bag["txt"].shape[0] == n and n > 1

    def generative(self, b, qkv_q, sums, counts):
        """ITG, PLM and MLM of bag b: summed cross-entropies and tokens"""
        c = self.c
        tok = b.get("tok")
        if c.get("vocab", 0) <= 0 or not tok or len(tok) < 2:
            return
        prefix = "slide_qformer" if self.hierarchical() else "qformer"
        T = len(tok)
        if c["w_itg"] > 0:
            sums["itg"] = sums["itg"] + self.decoder(prefix, qkv_q, tok[:-1], 1, tok[1:])
            counts["itg"] += T - 1
        if c["w_plm"] > 0:
            pl = 1 + int(math.floor(float(T - 2) * c["plm_prefix"]))
            pl = max(1, min(T - 1, pl))
            tgt = [tok[t + 1] if t >= pl - 1 else -1 for t in range(T - 1)]
            sums["plm"] = sums["plm"] + self.decoder(prefix, qkv_q, tok[:-1], pl, tgt)
            counts["plm"] += T - pl
        if c["w_mlm"] > 0:
            inp, tgt, n = mlm_mask(self.gen_seed, tok, c["vocab"])
            if n:
                sums["mlm"] = sums["mlm"] + self.decoder(prefix, qkv_q, inp, T, tgt)
                counts["mlm"] += n

    def loss(self, bags):
        c, p = self.c, self.p
        vin, tin, qregions = [], [], []
        gsum = {"itg": 0.0, "mlm": 0.0, "plm": 0.0}
        gcnt = {"itg": 0, "mlm": 0, "plm": 0}
        for b in bags:
            if self.hierarchical():
                regions, slide = self.region_slide(b)
                qregions.append(regions)
                vin.append(slide)
                tin.append(b["txt"][:1])
                self.generative(b, self.last_qkv, gsum, gcnt)
            elif c["queries"] > 0:
                vin.append(self.qformer(b))
                tin.append(b["txt"][:1])
                self.generative(b, self.last_qkv, gsum, gcnt)
            elif self.per_patch(b):
                vin.append(b["img"])
                tin.append(b["txt"])
            else:
                vin.append(b["img"].mean(0, keepdim=True))
                tin.append(b["txt"][:1])
        zi = self.head("visual", torch.cat(vin))
        zt = self.head("text", torch.cat(tin))
        ls = torch.clamp(p["logit_scale"], 0.0, math.log(100.0))[0]
        total = torch.zeros((), dtype=zi.dtype)
        parts = {}
        if c["w_itc"] > 0:
            logits = ls.exp() * zi @ zt.t()
            tgt = torch.arange(zi.shape[0])
            itc = (F.cross_entropy(logits, tgt) + F.cross_entropy(logits.t(), tgt)) / 2
            total = total + c["w_itc"] * itc
            parts["itc"] = itc.item()
        zks = []
        r = 0
        for b, v in zip(bags, vin):
            zks.append(self.head("text", b["kw"]) if b["kw"] is not None and self.per_patch(b)
                       else None)
        if c.get("w_mrtva", 0) > 0:
            # multimodal encoder: each patch attends to its top-k keywords
            D = c["dim"]
            fs, pairs, r = [], [], 0
            for b, v, zk in zip(bags, vin, zks):
                items = v.shape[0]
                if zk is not None and b["parent"] is not None:
                    z = zi[r:r + items]
                    mq = F.linear(z, p["mm.q.weight"], p["mm.q.bias"])
                    mkv = F.linear(zk, p["mm.kv.weight"], p["mm.kv.bias"])
                    k = min(c["topk"], zk.shape[0])
                    idx = torch.topk((z @ zk.t()).detach(), k, dim=1).indices
                    G = mkv[idx]                                   # (n, k, 2D)
                    att = torch.softmax(torch.einsum("nd,nkd->nk", mq, G[..., :D])
                                        / math.sqrt(D), dim=1)
                    mo = torch.einsum("nk,nkd->nd", att, G[..., D:])
                    f = z + F.linear(mo, p["mm.out.weight"], p["mm.out.bias"])
                    h = F.gelu(F.linear(f, p["pred.fc1.weight"], p["pred.fc1.bias"]),
                               approximate="tanh")
                    py = F.linear(h, p["pred.fc2.weight"], p["pred.fc2.bias"])
                    nf = F.normalize(f, dim=-1, eps=1e-12).detach()
                    npred = F.normalize(py, dim=-1, eps=1e-12)
                    for ch, par in enumerate(b["parent"]):
                        if 0 <= par < items and par != ch:
                            pairs.append(-0.5 * ((npred[ch] * nf[par]).sum()
                                                 + (npred[par] * nf[ch]).sum()))
                r += items
            if pairs:
                mr = torch.stack(pairs).mean()
                total = total + c["w_mrtva"] * mr
                parts["mrtva"] = mr.item()
        if self.hierarchical():
            gid, sents, sid = [], [], []
            for i, (b, regions) in enumerate(zip(bags, qregions)):
                has = b["sent"] is not None and b["sent"].shape[0] > 0
                gid += [i if has else -1] * regions.shape[0]
                if has:
                    sents.append(b["sent"])
                    sid += [i] * b["sent"].shape[0]
            if sents:
                zr = self.head("visual", torch.cat(qregions))
                zs = self.head("text", torch.cat(sents))
                rg = self.group_nce(ls.exp() * zr @ zs.t(), gid, sid)
                total = total + c["w_region"] * rg
                parts["region"] = rg.item()
        elif c.get("w_region", 0) > 0 and c["queries"] == 0:
            regs, sents, gid, sid = [], [], [], []
            for i, b in enumerate(bags):
                if b["region"] is None or b["sent"] is None:
                    continue
                reg = torch.tensor(b["region"])
                for q in range(b["nregions"]):
                    rows = b["img"][reg == q]
                    regs.append(rows.mean(0) if rows.shape[0] else torch.zeros_like(b["img"][0]))
                    gid.append(i)
                sents.append(b["sent"])
                sid += [i] * b["sent"].shape[0]
            if regs:
                zr = self.head("visual", torch.stack(regs))
                zs = self.head("text", torch.cat(sents))
                rg = self.group_nce(ls.exp() * zr @ zs.t(), gid, sid)
                total = total + c["w_region"] * rg
                parts["region"] = rg.item()
        if c.get("w_itm", 0) > 0:
            R = zi.shape[0]
            sims = (zi @ zt.t()).detach().clone()
            sims.fill_diagonal_(-float("inf"))
            hard_t = sims.argmax(1)          # hardest other text per image
            hard_i = sims.argmax(0)          # hardest other image per text
            ar = torch.arange(R)
            ia = torch.cat([ar, ar, hard_i])
            ib = torch.cat([ar, hard_t, ar])
            a_, b_ = zi[ia], zt[ib]
            u = torch.cat([a_ * b_, a_ - b_], 1)
            h = F.gelu(F.linear(u, p["itm.fc1.weight"], p["itm.fc1.bias"]), approximate="tanh")
            logit = F.linear(h, p["itm.fc2.weight"], p["itm.fc2.bias"])[:, 0]
            y = torch.cat([torch.ones(R), torch.zeros(2 * R)]).to(logit.dtype)
            itm = F.binary_cross_entropy_with_logits(logit, y)
            total = total + c["w_itm"] * itm
            parts["itm"] = itm.item()
        if c["w_cvta"] > 0:
            losses, r = [], 0
            for b, v in zip(bags, vin):
                items = v.shape[0]
                if b["kw"] is not None and self.per_patch(b):
                    zk = self.head("text", b["kw"])
                    l = ls.exp() * zi[r:r + items] @ zk.t()
                    k = min(c["topk"], zk.shape[0])
                    idx = torch.topk(l.detach(), k, dim=1).indices
                    pos = torch.gather(l, 1, idx)
                    losses.append(torch.logsumexp(l, 1) - torch.logsumexp(pos, 1))
                r += items
            if losses:
                cv = torch.cat(losses).mean()
                total = total + c["w_cvta"] * cv
                parts["cvta"] = cv.item()
        for k in ("itg", "mlm", "plm"):
            if c.get("w_" + k, 0) > 0 and gcnt[k] > 0:
                mean = gsum[k] / gcnt[k]
                total = total + c["w_" + k] * mean
                parts[k] = mean.item()
        return total, parts


def config_from_meta(meta):
    c = {}
    for k in ("img_dim", "txt_dim", "dim", "hidden", "queries", "qdim", "heads", "layers", "ffn",
              "topk"):
        c[k] = int(meta[k])
    for k in ("w_itc", "w_cvta", "w_mrtva", "w_region", "w_itm", "temp_init"):
        c[k] = float(meta[k])
    if "vocab" in meta:  # the text decoder
        c["vocab"], c["ctx"] = int(meta["vocab"]), int(meta["ctx"])
        for k in ("w_itg", "w_mlm", "w_plm", "plm_prefix"):
            c[k] = float(meta[k])
    return c


M64 = (1 << 64) - 1


def splitmix64(s):
    """(new state, output) of lib/train/align.c's splitmix64"""
    s = (s + 0x9E3779B97F4A7C15) & M64
    z = s
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return s, z ^ (z >> 31)


def step_seed(seed, step):
    """eosin-align's MLM seed of a step"""
    return splitmix64(seed ^ ((step * 0x9E3779B97F4A7C15) & M64))[1]


def mlm_mask(seed, tok, V):
    """align_mlm_mask: 15% of the tokens between [SOT] and [EOT] chosen
    (at least one), 80% [MASK] (V - 1), 10% a random token, 10% kept"""
    h = 0xCBF29CE484222325  # FNV-1a offset basis
    for t in tok:
        for byte in (t & 0xFFFFFFFF).to_bytes(4, "little"):
            h = ((h ^ byte) * 1099511628211) & M64
    s = seed ^ h
    n = len(tok)
    inp, tgt = list(tok), [-1] * n
    if n < 3:
        return inp, tgt, 0

    def uni():
        nonlocal s
        s, z = splitmix64(s)
        return (z >> 11) * (1.0 / 9007199254740992.0)
    chosen = 0
    for t in range(1, n - 1):
        if uni() < 0.15:
            tgt[t] = tok[t]
            chosen += 1
    if not chosen:
        s, z = splitmix64(s)
        t = 1 + z % (n - 2)
        tgt[t] = tok[t]
        chosen = 1
    for t in range(1, n - 1):
        if tgt[t] < 0:
            continue
        u = uni()
        if u < 0.8:
            inp[t] = V - 1
        elif u < 0.9:
            s, z = splitmix64(s)
            inp[t] = z % (V - 1)
    return inp, tgt, chosen


def lr_at(step):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    if a.steps <= a.warmup:
        return a.lr
    p = min(1.0, (step - a.warmup) / (a.steps - a.warmup))
    return a.min_lr + 0.5 * (a.lr - a.min_lr) * (1 + math.cos(math.pi * p))


def make_params(tensors):
    params = {k: v.to(DT).clone().requires_grad_(True) for k, v in tensors.items()
              if not k.startswith("adam.")}
    return params


def optimizer(params):
    decay = [v for k, v in params.items() if v.dim() == 2 and not k.endswith(".queries")]
    rest = [v for k, v in params.items() if not (v.dim() == 2 and not k.endswith(".queries"))]
    return torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=a.lr, betas=(0.9, 0.999), eps=1e-8, foreach=False)


def main():
    if a.mode == "bench":
        cfg = json.loads(a.config)
        bags = [b for b in read_bags(a.files[0]) if not b["val"]]
        for b in bags:
            for k in ("img", "txt", "pos", "kw", "sent"):
                if b[k] is not None:
                    b[k] = b[k].to(DT)
        g = torch.Generator().manual_seed(1)
        shapes = {}
        vin = cfg["qdim"] if cfg["queries"] > 0 else cfg["img_dim"]
        D, Hd = cfg["dim"], cfg["hidden"]
        def lin(name, o, i):
            shapes[name + ".weight"] = (o, i)
            shapes[name + ".bias"] = (o,)
        for side, i in (("visual", vin), ("text", cfg["txt_dim"])):
            if Hd > 0:
                lin(side + ".fc1", Hd, i)
                lin(side + ".fc2", D, Hd)
            else:
                lin(side + ".fc1", D, i)
        if cfg["queries"] > 0:
            W, Fh = cfg["qdim"], cfg["ffn"]
            shapes["qformer.queries"] = (cfg["queries"], W)
            lin("qformer.kv_in", W, cfg["img_dim"])
            for l in range(cfg["layers"]):
                pre = "qformer.%d." % l
                for ln in ("ln1", "ln2", "ln3"):
                    shapes[pre + ln + ".weight"] = (W,)
                    shapes[pre + ln + ".bias"] = (W,)
                lin(pre + "self.qkv", 3 * W, W)
                lin(pre + "self.out", W, W)
                lin(pre + "cross.q", W, W)
                lin(pre + "cross.kv", 2 * W, W)
                lin(pre + "cross.out", W, W)
                lin(pre + "ffn.fc1", Fh, W)
                lin(pre + "ffn.fc2", W, Fh)
            shapes["qformer.ln_f.weight"] = (W,)
            shapes["qformer.ln_f.bias"] = (W,)
        if cfg.get("vocab", 0) > 0:  # the text decoder
            W, Fh = cfg["qdim"], cfg["ffn"]
            shapes["dec.tok_emb"] = (cfg["vocab"], W)
            shapes["dec.pos_emb"] = (cfg["ctx"], W)
            for l in range(cfg["layers"]):
                pre = "dec.%d." % l
                shapes[pre + "ln.weight"] = (W,)
                shapes[pre + "ln.bias"] = (W,)
                lin(pre + "ffn.fc1", Fh, W)
                lin(pre + "ffn.fc2", W, Fh)
            shapes["dec.ln_f.weight"] = (W,)
            shapes["dec.ln_f.bias"] = (W,)
            shapes["dec.head.bias"] = (cfg["vocab"],)
        tensors = {k: torch.randn(s, generator=g, dtype=torch.float64) * 0.05
                   for k, s in shapes.items()}
        tensors["logit_scale"] = torch.tensor([math.log(1 / 0.07)], dtype=torch.float64)
        params = make_params(tensors)
        model = Model(params, cfg)
        opt = optimizer(params)
        B = a.batch
        times = []
        for step in range(a.steps):
            batch = [bags[(step * B + j) % len(bags)] for j in range(B)]
            t0 = time.perf_counter()
            model.gen_seed = step_seed(a.seed, step)
            opt.zero_grad()
            loss, _ = model.loss(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(params.values()), a.clip)
            for grp in opt.param_groups:
                grp["lr"] = lr_at(step)
            opt.step()
            times.append(time.perf_counter() - t0)
        steady = times[1:] if len(times) > 1 else times
        print(json.dumps({"steps": len(steady), "seconds": sum(steady),
                          "steps_per_s": len(steady) / sum(steady)}))
        return 0

    dump, bagfile = a.files[0], a.files[1]
    tensors, meta = read_safetensors(dump)
    cfg = config_from_meta(meta)
    bags = [b for b in read_bags(bagfile) if not b["val"]]
    for b in bags:
        for k in ("img", "txt", "pos", "kw", "sent"):
            if b[k] is not None:
                b[k] = b[k].to(DT)
    params = make_params(tensors)
    model = Model(params, cfg)
    failed = 0
    if a.mode == "check":
        a.mode = "grads"
        failed = main_grads(params, model, tensors, meta, bags)
        params = make_params(tensors)
        model = Model(params, cfg)
        a.mode = "train"
    if a.mode == "grads":
        return main_grads(params, model, tensors, meta, bags)
    return failed | main_train(params, model, bags)


def main_grads(params, model, tensors, meta, bags):
    failed = 0
    if True:
        model.gen_seed = step_seed(a.seed, 0)
        loss, parts = model.loss(bags)
        loss.backward()
        closs = float(meta["loss"])
        rel = abs(closs - loss.item()) / max(abs(loss.item()), 1e-12)
        print("loss: C %.9g torch %.9g rel %.2e" % (closs, loss.item(), rel))
        failed |= rel > a.grad_tol
        worst = 0.0
        for k, v in params.items():
            g = v.grad if v.grad is not None else torch.zeros_like(v)
            cg = tensors["adam.m." + k].to(DT)
            scale = g.abs().max().item()
            err = (cg - g).abs().max().item()
            r = err / scale if scale > 0 else err
            worst = max(worst, r)
            ok = r <= a.grad_tol or (scale == 0 and err < 1e-12)
            if not ok:
                failed = 1
            print("%s %-32s max|dC - dT| / max|dT| = %.2e (max|dT| %.3g)"
                  % ("ok  " if ok else "FAIL", k, r, scale))
        print("gradients: %d tensors, worst relative error %.2e (tolerance %.0e)"
              % (len(params), worst, a.grad_tol))
        return failed


def main_train(params, model, bags):
    """the same full-batch AdamW steps; compare each loss"""
    failed = 0
    closs = {}
    with open(a.files[2]) as f:
        for line in f:
            j = json.loads(line)
            if "loss" in j:
                closs[j["step"]] = j["loss"]
    opt = optimizer(params)
    worst = 0.0
    for step in range(a.steps):
        opt.zero_grad()
        model.gen_seed = step_seed(a.seed, step)
        loss, _ = model.loss(bags)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), a.clip)
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step)
        opt.step()
        c = closs.get(step + 1)
        rel = abs(c - loss.item()) / max(abs(loss.item()), 1e-12) if c is not None else 1.0
        worst = max(worst, rel)
        print("step %2d loss C %.7f torch %.7f rel %.2e" % (step + 1, c or float("nan"),
                                                            loss.item(), rel))
        failed |= rel > a.loss_tol
    print("losses over %d AdamW steps: worst relative difference %.2e (tolerance %.0e)"
          % (a.steps, worst, a.loss_tol))
    return failed


sys.exit(main())
