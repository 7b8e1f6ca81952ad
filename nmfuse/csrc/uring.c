/*
 * FUSE over io_uring with the raw system calls (see uring.h).
 *
 * Each queue has its own small io_uring created with 128-byte SQEs (the
 * FUSE commands carry their fuse_uring_cmd_req in the SQE's command area)
 * and one entry registered with the kernel.  The cycle of a queue is:
 *
 *     REGISTER(headers, payload)            once, in nmu_queue_open
 *     wait for a CQE        <- the kernel put a request in the buffers
 *     ... Python answers into the same buffers ...
 *     COMMIT_AND_FETCH(commit_id) + wait    one io_uring_enter per request
 *
 * The ring is single-issuer with deferred task work where the kernel has
 * it: the kernel completes FUSE commands as task work of the serving
 * thread, which then runs only while that thread waits in io_uring_enter.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/io_uring.h>

#define NMU_ENTRIES 4           /* one SQE in flight per queue: a few spare */
#define NMU_WAIT_MS 500         /* how long a wait may miss q->stop */
#define NMU_SQE_SIZE 128        /* IORING_SETUP_SQE128 */

/* FUSE_IO_URING_CMD_* (fuse_kernel.h enum fuse_uring_cmd). */
enum { NMU_CMD_REGISTER = 1, NMU_CMD_COMMIT_AND_FETCH = 2 };

struct nmu_ring {
    int fd;
    void *sq_map, *cq_map;
    size_t sq_map_size, cq_map_size;
    uint8_t *sqes;
    size_t sqes_size;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_cqe *cqes;
    struct iovec iov[2];        /* headers, payload: read by REGISTER */
};

static long sys_setup(unsigned entries, struct io_uring_params *p)
{
    return syscall(__NR_io_uring_setup, entries, p);
}

static long sys_enter(int fd, unsigned submit, unsigned wait, unsigned flags, void *arg, size_t argsz)
{
    return syscall(__NR_io_uring_enter, fd, submit, wait, flags, arg, argsz);
}

static void ring_unmap(struct nmu_ring *r)
{
    if (r->sqes && r->sqes != MAP_FAILED)
        munmap(r->sqes, r->sqes_size);
    if (r->cq_map && r->cq_map != MAP_FAILED && r->cq_map != r->sq_map)
        munmap(r->cq_map, r->cq_map_size);
    if (r->sq_map && r->sq_map != MAP_FAILED)
        munmap(r->sq_map, r->sq_map_size);
    if (r->fd >= 0)
        close(r->fd);
}

static int ring_setup(struct nmu_ring *r)
{
    struct io_uring_params p;
    unsigned flags[] = {
        IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SQE128,    /* a kernel without deferred task work */
    };
    long fd = -1;

    for (unsigned i = 0; i < sizeof(flags) / sizeof(flags[0]) && fd < 0; i++) {
        memset(&p, 0, sizeof(p));
        p.flags = flags[i];
        fd = sys_setup(NMU_ENTRIES, &p);
        if (fd < 0 && errno != EINVAL)
            return -errno;
    }
    if (fd < 0)
        return -errno;
    r->fd = (int)fd;

    r->sq_map_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_map_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_map_size > r->sq_map_size)
            r->sq_map_size = r->cq_map_size;
        r->cq_map_size = r->sq_map_size;
    }
    r->sq_map = mmap(NULL, r->sq_map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     r->fd, IORING_OFF_SQ_RING);
    if (r->sq_map == MAP_FAILED)
        return -errno;
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        r->cq_map = r->sq_map;
    } else {
        r->cq_map = mmap(NULL, r->cq_map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                         r->fd, IORING_OFF_CQ_RING);
        if (r->cq_map == MAP_FAILED)
            return -errno;
    }
    r->sqes_size = (size_t)p.sq_entries * NMU_SQE_SIZE;
    r->sqes = mmap(NULL, r->sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                   r->fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED)
        return -errno;

    uint8_t *sq = r->sq_map, *cq = r->cq_map;
    r->sq_head = (unsigned *)(sq + p.sq_off.head);
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    return 0;
}

/* Queue one FUSE command (not yet submitted). */
static void ring_push_cmd(struct nmu_ring *r, const struct nmu_queue *q, unsigned cmd, int with_iov)
{
    unsigned tail = *r->sq_tail;
    unsigned index = tail & *r->sq_mask;
    struct io_uring_sqe *sqe = (struct io_uring_sqe *)(r->sqes + (size_t)index * NMU_SQE_SIZE);
    struct fuse_uring_cmd_req *req = (struct fuse_uring_cmd_req *)sqe->cmd;

    memset(sqe, 0, NMU_SQE_SIZE);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = q->fuse_fd;
    sqe->cmd_op = cmd;
    if (with_iov) {
        sqe->addr = (uint64_t)(uintptr_t)r->iov;
        sqe->len = 2;
    }
    req->qid = (uint16_t)q->qid;
    req->commit_id = q->commit_id;
    r->sq_array[index] = index;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
}

/* Take one completion if there is one: 1 with *res set, else 0. */
static int ring_reap(struct nmu_ring *r, int *res)
{
    unsigned head = *r->cq_head;
    if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
        return 0;
    *res = r->cqes[head & *r->cq_mask].res;
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    return 1;
}

