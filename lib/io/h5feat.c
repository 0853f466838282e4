/*
 * h5feat.c: CLAM and TRIDENT feature files through libhdf5. See h5feat.h.
 */
#include "io/h5feat.h"

#include "core/error.h"

#include <hdf5.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Rows per chunk of the written datasets, and per write. */
#define OUT_CHUNK 1024

/* libhdf5 prints its own error stack by default; lib/ never prints. */
static void quiet(void)
{
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

struct names {
	char buf[512];
	size_t len;
};

static herr_t add_name(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
	(void)g;
	(void)info;
	struct names *s = data;
	int n = snprintf(s->buf + s->len, sizeof s->buf - s->len, "%s'%s'", s->len ? ", " : "", name);
	if (n > 0 && (size_t)n < sizeof s->buf - s->len)
		s->len += (size_t)n;
	return 0;
}

static int has_link(hid_t file, const char *name)
{
	return H5Lexists(file, name, H5P_DEFAULT) > 0;
}

/* Shape of a dataset; -1 when it cannot be had. */
static int shape(hid_t d, hsize_t *dims, int max)
{
	hid_t s = H5Dget_space(d);
	if (s < 0)
		return -1;
	int r = H5Sget_simple_extent_ndims(s);
	if (r >= 0 && r <= max)
		H5Sget_simple_extent_dims(s, dims, NULL);
	H5Sclose(s);
	return r;
}

static H5T_class_t type_class(hid_t d)
{
	hid_t t = H5Dget_type(d);
	if (t < 0)
		return H5T_NO_CLASS;
	H5T_class_t c = H5Tget_class(t);
	H5Tclose(t);
	return c;
}

/* A numeric attribute's first element as a double: 1 read, 0 absent. */
static int attr_num(hid_t obj, const char *name, double *v)
{
	if (H5Aexists(obj, name) <= 0)
		return 0;
	hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
	if (a < 0)
		return 0;
	int ok = 0;
	hid_t t = H5Aget_type(a), s = H5Aget_space(a);
	H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
	hssize_t np = s >= 0 ? H5Sget_simple_extent_npoints(s) : 0;
	if ((c == H5T_INTEGER || c == H5T_FLOAT) && np >= 1 && np <= 16) {
		double buf[16];
		if (H5Aread(a, H5T_NATIVE_DOUBLE, buf) >= 0) {
			*v = buf[0];
			ok = 1;
		}
	}
	if (t >= 0)
		H5Tclose(t);
	if (s >= 0)
		H5Sclose(s);
	H5Aclose(a);
	return ok;
}

static int attr_int(hid_t obj, const char *name, int64_t *v, const char *path)
{
	double d;
	if (!attr_num(obj, name, &d))
		return 0;
	if (!(d >= 0 && d <= 1e9 && d == floor(d)))
		return eosin_error("%s: attribute '%s' of dataset 'coords' is %g, not a whole number",
		                   path, name, d);
	*v = (int64_t)d;
	return 1;
}

static int read_attrs(struct h5feat_in *in)
{
	struct h5feat_attrs *a = &in->a;
	memset(a, 0, sizeof *a);
	hid_t c = (hid_t)in->coords;
	int r;
	if ((r = attr_int(c, "patch_level", &a->patch_level, in->path)) < 0)
		return -1;
	a->has_patch_level = r;
	if ((r = attr_int(c, "patch_size", &a->patch_size, in->path)) < 0)
		return -1;
	a->has_patch_size = r;
	if ((r = attr_int(c, "patch_size_level0", &a->patch_size_level0, in->path)) < 0)
		return -1;
	a->has_patch_size_level0 = r;
	a->has_downsample = attr_num(c, "downsample", &a->downsample) && a->downsample > 0;
	a->has_target_mag = attr_num(c, "target_magnification", &a->target_mag) && a->target_mag > 0;
	a->has_level0_mag = attr_num(c, "level0_magnification", &a->level0_mag) && a->level0_mag > 0;
	return 0;
}

int h5feat_open(struct h5feat_in *in, const char *path)
{
	quiet();
	memset(in, 0, sizeof *in);
	in->file = in->feat = in->coords = -1;
	in->path = strdup(path);
	if (!in->path)
		return eosin_error("out of memory");
	if (access(path, R_OK) < 0)
		return eosin_error("%s: %s", path, strerror(errno));
	if (H5Fis_hdf5(path) <= 0)
		return eosin_error("%s: not an HDF5 file (or truncated before its superblock ends)", path);
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (f < 0)
		return eosin_error("%s: cannot open as HDF5 (truncated or corrupt)", path);
	in->file = f;
	const char *fname = has_link(f, "features") ? "features" : has_link(f, "feats") ? "feats" : NULL;
	if (!fname || !has_link(f, "coords")) {
		struct names s = {.len = 0};
		s.buf[0] = 0;
		H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, NULL, add_name, &s);
		return eosin_error("%s: neither CLAM ('features' and 'coords') nor TRIDENT ('features' or "
		                   "'feats', and 'coords') layout: the file holds %s",
		                   path, s.len ? s.buf : "no datasets");
	}
	in->feat_name = fname;
	in->layout = strcmp(fname, "feats") ? "clam" : "trident";
	in->feat = H5Dopen2(f, fname, H5P_DEFAULT);
	if (in->feat < 0)
		return eosin_error("%s: '%s' is not a dataset", path, fname);
	in->coords = H5Dopen2(f, "coords", H5P_DEFAULT);
	if (in->coords < 0)
		return eosin_error("%s: 'coords' is not a dataset", path);
	hsize_t fd[8], cd[8];
	int fr = shape((hid_t)in->feat, fd, 8), cr = shape((hid_t)in->coords, cd, 8);
	if (fr != 2)
		return eosin_error("%s: dataset '%s' has rank %d, want 2 (N x D)", path, fname, fr);
	if (cr != 2 || cd[1] != 2)
		return eosin_error("%s: dataset 'coords' has %s, want N x 2 (x, y)", path,
		                   cr != 2 ? "the wrong rank" : "the wrong number of columns");
	if (type_class((hid_t)in->feat) != H5T_FLOAT)
		return eosin_error("%s: dataset '%s' is not floating point", path, fname);
	if (type_class((hid_t)in->coords) != H5T_INTEGER)
		return eosin_error("%s: dataset 'coords' is not integer", path);
	if (fd[0] != cd[0])
		return eosin_error("%s: dataset '%s' has %llu rows but 'coords' has %llu", path, fname,
		                   (unsigned long long)fd[0], (unsigned long long)cd[0]);
	if (fd[1] < 1 || fd[1] > (1u << 20))
		return eosin_error("%s: dataset '%s' has %llu columns", path, fname,
		                   (unsigned long long)fd[1]);
	in->n = (int64_t)fd[0];
	in->dim = (int64_t)fd[1];
	if (read_attrs(in) < 0)
		return -1;
	if (in->a.has_patch_size_level0 || in->a.has_target_mag)
		in->layout = "trident";
	return 0;
}

