/*
 * eosin-generate: captions from slides. Reads bag records (or tiles with an
 * img_emb) and an eosin-align checkpoint with a text decoder (--loss itg
 * and the like), and writes after each a text record with the caption the
 * decoder writes from the bag's Q-Former queries: greedy, beam search, or
 * top-p sampling with a seed. Every other record passes unchanged (or,
 * with --only-text, only the hdr and text records are written).
 */
#include "bag/bag.h"
#include "train/align.h"
#include "train/align_io.h"
#include "model/tokenizer.h"
#include "prog.h"
#include "schema_fields.h"
#include "core/vec.h"
#include "core/rand.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <omp.h>

void openblas_set_num_threads(int);

static void usage(void)
{
	fprintf(stderr,
	        "usage: eosin-generate --model FILE [--vocab FILE] [--method greedy|beam|sample] "
	        "[--beam K] [--length-penalty A] [--top-p P] [--temperature T] [--seed S] "
	        "[--max-tokens N] [--only-text] [--threads N] [file ...]\n");
	exit(EXIT_USAGE);
}

enum method { GREEDY, BEAM, SAMPLE };

static struct {
	const char *model, *vocab;
	enum method method;
	int beam, max_tokens, only_text, threads;
	float top_p, temperature, length_penalty;
	uint64_t seed;
} opt = {.method = GREEDY, .beam = 4, .top_p = 0.9f, .temperature = 1.0f,
         .length_penalty = 1.0f, .seed = 1, .threads = 2};

/* ---- the model and the decoding ---- */

struct gen {
	struct align_model m;
	struct clip_tokenizer *tok;
	char name[256], hash[17], how[96];
	int V, Vt, sot, eot;   /* decoder rows, tokenizer ids, specials */
	int max_tokens;
	float *logits, *lp;    /* (V) */
	int *order;            /* (V) */
	/* beam search: K live hypotheses of up to ctx tokens, and their next */
	int32_t *seq, *next;   /* (K, ctx) */
	double *score, *nscore;
	int *len, *nlen;
	float *blp;            /* (K, V) log-probabilities of each beam's next */
};

/* log-softmax of g->logits into lp over the ids a caption may hold (the
 * tokenizer's, less [SOT]; the others -inf) */
static void log_probs(struct gen *g, const float *logits, float *lp, float temperature)
{
	double mx = -INFINITY, sum = 0.0;
	for (int v = 0; v < g->V; v++) {
		int allowed = v < g->Vt && v != g->sot;
		lp[v] = allowed ? logits[v] / temperature : -INFINITY;
		mx = lp[v] > mx ? lp[v] : mx;
	}
	for (int v = 0; v < g->V; v++)
		if (lp[v] > -INFINITY)
			sum += exp(lp[v] - mx);
	float lz = (float)(mx + log(sum));
	for (int v = 0; v < g->V; v++)
		lp[v] = lp[v] > -INFINITY ? lp[v] - lz : -INFINITY;
}


static const float *sort_base;
static int by_prob(const void *a, const void *b)
{
	float x = sort_base[*(const int *)a], y = sort_base[*(const int *)b];
	if (x != y)
		return x > y ? -1 : 1;
	return *(const int *)a - *(const int *)b;
}

/* greedy (rng NULL) or top-p sampling: the tokens after [SOT] into seq
 * (without it), their summed log-probability into *logp; returns how many */
static int decode_one(struct gen *g, int32_t *seq, double *logp, uint64_t *rng)
{
	int n = 1;
	seq[0] = g->sot;
	*logp = 0.0;
	while (n <= g->max_tokens) {
		if (align_next_logits(&g->m, seq, n, g->logits) < 0)
			die_lib();
		log_probs(g, g->logits, g->lp, rng ? opt.temperature : 1.0f);
		int y = 0;
		if (!rng) {
			for (int v = 1; v < g->V; v++)
				if (g->lp[v] > g->lp[y])
					y = v;
		} else {
			for (int v = 0; v < g->V; v++)
				g->order[v] = v;
			sort_base = g->lp;
			qsort(g->order, (size_t)g->V, sizeof(int), by_prob);
			double cum = 0.0;
			int k = 0;
			while (k < g->V && g->lp[g->order[k]] > -INFINITY) {
				cum += exp(g->lp[g->order[k++]]);
				if (cum >= opt.top_p)
					break;
			}
			double u = splitmix64_uniform(rng) * cum;
			double c = 0.0;
			y = g->order[k - 1];
			for (int j = 0; j < k; j++) {
				c += exp(g->lp[g->order[j]]);
				if (u < c) {
					y = g->order[j];
					break;
				}
			}
		}
		*logp += g->lp[y];
		if (y == g->eot)
			break;
		seq[n++] = y;
	}
	memmove(seq, seq + 1, sizeof(int32_t) * (n - 1));
	return n - 1;
}

