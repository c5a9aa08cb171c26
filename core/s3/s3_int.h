/* SPDX-License-Identifier: MIT */
/*
 * The S3 client's parts, private to its files: s3.c (connections,
 * requests, hashing, errors, the verbs), s3_cfg.c (configuration and
 * credentials) and s3_xml.c (the server's XML answers).
 */
#ifndef TALLY_S3_INT_H
#define TALLY_S3_INT_H

#include <expat.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/s3/s3.h"

/* A growable byte string, always NUL-terminated once it holds anything
 * (s3.c). */
struct sbuf {
	char *p;
	size_t len, cap;
};
int sbuf_add(struct sbuf *b, const void *d, size_t n);
int sbuf_adds(struct sbuf *b, const char *s);
void sbuf_release(struct sbuf *b);

/* The server's XML answers (s3_xml.c). */
enum xml_root {
	ROOT_NONE,
	ROOT_ERROR,
	ROOT_LIST,
	ROOT_OTHER
};

enum xml_field {
	F_NONE,
	F_CODE,
	F_MESSAGE,
	F_TRUNCATED,
	F_TOKEN,
	F_KEY,
	F_SIZE,
};

struct list_entry {
	char *key;
	uint64_t size;
};

/* What expat found in an <Error> or a <ListBucketResult> document. */
struct xml {
	XML_Parser parser;
	int depth;
	enum xml_root root;
	enum xml_field field; /* the element whose text is being collected */
	int field_depth;
	struct sbuf text;
	int rc;
	const char *why; /* what was wrong with the document, when rc */

	char *code, *message; /* <Error> */

	bool truncated; /* <ListBucketResult> */
	char *token;
	bool in_contents, have_size;
	char *key;
	uint64_t size;
	struct list_entry *entries;
	size_t n, cap;
};
int xml_parse(struct xml *x, const char *doc, size_t len);
void xml_release(struct xml *x);

#endif
