/*
 * eosin-caption-fetch: add text to a stream: VLM captions for tiles from an
 * OpenAI-compatible server (--vlm), or report text fetched by URL (--url),
 * on every tile or once per slide as a `doc` record (--doc), or a slide
 * report's region-level sub-captions from an LLM (--decompose, PathFLIP),
 * or an LLM's report or answer about each slide from what the stream says
 * of it: its nearest reports, zero-shot labels, generated captions
 * (--answer).
 * See eosin-caption-fetch(1).
 *
 * Records enter a window in input order; a tile's slot waits for its text
 * while later records are read and their requests run (lib/text/fetch.c); the
 * window is written from its head as slots become ready, so output order is
 * input order and memory is bounded by --window records. Identical requests
 * (same cache key) in flight at once are asked once; recent answers are
 * kept in memory; with --cache every answer is also kept on disk
 * (lib/text/cache.c) and never asked again.
 */
#include "text/cache.h"
#include "text/fetch.h"
#include "core/json.h"
#include "prog.h"
#include "schema_fields.h"
#include "core/stream.h"
#include "text/text.h"

#include <ctype.h>
#include <curl/curl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <strings.h>

#define SYNOPSIS                                                                                   \
	"eosin-caption-fetch (--vlm URL | --url TEMPLATE [--doc] | --decompose URL | --answer "    \
	"URL) "                                                                                    \
	"[option ...] [file ...]"

static void usage(void)
{
	fprintf(stderr, "usage: " SYNOPSIS "\n");
	exit(EXIT_USAGE);
}

/* ---- a small string-keyed hash table (chained) ---- */

struct hent {
	char *key;
	void *val;
	struct hent *next;
};

#define HBUCKETS 65536

struct htab {
	struct hent *b[HBUCKETS];
	size_t n;
};

static size_t hhash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return (size_t)(h % HBUCKETS);
}

static void *hget(struct htab *t, const char *key)
{
	for (struct hent *e = t->b[hhash(key)]; e; e = e->next)
		if (!strcmp(e->key, key))
			return e->val;
	return NULL;
}

static void hput(struct htab *t, const char *key, void *val)
{
	size_t h = hhash(key);
	struct hent *e = malloc(sizeof *e);
	if (!e || !(e->key = strdup(key)))
		errx(1, "out of memory");
	e->val = val;
	e->next = t->b[h];
	t->b[h] = e;
	t->n++;
}

static void *hdel(struct htab *t, const char *key)
{
	for (struct hent **pe = &t->b[hhash(key)]; *pe; pe = &(*pe)->next) {
		struct hent *e = *pe;
		if (!strcmp(e->key, key)) {
			void *v = e->val;
			*pe = e->next;
			free(e->key);
			free(e);
			t->n--;
			return v;
		}
	}
	return NULL;
}

static void hclear(struct htab *t, void (*free_val)(void *))
{
	for (size_t i = 0; i < HBUCKETS; i++)
		while (t->b[i]) {
			struct hent *e = t->b[i];
			t->b[i] = e->next;
			if (free_val)
				free_val(e->val);
			free(e->key);
			free(e);
		}
	t->n = 0;
}

/* ---- options ---- */

struct prompt {
	double min_mag;   /* used for tiles with mag >= min_mag */
	char *text;
	char *prefix;     /* request JSON up to the base64 image */
	size_t prefix_len;
};

static struct {
	const char *vlm, *url_template, *model, *system, *cache_dir, *rejects;
	const char *decompose; /* chat completions URL of --decompose */
	int max_regions;
	const char *answer, *question; /* --answer's URL and question */
	int max_hits, max_texts, subjects_open;
	const char *api_key_env, *part_from;
	int doc, keywords, max_tokens, window;
	double deadline;
	struct prompt *prompts;
	int nprompts;
	struct fetch_config fc;
} opt = {
    .api_key_env = "EOSIN_API_KEY",
    .keywords = 12,
    .max_tokens = 256,
    .max_regions = 64,
    .question = "Write the microscopic description and the diagnosis of a pathology report "
                "for this slide.",
    .max_hits = 5,
    .max_texts = 4,
    .subjects_open = 1024,
    .window = 1024,
    .fc = {.inflight = 16,
           .retries = 4,
           .timeout = 120,
           .backoff = 0.5,
           .backoff_max = 30,
           .retry_after_max = 300},
};

static const char default_low_prompt[] =
    "Describe the tissue architecture in this H&E-stained histopathology image: the tissue "
    "types, glandular and stromal organisation, and any invasion or necrosis. Answer in two "
    "or three sentences.";
static const char default_high_prompt[] =
    "Describe the cells and nuclei in this H&E-stained histopathology image: cell types, "
    "nuclear size and shape, chromatin, nucleoli, pleomorphism and mitoses. Answer in two or "
    "three sentences.";

/* --decompose: PathFLIP splits a slide's caption into region-level
 * sub-captions with an LLM; this asks for the same, as JSON. */
static const char default_decompose_system[] =
    "You split a pathology report into region-level sub-captions. Each sub-caption describes "
    "one region or finding of the slide (a tissue, a lesion, a margin, a node) in one or two "
    "sentences, using only what the report says; together they cover the report. Answer "
    "with JSON only, in the form {\"regions\": [\"sub-caption\", ...]}.";

static const char default_answer_system[] =
    "You assist a pathologist. Answer the question about one slide from the numbered "
    "evidence only (the reports of the most similar slides in an archive, zero-shot "
    "classifications, generated captions); cite the evidence you use as [n]; say so when it "
    "does not suffice. The evidence is machine-made and may be wrong.";

static void add_prompt(double min_mag, const char *text)
{
	for (int i = 0; i < opt.nprompts; i++)
		if (opt.prompts[i].min_mag == min_mag) {
			free(opt.prompts[i].text);
			opt.prompts[i].text = strdup(text);
			return;
		}
	opt.prompts = realloc(opt.prompts, (size_t)(opt.nprompts + 1) * sizeof *opt.prompts);
	if (!opt.prompts)
		errx(1, "out of memory");
	opt.prompts[opt.nprompts++] = (struct prompt){.min_mag = min_mag, .text = strdup(text)};
}

/* --prompts FILE: lines "MAG<TAB>PROMPT"; # comments and blank lines. */
static void read_prompts(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		err(1, "cannot open '%s'", path);
	char *line = NULL;
	size_t cap = 0;
	long lineno = 0;
	while (getline(&line, &cap, f) > 0) {
		lineno++;
		line[strcspn(line, "\r\n")] = 0;
		if (!line[strspn(line, " \t")] || line[strspn(line, " \t")] == '#')
			continue;
		char *tab = strchr(line, '\t'), *end;
		double m = tab ? strtod(line, &end) : 0;
		if (!tab || end != tab || !(m >= 0) || !tab[1])
			errx(1, "%s:%ld: want MAGNIFICATION<TAB>PROMPT", path, lineno);
		add_prompt(m, tab + 1);
	}
	free(line);
	fclose(f);
	if (opt.nprompts == 0)
		errx(1, "%s: no prompts", path);
}

static char *json_quote(const char *s)
{
	json_t *j = json_string(s);
	if (!j)
		errx(1, "'%s' is not UTF-8 text", s);
	char *q = json_dumps(j, JSON_ENCODE_ANY);
	json_decref(j);
	if (!q)
		errx(1, "out of memory");
	return q;
}

