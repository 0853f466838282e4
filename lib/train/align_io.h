/*
 * align_io.h: eosin-align checkpoints as safetensors (F32 only).
 *
 * File: 8-byte little-endian header length, a JSON header naming each
 * tensor (dtype "F32", shape, data_offsets) plus "__metadata__" (strings:
 * the model config, and whatever the trainer adds: step, RNG state, ...),
 * then the tensor bytes. Parameters keep their names (align.h); AdamW
 * moments are "adam.m.NAME" and "adam.v.NAME". Writing goes to a temporary
 * file in the same directory, then rename(2), so a reader never sees half a
 * checkpoint.
 */
#ifndef EOSIN_ALIGN_IO_H
#define EOSIN_ALIGN_IO_H

#include "train/align.h"

struct align_meta {
	int n;
	char key[32][32];
	char val[32][128];
};

/* add or replace a metadata string; -1 when full */
int align_meta_set(struct align_meta *meta, const char *key, const char *val);
const char *align_meta_get(const struct align_meta *meta, const char *key);

/* Write parameters (and the AdamW moments when with_moments) and meta plus
 * the model config. */
int align_save(const char *path, const struct align_model *m, int with_moments,
               const struct align_meta *meta);
/* Read a checkpoint: model initialised from its config, parameters loaded,
 * moments too when present and with_moments. meta receives all metadata. */
int align_load(const char *path, struct align_model *m, int with_moments,
               struct align_meta *meta);
/* 16 hex digits (FNV-1a 64) of the parameter bytes; buf has 17 bytes. */
void align_hash(const struct align_model *m, char *buf);

#endif
