/* clients/cli/pub.h - turning command-line text into one JSON value (pub.c). */
#ifndef HERALD_CLI_PUB_H
#define HERALD_CLI_PUB_H

#include <stddef.h>

/* data_encode() - @text as one encoded JSON value: @text itself when it looks
 * like JSON (starts with { [ " - a digit, true, false or null) and parses;
 * otherwise, or with @as_string, @text as a JSON string.
 * @out: [out] a new NUL-terminated string the caller frees.
 * Return: 0, or -1 with @why (JSON-looking text that does not parse, or text
 * that is not UTF-8). */
int data_encode(const char *text, int as_string, char **out, char *why, size_t whylen);

#endif
