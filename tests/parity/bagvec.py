"""bagvec.py: the vec JSON of eosin-cat -r (an f32 embedding map, base64)
that the parity generators write."""
import base64, struct


def vec(rows, dim):
    flat = [x for r in rows for x in r]
    data = struct.pack("<%df" % len(flat), *flat)
    return {"dtype": "f32", "dim": dim, "n": len(rows),
            "data": {"$base64": base64.b64encode(data).decode()}}
