#!/usr/bin/env python3
"""vlm-server.py: a small OpenAI-compatible /v1/chat/completions server for
eosin's tests and benchmarks, Python standard library only, that can answer
badly on purpose.

It checks each request the way a vLLM server would need it (JSON, a model,
a user message with a text part and a JPEG data URL), then answers
  "Image <first 16 hex of sha256(jpeg)> asked '<first 3 words of prompt>'."
so a test can tell which image and prompt each caption came from.

A text-only request asking for JSON (response_format json_object, the
user's content a string: eosin-caption-fetch --decompose) gets
  {"regions": ["Region 1: <sentence 1>", "Region 2: <sentence 2>", ...]}
as its message content, the user's text cut after each '.', '!' or '?'
followed by white space (with --regions-objects each region is
{"text": ...} instead). Any other text-only request (eosin-caption-fetch
--answer) gets
  "Answer to '<first 3 words of the question>' about slide S from N
   items of evidence; see [1]."
where the question follows "Question: ", S follows "about slide " and N
counts the lines that start "[k] ". --log FILE appends every request body,
one JSON line each.

Faults, chosen per request (the first match wins):
  URL path   /fault/SPEC/v1/chat/completions
  header     X-Fault: SPEC
  flag       --fault SPEC
SPEC is KIND or KINDxN: the first N attempts (default 1) of each distinct
request body get the fault, later ones a good answer ("always" for N
makes every attempt fail). KIND:
  500, 503  that status, a JSON error body
  429       429 with Retry-After: --retry-after seconds
  slow      wait --slow seconds, then answer well (a client timeout)
  delay     wait 0.2 s, then answer well (to see concurrency)
  drop      close the connection without answering
  malformed 200 with truncated JSON
  ctype     200 with text/html
  empty     200 JSON without choices
  badreq    400 (not retryable)
and, for decompose requests, a 200 whose content is wrong:
  notjson   content that is not JSON
  noregions a JSON object without "regions"
  blank     one region blank

GET /stats gives counts as JSON: requests, answered, faults, bad (invalid
requests), auth_ok (requests whose Authorization matched the key in the
environment variable named by --expect-key-env), max_active (most requests
being answered at once). POST /reset zeroes them.

Usage: vlm-server.py [--port N] [--port-file F] [--delay S] [--fault SPEC]
       [--retry-after S] [--slow S] [--expect-key-env NAME] [--workers N] [--fast]
--port 0 (default) picks a free port and writes it to --port-file.
--fast skips the request checks.
Benchmarks use vlm-fast-server.c instead: this server, even --fast with
several --workers, tops out near 1,350 requests/s on two cores, about the
rate a benchmark means to measure.
--workers N forks N processes that share the listening socket.
"""
import argparse
import base64
import hashlib
import http.server
import json
import multiprocessing
import os
import re
import signal
import socketserver
import sys
import threading
import time

COUNTERS = ["requests", "answered", "faults", "bad", "auth_ok", "active", "max_active"]


class State:
    def __init__(self):
        self.shared = multiprocessing.Array("q", len(COUNTERS), lock=True)
        self.lock = threading.Lock()
        self.attempts = {}  # body digest -> attempts seen (per process)

    def add(self, name, n=1):
        with self.shared.get_lock():
            self.shared[COUNTERS.index(name)] += n

    def enter(self):
        with self.shared.get_lock():
            a = COUNTERS.index("active")
            m = COUNTERS.index("max_active")
            self.shared[a] += 1
            self.shared[m] = max(self.shared[m], self.shared[a])

    def stats(self):
        with self.shared.get_lock():
            return {k: self.shared[i] for i, k in enumerate(COUNTERS)}

    def reset(self):
        with self.shared.get_lock():
            for i, name in enumerate(COUNTERS):
                if name != "active":  # requests still being answered
                    self.shared[i] = 0
        with self.lock:
            self.attempts.clear()

    def attempt(self, digest):
        with self.lock:
            n = self.attempts.get(digest, 0) + 1
            self.attempts[digest] = n
            return n