/* a hypothesis' score for the final choice: log-probability over
 * length^alpha (the tokens it predicted, [EOT] included) */
static double normalized(double score, int predicted)
{
	return score / pow(predicted > 0 ? predicted : 1, opt.length_penalty);
}

/* beam search of width K: each step the K best continuations of the live
 * hypotheses; one ending in [EOT] (or reaching --max-tokens) is finished;
 * stops at K finished or no live one. The finished hypothesis of the best
 * normalized score into out as decode_one does. */
static int decode_beam(struct gen *g, int32_t *out, double *logp)
{
	int K = opt.beam, C = g->m.cfg.ctx, live = 1, finished = 0;
	double best = -INFINITY;
	int best_len = 0;
	*logp = 0.0;
	g->seq[0] = g->sot;
	g->len[0] = 1;
	g->score[0] = 0.0;
	for (int step = 0; step < g->max_tokens && live > 0; step++) {
		for (int b = 0; b < live; b++) {
			if (align_next_logits(&g->m, g->seq + (size_t)b * C, g->len[b], g->logits) < 0)
				die_lib();
			log_probs(g, g->logits, g->blp + (size_t)b * g->V, 1.0f);
		}
		/* the K best (beam, token) continuations, by running selection */
		int nn = 0, cand_b[64], cand_v[64];
		double cand_s[64];
		for (int b = 0; b < live; b++)
			for (int v = 0; v < g->V; v++) {
				float l = g->blp[(size_t)b * g->V + v];
				if (l == -INFINITY)
					continue;
				double s = g->score[b] + l;
				if (nn == K && s <= cand_s[nn - 1])
					continue;
				int j = nn < K ? nn++ : K - 1;
				while (j > 0 && cand_s[j - 1] < s) {
					cand_s[j] = cand_s[j - 1], cand_b[j] = cand_b[j - 1];
					cand_v[j] = cand_v[j - 1];
					j--;
				}
				cand_s[j] = s, cand_b[j] = b, cand_v[j] = v;
			}
		int nl = 0;
		for (int j = 0; j < nn; j++) {
			int b = cand_b[j], L = g->len[b];
			if (cand_v[j] == g->eot || step + 1 == g->max_tokens) {
				int fin = cand_v[j] == g->eot;
				finished++;
				double ns = normalized(cand_s[j], L);
				if (ns > best) {
					best = ns;
					*logp = cand_s[j];
					best_len = L - 1 + (fin ? 0 : 1);
					memcpy(out, g->seq + (size_t)b * C + 1, sizeof(int32_t) * (L - 1));
					if (!fin)
						out[L - 1] = cand_v[j];
				}
				continue;
			}
			memcpy(g->next + (size_t)nl * C, g->seq + (size_t)b * C, sizeof(int32_t) * L);
			g->next[(size_t)nl * C + L] = cand_v[j];
			g->nlen[nl] = L + 1;
			g->nscore[nl] = cand_s[j];
			nl++;
		}
		if (finished >= K)
			break;
		memcpy(g->seq, g->next, sizeof(int32_t) * (size_t)nl * C);
		memcpy(g->len, g->nlen, sizeof(int) * nl);
		memcpy(g->score, g->nscore, sizeof(double) * nl);
		live = nl;
	}
	return best_len;
}