static void build_prompt_prefixes(void)
{
	char *model = json_quote(opt.model);
	char *system = opt.system ? json_quote(opt.system) : NULL;
	for (int i = 0; i < opt.nprompts; i++) {
		char *text = json_quote(opt.prompts[i].text);
		char *p;
		int n = asprintf(&p,
		                 "{\"model\":%s,\"max_tokens\":%d,\"temperature\":0,\"messages\":["
		                 "%s%s%s"
		                 "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":%s},"
		                 "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/jpeg;base64,",
		                 model, opt.max_tokens, system ? "{\"role\":\"system\",\"content\":" : "",
		                 system ? system : "", system ? "}," : "", text);
		if (n < 0)
			errx(1, "out of memory");
		opt.prompts[i].prefix = p;
		opt.prompts[i].prefix_len = (size_t)n;
		free(text);
	}
	free(model);
	free(system);
}

static const char request_suffix[] = "\"}}]}]}";

static const struct prompt *prompt_for(double mag)
{
	const struct prompt *best = NULL, *lowest = NULL;
	for (int i = 0; i < opt.nprompts; i++) {
		const struct prompt *p = &opt.prompts[i];
		if (!lowest || p->min_mag < lowest->min_mag)
			lowest = p;
		if (p->min_mag <= mag && (!best || p->min_mag > best->min_mag))
			best = p;
	}
	return best ? best : lowest;
}

/* ---- the window ---- */

struct request;

struct slot {
	struct slot *next;        /* window order */
	int ready;
	int reject;               /* goes to --rejects, not stdout */
	char *out;                /* the finished record */
	size_t outlen;
	/* while waiting */
	char *raw;                /* copy of the input tile record, or NULL for a doc */
	size_t rawlen;
	char *slide;              /* doc: the slide */
	char *source;             /* URL asked (--url) */
	char part[TEXT_LABEL_MAX];/* part the slide names, "" if none */
	uint64_t number;          /* input record number, for messages */
	const char *input;        /* its input's name (lives as long as argv) */
	int warned;               /* its failure is already on stderr */
	int decompose;            /* raw is a doc record whose caption is split */
	struct subject *subject;  /* --answer: the slide this answer is about */
	struct request *req;
	struct slot *req_next;    /* next slot waiting on the same request */
};

struct request {
	char key[CACHE_KEY_HEX];
	struct slot *waiters;
	char *text;               /* the answer's text, set by check_answer */
	size_t text_len;
};

static struct {
	struct slot *head, *tail;
	size_t n;
	struct stream_writer out, rejects;
	int have_rejects;
	struct recb b;
	struct fetch *engine;
	struct cache cache;
	int have_cache;
	struct htab inflight;     /* key -> struct request */
	struct htab memo;         /* key -> char * text (recent answers) */
	char *memo_ring[256];     /* keys in memo, oldest evicted first */
	size_t memo_pos;
	struct htab slides;       /* --doc: slides already given a doc record */
	struct text_part_rule part_rule;
	char *auth_header;
	int hdr_done;
	int expired;              /* --deadline passed */
	double deadline_at;
	const char *input_name;
	/* summary */
	uint64_t records, tiles, asked, cached, shared, failed, docs;
	int argc;
	char **argv;
} g;

static void window_push(struct slot *s)
{
	s->next = NULL;
	if (g.tail)
		g.tail->next = s;
	else
		g.head = s;
	g.tail = s;
	g.n++;
}

static struct slot *slot_new(void)
{
	struct slot *s = calloc(1, sizeof *s);
	if (!s)
		errx(1, "out of memory");
	return s;
}

static void slot_ready_bytes(struct slot *s, const char *p, size_t n)
{
	if (!(s->out = malloc(n ? n : 1)))
		errx(1, "out of memory");
	memcpy(s->out, p, n);
	s->outlen = n;
	s->ready = 1;
}

static void slot_ready_recb(struct slot *s)
{
	if (recb_finish(&g.b, &s->out, &s->outlen) < 0)
		die_lib();
	s->ready = 1;
}

static void write_ready(void)
{
	while (g.head && g.head->ready) {
		struct slot *s = g.head;
		struct stream_writer *w = s->reject && g.have_rejects ? &g.rejects : &g.out;
		if (stream_write_raw(w, s->out, s->outlen) < 0)
			die_lib();
		g.head = s->next;
		if (!g.head)
			g.tail = NULL;
		g.n--;
		free(s->out);
		free(s->raw);
		free(s->slide);
		free(s->source);
		free(s);
	}
}

static void queue_hdr(void)
{
	if (g.hdr_done)
		return;
	g.hdr_done = 1;
	struct slot *s = slot_new();
	recb_hdr(&g.b, "eosin-caption-fetch", g.argc, g.argv);
	if (opt.vlm || opt.decompose || opt.answer)
		recb_str(&g.b, F_HDR_MODEL, opt.model);
	slot_ready_recb(s);
	window_push(s);
}

/* ---- text into records ---- */

