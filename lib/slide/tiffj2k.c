/*
 * tiffj2k.c: Aperio JPEG 2000 tiles to RGB through OpenJPEG. See
 * tiffj2k.h.
 */
#include "slide/tiffj2k.h"

#include "core/error.h"

#include <math.h>
#include <openjpeg.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* Y'CbCr to RGB: the chroma terms, per chroma value (see tiffj2k.h) */
static int16_t r_cr[256], b_cb[256];
static int32_t g_cb[256], g_cr[256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void tables_init(void)
{
	for (int i = 0; i < 256; i++) {
		double c = i - 128;
		r_cr[i] = (int16_t)round(1.402 * c);
		b_cb[i] = (int16_t)round(1.772 * c);
		g_cb[i] = (int32_t)round(65536.0 * (0.5 - 0.34414 * c));
		g_cr[i] = (int32_t)round(65536.0 * -0.71414 * c);
	}
}

static inline uint8_t clamp255(int v)
{
	return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* The codestream in memory, as an OpenJPEG stream reads it. */
struct source {
	const uint8_t *data;
	size_t len, at;
};

static OPJ_SIZE_T source_read(void *buf, OPJ_SIZE_T n, void *user)
{
	struct source *s = user;
	size_t left = s->len - s->at;
	if (left == 0)
		return (OPJ_SIZE_T)-1; /* the end */
	if (n > left)
		n = left;
	memcpy(buf, s->data + s->at, n);
	s->at += n;
	return n;
}

static OPJ_OFF_T source_skip(OPJ_OFF_T n, void *user)
{
	struct source *s = user;
	/* forward or back, within the data */
	OPJ_OFF_T to = (OPJ_OFF_T)s->at + n;
	if (to < 0)
		to = 0;
	if (to > (OPJ_OFF_T)s->len)
		to = (OPJ_OFF_T)s->len;
	OPJ_OFF_T moved = to - (OPJ_OFF_T)s->at;
	s->at = (size_t)to;
	return n != 0 && moved == 0 ? -1 : moved;
}

static OPJ_BOOL source_seek(OPJ_OFF_T to, void *user)
{
	struct source *s = user;
	if (to < 0 || to > (OPJ_OFF_T)s->len)
		return OPJ_FALSE;
	s->at = (size_t)to;
	return OPJ_TRUE;
}

/* OpenJPEG's first error message, without its newline. */
struct message {
	char text[200];
};

static void on_error(const char *msg, void *user)
{
	struct message *m = user;
	if (m->text[0])
		return;
	snprintf(m->text, sizeof m->text, "%s", msg);
	size_t n = strlen(m->text);
	while (n > 0 && (m->text[n - 1] == '\n' || m->text[n - 1] == '\r' || m->text[n - 1] == ' '))
		m->text[--n] = 0;
}

static void on_warning(const char *msg, void *user)
{
	(void)msg;
	(void)user;
}

/* The pixels of a decoded image (checked by the caller) to RGB. */
static void to_rgb(const opj_image_t *im, int w, int h, int ycbcr, uint8_t *dst, size_t pitch)
{
	const opj_image_comp_t *c = im->comps;
	/* a sample of component k to every sx[k] x sy[k] pixels, as OpenSlide
	 * divides: tile size by component size */
	int sx[3], sy[3];
	for (int k = 0; k < 3; k++) {
		sx[k] = w / (int)c[k].w;
		sy[k] = h / (int)c[k].h;
	}
	for (int y = 0; y < h; y++) {
		const OPJ_INT32 *p0 = c[0].data + (size_t)(y / sy[0]) * c[0].w,
		                *p1 = c[1].data + (size_t)(y / sy[1]) * c[1].w,
		                *p2 = c[2].data + (size_t)(y / sy[2]) * c[2].w;
		uint8_t *o = dst + (size_t)y * pitch;
		if (sx[0] == 1 && sx[1] == 1 && sx[2] == 1) {
			if (ycbcr)
				for (int x = 0; x < w; x++, o += 3) {
					int Y = (uint8_t)p0[x], cb = (uint8_t)p1[x],
					    cr = (uint8_t)p2[x];
					o[0] = clamp255(Y + r_cr[cr]);
					o[1] = clamp255(Y + (int16_t)((g_cb[cb] + g_cr[cr]) >> 16));
					o[2] = clamp255(Y + b_cb[cb]);
				}
			else
				for (int x = 0; x < w; x++, o += 3) {
					o[0] = (uint8_t)p0[x];
					o[1] = (uint8_t)p1[x];
					o[2] = (uint8_t)p2[x];
				}
			continue;
		}
		/* subsampled: step each component's index every sx[k] pixels */
		int i0 = 0, i1 = 0, i2 = 0, k0 = 0, k1 = 0, k2 = 0;
		for (int x = 0; x < w; x++, o += 3) {
			uint8_t v0 = (uint8_t)p0[i0], v1 = (uint8_t)p1[i1], v2 = (uint8_t)p2[i2];
			if (ycbcr) {
				o[0] = clamp255(v0 + r_cr[v2]);
				o[1] = clamp255(v0 + (int16_t)((g_cb[v1] + g_cr[v2]) >> 16));
				o[2] = clamp255(v0 + b_cb[v1]);
			} else {
				o[0] = v0;
				o[1] = v1;
				o[2] = v2;
			}
			if (++k0 == sx[0])
				k0 = 0, i0++;
			if (++k1 == sx[1])
				k1 = 0, i1++;
			if (++k2 == sx[2])
				k2 = 0, i2++;
		}
	}
}

int tiffj2k_decode(const uint8_t *data, size_t len, int w, int h, int ycbcr, uint8_t *dst,
                   size_t pitch)
{
	pthread_once(&tables_once, tables_init);
	struct source src = {.data = data, .len = len};
	struct message msg = {{0}};
	opj_image_t *im = NULL;
	int ret = -1;
	/* the stream's own buffer takes the whole codestream in one read */
	opj_stream_t *st = opj_stream_create(len, OPJ_TRUE);
	opj_codec_t *codec = opj_create_decompress(OPJ_CODEC_J2K);
	if (!st || !codec) {
		eosin_error("out of memory");
		goto done;
	}
	opj_stream_set_user_data(st, &src, NULL);
	opj_stream_set_user_data_length(st, len);
	opj_stream_set_read_function(st, source_read);
	opj_stream_set_skip_function(st, source_skip);
	opj_stream_set_seek_function(st, source_seek);
	opj_dparameters_t params;
	opj_set_default_decoder_parameters(&params);
	opj_set_error_handler(codec, on_error, &msg);
	opj_set_warning_handler(codec, on_warning, NULL);
	if (!opj_setup_decoder(codec, &params) || !opj_read_header(st, codec, &im)) {
		eosin_error("bad JPEG 2000 header (%s)", msg.text[0] ? msg.text : "OpenJPEG");
		goto done;
	}
	if (im->x0 != 0 || im->y0 != 0 || im->x1 != (OPJ_UINT32)w || im->y1 != (OPJ_UINT32)h) {
		eosin_error("a %ux%u JPEG 2000 image in a %dx%d tile", im->x1 - im->x0,
		            im->y1 - im->y0, w, h);
		goto done;
	}
	if (im->numcomps != 3) {
		eosin_error("%u JPEG 2000 components, not 3", im->numcomps);
		goto done;
	}
	if (!opj_decode(codec, st, im)) {
		eosin_error("corrupt JPEG 2000 (%s)", msg.text[0] ? msg.text : "OpenJPEG");
		goto done;
	}
	for (int k = 0; k < 3; k++) {
		const opj_image_comp_t *c = &im->comps[k];
		/* what to_rgb() indexes stays inside each component */
		if (!c->data || c->prec != 8 || c->sgnd || c->w == 0 || c->h == 0 ||
		    c->w > (OPJ_UINT32)w || c->h > (OPJ_UINT32)h ||
		    (OPJ_UINT32)((w - 1) / (w / (int)c->w)) >= c->w ||
		    (OPJ_UINT32)((h - 1) / (h / (int)c->h)) >= c->h) {
			eosin_error("JPEG 2000 component %d: %ux%u, %u bits%s, in a %dx%d tile", k,
			            c->w, c->h, c->prec, c->sgnd ? " signed" : "", w, h);
			goto done;
		}
	}
	to_rgb(im, w, h, ycbcr, dst, pitch);
	ret = 0;
done:
	if (im)
		opj_image_destroy(im);
	if (codec)
		opj_destroy_codec(codec);
	if (st)
		opj_stream_destroy(st);
	return ret;
}
