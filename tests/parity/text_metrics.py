"""Reference scores for eosin-query --text-metrics (tests/t/t3010).

usage: text_metrics.py CAPTIONS.csv PAIRS.jsonl REFS.jsonl   (make the inputs)
       text_metrics.py --check SCORED.jsonl METRICS.json CAPTIONS.csv TOLERANCE

Pairs are real captions: hypothesis = the text of row i, reference = the
text of row i + 1 (and of row i + 7, so that subtypes differ), ids h<i>.

BLEU-4 is NLTK's (nltk.translate.bleu_score: corpus_bleu unsmoothed,
sentence_bleu with SmoothingFunction().method1). Debian has no ROUGE
package, so ROUGE-L here is an independent longest-common-subsequence
written for this test (not a third-party implementation), F with beta 1;
token F1 is written here too, after SQuAD v1.1's evaluation formula.
The tokenisation is eosin's, written again with a regular expression.
"""
import csv
import json
import re
import sys
from collections import Counter

from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu, sentence_bleu

WORD = re.compile(rb"[0-9A-Za-z\x80-\xff]+")


def tokens(text):
    return [m.group(0).decode("utf-8", "surrogateescape").lower()
            for m in WORD.finditer(text.encode("utf-8"))]


def lcs_independent(x, y):
    """LCS length by the textbook dynamic programme (test-local code)."""
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i, a in enumerate(x):
        for j, b in enumerate(y):
            table[i + 1][j + 1] = table[i][j] + 1 if a == b else max(table[i][j + 1], table[i + 1][j])
    return table[len(x)][len(y)]


def rouge_l(h, r):
    n = lcs_independent(h, r)
    if n == 0:
        return 0.0
    p, rec = n / len(h), n / len(r)
    return 2 * p * rec / (p + rec)


def token_f1(h, r):
    h = [t for t in h if t not in ("a", "an", "the")]
    r = [t for t in r if t not in ("a", "an", "the")]
    if not h or not r:
        return float(h == r)
    same = sum((Counter(h) & Counter(r)).values())
    if same == 0:
        return 0.0
    p, rec = same / len(h), same / len(r)
    return 2 * p * rec / (p + rec)


def pairs(captions):
    with open(captions, newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    out = []
    for i, t in enumerate(texts):
        out.append(("h%d" % i, t, texts[(i + 1) % len(texts)]))
        out.append(("g%d" % i, t, texts[(i + 7) % len(texts)]))
    # edge cases: empty, punctuation only, shorter than four tokens, identical
    out += [("e0", "", "Tubular adenocarcinoma."), ("e1", "...", "..."),
            ("e2", "Adenocarcinoma", "Tubular adenocarcinoma"),
            ("e3", "The the a an", "An a"), ("e4", texts[0], texts[0])]
    return out


def make(captions, hyp_path, ref_path):
    with open(hyp_path, "w") as h, open(ref_path, "w") as r:
        for pid, hyp, ref in pairs(captions):
            h.write(json.dumps({"k": "text", "v": 1, "id": pid, "caption": hyp}) + "\n")
            r.write(json.dumps({"k": "text", "v": 1, "id": pid, "caption": ref}) + "\n")


def check(scored, metrics, captions, tol):
    got = {}
    with open(scored) as f:
        for line in f:
            o = json.loads(line)
            if o["k"] == "text":
                got[o["id"]] = o
    smooth = SmoothingFunction().method1
    worst = {"bleu4": 0.0, "rouge_l": 0.0, "token_f1": 0.0}
    hyps, refs, rl, f1 = [], [], [], []
    for pid, hyp, ref in pairs(captions):
        h, r = tokens(hyp), tokens(ref)
        want = {"bleu4": sentence_bleu([r], h, smoothing_function=smooth) if h else 0.0,
                "rouge_l": rouge_l(h, r), "token_f1": token_f1(h, r)}
        for k, v in want.items():
            worst[k] = max(worst[k], abs(got[pid][k] - v))
        hyps.append(h)
        refs.append([r])
        rl.append(want["rouge_l"])
        f1.append(want["token_f1"])
    m = json.load(open(metrics))
    corpus = {"bleu4": corpus_bleu(refs, hyps), "rouge_l": sum(rl) / len(rl),
              "token_f1": sum(f1) / len(f1)}
    bad = 0
    for k, v in corpus.items():
        d = abs(m[k] - v)
        print("corpus %s: eosin %.9f reference %.9f |diff| %.2e" % (k, m[k], v, d))
        bad += d > tol
    for k, d in worst.items():
        print("sentence %s over %d pairs: max |diff| %.2e" % (k, len(got), d))
        bad += d > tol
    bad += m["pairs"] != len(hyps)
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1] == "--check":
        sys.exit(check(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])))
    make(*sys.argv[1:4])