static void pack_str(msgpack_packer *pk, const char *s, size_t n)
{
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

/* caption, part, sentences and keywords from (text, n); part may be "". */
static void add_text_fields(const char *text, size_t n, const char *part)
{
	char *caption = text_clean(text, n);
	struct text_span *sp = NULL;
	size_t nsp = 0, nkw = 0;
	char **kw = NULL;
	if (!caption || text_sentences(text, n, &sp, &nsp) < 0 ||
	    (opt.keywords > 0 && text_keywords(text, n, (size_t)opt.keywords, &kw, &nkw) < 0))
		die_lib();
	recb_str(&g.b, F_COMMON_CAPTION, caption);
	if (part && *part)
		recb_str(&g.b, F_COMMON_PART, part);
	recb_key(&g.b, F_COMMON_SENTENCES);
	msgpack_pack_array(&g.b.pk, nsp);
	for (size_t i = 0; i < nsp; i++) {
		char *c = text_clean(text + sp[i].off, sp[i].len);
		if (!c)
			die_lib();
		pack_str(&g.b.pk, c, strlen(c));
		free(c);
	}
	if (opt.keywords > 0) {
		recb_key(&g.b, F_COMMON_KEYWORDS);
		msgpack_pack_array(&g.b.pk, nkw);
		for (size_t i = 0; i < nkw; i++)
			pack_str(&g.b.pk, kw[i], strlen(kw[i]));
	}
	free(caption);
	free(sp);
	text_free_strings(kw, nkw);
}

/* From a fetched report, the text for a slide that names part `part`
 * ("" when it names none): the part when the report has parts and the
 * slide names one, else the whole report. NULL (why set) when the slide's
 * part is not in a report that has parts. */
static const char *report_text_for(const char *report, size_t n, const char *part, size_t *len,
                                   char *label, char *why, size_t whysize)
{
	struct text_part *parts;
	size_t np;
	label[0] = 0;
	*len = n;
	if (!*part || !opt.url_template)
		return report;
	if (text_split_parts(report, n, &parts, &np) < 0)
		die_lib();
	if (np == 0)
		return report;
	const struct text_part *p = text_find_part(parts, np, part);
	const char *ret = NULL;
	if (p) {
		ret = report + p->off;
		*len = p->len;
		snprintf(label, TEXT_LABEL_MAX, "%s", part);
	} else {
		snprintf(why, whysize, "no part '%s' in the report", part);
	}
	free(parts);
	return ret;
}

static const char *const text_fields[] = {F_COMMON_CAPTION, F_COMMON_CAPTION_ERROR, F_COMMON_SENTENCES, F_COMMON_KEYWORDS,
                                          NULL};
static const char *const text_fields_part[] = {F_COMMON_CAPTION, F_COMMON_CAPTION_ERROR, F_COMMON_SENTENCES,
                                               F_COMMON_KEYWORDS, F_COMMON_PART, NULL};

/* The first few failed requests (a server down or refusing us fails them
 * all alike) on stderr, naming record and id; the rest are counted in the
 * summary and said in each record's caption_error. */
static void warn_failure(const struct slot *s, const char *error)
{
	enum { SHOWN = 3 };
	static int shown;
	if (shown == SHOWN)
		return;
	char id[256] = "";
	if (s->raw) {
		msgpack_unpacked unp;
		msgpack_unpacked_init(&unp);
		if (msgpack_unpack_next(&unp, s->raw, s->rawlen, NULL) == MSGPACK_UNPACK_SUCCESS) {
			struct record r = {.raw = s->raw, .len = s->rawlen, .root = unp.data};
			record_id(&r, id, sizeof id);
		}
		msgpack_unpacked_destroy(&unp);
	} else {
		snprintf(id, sizeof id, "%s/%s", s->slide, s->subject ? "answer" : "report");
	}
	const char *more =
	    ++shown == SHOWN ? " (further failures: see the summary and caption_error)" : "";
	if (s->subject) /* asked when its evidence was all read: no one record */
		warnx("%s: the answer about slide '%s' (id '%s'): %s%s", s->input, s->slide, id,
		      error, more);
	else
		warnx("%s: record %" PRIu64 " (id '%s'): %s%s", s->input, s->number, id, error,
		      more);
}

/* A slot whose text could not be had: counted, bound for --rejects when
 * given, said (the first few) unless it was already. */
static void slot_failed(struct slot *s, const char *error)
{
	g.failed++;
	s->reject = g.have_rejects;
	if (!s->warned)
		warn_failure(s, error);
}

/* Finish a waiting slot with text (error NULL) or an error. */
static void decompose_finish(struct slot *s, const char *text, size_t n, const char *error);
static void answer_finish(struct slot *s, const char *text, size_t n, const char *error);

static void slot_finish(struct slot *s, const char *text, size_t n, const char *error)
{
	if (s->decompose) {
		decompose_finish(s, text, n, error);
		return;
	}
	if (s->subject) {
		answer_finish(s, text, n, error);
		return;
	}
	char why[256] = "", label[TEXT_LABEL_MAX] = "";
	const char *use = NULL;
	size_t len = 0;
	if (!error) {
		use = report_text_for(text, n, s->part, &len, label, why, sizeof why);
		if (!use)
			error = why;
	}
	if (error)
		slot_failed(s, error);
	if (!s->raw) { /* a doc record */
		recb_begin(&g.b, "doc", 1);
		char id[4096];
		snprintf(id, sizeof id, "%s/report%s%s", s->slide, label[0] ? "/" : "", label);
		recb_str(&g.b, F_DOC_ID, id);
		recb_str(&g.b, F_DOC_SLIDE, s->slide);
		if (s->source)
			recb_str(&g.b, F_DOC_SOURCE, s->source);
		if (error) {
			recb_str(&g.b, F_COMMON_CAPTION_ERROR, error);
			if (s->part[0])
				recb_str(&g.b, F_COMMON_PART, s->part);
		} else {
			add_text_fields(use, len, label);
		}
		g.docs++;
		slot_ready_recb(s);
		return;
	}
	msgpack_unpacked unp;
	msgpack_unpacked_init(&unp);
	size_t off = 0;
	if (msgpack_unpack_next(&unp, s->raw, s->rawlen, &off) != MSGPACK_UNPACK_SUCCESS)
		errx(1, "internal error: cannot re-read record %" PRIu64, s->number);
	struct record r = {.raw = s->raw, .len = s->rawlen, .root = unp.data};
	const msgpack_object *v = mpo_get(&unp.data, "v");
	recb_begin(&g.b, "tile", v ? (int)v->via.u64 : 1);
	recb_copy_fields(&g.b, &r, label[0] ? text_fields_part : text_fields);
	if (error)
		recb_str(&g.b, F_COMMON_CAPTION_ERROR, error);
	else
		add_text_fields(use, len, label);
	msgpack_unpacked_destroy(&unp);
	slot_ready_recb(s);
	free(s->raw);
	s->raw = NULL;
}

/* The doc record again, its sentences now the LLM's sub-captions (the
 * regex sentences' positions and embeddings, which no longer fit, left
 * out) and decomposed_by naming the model; or, when the answer would not
 * do, the record as it came with caption_error, a reject. */
static void decompose_finish(struct slot *s, const char *text, size_t n, const char *error)
{
	static const char *const replaced[] = {F_COMMON_SENTENCES,  F_DOC_SENT_POS,
	                                       F_COMMON_SENT_EMB,   F_COMMON_CAPTION_ERROR,
	                                       F_DOC_DECOMPOSED_BY, NULL};
	json_t *regions = NULL;
	if (!error)
		regions = json_loadb(text, n, 0, NULL); /* json_is_array() reads its argument twice */
	if (!error && !json_is_array(regions))
		error = "decompose: the cached answer is not a JSON array";
	if (error)
		slot_failed(s, error);
	msgpack_unpacked unp;
	msgpack_unpacked_init(&unp);
	if (msgpack_unpack_next(&unp, s->raw, s->rawlen, NULL) != MSGPACK_UNPACK_SUCCESS)
		errx(1, "internal error: cannot re-read record %" PRIu64, s->number);
	struct record r = {.raw = s->raw, .len = s->rawlen, .root = unp.data};
	const msgpack_object *v = mpo_get(&unp.data, "v");
	recb_begin(&g.b, "doc", v ? (int)v->via.u64 : 1);
	static const char *const err_replaced[] = {F_COMMON_CAPTION_ERROR, NULL};
	recb_copy_fields(&g.b, &r, error ? err_replaced : replaced);
	if (error) {
		recb_str(&g.b, F_COMMON_CAPTION_ERROR, error);
	} else {
		recb_key(&g.b, F_COMMON_SENTENCES);
		msgpack_pack_array(&g.b.pk, json_array_size(regions));
		size_t i;
		json_t *e;
		json_array_foreach(regions, i, e)
		{
			char *c = text_clean(json_string_value(e), json_string_length(e));
			if (!c)
				die_lib();
			pack_str(&g.b.pk, c, strlen(c));
			free(c);
		}
		recb_str(&g.b, F_DOC_DECOMPOSED_BY, opt.model);
		g.docs++;
	}
	json_decref(regions);
	msgpack_unpacked_destroy(&unp);
	slot_ready_recb(s);
	free(s->raw);
	s->raw = NULL;
}

/* ---- --answer: what the stream says of a slide, put to an LLM ---- */

/* A slide with evidence gathered: numbered lines, and in sources the id
 * of each line's record. Kept (without its text) after it is asked about,
 * so that later evidence for it is counted, not asked again. */
struct subject {
	char *id;
	char *evidence;
	size_t len, cap;
	json_t *sources;
	int n, nhits, ntexts, asked;
	struct subject *next; /* the open ones, oldest first */
};

static struct {
	struct htab by_id; /* id -> struct subject */
	struct subject *head, *tail;
	int open;
	uint64_t late; /* evidence after its slide was asked about */
} A;

/* The text record of an answer: id SLIDE/answer, the answer as caption, the
 * question, the sources in the order they were numbered, the model. */
static void answer_finish(struct slot *s, const char *text, size_t n, const char *error)
{
	struct subject *sj = s->subject;
	if (error)
		slot_failed(s, error);
	recb_begin(&g.b, "text", 1);
	char id[4200];
	snprintf(id, sizeof id, "%s/answer", sj->id);
	recb_str(&g.b, F_TEXT_ID, id);
	recb_str(&g.b, F_TEXT_SLIDE, sj->id);
	if (error) {
		recb_str(&g.b, F_COMMON_CAPTION_ERROR, error);
	} else {
		char *c = text_clean(text, n);
		if (!c)
			die_lib();
		recb_str(&g.b, F_COMMON_CAPTION, c);
		free(c);
		g.docs++;
	}
	recb_str(&g.b, F_TEXT_QUESTION, opt.question);
	recb_key(&g.b, F_TEXT_SOURCES);
	msgpack_pack_array(&g.b.pk, json_array_size(sj->sources));
	size_t i;
	json_t *e;
	json_array_foreach(sj->sources, i, e)
	    pack_str(&g.b.pk, json_string_value(e), json_string_length(e));
	recb_str(&g.b, F_TEXT_ANSWERED_BY, opt.model);
	slot_ready_recb(s);
	free(sj->evidence);
	sj->evidence = NULL;
	json_decref(sj->sources);
	sj->sources = NULL;
}

static void ask(struct slot *s, const char *key, const char *url, char *body, size_t len);
static int ask_known(struct slot *s, const char *key);

/* A chat completions request (req, taken) for slot s, cached under kind,
 * url and the request's bytes: answered from what is known, or asked.
 * -1 when req is NULL (its text was not UTF-8): the caller says why. */
static int ask_chat(struct slot *s, const char *kind, const char *url, json_t *req)
{
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body)
		return -1;
	char key[CACHE_KEY_HEX];
	const void *parts[] = {kind, url, body};
	size_t lens[] = {strlen(kind), strlen(url), strlen(body)};
	cache_key(key, 3, parts, lens);
	if (ask_known(s, key))
		free(body);
	else
		ask(s, key, url, body, strlen(body));
	return 0;
}

