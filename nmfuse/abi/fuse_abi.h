/*
 * The FUSE kernel ABI as nmfuse speaks it: protocol 7.45, the version this
 * kernel offers (the system's linux/fuse.h is older).  This file is the one
 * declaration of these structs: nmfuse.abi.fuse gives it to cffi, and the C
 * programs in bench/ include it.  Field names are fuse_kernel.h's; the
 * comment above each struct gives the ABI minor that introduced it.
 */
#ifndef NMFUSE_FUSE_ABI_H
#define NMFUSE_FUSE_ABI_H

#include <stdint.h>

#define FUSE_KERNEL_VERSION 7
#define FUSE_KERNEL_MINOR_VERSION 45

/* 7.1 onwards: request opcodes (enum fuse_opcode). */
enum fuse_opcode {
    FUSE_LOOKUP = 1,
    FUSE_FORGET = 2,
    FUSE_GETATTR = 3,
    FUSE_SETATTR = 4,
    FUSE_READLINK = 5,
    FUSE_SYMLINK = 6,
    FUSE_MKNOD = 8,
    FUSE_MKDIR = 9,
    FUSE_UNLINK = 10,
    FUSE_RMDIR = 11,
    FUSE_RENAME = 12,
    FUSE_LINK = 13,
    FUSE_OPEN = 14,
    FUSE_READ = 15,
    FUSE_WRITE = 16,
    FUSE_STATFS = 17,
    FUSE_RELEASE = 18,
    FUSE_FSYNC = 20,
    FUSE_SETXATTR = 21,
    FUSE_GETXATTR = 22,
    FUSE_LISTXATTR = 23,
    FUSE_REMOVEXATTR = 24,
    FUSE_FLUSH = 25,
    FUSE_INIT = 26,
    FUSE_OPENDIR = 27,
    FUSE_READDIR = 28,
    FUSE_RELEASEDIR = 29,
    FUSE_FSYNCDIR = 30,
    FUSE_GETLK = 31,
    FUSE_SETLK = 32,
    FUSE_SETLKW = 33,
    FUSE_ACCESS = 34,
    FUSE_CREATE = 35,
    FUSE_INTERRUPT = 36,
    FUSE_BMAP = 37,
    FUSE_DESTROY = 38,
    FUSE_IOCTL = 39,
    FUSE_POLL = 40,
    FUSE_NOTIFY_REPLY = 41,
    FUSE_BATCH_FORGET = 42,
    FUSE_FALLOCATE = 43,
    FUSE_READDIRPLUS = 44,
    FUSE_RENAME2 = 45,
    FUSE_LSEEK = 46,
    FUSE_COPY_FILE_RANGE = 47,
    FUSE_SETUPMAPPING = 48,
    FUSE_REMOVEMAPPING = 49,
    FUSE_SYNCFS = 50,
    FUSE_TMPFILE = 51,
    FUSE_STATX = 52
};

/* ---- fuse_kernel.h ------------------------------------------------- */

/* 7.1; total_extlen 7.38 (was padding). */
struct fuse_in_header {
    uint32_t len;
    uint32_t opcode;
    uint64_t unique;
    uint64_t nodeid;
    uint32_t uid;
    uint32_t gid;
    uint32_t pid;
    uint16_t total_extlen;
    uint16_t padding;
};

/* 7.1; error is a negative errno, or a notify code when unique is 0 (7.11). */
struct fuse_out_header {
    uint32_t len;
    int32_t  error;
    uint64_t unique;
};

/* 7.1; max_readahead and flags 7.6; flags2 and unused 7.36. */
struct fuse_init_in {
    uint32_t major;
    uint32_t minor;
    uint32_t max_readahead;
    uint32_t flags;
    uint32_t flags2;
    uint32_t unused[11];
};

/* 7.1; flags, max_write 7.5; max_readahead 7.6; max_background,
   congestion_threshold 7.13; time_gran 7.23; max_pages 7.28;
   map_alignment 7.31; flags2 7.36; max_stack_depth 7.40;
   request_timeout 7.43. */
struct fuse_init_out {
    uint32_t major;
    uint32_t minor;
    uint32_t max_readahead;
    uint32_t flags;
    uint16_t max_background;
    uint16_t congestion_threshold;
    uint32_t max_write;
    uint32_t time_gran;
    uint16_t max_pages;
    uint16_t map_alignment;
    uint32_t flags2;
    uint32_t max_stack_depth;
    uint16_t request_timeout;
    uint16_t unused[11];
};

