/* SPDX-License-Identifier: MIT */
/*
 * The S3 server's XML answers, parsed with expat: errors (Code,
 * Message) and listing pages (keys, sizes, continuation). The DESIGN
 * NOTES of core/s3/s3.c hold here.
 */
#include "core/s3/s3_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <expat.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util/array.h"

#define IO_CHUNK (256 * 1024)		 /* read size of the hash pass */
#define ERR_BODY_MAX (64 * 1024)	 /* kept of an error body */
#define LIST_BODY_MAX (32 * 1024 * 1024) /* a listing page, at most */
#define XML_TEXT_MAX (64 * 1024)	 /* one element's text, at most */
#define SHA256_HEX 65

/* ---------------------------------------------------------------- XML */

static void xml_fail(struct xml *x, int rc, const char *why)
{
	if (!x->rc) {
		x->rc = rc;
		x->why = why;
	}
	XML_StopParser(x->parser, XML_FALSE);
}

static void XMLCALL xml_start(void *data, const XML_Char *name,
			      const XML_Char **attrs)
{
	struct xml *x = data;
	enum xml_field f = F_NONE;

	(void)attrs;
	x->depth++;
	if (x->depth == 1) {
		if (!strcmp(name, "Error"))
			x->root = ROOT_ERROR;
		else if (!strcmp(name, "ListBucketResult"))
			x->root = ROOT_LIST;
		else
			x->root = ROOT_OTHER;
		return;
	}
	if (x->field != F_NONE)
		return; /* markup inside a text field: not S3's */
	if (x->root == ROOT_ERROR && x->depth == 2) {
		if (!strcmp(name, "Code"))
			f = F_CODE;
		else if (!strcmp(name, "Message"))
			f = F_MESSAGE;
	} else if (x->root == ROOT_LIST && x->depth == 2) {
		if (!strcmp(name, "IsTruncated")) {
			f = F_TRUNCATED;
		} else if (!strcmp(name, "NextContinuationToken")) {
			f = F_TOKEN;
		} else if (!strcmp(name, "Contents")) {
			x->in_contents = true;
			x->have_size = false;
		}
	} else if (x->root == ROOT_LIST && x->depth == 3 && x->in_contents) {
		if (!strcmp(name, "Key"))
			f = F_KEY;
		else if (!strcmp(name, "Size"))
			f = F_SIZE;
	}
	if (f == F_NONE)
		return;
	x->field = f;
	x->field_depth = x->depth;
	x->text.len = 0;
	if (sbuf_add(&x->text, "", 0))
		xml_fail(x, -ENOMEM, "out of memory");
}

static void XMLCALL xml_chars(void *data, const XML_Char *s, int len)
{
	struct xml *x = data;

	if (x->field == F_NONE || x->rc || len <= 0)
		return;
	if (x->text.len + (size_t)len > XML_TEXT_MAX)
		xml_fail(x, -EIO, "an element's text is too long");
	else if (sbuf_add(&x->text, s, (size_t)len))
		xml_fail(x, -ENOMEM, "out of memory");
}

/* Move the collected text into *@slot. */
static void xml_take(struct xml *x, char **slot)
{
	free(*slot);
	*slot = x->text.p;
	x->text.p = NULL;
	x->text.len = x->text.cap = 0;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *e;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &e, 10);
	if (errno || *e)
		return false;
	*out = v;
	return true;
}

static void xml_field_end(struct xml *x)
{
	switch (x->field) {
	case F_CODE:
		xml_take(x, &x->code);
		break;
	case F_MESSAGE:
		xml_take(x, &x->message);
		break;
	case F_TRUNCATED:
		x->truncated = !strcmp(x->text.p, "true");
		break;
	case F_TOKEN:
		xml_take(x, &x->token);
		break;
	case F_KEY:
		xml_take(x, &x->key);
		break;
	case F_SIZE:
		if (!parse_u64(x->text.p, &x->size))
			xml_fail(x, -EIO, "a <Size> is not a number");
		x->have_size = true;
		break;
	case F_NONE:
		break;
	}
	x->field = F_NONE;
}

static void XMLCALL xml_end(void *data, const XML_Char *name)
{
	struct xml *x = data;
	int rc;

	(void)name;
	if (x->field != F_NONE && x->depth == x->field_depth) {
		xml_field_end(x);
	} else if (x->root == ROOT_LIST && x->depth == 2 && x->in_contents) {
		x->in_contents = false;
		if (!x->key || !x->have_size) {
			xml_fail(x, -EIO, "a <Contents> lacks <Key> or <Size>");
		} else {
			rc = array_reserve(&x->entries, &x->cap, x->n + 1,
					   sizeof(*x->entries));
			if (rc) {
				xml_fail(x, rc, "out of memory");
			} else {
				x->entries[x->n].key = x->key;
				x->entries[x->n++].size = x->size;
				x->key = NULL;
			}
		}
	}
	x->depth--;
}

/*
 * Parse the @len bytes at @doc into @x (zeroed by the caller, released by
 * xml_release() whatever happens). 0, -ENOMEM, or -EIO with x->why.
 */
int xml_parse(struct xml *x, const char *doc, size_t len)
{
	if (len > INT32_MAX) {
		x->why = "document too large";
		return -EIO;
	}
	x->parser = XML_ParserCreate(NULL);
	if (!x->parser) {
		x->why = "out of memory";
		return -ENOMEM;
	}
	XML_SetUserData(x->parser, x);
	XML_SetElementHandler(x->parser, xml_start, xml_end);
	XML_SetCharacterDataHandler(x->parser, xml_chars);
	if (XML_Parse(x->parser, doc, (int)len, XML_TRUE) == XML_STATUS_ERROR &&
	    !x->rc) {
		x->rc = XML_GetErrorCode(x->parser) == XML_ERROR_NO_MEMORY
				? -ENOMEM
				: -EIO;
		x->why = XML_ErrorString(XML_GetErrorCode(x->parser));
	}
	return x->rc;
}

void xml_release(struct xml *x)
{
	size_t i;

	if (x->parser)
		XML_ParserFree(x->parser);
	sbuf_release(&x->text);
	free(x->code);
	free(x->message);
	free(x->token);
	free(x->key);
	for (i = 0; i < x->n; i++)
		free(x->entries[i].key);
	free(x->entries);
}