/* Ask about the oldest open slide: its answer's slot joins the window. */
static void subject_close_oldest(void)
{
	struct subject *sj = A.head;
	A.head = sj->next;
	if (!A.head)
		A.tail = NULL;
	A.open--;
	sj->asked = 1;
	struct slot *s = slot_new();
	s->subject = sj;
	s->input = g.input_name;
	if (!(s->slide = strdup(sj->id)))
		errx(1, "out of memory");
	window_push(s);
	char *user;
	if (asprintf(&user, "Question: %s\n\nWhat is known about slide %s:\n%.*s", opt.question,
	             sj->id, (int)sj->len, sj->evidence) < 0)
		errx(1, "out of memory");
	json_t *req = json_pack(
	    "{s:s, s:i, s:i, s:[{s:s, s:s}, {s:s, s:s}]}", "model", opt.model, "max_tokens",
	    opt.max_tokens, "temperature", 0, "messages", "role", "system", "content",
	    opt.system ? opt.system : default_answer_system, "role", "user", "content", user);
	free(user);
	if (ask_chat(s, "answer", opt.answer, req) < 0)
		slot_finish(s, NULL, 0, "answer: the evidence is not UTF-8 text");
}

/* One numbered line of evidence for slide id, from record source. */
static struct subject *subject_add(const char *id, const char *source, const char *line)
{
	struct subject *sj = hget(&A.by_id, id);
	if (sj && sj->asked) {
		A.late++;
		return NULL;
	}
	if (!sj) {
		if (!(sj = calloc(1, sizeof *sj)) || !(sj->id = strdup(id)) ||
		    !(sj->sources = json_array()))
			errx(1, "out of memory");
		hput(&A.by_id, id, sj);
		if (A.tail)
			A.tail->next = sj;
		else
			A.head = sj;
		A.tail = sj;
		A.open++;
	}
	char *l;
	int n = asprintf(&l, "[%d] %s\n", sj->n + 1, line);
	if (n < 0)
		errx(1, "out of memory");
	if (sj->len + (size_t)n + 1 > sj->cap) {
		sj->cap = 2 * (sj->len + (size_t)n + 1);
		if (!(sj->evidence = realloc(sj->evidence, sj->cap)))
			errx(1, "out of memory");
	}
	memcpy(sj->evidence + sj->len, l, (size_t)n + 1);
	sj->len += (size_t)n;
	free(l);
	json_array_append_new(sj->sources, json_string(source));
	sj->n++;
	return sj;
}

/* A string field of a msgpack map, NUL-terminated into buf; "" if absent. */
static const char *mp_str(const msgpack_object *map, const char *key, char *buf, size_t size)
{
	const msgpack_object *v = map ? mpo_get(map, key) : NULL;
	buf[0] = 0;
	if (v && v->type == MSGPACK_OBJECT_STR)
		snprintf(buf, size, "%.*s", (int)v->via.str.size, v->via.str.ptr);
	return buf;
}

static double mp_num(const msgpack_object *v)
{
	return v->type == MSGPACK_OBJECT_FLOAT64 || v->type == MSGPACK_OBJECT_FLOAT32 ? v->via.f64
	       : v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (double)v->via.u64
	       : v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? (double)v->via.i64
	                                                    : -1;
}

/* A zeroshot record's three likeliest classes, into line. */
static void zeroshot_line(const msgpack_object *sc, char *line, size_t size)
{
	int best[3] = {-1, -1, -1};
	for (uint32_t i = 0; i < sc->via.map.size; i++) {
		int at = (int)i;
		if (sc->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR)
			continue;
		for (int k = 0; k < 3 && at >= 0; k++)
			if (best[k] < 0 || mp_num(&sc->via.map.ptr[at].val) >
			                       mp_num(&sc->via.map.ptr[best[k]].val)) {
				int t = best[k];
				best[k] = at;
				at = t;
			}
	}
	size_t o = (size_t)snprintf(line, size, "Zero-shot classification of the slide:");
	for (int k = 0; k < 3 && best[k] >= 0 && o < size; k++) {
		const msgpack_object_kv *kv = &sc->via.map.ptr[best[k]];
		o += (size_t)snprintf(line + o, size - o, "%s %.*s (p %.2f)", k ? ";" : "",
		                      (int)kv->key.via.str.size, kv->key.via.str.ptr,
		                      mp_num(&kv->val));
	}
}

/* What a record says of a slide: a hit's stored report (the query is the
 * slide asked about), a zeroshot record's classes, a generated caption
 * (a text record with a slide). Records of other kinds say nothing here.
 * At most --open-slides slides gather at once; the oldest is then asked. */
static void gather_evidence(const struct record *rec)
{
	char subject[1024], cap[8192], src[1040], line[9400];
	const msgpack_object *root = &rec->root;
	struct subject *sj;
	if (record_is(rec, "hit")) {
		const msgpack_object *stored = mpo_get(root, "record");
		double score = 0;
		if (!*mp_str(root, "query", subject, sizeof subject) || !stored ||
		    stored->type != MSGPACK_OBJECT_MAP ||
		    !*mp_str(stored, "caption", cap, sizeof cap))
			return;
		if ((sj = hget(&A.by_id, subject)) && !sj->asked && sj->nhits >= opt.max_hits)
			return;
		record_get_num(rec, "score", &score);
		char slide[1024];
		mp_str(stored, "slide", slide, sizeof slide);
		if (!*mp_str(root, "target", src, sizeof src))
			mp_str(stored, "id", src, sizeof src);
		snprintf(line, sizeof line, "Report of a similar slide%s%s%s (similarity %.3f): %s",
		         *slide ? " (" : "", slide, *slide ? ")" : "", score, cap);
		if ((sj = subject_add(subject, *src ? src : "hit", line)))
			sj->nhits++;
	} else if (record_is(rec, "zeroshot")) {
		const msgpack_object *sc = mpo_get(root, "zs_scores");
		if (!*mp_str(root, "slide", subject, sizeof subject) || !sc ||
		    sc->type != MSGPACK_OBJECT_MAP)
			return;
		zeroshot_line(sc, line, sizeof line);
		snprintf(src, sizeof src, "zeroshot:%s", subject);
		subject_add(subject, src, line);
	} else if (record_is(rec, "text")) {
		if (!*mp_str(root, "slide", subject, sizeof subject) ||
		    !*mp_str(root, "caption", cap, sizeof cap) || record_get(rec, "question"))
			return;
		if ((sj = hget(&A.by_id, subject)) && !sj->asked && sj->ntexts >= opt.max_texts)
			return;
		mp_str(root, "id", src, sizeof src);
		snprintf(line, sizeof line, "Generated caption: %s", cap);
		if ((sj = subject_add(subject, *src ? src : "text", line)))
			sj->ntexts++;
	}
	while (A.open > opt.subjects_open)
		subject_close_oldest();
}