/* Rows [row, row+count) of a rank-2 dataset of width w into buf as type t. */
static int read_rows(hid_t d, hid_t t, int64_t row, int64_t count, int64_t w, void *buf,
                     const char *path, const char *name)
{
	hsize_t start[2] = {(hsize_t)row, 0}, cnt[2] = {(hsize_t)count, (hsize_t)w};
	hid_t fs = H5Dget_space(d), ms = H5Screate_simple(2, cnt, NULL);
	herr_t e = -1;
	if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0)
		e = H5Dread(d, t, ms, fs, H5P_DEFAULT, buf);
	if (fs >= 0)
		H5Sclose(fs);
	if (ms >= 0)
		H5Sclose(ms);
	if (e < 0)
		return eosin_error("%s: dataset '%s': cannot read rows %" PRId64 " to %" PRId64
		                   " (truncated or corrupt file)",
		                   path, name, row, row + count - 1);
	return 0;
}

int h5feat_read(struct h5feat_in *in, int64_t row, int64_t count, float *feat, int64_t *xy)
{
	if (read_rows((hid_t)in->feat, H5T_NATIVE_FLOAT, row, count, in->dim, feat, in->path,
	              in->feat_name) < 0 ||
	    read_rows((hid_t)in->coords, H5T_NATIVE_INT64, row, count, 2, xy, in->path, "coords") < 0)
		return -1;
	for (int64_t i = 0; i < count; i++) {
		const float *f = feat + i * in->dim;
		for (int64_t j = 0; j < in->dim; j++)
			if (!isfinite(f[j]))
				return eosin_error("%s: dataset '%s', row %" PRId64 ", column %" PRId64
				                   ": %s feature",
				                   in->path, in->feat_name, row + i, j,
				                   isnan(f[j]) ? "NaN" : "infinite");
		for (int k = 0; k < 2; k++)
			if (xy[2 * i + k] < INT32_MIN || xy[2 * i + k] > INT32_MAX)
				return eosin_error("%s: dataset 'coords', row %" PRId64 ": %c = %" PRId64
				                   " is outside int32 range",
				                   in->path, row + i, k ? 'y' : 'x', xy[2 * i + k]);
	}
	return 0;
}