static void gen_open(struct gen *g)
{
	struct align_meta meta;
	if (align_load(opt.model, &g->m, 0, &meta) < 0)
		die_lib();
	if (!align_has_decoder(&g->m))
		errx(1, "'%s' has no text decoder (train it with --loss itg=W, mlm or plm)",
		     opt.model);
	const char *vocab = opt.vocab ? opt.vocab : align_meta_get(&meta, "vocab_file");
	if (!vocab)
		errx(EXIT_USAGE, "--vocab FILE needed: '%s' does not name its tokenizer", opt.model);
	if (!(g->tok = clip_tokenizer_load(vocab)))
		die_lib();
	g->V = g->m.cfg.vocab;
	g->Vt = clip_tokenizer_vocab_size(g->tok);
	g->sot = clip_tokenizer_sot(g->tok);
	g->eot = clip_tokenizer_eot(g->tok);
	if (g->Vt > g->V - 1)
		errx(1, "'%s' has %d tokens but the decoder of '%s' holds %d", vocab, g->Vt,
		     opt.model, g->V - 1);
	g->max_tokens = opt.max_tokens > 0 ? opt.max_tokens : g->m.cfg.ctx - 1;
	if (g->max_tokens > g->m.cfg.ctx - 1)
		errx(EXIT_USAGE, "--max-tokens %d: the decoder holds %d positions ([SOT] and %d more)",
		     g->max_tokens, g->m.cfg.ctx, g->m.cfg.ctx - 1);
	g->m.qf_sets_limit = 1; /* one bag at a time */
	g->m.max_regions = 1024;
	if (align_model_alloc(&g->m, 1024, 1024, 0) < 0)
		die_lib();
	align_hash(&g->m, g->hash);
	const char *slash = strrchr(opt.model, '/');
	snprintf(g->name, sizeof g->name, "eosin-align:%s", slash ? slash + 1 : opt.model);
	if (opt.method == GREEDY)
		snprintf(g->how, sizeof g->how, "greedy");
	else if (opt.method == BEAM)
		snprintf(g->how, sizeof g->how, "beam %d, length penalty %g", opt.beam,
		         (double)opt.length_penalty);
	else
		snprintf(g->how, sizeof g->how, "top-p %g, temperature %g, seed %" PRIu64,
		         (double)opt.top_p, (double)opt.temperature, opt.seed);
	int C = g->m.cfg.ctx, K = opt.beam;
	g->logits = malloc(sizeof(float) * g->V);
	g->lp = malloc(sizeof(float) * g->V);
	g->order = malloc(sizeof(int) * g->V);
	g->seq = malloc(sizeof(int32_t) * (size_t)K * C);
	g->next = malloc(sizeof(int32_t) * (size_t)K * C);
	g->score = malloc(sizeof(double) * K), g->nscore = malloc(sizeof(double) * K);
	g->len = malloc(sizeof(int) * K), g->nlen = malloc(sizeof(int) * K);
	g->blp = malloc(sizeof(float) * (size_t)K * g->V);
	if (!g->logits || !g->lp || !g->order || !g->seq || !g->next || !g->score ||
	    !g->nscore || !g->len || !g->nlen || !g->blp)
		errx(1, "out of memory");
}

static void gen_close(struct gen *g)
{
	free(g->logits), free(g->lp), free(g->order), free(g->seq), free(g->next);
	free(g->score), free(g->nscore), free(g->len), free(g->nlen), free(g->blp);
	clip_tokenizer_free(g->tok);
	align_model_free(&g->m);
}

/* ---- records ---- */


struct state {
	struct gen g;
	struct stream_writer w;
	struct recb b;
	int wrote_hdr;
	long written, failed;
	float *img, *pos;
	int *region;
	int32_t *out;
	int argc;
	char **argv;
};

