#!/usr/bin/env python3
"""align_gen.py: synthetic bag records with a known latent structure, as JSON
lines for `eosin-cat -r` (python3 standard library only).

Every bag b has a latent vector z_b in R^K (standard normal). Its patches are
img_i = A z_b + s_img * e_i and its caption is txt = T z_b + s_txt * e, where
A (img_dim x K) and T (txt_dim x K) are two different fixed random linear
maps and e are standard normal noise vectors. An image and a text are related
only through z_b, so a model that learns to undo A and T retrieves the
caption of a held-out bag from its patches; chance is 1 / (held-out bags).

--method region cuts the patches into --regions regions with latents
z_r = z_b + 0.7 u_r and one sentence (sent_emb) per region; with --pos the
patches get level-0 positions, region r a band of its own.

--method mrplip gives each patch its own latent z_i = z_b + 0.7 u_i and its own
caption T z_i + noise (n caption rows), and keywords T z_j + noise for a few
patches j of the bag (the textual bag for CVTA).

usage: align_gen.py [--bags N] [--n PATCHES] [--img-dim D] [--txt-dim D]
                    [--latent K] [--noise S] [--method slide|mrplip]
                    [--val-every M] [--tokens V] [--seed S]

--tokens V gives each bag a caption of 3 to 9 (or --caption-len) decoder tokens (ids 0 to V - 2,
the first and last standing for [SOT] and [EOT]) for the text decoder's
objectives (ITG, MLM, PLM), drawn from a stream of their own.
"""
import argparse, json, random

from bagvec import vec

ap = argparse.ArgumentParser()
ap.add_argument("--bags", type=int, default=64)
ap.add_argument("--n", type=int, default=8)
ap.add_argument("--img-dim", type=int, default=32)
ap.add_argument("--txt-dim", type=int, default=24)
ap.add_argument("--latent", type=int, default=8)
ap.add_argument("--noise", type=float, default=0.3)
ap.add_argument("--method", default="slide")
ap.add_argument("--keywords", type=int, default=6)
ap.add_argument("--regions", type=int, default=3)
ap.add_argument("--val-every", type=int, default=0)
ap.add_argument("--pos", action="store_true", help="region: level-0 positions, a region per band")
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--tokens", type=int, default=0, help="decoder vocabulary (0: no tokens)")
ap.add_argument("--caption-len", type=int, default=0, help="tokens of every caption (0: 3 to 9)")
a = ap.parse_args()
trng = random.Random(a.seed + 1000)
rng = random.Random(a.seed)
K = a.latent
A = [[rng.gauss(0, 1) / K ** 0.5 for _ in range(K)] for _ in range(a.img_dim)]
T = [[rng.gauss(0, 1) / K ** 0.5 for _ in range(K)] for _ in range(a.txt_dim)]


def mapv(M, z, s):
    return [sum(r[k] * z[k] for k in range(K)) + s * rng.gauss(0, 1) for r in M]



for b in range(a.bags):
    z = [rng.gauss(0, 1) for _ in range(K)]
    n = a.n
    rec = {"k": "bag", "v": 1, "id": "bag%04d" % b, "slide": "s%04d" % b,
           "method": a.method, "n": n}
    if a.method == "mrplip":
        zs = [[zk + 0.7 * rng.gauss(0, 1) for zk in z] for _ in range(n)]
        rec["img_emb"] = vec([mapv(A, zi, a.noise) for zi in zs], a.img_dim)
        rec["txt_emb"] = vec([mapv(T, zi, a.noise) for zi in zs], a.txt_dim)
        kws = [mapv(T, zs[rng.randrange(n)], a.noise) for _ in range(a.keywords)]
        rec["kw_emb"] = vec(kws, a.txt_dim)
        rec["keywords"] = ["kw%d" % j for j in range(a.keywords)]
        rec["parent_index"] = [-1] + [0] * (n - 1)
    elif a.method == "region":
        # nregions regions, each with its own latent z_r = z + 0.7 u_r; the
        # patches of region r are A z_r + noise, its sentence T z_r + noise
        R = a.regions
        zr = [[zk + 0.7 * rng.gauss(0, 1) for zk in z] for _ in range(R)]
        reg = [i % R for i in range(n)]
        rec["img_emb"] = vec([mapv(A, zr[reg[i]], a.noise) for i in range(n)], a.img_dim)
        rec["txt_emb"] = vec([mapv(T, z, a.noise)], a.txt_dim)
        rec["region"] = reg
        rec["nregions"] = R
        rec["sentences"] = ["region %d" % r for r in range(R)]
        rec["sent_emb"] = vec([mapv(T, zr[r], a.noise) for r in range(R)], a.txt_dim)
        rec["sent_region"] = list(range(R))
        if a.pos:  # region r is the r-th horizontal band of 224 px patches
            rec["pos"] = vec([[224.0 * (i // R), 224.0 * 4 * reg[i]] for i in range(n)], 2)
            rec["extent"] = 224
    else:
        rec["img_emb"] = vec([mapv(A, z, a.noise) for _ in range(n)], a.img_dim)
        rec["txt_emb"] = vec([mapv(T, z, a.noise)], a.txt_dim)
        rec["pos"] = vec([[224.0 * rng.randrange(40), 224.0 * rng.randrange(40)]
                          for _ in range(n)], 2)
        rec["extent"] = 224
    rec["caption"] = "synthetic caption %d" % b
    if a.tokens:
        V = a.tokens
        inner = a.caption_len - 2 if a.caption_len >= 2 else trng.randrange(1, 8)
        rec["tokens"] = [V - 3] + [trng.randrange(V - 3) for _ in range(inner)] + [V - 2]
    if a.val_every and b % a.val_every == 0:
        rec["split"] = "val"
    print(json.dumps(rec))