static void subject_free(void *p)
{
	struct subject *sj = p;
	free(sj->id);
	free(sj->evidence);
	json_decref(sj->sources);
	free(sj);
}

/* ---- requests ---- */

static void memo_add(const char *key, const char *text, size_t n)
{
	if (hget(&g.memo, key))
		return;
	size_t cap = sizeof g.memo_ring / sizeof g.memo_ring[0];
	char *old = g.memo_ring[g.memo_pos % cap];
	if (old) {
		free(hdel(&g.memo, old));
		free(old);
	}
	char *copy = malloc(n + 1);
	if (!copy)
		errx(1, "out of memory");
	memcpy(copy, text, n);
	copy[n] = 0;
	hput(&g.memo, key, copy);
	if (!(g.memo_ring[g.memo_pos % cap] = strdup(key)))
		errx(1, "out of memory");
	g.memo_pos++;
}

/* --decompose: the message content must be a JSON object whose "regions"
 * is an array of 1 to --max-regions sub-captions, each a string (or an
 * object with a string "text", as some models answer), not blank, at most
 * 4096 bytes. Into *out: the sub-captions, trimmed, as a compact JSON
 * array (what is cached). 0, or -1 with why. */
static int regions_from_content(const char *content, size_t n, char **out, char *why, size_t size)
{
	json_error_t jerr;
	json_t *c = json_loadb(content, n, 0, &jerr), *regions, *clean = NULL;
	int ret = -1;
	if (!json_is_object(c)) {
		snprintf(why, size, "decompose: the answer's content is not a JSON object%s%s",
		         c ? "" : ": ", c ? "" : jerr.text);
		goto out;
	}
	regions = json_object_get(c, "regions");
	if (!json_is_array(regions) || json_array_size(regions) == 0) {
		snprintf(why, size,
		         "decompose: no non-empty 'regions' array in the answer's content");
		goto out;
	}
	if (json_array_size(regions) > (size_t)opt.max_regions) {
		snprintf(why, size, "decompose: %zu regions, more than --max-regions %d",
		         json_array_size(regions), opt.max_regions);
		goto out;
	}
	clean = json_array();
	size_t i;
	json_t *r;
	json_array_foreach(regions, i, r)
	{
		json_t *t = json_is_object(r) ? json_object_get(r, "text") : r;
		if (!json_is_string(t)) {
			snprintf(why, size, "decompose: region %zu of %zu is not a string", i + 1,
			         json_array_size(regions));
			goto out;
		}
		const char *v = json_string_value(t);
		size_t len = json_string_length(t);
		while (len && isspace((unsigned char)*v))
			v++, len--;
		while (len && isspace((unsigned char)v[len - 1]))
			len--;
		if (!len || len > 4096 || memchr(v, 0, len)) {
			snprintf(why, size, "decompose: region %zu of %zu is %s", i + 1,
			         json_array_size(regions),
			         !len         ? "blank"
			         : len > 4096 ? "longer than 4096 bytes"
			                      : "not text");
			goto out;
		}
		json_array_append_new(clean, json_stringn(v, len));
	}
	if (!(*out = json_dumps(clean, JSON_COMPACT)))
		errx(1, "out of memory");
	ret = 0;
out:
	json_decref(clean);
	json_decref(c);
	return ret;
}

static int text_has_words(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isspace((unsigned char)s[i]))
			return 1;
	return 0;
}

/* VLM: the answer must be JSON with choices[0].message.content a string;
 * --url: any UTF-8 text. The text goes into the request. */
static int check_answer(void *ctx, void *user, const struct fetch_answer *a, char *why,
                        size_t size)
{
	struct request *rq = user;
	(void)ctx;
	if (opt.url_template) {
		if (!text_is_utf8(a->body, a->len)) {
			snprintf(why, size, "answer is not UTF-8 text");
			return -1;
		}
		free(rq->text);
		if (!(rq->text = strdup(a->body)))
			errx(1, "out of memory");
		rq->text_len = a->len;
		return 0;
	}
	if (!a->content_type || strncasecmp(a->content_type, "application/json", 16)) {
		char ct[64];
		snprintf(ct, sizeof ct, "%s", a->content_type ? a->content_type : "none");
		ct[strcspn(ct, ";")] = 0;
		snprintf(why, size, "answer is '%s', not JSON", ct);
		return -1;
	}
	json_error_t jerr;
	json_t *j = json_loadb(a->body, a->len, 0, &jerr);
	if (!j) {
		snprintf(why, size, "malformed JSON in answer: %s", jerr.text);
		return -1;
	}
	json_t *content =
	    json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0),
	                                    "message"),
	                    "content");
	if (!json_is_string(content)) {
		json_decref(j);
		snprintf(why, size, "no choices[0].message.content in answer");
		return -1;
	}
	free(rq->text);
	rq->text = NULL;
	if (opt.decompose) {
		int r = regions_from_content(json_string_value(content),
		                             json_string_length(content), &rq->text, why, size);
		json_decref(j);
		rq->text_len = rq->text ? strlen(rq->text) : 0;
		return r;
	}
	rq->text_len = json_string_length(content);
	if (opt.answer && !text_has_words(json_string_value(content), rq->text_len)) {
		json_decref(j);
		snprintf(why, size, "answer: the message content is blank");
		return -1;
	}
	if (!(rq->text = malloc(rq->text_len + 1)))
		errx(1, "out of memory");
	memcpy(rq->text, json_string_value(content), rq->text_len);
	rq->text[rq->text_len] = 0;
	json_decref(j);
	return 0;
}

static void request_done(void *ctx, void *user, const struct fetch_answer *a)
{
	struct request *rq = user;
	(void)ctx;
	hdel(&g.inflight, rq->key);
	if (!a->error) {
		if (g.have_cache && cache_put(&g.cache, rq->key, rq->text, rq->text_len) < 0)
			warn_lib();
		memo_add(rq->key, rq->text, rq->text_len);
	}
	for (struct slot *s = rq->waiters, *next; s; s = next) {
		next = s->req_next;
		s->req = NULL;
		slot_finish(s, rq->text, rq->text_len, a->error);
	}
	free(rq->text);
	free(rq);
}

/* Text under key without a new request: from recent answers, a request
 * in flight (the slot waits on it), the cache, or the deadline's error.
 * 1 if so, 0 when the key must be asked. */
static int ask_known(struct slot *s, const char *key)
{
	const char *m = hget(&g.memo, key);
	if (m) {
		g.shared++;
		slot_finish(s, m, strlen(m), NULL);
		return 1;
	}
	struct request *rq = hget(&g.inflight, key);
	if (rq) {
		g.shared++;
		s->req = rq;
		s->req_next = rq->waiters;
		rq->waiters = s;
		return 1;
	}
	if (g.have_cache) {
		char *text;
		size_t n;
		int hit = cache_get(&g.cache, key, &text, &n);
		if (hit < 0)
			warn_lib();
		if (hit == 1) {
			g.cached++;
			memo_add(key, text, n);
			slot_finish(s, text, n, NULL);
			free(text);
			return 1;
		}
	}
	if (g.expired) {
		slot_finish(s, NULL, 0, "deadline");
		return 1;
	}
	return 0;
}

/* Ask url for the text under key (POST body, taken, when not NULL); the
 * slot finishes when the answer comes. Call after ask_known() said 0. */
