#!/usr/bin/env python3
"""maxabs.py GOT WANT: two files of JSON arrays, one row a line, of the
same shape; prints the largest absolute difference and exits 0 when it is
within the layout tests' tolerance (1e-4, or argv[3])."""
import json
import sys

import numpy as np

g = np.array([json.loads(line) for line in open(sys.argv[1])])
w = np.array([json.loads(line) for line in open(sys.argv[2])])
assert g.shape == w.shape, (g.shape, w.shape)
e = float(np.abs(g - w).max())
print("%.3g" % e)
sys.exit(0 if e <= (float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4) else 1)
