/*
 * FUSE over io_uring: one queue per CPU, each an io_uring of its own with
 * one registered entry (a header buffer and a payload buffer the kernel
 * fills with a request and reads the answer from).  Declared once here:
 * cffi reads this file for the Python binding (nmfuse.dev.uring), uring.c
 * implements it with the raw system calls.
 *
 * The fuse_uring_* structs it uses are the kernel's, declared once in
 * nmfuse/abi/fuse_abi.h.
 */
#ifndef NMFUSE_URING_H
#define NMFUSE_URING_H

#include <stddef.h>
#include <stdint.h>

#include "fuse_abi.h"

/* Where the request header keeps what the copy needs, filled by Python
 * from the one declaration of the FUSE structs (nmfuse.abi.fuse). */
struct nmu_layout {
    uint32_t in_header_size;    /* sizeof(struct fuse_in_header) */
    uint32_t len_offset;        /* of its uint32_t len */
    uint32_t opcode_offset;     /* of its uint32_t opcode */
    uint16_t op_size[64];       /* by opcode: the fuse_*_in struct the kernel puts in op_in */
};

/* One queue.  Python owns the struct and the two buffers; uring.c owns
 * the ring (``ring`` is its private state).  ``stop`` may be set from any
 * thread: a wait that sees it returns 0 within NMU_WAIT_MS. */
struct nmu_queue {
    int fuse_fd;
    unsigned int qid;                       /* the CPU this queue serves */
    struct fuse_uring_req_header *headers;
    uint8_t *payload;
    size_t payload_size;
    const struct nmu_layout *layout;
    uint64_t commit_id;                     /* the request being answered */
    int pending;                            /* handed out, not committed yet */
    volatile int stop;
    void *ring;
    struct nmu_hooks *hooks;                /* request hooks answered here (hook.h), or NULL */
    uint64_t hooked;                        /* requests they answered */
};

/* Make the ring (128-byte SQEs) and register the entry for queue q->qid.
 * Call from the thread that will serve the queue: the kernel completes
 * its commands in that thread's context.  Returns 0 or -errno (the
 * registration's own error when the kernel refuses at once). */
int nmu_queue_open(struct nmu_queue *q);

/* Answer the pending request (the out header already in headers->in_out,
 * the rest in payload, payload_sz set) and wait for the next one, which
 * is copied to dst as /dev/fuse would deliver it: the in header (its len
 * set to the total), the op struct (layout->op_size[opcode] bytes), the
 * payload.  Requests the hooks answer (q->hooks) are answered and
 * committed here, without returning.  Returns its length, 0 once the connection has ended or stop
 * was set, or -errno (-EMSGSIZE: dst is too small). */
long nmu_queue_next(struct nmu_queue *q, uint8_t *dst, size_t dst_size);

/* Can this process make a ring with 128-byte SQEs?  0 or -errno. */
int nmu_probe(void);

/* Make the kernel give up waiting for the rings of the connection on
 * fuse_fd: a registration it must refuse (a queue id past every CPU)
 * clears the connection's io_uring mode and wakes the requests that
 * waited for the rings.  Returns that refusal (-EINVAL) or another -errno. */
int nmu_refuse(int fuse_fd);

/* Unmap and close the ring (idempotent); the kernel cancels what the
 * queue still had registered. */
void nmu_queue_close(struct nmu_queue *q);

#endif /* NMFUSE_URING_H */