static void ask(struct slot *s, const char *key, const char *url, char *body, size_t len)
{
	struct request *rq = calloc(1, sizeof *rq);
	if (!rq)
		errx(1, "out of memory");
	snprintf(rq->key, sizeof rq->key, "%s", key);
	rq->waiters = s;
	s->req = rq;
	if (fetch_add(g.engine, url, body, len, rq) < 0) {
		char why[256];
		snprintf(why, sizeof why, "%s", eosin_errmsg());
		free(rq);
		s->req = NULL;
		slot_finish(s, NULL, 0, why);
		return;
	}
	hput(&g.inflight, key, rq);
	g.asked++;
}

/* ---- per record ---- */

static void bad_record(struct slot *s, const char *why)
{
	warnx("%s: record %" PRIu64 ": %s", g.input_name, s->number, why);
	s->warned = 1;
	slot_finish(s, NULL, 0, why);
}

static void caption_tile(struct slot *s, const struct record *rec)
{
	const char *jpeg;
	size_t n;
	double mag = 0;
	char id[256], why[512];
	int rc = record_get_bin(rec, F_TILE_JPEG, &jpeg, &n);
	if (rc != 0) {
		if (rc > 0)
			snprintf(why, sizeof why, "tile '%s' has no field 'jpeg'",
			         record_id(rec, id, sizeof id));
		bad_record(s, rc > 0 ? why : eosin_errmsg());
		return;
	}
	if ((rc = record_get_num(rec, F_TILE_MAG, &mag)) != 0) {
		if (rc > 0)
			snprintf(why, sizeof why, "tile '%s' has no field 'mag'",
			         record_id(rec, id, sizeof id));
		bad_record(s, rc > 0 ? why : eosin_errmsg());
		return;
	}
	const struct prompt *p = prompt_for(mag);
	char key[CACHE_KEY_HEX];
	const void *parts[] = {"vlm", opt.vlm, p->prefix, jpeg};
	size_t lens[] = {3, strlen(opt.vlm), p->prefix_len, n};
	cache_key(key, 4, parts, lens);
	if (ask_known(s, key))
		return;  /* no request body needed */
	size_t b64 = 4 * ((n + 2) / 3);
	size_t len = p->prefix_len + b64 + sizeof request_suffix - 1;
	char *body = malloc(len + 1);
	if (!body)
		errx(1, "out of memory");
	memcpy(body, p->prefix, p->prefix_len);
	base64_encode((const unsigned char *)jpeg, n, body + p->prefix_len);
	memcpy(body + p->prefix_len + b64, request_suffix, sizeof request_suffix);
	ask(s, key, opt.vlm, body, len);
}

/* --decompose: ask for the doc's caption split into region sub-captions.
 * A doc without a caption (or with caption_error) passes as it is. */
static void decompose_doc(struct slot *s, const struct record *rec)
{
	const char *caption;
	size_t n;
	if (record_get_str(rec, F_COMMON_CAPTION, &caption, &n) != 0 ||
	    record_get(rec, F_COMMON_CAPTION_ERROR)) {
		free(s->raw);
		s->raw = NULL;
		s->decompose = 0;
		slot_ready_bytes(s, rec->raw, rec->len);
		return;
	}
	json_t *req =
	    json_pack("{s:s, s:i, s:i, s:{s:s}, s:[{s:s, s:s}, {s:s, s:s%}]}", "model", opt.model,
	              "max_tokens", opt.max_tokens, "temperature", 0, "response_format", "type",
	              "json_object", "messages", "role", "system", "content",
	              opt.system ? opt.system : default_decompose_system, "role", "user", "content",
	              caption, n);
	if (ask_chat(s, "decompose", opt.decompose, req) < 0)
		bad_record(s, "decompose: the caption is not UTF-8 text");
}

/* {case}: the slide id without the part the part rule found in it
 * ("S12-3456-A" gives "S12-3456"), or the whole id when it names none. */
static int slide_case(const struct record *rec, char *out, size_t size)
{
	if (record_get_strcpy(rec, F_TILE_SLIDE, out, size) != 0)
		return -1;
	regmatch_t m;
	if (regexec(&g.part_rule.re, out, 1, &m, 0) == 0 && m.rm_so >= 0)
		memmove(out + m.rm_so, out + m.rm_eo, strlen(out + m.rm_eo) + 1);
	return 0;
}

/* Fill the URL template from the record; -1 (why set) on a missing field. */
static char *fill_template(const struct record *rec, const char *part, char *why, size_t whysize)
{
	size_t cap = 256, n = 0;
	char *out = malloc(cap);
	if (!out)
		errx(1, "out of memory");
	int is_file = !strncmp(opt.url_template, "file:", 5);
	for (const char *t = opt.url_template; *t;) {
		char val[1024] = "";
		size_t skip = 1;
		const char *lit = t;
		size_t litn = 1;
		if (*t == '{') {
			const char *close = strchr(t, '}');
			char name[32];
			if (!close || (size_t)(close - t - 1) >= sizeof name)
				goto literal;
			memcpy(name, t + 1, (size_t)(close - t - 1));
			name[close - t - 1] = 0;
			skip = (size_t)(close - t) + 1;
			if (!strcmp(name, "part")) {
				snprintf(val, sizeof val, "%s", part);
			} else if (!strcmp(name, "case")) {
				if (slide_case(rec, val, sizeof val) < 0) {
					snprintf(why, whysize, "no string field 'slide' for {case}");
					free(out);
					return NULL;
				}
			} else if (!strcmp(name, "slide") || !strcmp(name, "id")) {
				if (record_get_strcpy(rec, name, val, sizeof val) != 0) {
					snprintf(why, whysize, "no string field '%s' for {%s}", name, name);
					free(out);
					return NULL;
				}
			} else if (!strcmp(name, "mag") || !strcmp(name, "x") || !strcmp(name, "y")) {
				double v;
				if (record_get_num(rec, name, &v) != 0) {
					snprintf(why, whysize, "no number field '%s' for {%s}", name, name);
					free(out);
					return NULL;
				}
				snprintf(val, sizeof val, "%.15g", v);
			} else {
				goto literal;
			}
			/* escape: file:// paths keep '/', URLs escape everything */
			char *esc = curl_easy_escape(NULL, val, 0);
			if (!esc)
				errx(1, "out of memory");
			lit = esc;
			litn = strlen(esc);
			if (n + litn + 1 > cap) {
				while (n + litn + 1 > cap)
					cap *= 2;
				if (!(out = realloc(out, cap)))
					errx(1, "out of memory");
			}
			for (size_t i = 0; i < litn; i++) {
				/* %2F back to '/' in file:// paths so {id} names a nested file */
				if (is_file && !strncmp(esc + i, "%2F", 3)) {
					out[n++] = '/';
					i += 2;
				} else {
					out[n++] = esc[i];
				}
			}
			curl_free(esc);
			t += skip;
			continue;
		}
	literal:
		if (n + 2 > cap && !(out = realloc(out, cap *= 2)))
			errx(1, "out of memory");
		out[n++] = *lit;
		t += litn;
	}
	out[n] = 0;
	return out;
}

static void fetch_text(struct slot *s, const struct record *rec, const char *part)
{
	char why[256];
	char *url = fill_template(rec, part, why, sizeof why);
	if (!url) {
		bad_record(s, why);
		return;
	}
	char key[CACHE_KEY_HEX];
	const void *parts[] = {"get", url};
	size_t lens[] = {3, strlen(url)};
	cache_key(key, 2, parts, lens);
	s->source = url;
	if (!ask_known(s, key))
		ask(s, key, url, NULL, 0);
}

/* A copy of the record in the slot, to be rewritten when its text comes. */
static void slot_keep(struct slot *s, const struct record *rec)
{
	if (!(s->raw = malloc(rec->len)))
		errx(1, "out of memory");
	memcpy(s->raw, rec->raw, rec->len);
	s->rawlen = rec->len;
}

