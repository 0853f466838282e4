/*
 * tokenizer.h: the OpenAI CLIP byte-level BPE text tokenizer, as used by the
 * CLIP text towers (PLIP, QuiltNet, CONCH-style), exact to
 * clip/simple_tokenizer.py and clip.tokenize().
 *
 * Text goes through CLIP's pipeline: ftfy (identity: ftfy is not applied,
 * like the reference, which ran with an identity ftfy), html.unescape twice,
 * strip, whitespace runs to one space, Python str.lower(), the regex
 * pre-tokeniser, bytes_to_unicode, BPE with "</w>" on the last symbol.
 * The literal strings "<|startoftext|>" and "<|endoftext|>" in the text
 * become their special ids.
 *
 * Input is UTF-8 with an explicit length; NUL bytes are ordinary characters.
 * Ill-formed UTF-8 (which a Python str cannot hold) is decoded as
 * bytes.decode('utf-8', 'replace') does: U+FFFD for each maximal ill-formed
 * subpart. One input where Python fails and this does not: a decimal
 * reference "&#" with more than 4300 digits makes CPython's int() raise
 * (its int max str digits limit); here it is out of range and becomes
 * U+FFFD, as any value above U+10FFFF does in html.unescape.
 *
 * A loaded tokenizer is immutable: any number of threads may tokenize with
 * one at once (each call allocates its own scratch). The caller owns it and
 * frees it with clip_tokenizer_free(). Errors: NULL or -1 with eosin_errmsg().
 */
#ifndef EOSIN_TOKENIZER_H
#define EOSIN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct clip_tokenizer;

/* Load CLIP's bpe_simple_vocab_16e6.txt.gz (gzip or plain text): line 1 is a
 * header, lines 2..48895 the merges in rank order (fewer in a smaller file).
 * Vocabulary: 256 byte symbols, the same with "</w>", one per merge, then
 * <|startoftext|> and <|endoftext|> (49406 and 49407 for the real file). */
struct clip_tokenizer *clip_tokenizer_load(const char *merges_path);

/* Load a Hugging Face tokenizer.json whose model is a byte-level BPE
 * (model.vocab, model.merges as "a b" strings or [a, b] pairs,
 * model.end_of_word_suffix) with <|startoftext|> and <|endoftext|> in the
 * vocabulary or added_tokens. Only the model is read: the text pipeline is
 * always CLIP's (above), whatever normalizer the file names. */
struct clip_tokenizer *clip_tokenizer_load_hf(const char *tokenizer_json_path);

/* Raw BPE ids without SOT/EOT, as SimpleTokenizer().encode(text). Returns
 * the number of ids, which may exceed cap (then only cap were written to
 * ids), or -1 on error. */
int clip_tokenize(const struct clip_tokenizer *t, const char *utf8, size_t len, int32_t *ids,
                  int cap);

/* clip.tokenize(text, context_length=ctx, truncate=True)[0]: out[ctx] gets
 * [SOT] ids [EOT] zero-padded; when that is longer than ctx it keeps the
 * first ctx and sets out[ctx-1] = EOT, and *truncated (if not NULL) is set
 * to 1 (else 0). Returns the number of non-pad tokens, -1 on error
 * (ctx < 1 is an error). */
int clip_tokenize_context(const struct clip_tokenizer *t, const char *utf8, size_t len,
                          int32_t *out, int ctx, int *truncated);

/* Number of ids (49408 for CLIP). */
int clip_tokenizer_vocab_size(const struct clip_tokenizer *t);
/* The special ids. */
int clip_tokenizer_sot(const struct clip_tokenizer *t);
int clip_tokenizer_eot(const struct clip_tokenizer *t);

/* The text of ids (n) into out (cap bytes, NUL-terminated, cut to fit), as
 * SimpleTokenizer().decode: each id's bytes, a space after a word's end,
 * [SOT] and [EOT] left out, trailing spaces trimmed; a byte that starts no
 * well-formed UTF-8 sequence becomes U+FFFD. Returns the length. */
size_t clip_detokenize(const struct clip_tokenizer *t, const int32_t *ids, int n, char *out,
                       size_t cap);

void clip_tokenizer_free(struct clip_tokenizer *t);

#endif
