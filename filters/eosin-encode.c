/*
 * eosin-encode: add image and text embeddings to records. See
 * eosin-encode(1).
 *
 * Records are read into a batch (copies of their bytes) until it holds
 * --batch images or 4 x --batch records; then JPEGs are decoded and
 * preprocessed across OpenMP threads, the vision model runs once on the
 * whole batch, texts are tokenized and run through the text model, and
 * the records go out in input order with their new fields. Records with
 * nothing to encode pass through byte for byte.
 */
#include "model/clip_text.h"
#include "model/gpu.h"
#include "model/image.h"
#include "model/ops.h"
#include "prog.h"
#include "model/safetensors.h"
#include "schema_fields.h"
#include "core/sha256.h"
#include "core/stream.h"
#include "model/tokenizer.h"
#include "core/vec.h"
#include "model/vit.h"

#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <omp.h>
#include <cblas.h>

static void usage(void)
{
	fprintf(stderr,
	        "usage: eosin-encode [--model FILE] [--text-model FILE] [--vocab FILE]\n"
	        "       [--batch N] [--threads N] [--dtype f16|f32|bf16] [--drop-pixels]\n"
	        "       [--no-resize] [--dynamic] [--pool token|avg|token+avg] [--rejects FILE]\n"
	        "       [--lines] [--device auto|cpu|cuda] [--gpu-precision bf16|fp32]\n"
	        "       [--gpu-batch N] [file ...]\n");
	exit(EXIT_USAGE);
}

/* A loaded model and the names it is known by in the output. */
struct model_info {
	char *path;
	char name[256];
	char hash[17];
	struct safetensors st;
};

static struct {
	struct model_info vis, txt;
	int have_vis, have_txt;
	struct vit vit;
	struct clip_text text;
	struct clip_tokenizer *tok;
	struct preprocess pp;
	int batch, drop_pixels, resize;
	enum vec_dtype dtype;
	struct stream_writer out, rejects;
	int have_rejects, hdr_written;
	int argc;
	char **argv;
	/* counts for the summary */
	uint64_t nrecords, nimages, ntexts, ntruncated, nrejected;
	double t_decode, t_vision, t_text;
	/* the GPU, when --device chose one */
	int use_gpu;
	struct gpu gpu;
	struct gpu_vit gvit;
	struct gpu_text gtext;
} E;

/* One text to encode: which record, which field, which row. */
struct text_job {
	size_t rec;
	int field;                  /* 0 caption, 1 keywords, 2 sentences */
	int row;
	const char *s;
	size_t len;
};

static const char *const TEXT_FIELDS[3] = {F_COMMON_CAPTION, F_COMMON_KEYWORDS, F_COMMON_SENTENCES};
static const char *const TEXT_EMB[3] = {F_COMMON_TXT_EMB, F_COMMON_KW_EMB, F_COMMON_SENT_EMB};

struct pending {
	char *raw;
	size_t len;
	uint64_t number;
	char input[256];
	msgpack_unpacked unp;
	struct record rec;
	char id[256];
	/* work */
	int has_img;
	int img_w, img_h;
	uint8_t *rgb;
	float *img_emb;             /* (vis out_dim) */
	int ntext[3];               /* rows per text field, -1 when absent */
	float *text_emb[3];         /* (ntext, txt embed) */
	int truncated;
	char *error;                /* why this record failed (then not written) */
};

static struct pending *batch;
static size_t nbatch, cap_batch, batch_images;

static void model_open(struct model_info *mi, const char *path)
{
	mi->path = strdup(path);
	if (safetensors_open(&mi->st, path) < 0)
		die_lib();
	char hex[65];
	if (sha256_file_hex(path, hex) < 0)
		die_lib();
	memcpy(mi->hash, hex, 16);
	mi->hash[16] = 0;
	const char *meta = safetensors_meta(&mi->st, "name");
	if (meta) {
		snprintf(mi->name, sizeof mi->name, "%s", meta);
	} else {
		char *dup = strdup(path), *base = basename(dup);
		char *dot = strstr(base, ".safetensors");
		if (dot && dot != base)
			*dot = 0;
		snprintf(mi->name, sizeof mi->name, "%s", base);
		free(dup);
	}
}