/* The caption of one bag or tile; -1 after saying why */
static int generate(struct state *s, const char *name, const struct record *rec, int is_bag)
{
	struct gen *g = &s->g;
	char idbuf[128];
	const char *id = record_id(rec, idbuf, sizeof idbuf);
	struct vec_view v;
	int r = record_get_vec(rec, F_COMMON_IMG_EMB, &v);
#define BAD(...)                                                                             \
	do {                                                                                 \
		warnx("%s: record %" PRIu64 " (id '%s'): " __VA_ARGS__);                      \
		return -1;                                                                   \
	} while (0)
	if (r != 0)
		BAD("%s", name, rec->number, id, r > 0 ? "no field 'img_emb'" : eosin_errmsg());
	if ((int)v.dim != g->m.cfg.img_dim)
		BAD("field 'img_emb' has dim %u, the model takes %d", name, rec->number, id, v.dim,
		    g->m.cfg.img_dim);
	int n = (int)v.n;
	if (n < 1)
		BAD("field 'img_emb' has no rows", name, rec->number, id);
	if (n > g->m.max_n) {
		int cap = n > 2 * g->m.max_n ? n : 2 * g->m.max_n;
		g->m.max_regions = cap;
		if (align_model_alloc(&g->m, cap, cap, 0) < 0)
			die_lib();
	}
	s->img = realloc(s->img, sizeof(float) * n * v.dim);
	s->pos = realloc(s->pos, sizeof(float) * n * 2);
	if (!s->img || !s->pos)
		errx(1, "out of memory for %d patches", n);
	if (vec_to_f32(&v, s->img) < 0)
		BAD("field 'img_emb': %s", name, rec->number, id, eosin_errmsg());
	struct align_bag ab = {.n = n, .img = s->img, .extent = 224.0f};
	struct vec_view pv;
	double ext;
	if (is_bag && record_get_vec(rec, F_BAG_POS, &pv) == 0 && (int)pv.n == n && pv.dim == 2 &&
	    vec_to_f32(&pv, s->pos) == 0) {
		ab.pos = s->pos;
		if (record_get_num(rec, F_BAG_EXTENT, &ext) == 0 && ext > 0)
			ab.extent = (float)ext;
	}
	free(s->region);
	s->region = NULL;
	if (is_bag && bag_get_regions(rec, n, &ab.nregions, &s->region) < 0)
		BAD("%s", name, rec->number, id, eosin_errmsg());
	ab.region = s->region;
	if (align_decode_begin(&g->m, &ab) < 0)
		BAD("%s", name, rec->number, id, eosin_errmsg());
	double logp;
	int len;
	if (opt.method == BEAM) {
		len = decode_beam(g, s->out, &logp);
	} else if (opt.method == SAMPLE) {
		uint64_t rng = opt.seed ^ fnv1a64(id, strlen(id), FNV1A64_INIT); /* the same caption in any order or split */
		len = decode_one(g, s->out, &logp, &rng);
	} else {
		len = decode_one(g, s->out, &logp, NULL);
	}
	char text[8192];
	clip_detokenize(g->tok, s->out, len, text, sizeof text);
	char tid[256], slide[128];
	snprintf(tid, sizeof tid, "%s/caption", id);
	recb_begin(&s->b, "text", 1);
	recb_str(&s->b, F_TEXT_ID, tid);
	recb_str(&s->b, F_TEXT_CAPTION, text);
	if (record_get(rec, F_BAG_SLIDE) &&
	    record_get_strcpy(rec, F_BAG_SLIDE, slide, sizeof slide) == 0)
		recb_str(&s->b, F_TEXT_SLIDE, slide);
	recb_str(&s->b, F_TEXT_DESCRIBES, id);
	recb_str(&s->b, F_TEXT_GENERATED_BY, g->name);
	recb_str(&s->b, F_TEXT_DECODING, g->how);
	recb_f64(&s->b, F_TEXT_LOGPROB, logp);
	recb_int(&s->b, F_TEXT_NTOKENS, len);
	if (recb_write(&s->b, &s->w) < 0)
		die_lib();
	s->written++;
	return 0;
#undef BAD
}

static void pass(struct state *s, const struct record *rec)
{
	if (stream_write_record(&s->w, rec) < 0)
		die_lib();
}