void h5feat_close(struct h5feat_in *in)
{
	if (in->feat >= 0)
		H5Dclose((hid_t)in->feat);
	if (in->coords >= 0)
		H5Dclose((hid_t)in->coords);
	if (in->file >= 0)
		H5Fclose((hid_t)in->file);
	free(in->path);
	memset(in, 0, sizeof *in);
	in->file = in->feat = in->coords = -1;
}

static hid_t make_dataset(hid_t f, const char *name, hid_t type, hsize_t w)
{
	hsize_t dims[2] = {0, w}, maxd[2] = {H5S_UNLIMITED, w}, chunk[2] = {OUT_CHUNK, w};
	hid_t s = H5Screate_simple(2, dims, maxd), p = H5Pcreate(H5P_DATASET_CREATE);
	hid_t d = -1;
	if (s >= 0 && p >= 0 && H5Pset_chunk(p, 2, chunk) >= 0)
		d = H5Dcreate2(f, name, type, s, H5P_DEFAULT, p, H5P_DEFAULT);
	if (s >= 0)
		H5Sclose(s);
	if (p >= 0)
		H5Pclose(p);
	return d;
}

int h5feat_create(struct h5feat_out *out, const char *path, int64_t dim)
{
	quiet();
	memset(out, 0, sizeof *out);
	out->file = out->feat = out->coords = -1;
	out->dim = dim;
	out->path = strdup(path);
	size_t n = strlen(path) + 32;
	out->tmp = malloc(n);
	out->fbuf = malloc((size_t)OUT_CHUNK * (size_t)dim * sizeof(float));
	out->cbuf = malloc((size_t)OUT_CHUNK * 2 * sizeof(int64_t));
	if (!out->path || !out->tmp || !out->fbuf || !out->cbuf)
		return eosin_error("out of memory");
	snprintf(out->tmp, n, "%s.tmp.%ld", path, (long)getpid());
	hid_t f = H5Fcreate(out->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	if (f < 0)
		return eosin_error("%s: cannot create: %s", out->tmp, strerror(errno));
	out->file = f;
	out->feat = make_dataset(f, "features", H5T_IEEE_F32LE, (hsize_t)dim);
	out->coords = make_dataset(f, "coords", H5T_STD_I64LE, 2);
	if (out->feat < 0 || out->coords < 0)
		return eosin_error("%s: cannot create datasets", out->tmp);
	return 0;
}

static int append_rows(hid_t d, hid_t t, int64_t at, int64_t count, int64_t w, const void *buf)
{
	hsize_t size[2] = {(hsize_t)(at + count), (hsize_t)w};
	hsize_t start[2] = {(hsize_t)at, 0}, cnt[2] = {(hsize_t)count, (hsize_t)w};
	if (H5Dset_extent(d, size) < 0)
		return -1;
	hid_t fs = H5Dget_space(d), ms = H5Screate_simple(2, cnt, NULL);
	herr_t e = -1;
	if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0)
		e = H5Dwrite(d, t, ms, fs, H5P_DEFAULT, buf);
	if (fs >= 0)
		H5Sclose(fs);
	if (ms >= 0)
		H5Sclose(ms);
	return e < 0 ? -1 : 0;
}

static int flush_rows(struct h5feat_out *out)
{
	if (!out->nbuf)
		return 0;
	if (append_rows((hid_t)out->feat, H5T_NATIVE_FLOAT, out->n, out->nbuf, out->dim, out->fbuf) < 0 ||
	    append_rows((hid_t)out->coords, H5T_NATIVE_INT64, out->n, out->nbuf, 2, out->cbuf) < 0)
		return eosin_error("%s: cannot write rows %" PRId64 " to %" PRId64 " (disk full?)",
		                   out->tmp, out->n, out->n + out->nbuf - 1);
	out->n += out->nbuf;
	out->nbuf = 0;
	return 0;
}