def parse_spec(spec):
    m = re.fullmatch(r"([a-z0-9]+?)(?:x(\d+|always))?", spec or "")
    if not m:
        return None, 0
    n = m.group(2)
    return m.group(1), (10**9 if n == "always" else int(n or 1))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vlm-server/1"

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="application/json", headers=()):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/stats":
            self.send(200, json.dumps(STATE.stats()))
        elif self.path == "/v1/models":
            self.send(200, json.dumps({"object": "list", "data": [{"id": "test-vlm"}]}))
        else:
            self.send(404, '{"error": "not found"}')

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path == "/reset":
            STATE.reset()
            self.send(200, "{}")
            return
        m = re.fullmatch(r"(?:/fault/([^/]+))?/v1/chat/completions", self.path)
        if not m:
            self.send(404, '{"error": "not found"}')
            return
        STATE.add("requests")
        if ARGS.log:
            with open(ARGS.log, "ab") as f:
                f.write(body.replace(b"\n", b" ") + b"\n")
        STATE.enter()
        try:
            self.chat(body, m)
        finally:
            STATE.add("active", -1)

    def chat(self, body, m):
        if ARGS.expect_key_env:
            want = "Bearer " + os.environ.get(ARGS.expect_key_env, "")
            if self.headers.get("Authorization") == want:
                STATE.add("auth_ok")
        spec = m.group(1) or self.headers.get("X-Fault") or ARGS.fault
        kind, times = parse_spec(spec)
        content_fault = None
        if kind and STATE.attempt(hashlib.sha256(body).hexdigest()) <= times:
            STATE.add("faults")
            if kind in ("notjson", "noregions", "blank"):
                content_fault = kind
            elif self.fault(kind):
                return
        if ARGS.delay > 0:
            time.sleep(ARGS.delay)
        if ARGS.fast:
            caption = "Fast answer."
        elif self.is_decompose(body):
            caption = self.regions(body, content_fault)
        elif self.is_text(body):
            caption = self.answer(body, content_fault)
        else:
            caption = self.caption(body)
            if caption is None:
                STATE.add("bad")
                self.send(400, '{"error": "bad request"}')
                return
        answer = {
            "id": "cmpl-test", "object": "chat.completion", "model": "test-vlm",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": caption}}],
        }
        STATE.add("answered")
        self.send(200, json.dumps(answer))

    def fault(self, kind):
        """Answer with a fault; False when the fault only delays."""
        if kind in ("500", "503"):
            self.send(int(kind), '{"error": "injected"}')
        elif kind == "429":
            self.send(429, '{"error": "slow down"}',
                      headers=[("Retry-After", str(ARGS.retry_after))])
        elif kind == "slow":
            time.sleep(ARGS.slow)
            return False
        elif kind == "delay":
            time.sleep(0.2)
            return False
        elif kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
        elif kind == "malformed":
            self.send(200, '{"choices": [{"message": {"content": "trunc')
        elif kind == "ctype":
            self.send(200, "<html><body>gateway</body></html>", ctype="text/html")
        elif kind == "empty":
            self.send(200, '{"object": "chat.completion", "choices": []}')
        else:
            self.send(400, '{"error": "bad request"}')
        return True

    @staticmethod
    def is_decompose(body):
        try:
            req = json.loads(body)
            return (req.get("response_format", {}).get("type") == "json_object" and
                    isinstance([m for m in req["messages"] if m["role"] == "user"][-1]["content"],
                               str))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return False

    @staticmethod
    def is_text(body):
        try:
            req = json.loads(body)
            return isinstance([m for m in req["messages"] if m["role"] == "user"][-1]["content"],
                              str)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return False

    def answer(self, body, fault):
        try:
            req = json.loads(body)
            assert isinstance(req.get("model"), str) and req["model"]
            assert req.get("temperature") == 0
            text = [m for m in req["messages"] if m["role"] == "user"][-1]["content"]
            q = re.search(r"^Question: (.*)$", text, re.M).group(1)
            slide = re.search(r"about slide (.*):$", text, re.M).group(1)
        except (ValueError, KeyError, IndexError, TypeError, AssertionError, AttributeError):
            return None
        if fault == "blank":
            return "   "
        n = len(re.findall(r"^\[\d+\] ", text, re.M))
        return "Answer to '%s' about slide %s from %d items of evidence; see [1]." % (
            " ".join(q.split()[:3]), slide, n)

    def regions(self, body, fault):
        try:
            req = json.loads(body)
            assert isinstance(req.get("model"), str) and req["model"]
            assert req.get("temperature") == 0
            assert any(m["role"] == "system" and isinstance(m["content"], str)
                       for m in req["messages"])
            text = [m for m in req["messages"] if m["role"] == "user"][-1]["content"]
        except (ValueError, KeyError, IndexError, TypeError, AssertionError):
            return None
        parts = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if p]
        regions = ["Region %d: %s" % (i + 1, p) for i, p in enumerate(parts)]
        if ARGS.regions_objects:
            regions = [{"text": r, "finding": "x"} for r in regions]
        if fault == "notjson":
            return "Sure! Here are the regions: " + "; ".join(map(str, regions))
        if fault == "noregions":
            return json.dumps({"subcaptions": regions})
        if fault == "blank":
            regions[-1] = "  " if not ARGS.regions_objects else {"text": " "}
        return json.dumps({"regions": regions})

    def caption(self, body):
        try:
            req = json.loads(body)
            assert isinstance(req.get("model"), str) and req["model"]
            assert req.get("temperature") == 0
            assert isinstance(req.get("max_tokens"), int)
            user = [m for m in req["messages"] if m["role"] == "user"][-1]
            text = [p["text"] for p in user["content"] if p["type"] == "text"][0]
            url = [p["image_url"]["url"] for p in user["content"]
                   if p["type"] == "image_url"][0]
            prefix = "data:image/jpeg;base64,"
            assert url.startswith(prefix)
            jpeg = base64.b64decode(url[len(prefix):], validate=True)
            assert jpeg[:2] == b"\xff\xd8"
        except (ValueError, KeyError, IndexError, TypeError, AssertionError):
            return None
        words = " ".join(text.split()[:3])
        return "Image %s asked '%s'. Nuclei are round." % (
            hashlib.sha256(jpeg).hexdigest()[:16], words)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


def main():
    global ARGS, STATE
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--delay", type=float, default=0)
    ap.add_argument("--fault")
    ap.add_argument("--retry-after", type=int, default=1)
    ap.add_argument("--slow", type=float, default=3)
    ap.add_argument("--expect-key-env")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--regions-objects", action="store_true")
    ap.add_argument("--log")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"),
                    help="serve https with this PEM certificate chain and key")
    ARGS = ap.parse_args()
    STATE = State()
    srv = Server(("127.0.0.1", ARGS.port), Handler)
    if ARGS.tls:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ARGS.tls[0], ARGS.tls[1])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    port = srv.server_address[1]
    if ARGS.port_file:
        tmp = ARGS.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, ARGS.port_file)
    children = []
    for _ in range(ARGS.workers - 1):
        pid = os.fork()
        if pid == 0:
            srv.serve_forever()
            os._exit(0)
        children.append(pid)

    def stop(signum, frame):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for pid in children:
            try:
                os.kill(pid, 15)
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
