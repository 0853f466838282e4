#!/usr/bin/env python3
"""bench/gpu.sh's parity check on eosin-encode's output: the embeddings of
two streams (GPU and CPU runs of the same input), matched by record id.

Usage: gpu_compare.py A.mpk B.mpk FIELD [FIELD...]
Prints: "records N cos_min X max_abs Y" over every row of every FIELD.
"""
import struct
import sys

import msgpack


def vectors(path, fields):
    out = {}
    with open(path, "rb") as f:
        for rec in msgpack.Unpacker(f, raw=False):
            for fld in fields:
                e = rec.get(fld)
                if not isinstance(e, dict):
                    continue
                fmt = {"f32": "f", "f16": "e"}[e["dtype"]]
                data = e["data"]
                vals = struct.unpack("<%d%s" % (len(data) // struct.calcsize(fmt), fmt), data)
                dim = e["dim"]
                out[(rec.get("id"), fld)] = [vals[i:i + dim] for i in range(0, len(vals), dim)]
    return out


def main():
    a, b, fields = sys.argv[1], sys.argv[2], sys.argv[3:]
    va, vb = vectors(a, fields), vectors(b, fields)
    if set(va) != set(vb) or not va:
        print("records MISMATCH %d vs %d" % (len(va), len(vb)))
        sys.exit(1)
    cmin, emax = 1.0, 0.0
    for k in va:
        for x, y in zip(va[k], vb[k]):
            ab = sum(p * q for p, q in zip(x, y))
            na = sum(p * p for p in x) ** 0.5
            nb = sum(q * q for q in y) ** 0.5
            cmin = min(cmin, ab / (na * nb + 1e-30))
            emax = max(emax, max(abs(p - q) for p, q in zip(x, y)))
    print("records %d cos_min %.6f max_abs %.3g" % (len({k[0] for k in va}), cmin, emax))


if __name__ == "__main__":
    main()
