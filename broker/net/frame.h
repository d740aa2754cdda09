/* broker/net/frame.h - an encoded server message, shared by every recipient.
 *
 * Owns: one immutable encoded payload and its reference count. A frame is
 * encoded once per encoding and then queued, by reference, on every
 * subscriber's connection; the last unref frees it. LWS_PRE bytes of headroom
 * precede the payload because libwebsockets writes the WebSocket header
 * there; it writes the same bytes for every recipient and never touches the
 * payload, so sharing one buffer across connections is safe.
 * Threads: frame_new() may run on any thread (the storage thread encodes a
 * publication's pushes after its commit); a frame is then handed to the
 * loop with the batch that carries it, and from there on it is the loop's
 * alone: the count is a plain integer, not an atomic, so frame_ref() and
 * frame_unref() are loop-thread only. */
#ifndef HERALD_FRAME_H
#define HERALD_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <libwebsockets.h>

#define FRAME_HEADROOM LWS_PRE

typedef struct frame {
    uint32_t refs;
    uint32_t len;                 /* payload bytes, after the headroom */
    uint64_t offset;              /* a publication's offset; 0 for any other message */
    unsigned char buf[];          /* FRAME_HEADROOM + len */
} frame_t;

/* frame_new() - a frame holding a copy of @len bytes at @payload, refs = 1.
 * Return: the frame, or NULL if out of memory. */
frame_t *frame_new(const void *payload, size_t len);

static inline unsigned char *frame_payload(frame_t *f) { return f->buf + FRAME_HEADROOM; }

static inline frame_t *frame_ref(frame_t *f) { f->refs++; return f; }

/* frame_unref() - drop one reference; frees the frame on the last.
 * Return: NULL, so callers write `q->head = frame_unref(q->head);`. */
frame_t *frame_unref(frame_t *f);

#endif
