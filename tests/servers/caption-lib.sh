# tests/servers/caption-lib.sh: shell helpers for the eosin-caption-fetch
# tests (t30NN): tile streams made from real JPEGs, the test VLM server and
# an nginx, each on a free port of 127.0.0.1, stopped by the test's trap.
#
#   make_tiles N SLIDE[,SLIDE...] > tiles.json   tile records as JSON lines
#   start_vlm [server options]      sets VLM_PORT, VLM_PID
#   start_fast_vlm [options]        the same with $BUILD/servers/vlm-fast-server
#   vlm_stat NAME                   a counter from the server's /stats
#   vlm_reset                       zero the counters when the server is idle
#   start_nginx ROOT                sets NGINX_PORT; access log $TRASH/nginx/access.log
#   ids FILE.mpk                    the tile ids of a stream, one a line
SERVERS="$ROOT/tests/servers"
# Debian's interpreter when there is one: a version manager's shim on PATH
# can cost a second per start.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
# Tests run in subshells, so the pids of what they start are kept in a file.
caption_cleanup() {
	[ -f "$TRASH/nginx/nginx.pid" ] && kill "$(cat "$TRASH/nginx/nginx.pid")" 2>/dev/null
	if [ -f "$TRASH/pids" ]; then
		for p in $(cat "$TRASH/pids"); do kill "$p" 2>/dev/null; done
	fi
	rm -rf "$TRASH"
}
trap caption_cleanup EXIT

# make_tiles N SLIDES: N tiles per slide; each JPEG is a real tile with a
# distinct tail after its end-of-image marker, so every tile is its own
# request; magnifications cycle 5, 10, 20, 40.
make_tiles() {
	$PY - "$1" "$2" "$SHARED/tiles" <<'EOF'
import base64, glob, json, sys
n, slides, d = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
jpgs = [open(p, "rb").read() for p in sorted(glob.glob(d + "/*.jpg"))]
k = 0
for slide in slides:
    for i in range(n):
        jpeg = jpgs[k % len(jpgs)] + b"eosin-test-%d" % k
        mag = [5, 10, 20, 40][i % 4]
        tid = "%s/%gx/%d_%d" % (slide, mag, 512 * i, 0)
        print(json.dumps({"k": "tile", "v": 1, "id": tid, "slide": slide, "path": slide + ".svs",
            "mag": mag, "mpp": 10.0 / mag, "x": 512 * i, "y": 0, "extent": 512, "px": 256,
            "level": 0, "ds": 1.0, "base_mpp": 0.25, "mpp_source": "override", "tissue": 0.9,
            "depth": 0, "root": tid, "quality": 90,
            "jpeg": {"$base64": base64.b64encode(jpeg).decode()}}))
        k += 1
EOF
}

# wait_file F: up to 10 s for F to appear
wait_file() {
	i=0
	while [ ! -s "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	[ -s "$1" ]
}

start_vlm() {
	rm -f "$TRASH/vlm.port"
	$PY "$SERVERS/vlm-server.py" --port-file "$TRASH/vlm.port" "$@" \
		>"$TRASH/vlm.log" 2>&1 &
	VLM_PID=$!
	echo $VLM_PID >>"$TRASH/pids"
	wait_file "$TRASH/vlm.port" || { cat "$TRASH/vlm.log" >&2; return 1; }
	VLM_PORT=$(cat "$TRASH/vlm.port")
	VLM="http://127.0.0.1:$VLM_PORT/v1/chat/completions"
}

# start_fast_vlm [--delay S] [--check]: the C server of the benchmarks
# (no faults; /stats has requests, answered, bad, active, max_active and
# connections).
start_fast_vlm() {
	rm -f "$TRASH/vlm.port"
	"$BUILD/servers/vlm-fast-server" --port-file "$TRASH/vlm.port" "$@" \
		>"$TRASH/vlm.log" 2>&1 &
	VLM_PID=$!
	echo $VLM_PID >>"$TRASH/pids"
	wait_file "$TRASH/vlm.port" || { cat "$TRASH/vlm.log" >&2; return 1; }
	VLM_PORT=$(cat "$TRASH/vlm.port")
	VLM="http://127.0.0.1:$VLM_PORT/v1/chat/completions"
}

vlm_stat() { curl -s "http://127.0.0.1:$VLM_PORT/stats" | jq -r ".$1"; }
# vlm_reset: zero the counters once requests of earlier runs (a slow fault
# still sleeping after the client gave up) are done, at most 10 s.
vlm_reset() {
	i=0
	while [ "$(vlm_stat active)" != 0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	curl -s -X POST "http://127.0.0.1:$VLM_PORT/reset" >/dev/null
}

free_port() {
	$PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_nginx ROOT: serve ROOT; nginx runs as this user with every path it
# writes under $TRASH/nginx.
start_nginx() {
	n="$TRASH/nginx"
	mkdir -p "$n/tmp"
	user=
	[ "$(id -u)" = 0 ] && user="user root;"
	for try in 1 2 3; do
		NGINX_PORT=$(free_port)
		cat >"$n/nginx.conf" <<EOF
$user
daemon off;
worker_processes 1;
pid $n/nginx.pid;
error_log $n/error.log;
events { worker_connections 64; }
http {
	access_log $n/access.log;
	client_body_temp_path $n/tmp/body;
	proxy_temp_path $n/tmp/proxy;
	fastcgi_temp_path $n/tmp/fastcgi;
	uwsgi_temp_path $n/tmp/uwsgi;
	scgi_temp_path $n/tmp/scgi;
	types { text/plain txt; }
	default_type application/octet-stream;
	server {
		listen 127.0.0.1:$NGINX_PORT;
		root $1;
	}
}
EOF
		rm -f "$n/nginx.pid"
		nginx -p "$n" -e "$n/error.log" -c "$n/nginx.conf" >"$n/stdout" 2>&1 &
		echo $! >>"$TRASH/pids"
		i=0
		while [ $i -lt 50 ]; do
			curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/" && return 0
			sleep 0.1
			i=$((i + 1))
		done
	done
	cat "$n/error.log" >&2
	return 1
}

ids() { eosin-cat "$1" | jq -r 'select(.k == "tile") | .id'; }

# check_captions IN.json OUT.mpk: OUT has IN's tiles in IN's order, every
# field of each unchanged, and the caption the test server gives for that
# tile's own JPEG and magnification (default prompts: low magnification asks
# about tissue, high about cells).
check_captions() {
	eosin-cat --base64 "$2" >"$TRASH/check.json" &&
	$PY - "$1" "$TRASH/check.json" <<'EOF2'
import base64, hashlib, json, sys
ins = [json.loads(l) for l in open(sys.argv[1])]
outs = [json.loads(l) for l in open(sys.argv[2])]
tin = [r for r in ins if r["k"] == "tile"]
tout = [r for r in outs if r["k"] == "tile"]
assert [r["id"] for r in tin] == [r["id"] for r in tout], "ids differ or reordered"
for a, b in zip(tin, tout):
    for k, v in a.items():
        assert b[k] == v, "%s: field %s changed" % (a["id"], k)
    jpeg = base64.b64decode(a["jpeg"]["$base64"])
    head = "Describe the cells" if a["mag"] >= 20 else "Describe the tissue"
    want = "Image %s asked '%s'. Nuclei are round." % (hashlib.sha256(jpeg).hexdigest()[:16], head)
    assert b.get("caption") == want, "%s: caption %r, want %r" % (a["id"], b.get("caption"), want)
    assert b["sentences"] == [want[:-18], "Nuclei are round."], b["sentences"]
    assert "nuclei" in b["keywords"], b["keywords"]
EOF2
}
