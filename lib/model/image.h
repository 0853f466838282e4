/*
 * image.h: from JPEG bytes to the normalised float tensor a vision model
 * takes, the way the model's own evaluation transform does it.
 *
 * timm and CLIP evaluate on PIL images: Resize(shorter side to S) with
 * the model's filter, CenterCrop(size), ToTensor, Normalize(mean, std).
 * image_resize() is Pillow's resampling reimplemented exactly (Pillow 9
 * Resample.c: separable, horizontal pass first, support scaled by the
 * downscale factor (antialias), bicubic a = -0.5 or triangle weights
 * normalised to 1, 22-bit fixed-point coefficients, each pass rounded and
 * clamped to 8 bits), so that the result is Pillow's byte for byte
 * (tests/unit/test-image.c checks it against Pillow on real patches).
 * Decoding is libjpeg-turbo (accurate integer DCT, fancy upsampling), the
 * same library and defaults as Pillow's.
 *
 * Buffers: RGB images are interleaved rows, w*h*3 bytes, owned by the
 * caller (image_decode_jpeg mallocs its result; free() it).
 */
#ifndef EOSIN_IMAGE_H
#define EOSIN_IMAGE_H

#include <stddef.h>
#include <stdint.h>

enum resample_filter { RESAMPLE_BICUBIC, RESAMPLE_BILINEAR };

/* Decode a JPEG to RGB (grey images are expanded as PIL's convert('RGB')).
 * Corrupt or truncated data is an error (-1, message says why). */
int image_decode_jpeg(const void *jpeg, size_t n, uint8_t **rgb, int *w, int *h);

/* Pillow's Image.resize((ow, oh), filter) on an RGB image. */
int image_resize(const uint8_t *in, int w, int h, uint8_t *out, int ow, int oh,
                 enum resample_filter filter);

struct preprocess {
	int resize;           /* shorter side after resize (torchvision Resize(int)); 0: no resize */
	int crop;             /* centre crop side; 0: none (the image must then be square) */
	enum resample_filter filter;
	float mean[3], std[3];
};

/* The size preprocess gives for a w x h input: *ow x *oh. */
void preprocess_output_size(const struct preprocess *pp, int w, int h, int *ow, int *oh);
/* rgb (h,w,3) -> out (3, oh, ow) float32, ((u8/255) - mean) / std per channel.
 * out must hold 3*oh*ow floats (preprocess_output_size). -1 if the image
 * is smaller than the crop. */
int image_preprocess(const uint8_t *rgb, int w, int h, const struct preprocess *pp, float *out);

int resample_filter_parse(const char *name, enum resample_filter *f);

#endif