static void run_file(struct state *s, const char *path, struct progress *pr)
{
	struct stream_reader r;
	struct record rec;
	int ret;
	if (stream_reader_open(&r, path) < 0)
		die_lib();
	while ((ret = stream_read(&r, &rec)) == 1) {
		if (record_is(&rec, "hdr")) {
			pass(s, &rec);
			continue;
		}
		if (!s->wrote_hdr) {
			recb_hdr(&s->b, "eosin-generate", s->argc, s->argv);
			recb_str(&s->b, "model", s->g.name);
			recb_str(&s->b, "hash", s->g.hash);
			if (recb_write(&s->b, &s->w) < 0)
				die_lib();
			s->wrote_hdr = 1;
		}
		int is_bag = record_is(&rec, "bag");
		int is_tile = record_is(&rec, "tile") && record_get(&rec, F_COMMON_IMG_EMB);
		if (!opt.only_text || record_is(&rec, "text")) /* text always passes */
			pass(s, &rec);
		if (is_bag || is_tile) {
			if (generate(s, r.name, &rec, is_bag) < 0)
				s->failed++;
			progress_add(pr, 1);
		}
	}
	if (ret < 0)
		die_lib();
	stream_reader_release(&r);
}

static const struct option long_opts[] = {
    {"model", required_argument, 0, 'm'},       {"vocab", required_argument, 0, 'V'},
    {"method", required_argument, 0, 'M'},      {"beam", required_argument, 0, 'b'},
    {"length-penalty", required_argument, 0, 'a'}, {"top-p", required_argument, 0, 'p'},
    {"temperature", required_argument, 0, 't'}, {"seed", required_argument, 0, 'S'},
    {"max-tokens", required_argument, 0, 'n'},  {"only-text", no_argument, 0, 'o'},
    {"threads", required_argument, 0, 'j'},     {0, 0, 0, 0},
};

int main(int argc, char **argv)
{
	if (!getenv("OMP_WAIT_POLICY")) { /* idle OpenMP threads sleep (see eosin-align) */
		setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
		execv("/proc/self/exe", argv);
	}
	int c;
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (c) {
		case 'm': opt.model = optarg; break;
		case 'V': opt.vocab = optarg; break;
		case 'M':
			if (!strcmp(optarg, "greedy"))
				opt.method = GREEDY;
			else if (!strcmp(optarg, "beam"))
				opt.method = BEAM;
			else if (!strcmp(optarg, "sample"))
				opt.method = SAMPLE;
			else
				errx(EXIT_USAGE, "--method: want greedy, beam or sample, not '%s'", optarg);
			break;
		case 'b': opt.beam = (int)prog_long("--beam", optarg, 1, 64); break;
		case 'a':
			opt.length_penalty = (float)prog_double("--length-penalty", optarg, 0, 10);
			break;
		case 'p': opt.top_p = (float)prog_double("--top-p", optarg, 1e-6, 1); break;
		case 't':
			opt.temperature = (float)prog_double("--temperature", optarg, 1e-3, 100);
			break;
		case 'S': opt.seed = (uint64_t)prog_long("--seed", optarg, 0, LONG_MAX); break;
		case 'n': opt.max_tokens = (int)prog_long("--max-tokens", optarg, 1, 4096); break;
		case 'o': opt.only_text = 1; break;
		case 'j': opt.threads = (int)prog_long("--threads", optarg, 1, 1024); break;
		default: usage();
		}
	}
	if (!opt.model)
		usage();
	omp_set_num_threads(opt.threads);
	openblas_set_num_threads(1);
	static struct state s;
	s.argc = argc, s.argv = argv;
	gen_open(&s.g);
	s.out = malloc(sizeof(int32_t) * s.g.m.cfg.ctx);
	if (stream_writer_init(&s.w, 1, "<stdout>") < 0)
		die_lib();
	recb_init(&s.b);
	struct progress pr;
	progress_init(&pr, "captions", 0);
	static char *stdin_only[] = {"-", NULL};
	char **files = argv + optind;
	int nfiles = argc - optind;
	if (nfiles == 0)
		files = stdin_only, nfiles = 1;
	for (int i = 0; i < nfiles; i++)
		run_file(&s, files[i], &pr);
	progress_done(&pr);
	prog_close_output(&s.w);
	fprintf(stderr, "eosin-generate: %ld captions (%s)%s", s.written, s.g.how,
	        s.failed ? "" : "\n");
	if (s.failed)
		fprintf(stderr, ", %ld records without one\n", s.failed);
	recb_release(&s.b);
	free(s.img), free(s.pos), free(s.region), free(s.out);
	gen_close(&s.g);
	return s.failed ? 1 : 0;
}