static void set_error(struct pending *p, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_error(struct pending *p, const char *field, const char *fmt, ...)
{
	if (p->error)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	size_t n = strlen(msg) + strlen(p->input) + strlen(p->id) + strlen(field) + 64;
	p->error = malloc(n);
	snprintf(p->error, n, "%s: record %" PRIu64 " (id '%s'): field '%s': %s", p->input, p->number,
	         p->id, field, msg);
}

static void write_hdr(void)
{
	if (E.hdr_written)
		return;
	struct recb b;
	recb_init(&b);
	recb_hdr(&b, "eosin-encode", E.argc, E.argv);
	struct model_info *main_model = E.have_vis ? &E.vis : E.have_txt ? &E.txt : NULL;
	if (main_model) {
		recb_str(&b, F_HDR_MODEL, main_model->name);
		recb_str(&b, F_HDR_HASH, main_model->hash);
	}
	if (E.have_vis && E.have_txt) {
		char note[600];
		snprintf(note, sizeof note, "text model %s hash %s", E.txt.name, E.txt.hash);
		recb_str(&b, F_HDR_NOTE, note);
	}
	if (recb_write(&b, &E.out) < 0)
		die_lib();
	recb_release(&b);
	E.hdr_written = 1;
}

/* Find the work in a record just added to the batch. */
static void scan_record(struct pending *p)
{
	struct record *rec = &p->rec;
	record_id(rec, p->id, sizeof p->id);
	for (int f = 0; f < 3; f++)
		p->ntext[f] = -1;
	if (E.have_vis) {
		const char *jpeg;
		size_t n;
		int r = record_get_bin(rec, F_TILE_JPEG, &jpeg, &n);
		if (r < 0)
			set_error(p, F_TILE_JPEG, "not binary");
		else if (r == 0) {
			p->has_img = 1;
			batch_images++;
		}
	}
	if (E.have_txt) {
		const msgpack_object *o;
		if ((o = record_get(rec, F_COMMON_CAPTION))) {
			if (o->type != MSGPACK_OBJECT_STR)
				set_error(p, F_COMMON_CAPTION, "not a string");
			else
				p->ntext[0] = 1;
		}
		for (int f = 1; f < 3; f++)
			if ((o = record_get(rec, TEXT_FIELDS[f]))) {
				int good = o->type == MSGPACK_OBJECT_ARRAY;
				for (uint32_t i = 0; good && i < o->via.array.size; i++)
					good = o->via.array.ptr[i].type == MSGPACK_OBJECT_STR;
				if (!good)
					set_error(p, TEXT_FIELDS[f], "not an array of strings");
				else
					p->ntext[f] = (int)o->via.array.size;
			}
	}
}

static void parse_pending(struct pending *p)
{
	msgpack_unpacked_init(&p->unp);
	size_t off = 0;
	if (msgpack_unpack_next(&p->unp, p->raw, p->len, &off) != MSGPACK_UNPACK_SUCCESS)
		errx(1, "internal error: cannot re-read record %" PRIu64, p->number);
	memset(&p->rec, 0, sizeof p->rec);
	p->rec.raw = p->raw;
	p->rec.len = p->len;
	p->rec.root = p->unp.data;
	p->rec.number = p->number;
	const msgpack_object *k = mpo_get(&p->rec.root, "k"), *v = mpo_get(&p->rec.root, "v");
	if (k && k->type == MSGPACK_OBJECT_STR) {
		p->rec.kind = k->via.str.ptr;
		p->rec.kind_len = k->via.str.size;
	}
	if (v && (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER))
		p->rec.version = (int64_t)v->via.u64;
}

static struct pending *batch_add(const void *raw, size_t len, uint64_t number, const char *input)
{
	if (nbatch == cap_batch) {
		cap_batch = cap_batch ? 2 * cap_batch : 64;
		batch = realloc(batch, cap_batch * sizeof *batch);
		if (!batch)
			errx(1, "out of memory");
	}
	struct pending *p = &batch[nbatch++];
	memset(p, 0, sizeof *p);
	p->raw = malloc(len);
	if (!p->raw)
		errx(1, "out of memory");
	memcpy(p->raw, raw, len);
	p->len = len;
	p->number = number;
	snprintf(p->input, sizeof p->input, "%s", input);
	parse_pending(p);
	return p;
}

/* Decode every JPEG of the jobs (threads across images); a JPEG whose size
 * is not the record's px is an error of that record. */
static void decode_jobs(const size_t *jobs, size_t njobs)
{
#pragma omp parallel for schedule(dynamic, 1)
	for (size_t j = 0; j < njobs; j++) {
		struct pending *p = &batch[jobs[j]];
		const char *jpeg;
		size_t n;
		record_get_bin(&p->rec, F_TILE_JPEG, &jpeg, &n);
		if (image_decode_jpeg(jpeg, n, &p->rgb, &p->img_w, &p->img_h) < 0) {
			set_error(p, F_TILE_JPEG, "%s", eosin_errmsg());
			continue;
		}
		int64_t px;
		if (record_get_int(&p->rec, F_TILE_PX, &px) == 0 && (px != p->img_w || px != p->img_h))
			set_error(p, F_TILE_JPEG, "JPEG is %dx%d but px is %" PRId64, p->img_w, p->img_h, px);
	}
}

/* The next group of jobs not yet taken whose images preprocess to one size
 * (*gw x *gh), into grp; failed ones are taken on the way. Returns its size. */
static size_t next_size_group(const size_t *jobs, size_t njobs, char *taken, size_t *done,
                              size_t *grp, int *gw, int *gh)
{
	size_t ng = 0;
	*gw = *gh = -1;
	for (size_t j = 0; j < njobs; j++) {
		struct pending *p = &batch[jobs[j]];
		if (taken[jobs[j]])
			continue;
		if (p->error) {
			taken[jobs[j]] = 1;
			(*done)++;
			continue;
		}
		int ow, oh;
		preprocess_output_size(&E.pp, p->img_w, p->img_h, &ow, &oh);
		if (*gw < 0) {
			*gw = ow;
			*gh = oh;
		}
		if (ow == *gw && oh == *gh) {
			grp[ng++] = jobs[j];
			taken[jobs[j]] = 1;
			(*done)++;
		}
	}
	return ng;
}

/* Row g of emb (ng, out_dim) into the record grp[g], for every record of
 * the group whose image was preprocessed (a failed one keeps its error). */
static void store_embeddings(const size_t *grp, size_t ng, const float *emb)
{
	size_t d = (size_t)E.vit.out_dim;
	for (size_t g = 0; g < ng; g++) {
		struct pending *p = &batch[grp[g]];
		if (p->error)
			continue;
		p->img_emb = malloc(d * sizeof(float));
		if (!p->img_emb)
			errx(1, "out of memory for an embedding");
		memcpy(p->img_emb, emb + g * d, d * sizeof(float));
		E.nimages++;
	}
}

/* gpu_vit_encode's fill: image i of the group preprocessed into dst. */
static int gpu_fill(void *ctx, size_t i, float *dst)
{
	struct pending *p = &batch[((size_t *)ctx)[i]];
	if (image_preprocess(p->rgb, p->img_w, p->img_h, &E.pp, dst) < 0) {
		set_error(p, F_TILE_JPEG, "%s", eosin_errmsg());
		return -1;
	}
	return 0;
}

/* The GPU's encode_group: images are preprocessed a chunk at a time into
 * pinned memory while the device runs the chunk before. */
static void encode_group_gpu(size_t *grp, size_t ng, int gw, int gh, double *t0)
{
	float *emb = malloc(ng * (size_t)E.vit.out_dim * sizeof *emb);
	if (!emb)
		errx(1, "out of memory for a batch of %zu images", ng);
	double t1 = prog_now();
	E.t_decode += t1 - *t0;
	if (gpu_vit_encode(&E.gvit, ng, gh, gw, gpu_fill, grp, emb) < 0)
		errx(1, "%s", eosin_errmsg());
	*t0 = prog_now();
	E.t_vision += *t0 - t1;
	store_embeddings(grp, ng, emb);
	free(emb);
}

/* One group's images preprocessed and through the vision model, their
 * embeddings into their records; *t0 is where the decode time started. */
static void encode_group(size_t *grp, size_t ng, int gw, int gh, double *t0)
{
	if (vit_check_size(&E.vit, gh, gw) < 0) {
		for (size_t g = 0; g < ng; g++)
			set_error(&batch[grp[g]], F_TILE_JPEG, "%s", eosin_errmsg());
		return;
	}
	if (E.use_gpu) {
		encode_group_gpu(grp, ng, gw, gh, t0);
		return;
	}
	size_t plane = (size_t)3 * gw * gh;
	float *pixels = malloc(ng * plane * sizeof *pixels);
	float *emb = malloc(ng * (size_t)E.vit.out_dim * sizeof *emb);
	if (!pixels || !emb)
		errx(1, "out of memory for a batch of %zu images", ng);
#pragma omp parallel for schedule(dynamic, 1)
	for (size_t g = 0; g < ng; g++) {
		struct pending *p = &batch[grp[g]];
		if (image_preprocess(p->rgb, p->img_w, p->img_h, &E.pp, pixels + g * plane) < 0)
			set_error(p, F_TILE_JPEG, "%s", eosin_errmsg());
	}
	/* A failed preprocess leaves its slot unused: compact the good ones. */
	size_t ngood = 0;
	for (size_t g = 0; g < ng; g++)
		if (!batch[grp[g]].error) {
			if (ngood != g)
				memcpy(pixels + ngood * plane, pixels + g * plane, plane * sizeof *pixels);
			grp[ngood++] = grp[g];
		}
	double t1 = prog_now();
	E.t_decode += t1 - *t0;
	if (ngood && vit_forward(&E.vit, pixels, (int)ngood, gh, gw, emb, NULL, NULL) < 0)
		errx(1, "vision model: %s", eosin_errmsg());
	*t0 = prog_now();
	E.t_vision += *t0 - t1;
	store_embeddings(grp, ngood, emb);
	free(pixels);
	free(emb);
}

/* Decode, preprocess and run the vision model on every image in the batch.
 * Images of one size go through the model together. */
static void encode_images(void)
{
	size_t *jobs = malloc((nbatch + 1) * sizeof *jobs), njobs = 0;
	for (size_t i = 0; i < nbatch; i++)
		if (batch[i].has_img && !batch[i].error)
			jobs[njobs++] = i;
	if (!njobs) {
		free(jobs);
		return;
	}
	double t0 = prog_now();
	decode_jobs(jobs, njobs);
	/* Group by preprocessed size; usually a single group. */
	size_t done = 0, *grp = malloc(njobs * sizeof *grp);
	char *taken = calloc(nbatch, 1);
	while (done < njobs) {
		int gw, gh;
		size_t ng = next_size_group(jobs, njobs, taken, &done, grp, &gw, &gh);
		if (ng)
			encode_group(grp, ng, gw, gh, &t0);
	}
	for (size_t j = 0; j < njobs; j++) {
		free(batch[jobs[j]].rgb);
		batch[jobs[j]].rgb = NULL;
	}
	free(grp);
	free(taken);
	free(jobs);
}

static void encode_texts(void)
{
	size_t njobs = 0;
	for (size_t i = 0; i < nbatch; i++)
		for (int f = 0; f < 3; f++)
			if (!batch[i].error && batch[i].ntext[f] > 0)
				njobs += (size_t)batch[i].ntext[f];
	if (!njobs)
		return;
	double t0 = prog_now();
	struct text_job *jobs = malloc(njobs * sizeof *jobs);
	size_t n = 0;
	for (size_t i = 0; i < nbatch; i++) {
		struct pending *p = &batch[i];
		if (p->error)
			continue;
		for (int f = 0; f < 3; f++) {
			if (p->ntext[f] <= 0)
				continue;
			const msgpack_object *o = record_get(&p->rec, TEXT_FIELDS[f]);
			p->text_emb[f] = malloc((size_t)p->ntext[f] * E.text.embed * sizeof(float));
			for (int r = 0; r < p->ntext[f]; r++) {
				const msgpack_object *s = f == 0 ? o : &o->via.array.ptr[r];
				jobs[n++] = (struct text_job){i, f, r, s->via.str.ptr, s->via.str.size};
			}
		}
	}
	int ctx = E.text.context;
	int32_t *ids = malloc(njobs * (size_t)ctx * sizeof *ids);
	char *bad = calloc(njobs, 1), *trunc = calloc(njobs, 1);
#pragma omp parallel for schedule(dynamic, 16)
	for (size_t j = 0; j < njobs; j++) {
		int t = 0;
		int r = clip_tokenize_context(E.tok, jobs[j].s, jobs[j].len, ids + j * ctx, ctx, &t);
		bad[j] = r <= 2; /* only SOT and EOT: empty text */
		trunc[j] = (char)t;
	}
	for (size_t j = 0; j < njobs; j++) {
		struct pending *p = &batch[jobs[j].rec];
		if (bad[j]) {
			if (jobs[j].field == 0)
				set_error(p, F_COMMON_CAPTION, "empty text");
			else
				set_error(p, TEXT_FIELDS[jobs[j].field], "entry %d is empty text", jobs[j].row);
		}
		if (trunc[j])
			p->truncated = 1;
	}
	/* Run the text model in chunks of --batch texts. */
	float *emb = malloc((size_t)E.batch * E.text.embed * sizeof *emb);
	for (size_t j0 = 0; j0 < njobs; j0 += (size_t)E.batch) {
		int nb = (int)(njobs - j0 < (size_t)E.batch ? njobs - j0 : (size_t)E.batch);
		if ((E.use_gpu ? gpu_text_forward(&E.gtext, ids + j0 * ctx, nb, emb)
		               : clip_text_forward(&E.text, ids + j0 * ctx, nb, emb)) < 0)
			errx(1, "text model: %s", eosin_errmsg());
		for (int k = 0; k < nb; k++) {
			struct text_job *tj = &jobs[j0 + k];
			memcpy(batch[tj->rec].text_emb[tj->field] + (size_t)tj->row * E.text.embed,
			       emb + (size_t)k * E.text.embed, (size_t)E.text.embed * sizeof(float));
		}
	}
	E.ntexts += njobs;
	E.t_text += prog_now() - t0;
	free(emb);
	free(ids);
	free(bad);
	free(trunc);
	free(jobs);
}

static void write_pending(struct pending *p, struct recb *b)
{
	int work = p->img_emb != NULL;
	for (int f = 0; f < 3; f++)
		work |= p->text_emb[f] != NULL;
	if (!work) {
		if (stream_write_record(&E.out, &p->rec) < 0)
			die_lib();
		return;
	}
	char kind[256];
	snprintf(kind, sizeof kind, "%.*s", (int)p->rec.kind_len, p->rec.kind);
	const char *skip[8];
	int ns = 0;
	if (p->img_emb)
		skip[ns++] = F_COMMON_IMG_EMB;
	if (p->img_emb && E.drop_pixels)
		skip[ns++] = F_TILE_JPEG;
	for (int f = 0; f < 3; f++)
		if (p->text_emb[f])
			skip[ns++] = TEXT_EMB[f];
	skip[ns] = NULL;
	recb_begin(b, kind, (int)p->rec.version);
	recb_copy_fields(b, &p->rec, skip);
	if (p->img_emb)
		recb_vec(b, F_COMMON_IMG_EMB, p->img_emb, 1, (uint32_t)E.vit.out_dim, E.dtype, E.vis.name,
		         E.vis.hash);
	for (int f = 0; f < 3; f++)
		if (p->text_emb[f])
			recb_vec(b, TEXT_EMB[f], p->text_emb[f], (uint32_t)p->ntext[f],
			         (uint32_t)E.text.embed, E.dtype, E.txt.name, E.txt.hash);
	if (recb_write(b, &E.out) < 0)
		die_lib();
}

static void free_pending(struct pending *p)
{
	msgpack_unpacked_destroy(&p->unp);
	free(p->raw);
	free(p->rgb);
	free(p->img_emb);
	for (int f = 0; f < 3; f++)
		free(p->text_emb[f]);
	free(p->error);
}

/* Encode the batch and write it out in order. Returns -1 after a record
 * failed with no rejects file (the good records before it are written). */
static int flush_batch(void)
{
	if (!nbatch)
		return 0;
	if (E.have_vis)
		encode_images();
	if (E.have_txt)
		encode_texts();
	struct recb b;
	recb_init(&b);
	int failed = 0;
	for (size_t i = 0; i < nbatch && !failed; i++) {
		struct pending *p = &batch[i];
		if (p->truncated && !p->error)
			warnx("%s: record %" PRIu64 " (id '%s'): text longer than %d tokens, truncated",
			      p->input, p->number, p->id, E.text.context);
		E.ntruncated += p->truncated;
		if (p->error) {
			warnx("%s", p->error);
			if (!E.have_rejects) {
				failed = 1;
				break;
			}
			E.nrejected++;
			if (stream_write_record(&E.rejects, &p->rec) < 0)
				die_lib();
			continue;
		}
		if (!record_is(&p->rec, "hdr"))
			write_hdr();
		write_pending(p, &b);
	}
	recb_release(&b);
	for (size_t i = 0; i < nbatch; i++)
		free_pending(&batch[i]);
	nbatch = 0;
	batch_images = 0;
	return failed ? -1 : 0;
}

static int batch_full(void)
{
	return batch_images >= (size_t)E.batch || nbatch >= (size_t)E.batch * 4;
}

static int encode_stream(const char *path)
{
	struct stream_reader r;
	struct record rec;
	int ret;
	if (stream_reader_open(&r, path) < 0) {
		warn_lib();
		return -1;
	}
	while ((ret = stream_read(&r, &rec)) == 1) {
		E.nrecords++;
		struct pending *p = batch_add(rec.raw, rec.len, rec.number, r.name);
		if (!record_is(&p->rec, "hdr")) /* earlier hdr records pass on as they are */
			scan_record(p);
		if (batch_full() && flush_batch() < 0) {
			stream_reader_release(&r);
			return -2;
		}
	}
	if (ret < 0)
		warn_lib();
	stream_reader_release(&r);
	return ret < 0 ? -1 : 0;
}

/* --lines: each line of the input is a text record: "TEXT" or
 * "LABEL<TAB>TEXT"; id is the line number. */
static int encode_lines(const char *path)
{
	struct lines L;
	if (lines_open(&L, path) < 0)
		return -1;
	int ret = 0;
	struct recb b;
	recb_init(&b);
	ssize_t len;
	while ((len = lines_next(&L)) >= 0) {
		char *line = L.line;
		uint64_t lineno = L.number;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		char id[32];
		snprintf(id, sizeof id, "%" PRIu64, lineno);
		char *text = line, *tab = memchr(line, '\t', (size_t)len);
		recb_begin(&b, "text", 1);
		recb_str(&b, F_TEXT_ID, id);
		if (tab) {
			recb_strn(&b, F_COMMON_LABEL, line, (size_t)(tab - line));
			text = tab + 1;
		}
		recb_strn(&b, F_TEXT_CAPTION, text, (size_t)(line + len - text));
		char *raw;
		size_t rawlen;
		if (recb_finish(&b, &raw, &rawlen) < 0)
			die_lib();
		E.nrecords++;
		struct pending *p = batch_add(raw, rawlen, lineno, L.name);
		free(raw);
		scan_record(p);
		if (batch_full() && flush_batch() < 0) {
			ret = -2;
			break;
		}
	}
	recb_release(&b);
	lines_close(&L);
	return ret;
}

/* OpenBLAS on an AVX-512 CPU with AVX2 kernels: fix it when OpenBLAS chose
 * them (re-run with OPENBLAS_CORETYPE=SkylakeX), say so when the user did. */
static void blas_check(char **argv)
{
	const char *core;
	enum blas_state st = ops_blas_check(&core);
	if (st == BLAS_NARROW_FORCED && !getenv("EOSIN_BLAS_QUIET"))
		warnx("OPENBLAS_CORETYPE=%s runs OpenBLAS's %s kernels on a CPU with AVX-512 "
		      "(sgemm about 1.9x slower); unset it or set OPENBLAS_CORETYPE=SkylakeX for speed "
		      "(EOSIN_BLAS_QUIET=1 silences this)",
		      getenv("OPENBLAS_CORETYPE"), core);
	if (st != BLAS_NARROW_DETECTED || getenv("EOSIN_BLAS_REEXEC"))
		return;
	warnx("OpenBLAS chose its %s kernels on a CPU with AVX-512; running again with "
	      "OPENBLAS_CORETYPE=SkylakeX (set OPENBLAS_CORETYPE yourself to choose)",
	      core);
	setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
	setenv("EOSIN_BLAS_REEXEC", "1", 1);
	execv("/proc/self/exe", argv);
	warn("cannot run /proc/self/exe again; going on with %s kernels", core);
}

/* What the command line asks for beyond the E settings. */
struct args {
	const char *model, *text_model, *vocab, *rejects;
	int lines, threads;
	struct vit_overrides ov;
	const char *device;         /* NULL: not given (auto, quiet when there is no GPU) */
	enum gpu_precision precision;
	int gpu_batch, batch_given;
};

static const struct option long_opts[] = {
    {"model", required_argument, 0, 'm'},   {"text-model", required_argument, 0, 't'},
    {"vocab", required_argument, 0, 'v'},   {"batch", required_argument, 0, 'b'},
    {"threads", required_argument, 0, 'j'}, {"dtype", required_argument, 0, 'd'},
    {"drop-pixels", no_argument, 0, 'D'},   {"no-resize", no_argument, 0, 'R'},
    {"dynamic", no_argument, 0, 'y'},       {"pool", required_argument, 0, 'p'},
    {"rejects", required_argument, 0, 'r'}, {"lines", no_argument, 0, 'l'},
    {"device", required_argument, 0, 'G'},  {"gpu-precision", required_argument, 0, 'P'},
    {"gpu-batch", required_argument, 0, 'B'},
    {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
};

/* The options into a and E, checked; returns how many of argv's words
 * they took. */
static int parse_options(int argc, char **argv, struct args *a)
{
	*a = (struct args){.ov = VIT_OVERRIDES_NONE, .precision = GPU_BF16, .gpu_batch = 256};
	E.batch = 32;
	E.dtype = VEC_F16;
	E.resize = 1;
	int c;
	while ((c = getopt_long(argc, argv, "m:t:v:b:j:d:r:lh", long_opts, NULL)) != -1) {
		switch (c) {
		case 'm': a->model = optarg; break;
		case 't': a->text_model = optarg; break;
		case 'v': a->vocab = optarg; break;
		case 'b':
			E.batch = (int)prog_long("--batch", optarg, 1, 4096);
			a->batch_given = 1;
			break;
		case 'j': a->threads = (int)prog_long("--threads", optarg, 1, 1024); break;
		case 'd':
			if (vec_dtype_parse(optarg, &E.dtype) < 0)
				errx(EXIT_USAGE, "--dtype: %s", eosin_errmsg());
			break;
		case 'D': E.drop_pixels = 1; break;
		case 'R': E.resize = 0; break;
		case 'y': a->ov.dynamic_img_size = 1; break;
		case 'p':
			if (strcmp(optarg, "token") && strcmp(optarg, "avg") &&
			    strcmp(optarg, "token+avg"))
				errx(EXIT_USAGE, "--pool: '%s' is not token, avg or token+avg",
				     optarg);
			a->ov.pool = !strcmp(optarg, "avg")         ? POOL_AVG
			             : !strcmp(optarg, "token+avg") ? POOL_TOKEN_AVG
			                                            : POOL_TOKEN;
			break;
		case 'r': a->rejects = optarg; break;
		case 'l': a->lines = 1; break;
		case 'G':
			if (strcmp(optarg, "auto") && strcmp(optarg, "cpu") && strcmp(optarg, "cuda"))
				errx(EXIT_USAGE, "--device: '%s' is not auto, cpu or cuda", optarg);
			a->device = optarg;
			break;
		case 'P':
			if (strcmp(optarg, "bf16") && strcmp(optarg, "fp32"))
				errx(EXIT_USAGE, "--gpu-precision: '%s' is not bf16 or fp32", optarg);
			a->precision = !strcmp(optarg, "fp32") ? GPU_FP32 : GPU_BF16;
			break;
		case 'B': a->gpu_batch = (int)prog_long("--gpu-batch", optarg, 1, 4096); break;
		default: usage();
		}
	}
	if (!a->model && !a->text_model)
		errx(EXIT_USAGE, "give --model, --text-model or both");
	if (a->lines && !a->text_model)
		errx(EXIT_USAGE, "--lines needs --text-model");
	return optind;
}

/* --device: the GPU when asked for (it must be there) or when auto finds
 * one, else the CPU. Said on stderr, except a quiet fallback when no
 * --device was given. On a GPU --batch defaults to 1024 images. */
static void choose_device(struct args *a)
{
	const char *dev = a->device ? a->device : "auto";
	if (!strcmp(dev, "cpu"))
		return;
	if (!strcmp(dev, "auto") && !gpu_device_node_present()) {
		if (a->device)
			warnx("--device auto: no NVIDIA device (no /dev/nvidiactl); using the CPU");
		return;
	}
	if (gpu_open(&E.gpu) < 0) {
		if (!strcmp(dev, "cuda"))
			errx(1, "--device cuda: %s", eosin_errmsg());
		if (a->device)
			warnx("--device auto: %s; using the CPU", eosin_errmsg());
		return;
	}
	E.use_gpu = 1;
	if (!a->batch_given)
		E.batch = 1024;
	warnx("using the GPU %s, %s, %d images a forward pass", E.gpu.device,
	      a->precision == GPU_FP32 ? "fp32" : "bf16 with fp32 accumulation", a->gpu_batch);
}

/* The vision model and the preprocessing its config asks for. */
static void open_vision(const char *model, const struct vit_overrides *ov, const struct args *a)
{
	model_open(&E.vis, model);
	if (vit_load(&E.vit, &E.vis.st, model, ov) < 0)
		die_lib();
	E.have_vis = 1;
	if (E.use_gpu && gpu_vit_create(&E.gvit, &E.gpu, &E.vit, a->precision, a->gpu_batch) < 0) {
		/* A model the GPU path does not cover (a gated MLP): --device
		 * cuda fails, auto runs the whole job on the CPU and says why. */
		if (a->device && !strcmp(a->device, "cuda"))
			die_lib();
		warnx("%s; using the CPU", eosin_errmsg());
		gpu_close(&E.gpu);
		E.use_gpu = 0;
		if (!a->batch_given)
			E.batch = 32;
	}
	warnx("%s", E.vit.config_source);
	const struct vit_config *vc = &E.vit.cfg;
	E.pp.filter = RESAMPLE_BICUBIC;
	if (resample_filter_parse(vc->interpolation, &E.pp.filter) < 0)
		warnx("'%s': %s; using bicubic", model, eosin_errmsg());
	if (E.resize) {
		E.pp.resize = (int)floorf((float)vc->img_size / vc->crop_pct);
		E.pp.crop = vc->img_size;
	}
	memcpy(E.pp.mean, vc->mean, sizeof E.pp.mean);
	memcpy(E.pp.std, vc->std, sizeof E.pp.std);
}

/* The vocabulary a text model names in its __metadata__, into vpath: the
 * path eosin-make-model recorded (absolute, or relative to the model's
 * folder), failing that a file of the same name beside the model (the two
 * moved together). NULL when the model names none. */
static const char *model_vocab(const char *text_model, char *vpath, size_t size)
{
	const char *mv = safetensors_meta(&E.txt.st, "vocab");
	if (!mv)
		return NULL;
	const char *slash = strrchr(text_model, '/');
	int dirlen = slash ? (int)(slash - text_model) : 1;
	const char *dir = slash ? text_model : ".";
	if (mv[0] == '/')
		snprintf(vpath, size, "%s", mv);
	else
		snprintf(vpath, size, "%.*s/%s", dirlen, dir, mv);
	if (access(vpath, R_OK) != 0) {
		const char *base = strrchr(mv, '/');
		snprintf(vpath, size, "%.*s/%s", dirlen, dir, base ? base + 1 : mv);
	}
	return vpath;
}

/* The text model and its tokenizer (--vocab, or the model's own). */
static void open_text(const char *text_model, const char *vocab, const struct args *a)
{
	model_open(&E.txt, text_model);
	if (clip_text_load(&E.text, &E.txt.st, text_model) < 0)
		die_lib();
	E.have_txt = 1;
	if (E.use_gpu && gpu_text_create(&E.gtext, &E.gpu, &E.text, a->precision) < 0)
		die_lib();
	warnx("%s", E.text.config_source);
	char vpath[4096];
	if (!vocab)
		vocab = model_vocab(text_model, vpath, sizeof vpath);
	if (!vocab)
		errx(EXIT_USAGE, "--text-model needs --vocab FILE (bpe_simple_vocab_16e6.txt.gz) "
		                 "or a 'vocab' entry in the model's __metadata__");
	if (!(E.tok = clip_tokenizer_load(vocab)))
		die_lib();
	if (clip_tokenizer_vocab_size(E.tok) > E.text.vocab)
		errx(1, "'%s' has %d tokens but '%s' embeds only %d", vocab,
		     clip_tokenizer_vocab_size(E.tok), text_model, E.text.vocab);
}

/* The summary line on standard error, then everything freed. */
static void report_and_release(double dt)
{
	fprintf(stderr,
	        "eosin-encode: %" PRIu64 " records, %" PRIu64 " images, %" PRIu64 " texts (%" PRIu64
	        " records truncated), %" PRIu64 " rejected; %.2f s (decode %.2f, vision %.2f, text "
	        "%.2f)\n",
	        E.nrecords, E.nimages, E.ntexts, E.ntruncated, E.nrejected, dt, E.t_decode,
	        E.t_vision, E.t_text);
	for (size_t i = 0; i < nbatch; i++)
		free_pending(&batch[i]);
	free(batch);
	gpu_vit_free(&E.gvit);
	gpu_text_free(&E.gtext);
	if (E.use_gpu)
		gpu_close(&E.gpu);
	if (E.have_vis) {
		vit_free(&E.vit);
		safetensors_close(&E.vis.st);
		free(E.vis.path);
	}
	if (E.have_txt) {
		clip_text_free(&E.text);
		clip_tokenizer_free(E.tok);
		safetensors_close(&E.txt.st);
		free(E.txt.path);
	}
}

int main(int argc, char **argv)
{
	struct args a;
	int used = parse_options(argc, argv, &a);
	E.argc = argc;
	E.argv = argv;
	argc -= used;
	argv += used;
	blas_check(E.argv);
	if (a.threads)
		omp_set_num_threads(a.threads);
	choose_device(&a);
	if (a.model)
		open_vision(a.model, &a.ov, &a);
	if (a.text_model)
		open_text(a.text_model, a.vocab, &a);
	if (stream_writer_init(&E.out, 1, "<stdout>") < 0)
		die_lib();
	if (a.rejects) {
		if (stream_writer_open(&E.rejects, a.rejects) < 0)
			die_lib();
		E.have_rejects = 1;
	}
	static char *stdin_only[] = {"-", NULL};
	if (argc == 0) {
		argv = stdin_only;
		argc = 1;
	}
	int failed = 0;
	double t0 = prog_now();
	for (int i = 0; i < argc && failed != -2; i++) {
		int r = a.lines ? encode_lines(argv[i]) : encode_stream(argv[i]);
		if (r < 0)
			failed = r;
	}
	if (failed != -2 && flush_batch() < 0)
		failed = -2;
	if (!failed)
		write_hdr();
	double dt = prog_now() - t0;
	prog_close_output(&E.out);
	if (E.have_rejects && stream_writer_close(&E.rejects) < 0)
		die_lib();
	report_and_release(dt);
	return failed ? 1 : 0;
}