/* 7.1; blksize 7.9; flags 7.32 (was padding). */
struct fuse_attr {
    uint64_t ino;
    uint64_t size;
    uint64_t blocks;
    uint64_t atime;
    uint64_t mtime;
    uint64_t ctime;
    uint32_t atimensec;
    uint32_t mtimensec;
    uint32_t ctimensec;
    uint32_t mode;
    uint32_t nlink;
    uint32_t uid;
    uint32_t gid;
    uint32_t rdev;
    uint32_t blksize;
    uint32_t flags;
};

/* 7.1 */
struct fuse_attr_out {
    uint64_t attr_valid;
    uint32_t attr_valid_nsec;
    uint32_t dummy;
    struct fuse_attr attr;
};

/* 7.9 */
struct fuse_getattr_in {
    uint32_t getattr_flags;
    uint32_t dummy;
    uint64_t fh;
};

/* 7.1; open_flags 7.33 (was unused). */
struct fuse_open_in {
    uint32_t flags;
    uint32_t open_flags;
};

/* 7.1; backing_id 7.40 (was padding). */
struct fuse_open_out {
    uint64_t fh;
    uint32_t open_flags;
    int32_t  backing_id;
};

/* 7.1; release_flags and lock_owner 7.8. */
struct fuse_release_in {
    uint64_t fh;
    uint32_t flags;
    uint32_t release_flags;
    uint64_t lock_owner;
};

/* 7.1; lock_owner 7.7. */
struct fuse_flush_in {
    uint64_t fh;
    uint32_t unused;
    uint32_t padding;
    uint64_t lock_owner;
};

/* 7.1 */
struct fuse_forget_in {
    uint64_t nlookup;
};

/* 7.16 */
struct fuse_forget_one {
    uint64_t nodeid;
    uint64_t nlookup;
};

/* 7.16; followed by count fuse_forget_one records. */
struct fuse_batch_forget_in {
    uint32_t count;
    uint32_t dummy;
};

/* 7.7 */
struct fuse_interrupt_in {
    uint64_t unique;
};

/* 7.11; followed by in_size bytes of the caller's argument. */
struct fuse_ioctl_in {
    uint64_t fh;
    uint32_t flags;
    uint32_t cmd;
    uint64_t arg;
    uint32_t in_size;
    uint32_t out_size;
};

/* 7.11; followed by the bytes copied back to the caller. */
struct fuse_ioctl_out {
    int32_t  result;
    uint32_t flags;
    uint32_t in_iovs;
    uint32_t out_iovs;
};

/* fuse_poll_in.flags: the caller will wait; answer later with a notification. */
#define FUSE_POLL_SCHEDULE_NOTIFY 1
/* fuse_out_header.error of a poll wake-up (enum fuse_notify_code, 7.11). */
#define FUSE_NOTIFY_POLL_CODE 1

/* 7.11; events 7.21 (was padding). */
struct fuse_poll_in {
    uint64_t fh;
    uint64_t kh;
    uint32_t flags;
    uint32_t events;
};

/* 7.11 */
struct fuse_poll_out {
    uint32_t revents;
    uint32_t padding;
};

/* 7.11 */
struct fuse_notify_poll_wakeup_out {
    uint64_t kh;
};

/* 7.40: the argument of FUSE_DEV_IOC_BACKING_OPEN. */
struct fuse_backing_map {
    int32_t  fd;
    uint32_t flags;
    uint64_t padding;
};

/* ---- FUSE over io_uring (7.42) ---- */

/* 7.42: part of fuse_uring_req_header, written by both sides. */
struct fuse_uring_ent_in_out {
    uint64_t flags;
    uint64_t commit_id;     /* the request's unique: echoed in the commit */
    uint32_t payload_sz;    /* bytes used in the payload buffer */
    uint32_t padding;
    uint64_t reserved;
};

/* 7.42: the header buffer of an entry (iov[0] of the registration). */
struct fuse_uring_req_header {
    uint8_t in_out[128];    /* fuse_in_header in, fuse_out_header out */
    uint8_t op_in[128];     /* the opcode's fuse_*_in struct */
    struct fuse_uring_ent_in_out ring_ent_in_out;
};

/* 7.42: the 80-byte command area of a 128-byte SQE. */
struct fuse_uring_cmd_req {
    uint64_t flags;
    uint64_t commit_id;
    uint16_t qid;
    uint8_t padding[6];
};

#endif /* NMFUSE_FUSE_ABI_H */