/* Submit what is queued and wait up to NMU_WAIT_MS for a completion.
 * Returns 1 with *res set, 0 on timeout, -errno on a failed enter. */
static int ring_wait(struct nmu_ring *r, int *res)
{
    struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = NMU_WAIT_MS * 1000000L };
    struct io_uring_getevents_arg arg = { .ts = (uint64_t)(uintptr_t)&ts };

    for (;;) {
        if (ring_reap(r, res))
            return 1;
        unsigned submit = *r->sq_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
        long n = sys_enter(r->fd, submit, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                           &arg, sizeof(arg));
        if (n < 0) {
            if (errno == ETIME)
                return ring_reap(r, res);
            if (errno != EINTR && errno != EAGAIN && errno != EBUSY)
                return -errno;
        }
    }
}

int nmu_queue_open(struct nmu_queue *q)
{
    struct nmu_ring *r = calloc(1, sizeof(*r));
    int err, res;

    if (!r)
        return -ENOMEM;
    r->fd = -1;
    err = ring_setup(r);
    if (err) {
        ring_unmap(r);
        free(r);
        return err;
    }
    r->iov[0].iov_base = q->headers;
    r->iov[0].iov_len = sizeof(*q->headers);
    r->iov[1].iov_base = q->payload;
    r->iov[1].iov_len = q->payload_size;
    q->ring = r;
    q->pending = 0;
    q->commit_id = 0;
    ring_push_cmd(r, q, NMU_CMD_REGISTER, 1);
    /* A refusal completes at once; an accepted entry completes only when a
     * request arrives.  So: submit, and look without waiting. */
    unsigned submit = 1;
    while (sys_enter(r->fd, submit, 0, 0, NULL, 0) < 0) {
        if (errno != EINTR && errno != EAGAIN && errno != EBUSY) {
            err = -errno;
            nmu_queue_close(q);
            return err;
        }
    }
    if (ring_reap(r, &res) && res < 0) {
        nmu_queue_close(q);
        return res;
    }
    return 0;
}

long nmu_queue_next(struct nmu_queue *q, uint8_t *dst, size_t dst_size)
{
    struct nmu_ring *r = q->ring;
    const struct nmu_layout *l = q->layout;
    int res, got;

    if (!r)
        return 0;
again:
    if (q->pending) {
        ring_push_cmd(r, q, NMU_CMD_COMMIT_AND_FETCH, 0);
        q->pending = 0;
    }
    do {
        got = ring_wait(r, &res);
        if (got < 0)
            return got;
        if (q->stop)
            return 0;
    } while (!got);
    if (res < 0)
        /* the connection ended (-ENOTCONN), or the ring is torn down */
        return res == -ENOTCONN || res == -ECANCELED || res == -ECONNABORTED ? 0 : res;

    const uint8_t *in = q->headers->in_out;
    uint32_t opcode;
    memcpy(&opcode, in + l->opcode_offset, sizeof(opcode));
    size_t op_size = opcode < sizeof(l->op_size) / sizeof(l->op_size[0]) ? l->op_size[opcode] : 0;
    size_t payload = q->headers->ring_ent_in_out.payload_sz;
    size_t total = l->in_header_size + op_size + payload;
    q->commit_id = q->headers->ring_ent_in_out.commit_id;
    q->pending = 1;
    if (op_size > sizeof(q->headers->op_in) || payload > q->payload_size || total > dst_size)
        return -EMSGSIZE;
    memcpy(dst, in, l->in_header_size);
    uint32_t len = (uint32_t)total;
    memcpy(dst + l->len_offset, &len, sizeof(len));
    memcpy(dst + l->in_header_size, q->headers->op_in, op_size);
    memcpy(dst + l->in_header_size + op_size, q->payload, payload);
    if (q->hooks) {
        uint8_t out[64];
        size_t n = nmu_hooks_answer(q->hooks, dst, total, out, sizeof out);

        if (n >= sizeof(struct fuse_out_header)) {
            /* answered: out header in in_out, the body in the payload */
            memcpy(q->headers->in_out, out, sizeof(struct fuse_out_header));
            memcpy(q->payload, out + sizeof(struct fuse_out_header), n - sizeof(struct fuse_out_header));
            q->headers->ring_ent_in_out.payload_sz = (uint32_t)(n - sizeof(struct fuse_out_header));
            q->hooked++;
            goto again;
        }
    }
    return (long)total;
}

int nmu_probe(void)
{
    struct nmu_ring r = { .fd = -1 };
    int err = ring_setup(&r);

    ring_unmap(&r);
    return err;
}

int nmu_refuse(int fuse_fd)
{
    struct fuse_uring_req_header headers;
    static uint8_t payload[64];
    struct nmu_queue q = {
        .fuse_fd = fuse_fd, .qid = 0xffff, .headers = &headers,
        .payload = payload, .payload_size = sizeof(payload),
    };
    int err = nmu_queue_open(&q);

    if (err == 0) {
        /* accepted after all (cannot be with that qid): undo it */
        nmu_queue_close(&q);
        return -EEXIST;
    }
    return err;
}

void nmu_queue_close(struct nmu_queue *q)
{
    struct nmu_ring *r = q->ring;

    q->ring = NULL;
    if (r) {
        ring_unmap(r);
        free(r);
    }
}
