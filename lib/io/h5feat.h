/*
 * h5feat.h: patch features in HDF5 files, as CLAM and TRIDENT write them.
 *
 * Both write one file per slide with a float32 matrix of features, N x D,
 * and an integer matrix of level-0 top-left corners, N x 2 (x, y). CLAM
 * names them "features" and "coords" and puts patch_level, patch_size (and
 * often downsample) on coords; TRIDENT names them "features" or "feats"
 * with "coords" and puts patch_size, patch_size_level0,
 * target_magnification and level0_magnification on coords. Which layout a
 * file has is found from what it holds, never from its name.
 *
 * Reading checks everything a later stage relies on: the ranks and shapes,
 * N the same in both, no NaN or infinite feature, coordinates in int32
 * range. Messages name the file, the dataset and the row.
 *
 * Writing appends to chunked, extendible datasets under a temporary name;
 * h5feat_commit() writes the attributes and renames the file into place,
 * h5feat_abort() removes it, so no half-written file is ever left.
 */
#ifndef EOSIN_H5FEAT_H
#define EOSIN_H5FEAT_H

#include <stdint.h>

struct h5feat_attrs {
	/* each value with a flag saying the file has it */
	int has_patch_level, has_patch_size, has_downsample, has_patch_size_level0,
	    has_target_mag, has_level0_mag;
	int64_t patch_level, patch_size, patch_size_level0;
	double downsample, target_mag, level0_mag;
};

struct h5feat_in {
	char *path;
	int64_t file, feat, coords;   /* hid_t */
	const char *feat_name;        /* "features" or "feats" */
	const char *layout;           /* "clam" or "trident" */
	int64_t n, dim;
	struct h5feat_attrs a;
};

/* Open and check shapes and attributes. -1 with a message naming the file
 * (and, when no layout fits, the datasets it holds). */
int h5feat_open(struct h5feat_in *in, const char *path);
/* Read rows [row, row+count): feat is count*dim floats, xy count*2 int64.
 * Fails on NaN/Inf features and coordinates outside int32, naming the row
 * (0-based, as h5py counts). */
int h5feat_read(struct h5feat_in *in, int64_t row, int64_t count, float *feat, int64_t *xy);
void h5feat_close(struct h5feat_in *in);

struct h5feat_out {
	char *path, *tmp;
	int64_t file, feat, coords;
	int64_t n, dim;
	float *fbuf;                  /* rows waiting for the next chunk write */
	int64_t *cbuf;
	int64_t nbuf;
};

/* Create path's temporary sibling with empty datasets of width dim. */
int h5feat_create(struct h5feat_out *out, const char *path, int64_t dim);
/* Append one row (dim floats, level-0 x and y). */
int h5feat_append(struct h5feat_out *out, const float *feat, int64_t x, int64_t y);
/* Write attrs on coords, close and rename into place. */
int h5feat_commit(struct h5feat_out *out, const struct h5feat_attrs *a, const char *name);
/* Close and remove the temporary file, free everything. Call it after a
 * failed call, and after h5feat_commit() too (the file is then in place and
 * stays). */
void h5feat_abort(struct h5feat_out *out);

#endif