static void handle_record(const struct record *rec, uint64_t number)
{
	g.records++;
	if (record_is(rec, "hdr")) {
		struct slot *s = slot_new();
		slot_ready_bytes(s, rec->raw, rec->len);
		window_push(s);
		return;
	}
	queue_hdr();
	struct slot *s = slot_new();
	s->number = number;
	s->input = g.input_name;
	if (opt.answer) { /* every record passes; what it says of a slide is kept */
		slot_ready_bytes(s, rec->raw, rec->len);
		window_push(s);
		gather_evidence(rec);
		return;
	}
	if (opt.decompose) {
		if (!record_is(rec, "doc")) {
			slot_ready_bytes(s, rec->raw, rec->len);
			window_push(s);
			return;
		}
		slot_keep(s, rec);
		s->decompose = 1;
		window_push(s);
		decompose_doc(s, rec);
		return;
	}
	if (!record_is(rec, "tile")) {
		slot_ready_bytes(s, rec->raw, rec->len);
		window_push(s);
		return;
	}
	g.tiles++;
	char slide[1024] = "", part[TEXT_LABEL_MAX] = "";
	if (opt.url_template) {
		int rc = record_get_strcpy(rec, F_TILE_SLIDE, slide, sizeof slide);
		if (rc == 0 && text_part_of_slide(&g.part_rule, slide, part, sizeof part) < 0)
			rc = -1;
		if (rc != 0 && opt.doc) {
			/* the tile passes, but no report can be tied to it */
			char id[256];
			warnx("%s: record %" PRIu64 " (id '%s'): %s", g.input_name, number,
			      record_id(rec, id, sizeof id),
			      rc > 0 ? "no field 'slide'" : eosin_errmsg());
			g.failed++;
			slot_ready_bytes(s, rec->raw, rec->len);
			window_push(s);
			return;
		}
	}
	if (opt.doc) {
		if (!hget(&g.slides, slide)) {
			hput(&g.slides, slide, (void *)1);
			struct slot *d = slot_new();
			d->number = number;
			d->input = g.input_name;
			if (!(d->slide = strdup(slide)))
				errx(1, "out of memory");
			snprintf(d->part, sizeof d->part, "%s", part);
			window_push(d);
			fetch_text(d, rec, part);
		}
		slot_ready_bytes(s, rec->raw, rec->len);
		window_push(s);
		return;
	}
	slot_keep(s, rec);
	snprintf(s->part, sizeof s->part, "%s", part);
	window_push(s);
	if (opt.vlm)
		caption_tile(s, rec);
	else
		fetch_text(s, rec, part);
}

/* Turn the crank once: check the deadline, then pump the engine (watching
 * fd for input when it is >= 0). */
static int pump(double wait, int fd)
{
	int ready = 0;
	if (opt.deadline > 0 && !g.expired && prog_now() >= g.deadline_at) {
		g.expired = 1;
		warnx("deadline of %g s passed: %zu requests not answered", opt.deadline,
		      fetch_outstanding(g.engine));
		fetch_cancel_all(g.engine, "deadline");
	}
	if (opt.deadline > 0 && !g.expired)
		wait = fmin(wait, fmax(0, g.deadline_at - prog_now()));
	if (fetch_pump(g.engine, wait, fd, &ready) < 0)
		die_lib();
	write_ready();
	return ready;
}

static int run_input(const char *path)
{
	struct stream_reader r;
	struct record rec;
	if (stream_reader_open(&r, path) < 0) {
		warn_lib();
		return -1;
	}
	/* r.name goes with r, but slots of this input may finish later */
	g.input_name = strcmp(path, "-") ? path : "<stdin>";
	int ready = 0, ret = 0, since_pump = 0;
	for (;;) {
		if (g.n >= (size_t)opt.window) {
			pump(1.0, -1);
			continue;
		}
		if (r.end == r.start && !r.eof && !ready) {
			ready = pump(fetch_outstanding(g.engine) ? 1.0 : 60.0, r.fd);
			continue;
		}
		ready = 0;
		int rc = stream_read(&r, &rec);
		if (rc == 0)
			break;
		if (rc < 0) {
			warn_lib();
			ret = -1;
			break;
		}
		handle_record(&rec, rec.number);
		/* start new requests soon, but not with a poll over every
		 * socket per record read */
		if (fetch_outstanding(g.engine) && ++since_pump >= 8) {
			since_pump = 0;
			pump(0, -1);
		}
		write_ready();
	}
	stream_reader_release(&r);
	return ret;
}

enum {
	O_VLM = 256,
	O_URL,
	O_DOC,
	O_MODEL,
	O_PROMPTS,
	O_LOW,
	O_HIGH,
	O_HIGHMAG,
	O_SYSTEM,
	O_MAXTOK,
	O_KEYENV,
	O_INFLIGHT,
	O_PERHOST,
	O_RATE,
	O_RETRIES,
	O_TIMEOUT,
	O_DEADLINE,
	O_BACKOFF,
	O_CACHE,
	O_WINDOW,
	O_KEYWORDS,
	O_PARTFROM,
	O_REJECTS,
	O_CACERT,
	O_DECOMPOSE,
	O_MAXREG,
	O_ANSWER,
	O_QUESTION,
	O_MAXHITS,
	O_MAXTEXTS,
	O_SUBJECTS
};
static const struct option long_opts[] = {
    {"vlm", required_argument, 0, O_VLM},
    {"url", required_argument, 0, O_URL},
    {"doc", no_argument, 0, O_DOC},
    {"model", required_argument, 0, O_MODEL},
    {"prompts", required_argument, 0, O_PROMPTS},
    {"low-prompt", required_argument, 0, O_LOW},
    {"high-prompt", required_argument, 0, O_HIGH},
    {"high-mag", required_argument, 0, O_HIGHMAG},
    {"system", required_argument, 0, O_SYSTEM},
    {"max-tokens", required_argument, 0, O_MAXTOK},
    {"api-key-env", required_argument, 0, O_KEYENV},
    {"inflight", required_argument, 0, O_INFLIGHT},
    {"per-host", required_argument, 0, O_PERHOST},
    {"rate", required_argument, 0, O_RATE},
    {"retries", required_argument, 0, O_RETRIES},
    {"timeout", required_argument, 0, O_TIMEOUT},
    {"deadline", required_argument, 0, O_DEADLINE},
    {"backoff", required_argument, 0, O_BACKOFF},
    {"cache", required_argument, 0, O_CACHE},
    {"window", required_argument, 0, O_WINDOW},
    {"keywords", required_argument, 0, O_KEYWORDS},
    {"part-from", required_argument, 0, O_PARTFROM},
    {"rejects", required_argument, 0, O_REJECTS},
    {"cacert", required_argument, 0, O_CACERT},
    {"decompose", required_argument, 0, O_DECOMPOSE},
    {"max-regions", required_argument, 0, O_MAXREG},
    {"answer", required_argument, 0, O_ANSWER},
    {"question", required_argument, 0, O_QUESTION},
    {"max-hits", required_argument, 0, O_MAXHITS},
    {"max-texts", required_argument, 0, O_MAXTEXTS},
    {"open-slides", required_argument, 0, O_SUBJECTS},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

/* The options into opt, checked, and --vlm's prompts; returns how many of
 * argv's words they took (optind). */
static int parse_options(int argc, char **argv, int *key_env_given)
{
	const char *low = default_low_prompt, *high = default_high_prompt, *prompts_file = NULL;
	double high_mag = 20;
	int c;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		switch (c) {
		case O_VLM: opt.vlm = optarg; break;
		case O_DECOMPOSE: opt.decompose = optarg; break;
		case O_ANSWER: opt.answer = optarg; break;
		case O_QUESTION: opt.question = optarg; break;
		case O_MAXHITS: opt.max_hits = (int)prog_long("--max-hits", optarg, 0, 1000); break;
		case O_MAXTEXTS:
			opt.max_texts = (int)prog_long("--max-texts", optarg, 0, 1000);
			break;
		case O_SUBJECTS:
			opt.subjects_open = (int)prog_long("--open-slides", optarg, 1, 1 << 24);
			break;
		case O_MAXREG:
			opt.max_regions = (int)prog_long("--max-regions", optarg, 1, 100000);
			break;
		case O_URL: opt.url_template = optarg; break;
		case O_DOC: opt.doc = 1; break;
		case O_MODEL: opt.model = optarg; break;
		case O_PROMPTS: prompts_file = optarg; break;
		case O_LOW: low = optarg; break;
		case O_HIGH: high = optarg; break;
		case O_HIGHMAG: high_mag = prog_double("--high-mag", optarg, 0, 1000); break;
		case O_SYSTEM: opt.system = optarg; break;
		case O_MAXTOK: opt.max_tokens = (int)prog_long("--max-tokens", optarg, 1, 1 << 20); break;
		case O_KEYENV: opt.api_key_env = optarg; *key_env_given = 1; break;
		case O_INFLIGHT: opt.fc.inflight = (int)prog_long("--inflight", optarg, 1, 4096); break;
		case O_PERHOST: opt.fc.per_host = (int)prog_long("--per-host", optarg, 1, 4096); break;
		case O_RATE: opt.fc.rate = prog_double("--rate", optarg, 0, 1e6); break;
		case O_RETRIES: opt.fc.retries = (int)prog_long("--retries", optarg, 0, 100); break;
		case O_TIMEOUT: opt.fc.timeout = prog_double("--timeout", optarg, 0, 86400); break;
		case O_DEADLINE: opt.deadline = prog_double("--deadline", optarg, 0, 1e9); break;
		case O_BACKOFF: opt.fc.backoff = prog_double("--backoff", optarg, 0, 3600); break;
		case O_CACHE: opt.cache_dir = optarg; break;
		case O_WINDOW: opt.window = (int)prog_long("--window", optarg, 1, 1 << 24); break;
		case O_KEYWORDS: opt.keywords = (int)prog_long("--keywords", optarg, 0, 1000); break;
		case O_PARTFROM: opt.part_from = optarg; break;
		case O_REJECTS: opt.rejects = optarg; break;
		case O_CACERT:
			if (access(optarg, R_OK) < 0)
				err(EXIT_USAGE, "--cacert: '%s'", optarg);
			opt.fc.cacert = optarg;
			break;
		default: usage();
		}
	}
	if (!!opt.vlm + !!opt.url_template + !!opt.decompose + !!opt.answer != 1 ||
	    (opt.doc && !opt.url_template))
		usage();
	if (opt.answer && !opt.model)
		errx(EXIT_USAGE, "--answer needs --model");
	if (!text_is_utf8(opt.question, strlen(opt.question)) ||
	    !text_has_words(opt.question, strlen(opt.question)))
		errx(EXIT_USAGE, "--question: blank or not UTF-8");
	if (opt.vlm && !opt.model)
		errx(EXIT_USAGE, "--vlm needs --model");
	if (opt.decompose && !opt.model)
		errx(EXIT_USAGE, "--decompose needs --model");
	if (opt.vlm) {
		if (prompts_file)
			read_prompts(prompts_file);
		else {
			add_prompt(0, low);
			add_prompt(high_mag, high);
		}
		build_prompt_prefixes();
	}
	return optind;
}

