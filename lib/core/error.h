/*
 * error.h: how lib/ reports failure.
 *
 * lib/ never prints and never exits. A function that fails returns -1 (or
 * NULL) and leaves a message, lower-case with no full stop, which the program
 * reads with eosin_errmsg() and prints under its own name. The message is
 * per thread, so worker threads may fail independently.
 */
#ifndef EOSIN_ERROR_H
#define EOSIN_ERROR_H

#include <stdarg.h>

/* Set the thread's message; always returns -1 so callers can
 * `return eosin_error("...")`. */
int eosin_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int eosin_verror(const char *fmt, va_list ap);

/* Prefix the current message with more context: "ctx: old message". */
int eosin_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The thread's last message ("" when none). Valid until the next call that
 * sets one on this thread. */
const char *eosin_errmsg(void);

#endif
