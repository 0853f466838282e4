/*
 * text.h: pathology text into the pieces later stages train on.
 *
 *   text_split_parts()     a report into specimen parts ("A.", "Part 1:",
 *                          "SPECIMEN A", ...), the PathAlign unit of text
 *   text_part_of_slide()   which part a slide id names (a trailing part letter,
 *                          or the first group of a user's regular expression)
 *   text_find_part()       a part by label, letters and numbers equivalent
 *   text_sentences()       a caption into sentences (PathFLIP sub-captions),
 *                          abbreviation- and decimal-aware
 *   text_keywords()        a ranked bag of keyword phrases (MR-PLIP)
 *   text_clean()           whitespace collapsed, ends trimmed
 *   text_is_utf8()         may this be a msgpack str?
 *
 * All functions take a byte range (s, n) that need not be NUL-terminated,
 * treat it as UTF-8 without decoding it (only ASCII letters are letters),
 * and never keep a pointer to it. Spans are offsets into the caller's text.
 * Arrays returned through out-pointers are malloc'd and the caller frees
 * them (text_free_strings() for string arrays). The rules are given in
 * eosin-caption-fetch(1), section TEXT.
 */
#ifndef EOSIN_TEXT_H
#define EOSIN_TEXT_H

#include <regex.h>
#include <stddef.h>

struct text_span {
	size_t off, len;
};

#define TEXT_LABEL_MAX 8

/* One specimen part: its normalised label ("A", "2") and its text, which
 * starts after the label (and the label's punctuation) and runs to the next
 * part's header; trailing whitespace trimmed. */
struct text_part {
	char label[TEXT_LABEL_MAX];
	size_t off, len;
};

/* Split a report into parts. *count is 0 (and *parts NULL) when the report
 * has no part headers; text before the first header is not in any part.
 * 0 on success, -1 on failure (out of memory). */
int text_split_parts(const char *s, size_t n, struct text_part **parts, size_t *count);

/* The part whose label equals `label`, with letters and numbers equivalent
 * (A = 1, B = 2, ...), case-insensitive; NULL when none. */
const struct text_part *text_find_part(const struct text_part *parts, size_t count,
                                       const char *label);

/* How to read a part from a slide id: the default rule, or a user's POSIX
 * extended regular expression whose first group (else whole match) is the
 * part. */
struct text_part_rule {
	regex_t re;
	int compiled;
};

/* pattern NULL: the default rule, a single letter (optionally followed by
 * up to two digits, a block number) after the last '-', '_' or '.' at the
 * end of the id, as in "S12-3456-A" or "S12-3456_B2". */
int text_part_rule_init(struct text_part_rule *rule, const char *pattern);
void text_part_rule_release(struct text_part_rule *rule);
/* 1: found, label (upper-cased) in out; 0: the id names no part; -1: label
 * does not fit. */
int text_part_of_slide(const struct text_part_rule *rule, const char *slide, char *out,
                       size_t size);

/* Sentence spans, trimmed, empty ones dropped. 0 or -1 (out of memory). */
int text_sentences(const char *s, size_t n, struct text_span **spans, size_t *count);

/* Up to max keyword phrases (lower-case, 1 to 3 words, distinct), best
 * first, as malloc'd strings. 0 or -1 (out of memory). */
int text_keywords(const char *s, size_t n, size_t max, char ***keywords, size_t *count);

/* A malloc'd copy with runs of whitespace made one space, ends trimmed;
 * NULL on out of memory. */
char *text_clean(const char *s, size_t n);

/* Is (s, n) well-formed UTF-8 without NUL bytes? 1 or 0. */
int text_is_utf8(const char *s, size_t n);

void text_free_strings(char **v, size_t count);

#endif