/* The fetch engine, with --vlm's headers. The API key lives only in the
 * Authorization header string, which fetch_new copies into libcurl's list;
 * it is wiped here as soon as that is done. */
static void start_engine(int key_env_given)
{
	const char *key = getenv(opt.api_key_env);
	if (key_env_given && (!key || !*key))
		errx(EXIT_USAGE, "environment variable '%s' is not set", opt.api_key_env);
	const char *headers[4] = {NULL};
	int nh = 0;
	if (opt.vlm || opt.decompose || opt.answer) {
		headers[nh++] = "Content-Type: application/json";
		headers[nh++] = "Expect:";
		if (key && *key) {
			if (asprintf(&g.auth_header, "Authorization: Bearer %s", key) < 0)
				errx(1, "out of memory");
			headers[nh++] = g.auth_header;
		}
	}
	opt.fc.headers = headers;
	if (!(g.engine = fetch_new(&opt.fc, check_answer, request_done, NULL)))
		die_lib();
	opt.fc.headers = NULL; /* the engine has its own copy; headers[] ends here */
	if (g.auth_header) {
		explicit_bzero(g.auth_header, strlen(g.auth_header));
		free(g.auth_header);
	}
}

/* The part rule, the cache, standard output and the rejects file. */
static void open_outputs(void)
{
	if (text_part_rule_init(&g.part_rule, opt.part_from) < 0)
		errx(EXIT_USAGE, "--part-from: %s", eosin_errmsg());
	if (opt.cache_dir) {
		if (cache_open(&g.cache, opt.cache_dir) < 0)
			die_lib();
		g.have_cache = 1;
	}
	if (stream_writer_init(&g.out, 1, "<stdout>") < 0)
		die_lib();
	if (opt.rejects) {
		if (stream_writer_open(&g.rejects, opt.rejects) < 0)
			die_lib();
		g.have_rejects = 1;
	}
	recb_init(&g.b);
	g.deadline_at = prog_now() + opt.deadline;
}

/* The summary line on standard error, then everything freed. */
static void report_and_release(const struct fetch_stats *st)
{
	fprintf(stderr,
	        "eosin-caption-fetch: %" PRIu64 " records, %" PRIu64 " tiles, %" PRIu64
	        " docs; asked %" PRIu64 ", cached %" PRIu64 ", shared %" PRIu64 ", failed %" PRIu64
	        ", retried %ld (%ld requests)\n",
	        g.records, g.tiles, g.docs, g.asked, g.cached, g.shared, g.failed, st->retried,
	        st->requests);
	recb_release(&g.b);
	text_part_rule_release(&g.part_rule);
	hclear(&g.inflight, NULL);
	hclear(&g.memo, free);
	hclear(&g.slides, NULL);
	for (size_t i = 0; i < sizeof g.memo_ring / sizeof g.memo_ring[0]; i++)
		free(g.memo_ring[i]);
	for (int i = 0; i < opt.nprompts; i++) {
		free(opt.prompts[i].text);
		free(opt.prompts[i].prefix);
	}
	free(opt.prompts);
	if (g.have_cache)
		cache_close(&g.cache);
}

int main(int argc, char **argv)
{
	int key_env_given = 0, used = parse_options(argc, argv, &key_env_given);
	g.argc = argc;
	g.argv = argv;
	argc -= used;
	argv += used;
	start_engine(key_env_given);
	open_outputs();
	static char *stdin_only[] = {"-", NULL};
	if (argc == 0) {
		argv = stdin_only;
		argc = 1;
	}
	int input_failed = 0;
	for (int i = 0; i < argc && !input_failed; i++)
		input_failed = run_input(argv[i]) < 0;
	queue_hdr();
	while (A.head) /* --answer: the slides still open */
		subject_close_oldest();
	if (A.late)
		warnx("%" PRIu64
		      " records of evidence came after their slide was asked about (more "
		      "than --open-slides %d slides open at once: group the input by slide)",
		      A.late, opt.subjects_open);
	while (fetch_outstanding(g.engine) || g.head)
		pump(1.0, -1);
	hclear(&A.by_id, subject_free);
	struct fetch_stats st;
	fetch_get_stats(g.engine, &st);
	fetch_free(g.engine);
	if (g.have_rejects && stream_writer_close(&g.rejects) < 0)
		die_lib();
	prog_close_output(&g.out);
	report_and_release(&st);
	return g.failed || input_failed ? 1 : 0;
}