int h5feat_append(struct h5feat_out *out, const float *feat, int64_t x, int64_t y)
{
	memcpy(out->fbuf + out->nbuf * out->dim, feat, (size_t)out->dim * sizeof(float));
	out->cbuf[2 * out->nbuf] = x;
	out->cbuf[2 * out->nbuf + 1] = y;
	if (++out->nbuf == OUT_CHUNK)
		return flush_rows(out);
	return 0;
}

static int put_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v, hsize_t n)
{
	hid_t s = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
	hid_t a = s >= 0 ? H5Acreate2(obj, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT) : -1;
	herr_t e = a >= 0 ? H5Awrite(a, mtype, v) : -1;
	if (a >= 0)
		H5Aclose(a);
	if (s >= 0)
		H5Sclose(s);
	return e < 0 ? -1 : 0;
}

/* A variable-length UTF-8 string, as h5py writes a Python str. */
static int put_str_attr(hid_t obj, const char *name, const char *v)
{
	hid_t t = H5Tcopy(H5T_C_S1);
	if (t < 0)
		return -1;
	int r = -1;
	if (H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0)
		r = put_attr(obj, name, t, t, &v, 1);
	H5Tclose(t);
	return r;
}

int h5feat_commit(struct h5feat_out *out, const struct h5feat_attrs *a, const char *name)
{
	if (flush_rows(out) < 0)
		return -1;
	hid_t c = (hid_t)out->coords;
	double ds2[2] = {a->downsample, a->downsample};
	int e = 0;
	if (a->has_patch_level)
		e |= put_attr(c, "patch_level", H5T_STD_I64LE, H5T_NATIVE_INT64, &a->patch_level, 1);
	if (a->has_patch_size)
		e |= put_attr(c, "patch_size", H5T_STD_I64LE, H5T_NATIVE_INT64, &a->patch_size, 1);
	if (a->has_downsample)
		e |= put_attr(c, "downsample", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, ds2, 2);
	if (a->has_patch_size_level0)
		e |= put_attr(c, "patch_size_level0", H5T_STD_I64LE, H5T_NATIVE_INT64,
		              &a->patch_size_level0, 1);
	if (a->has_target_mag)
		e |= put_attr(c, "target_magnification", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
		              &a->target_mag, 1);
	if (a->has_level0_mag)
		e |= put_attr(c, "level0_magnification", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
		              &a->level0_mag, 1);
	if (name)
		e |= put_str_attr(c, "name", name);
	if (e)
		return eosin_error("%s: cannot write the attributes of 'coords'", out->tmp);
	herr_t ce = H5Dclose((hid_t)out->feat);
	ce |= H5Dclose((hid_t)out->coords);
	out->feat = out->coords = -1;
	ce |= H5Fclose((hid_t)out->file);
	out->file = -1;
	if (ce < 0)
		return eosin_error("%s: cannot close (disk full?)", out->tmp);
	int fd = open(out->tmp, O_RDONLY);
	if (fd < 0 || fsync(fd) < 0) {
		int en = errno;
		if (fd >= 0)
			close(fd);
		return eosin_error("%s: cannot sync: %s", out->tmp, strerror(en));
	}
	close(fd);
	if (rename(out->tmp, out->path) < 0)
		return eosin_error("cannot rename %s to %s: %s", out->tmp, out->path, strerror(errno));
	free(out->tmp);
	out->tmp = NULL;
	return 0;
}

void h5feat_abort(struct h5feat_out *out)
{
	if (out->feat >= 0)
		H5Dclose((hid_t)out->feat);
	if (out->coords >= 0)
		H5Dclose((hid_t)out->coords);
	if (out->file >= 0)
		H5Fclose((hid_t)out->file);
	if (out->tmp)
		unlink(out->tmp);
	free(out->tmp);
	free(out->path);
	free(out->fbuf);
	free(out->cbuf);
	memset(out, 0, sizeof *out);
	out->file = out->feat = out->coords = -1;
}
