/*
 * The netmap user ABI (API 14/15) as nmfuse serves it: the one declaration
 * of every netmap struct and constant in the project.
 *
 * Read three ways: by cffi (nmfuse/netmap/abi.py, which drops the
 * preprocessor guard lines), by the C helper built at install time, and by
 * the C clients in clients/.  Layouts follow x86-64 as measured against the
 * netmap user headers (see the project's ABI notes); padding that netmap
 * gets from alignment attributes is spelled out, so that cffi, which knows
 * no attributes, computes the same offsets.
 */
#ifndef NMFUSE_NETMAP_ABI_H
#define NMFUSE_NETMAP_ABI_H
#ifndef NMFUSE_ABI_NO_INCLUDES
#include <stdint.h>
#include <sys/types.h>
#endif

/* API versions: clients send 14, the kernel accepts 14..15. */
#define NETMAP_API 14
#define NETMAP_MIN_API 14
#define NETMAP_MAX_API 15

/* ioctl numbers, group 'i' (values of _IOWR/_IO on Linux). */
#define NIOCGINFO 0xc03c6991
#define NIOCREGIF 0xc03c6992
#define NIOCTXSYNC 0x6994
#define NIOCRXSYNC 0x6995
#define NIOCCTRL 0xc0586997

#define NETMAP_REQ_MAXSIZE 4096
#define NETMAP_REQ_IFNAMSIZ 64
#define NETMAP_IFNAMSIZ 16
#define NM_CACHE_ALIGN 128

/* Request types (nmreq_header.nr_reqtype). */
enum {
    NETMAP_REQ_REGISTER = 1,
    NETMAP_REQ_PORT_INFO_GET = 2,
    NETMAP_REQ_VALE_ATTACH = 3,
    NETMAP_REQ_VALE_DETACH = 4,
    NETMAP_REQ_VALE_LIST = 5,
    NETMAP_REQ_PORT_HDR_SET = 6,
    NETMAP_REQ_PORT_HDR_GET = 7,
    NETMAP_REQ_VALE_NEWIF = 8,
    NETMAP_REQ_VALE_DELIF = 9,
    NETMAP_REQ_VALE_POLLING_ENABLE = 10,
    NETMAP_REQ_VALE_POLLING_DISABLE = 11,
    NETMAP_REQ_POOLS_INFO_GET = 12,
    NETMAP_REQ_SYNC_KLOOP_START = 13,
    NETMAP_REQ_SYNC_KLOOP_STOP = 14,
    NETMAP_REQ_CSB_ENABLE = 15
};

/* Option types (nmreq_option.nro_reqtype). */
enum {
    NETMAP_REQ_OPT_EXTMEM = 1,
    NETMAP_REQ_OPT_SYNC_KLOOP_EVENTFDS = 2,
    NETMAP_REQ_OPT_CSB = 3,
    NETMAP_REQ_OPT_SYNC_KLOOP_MODE = 4,
    NETMAP_REQ_OPT_OFFSETS = 5,
    NETMAP_REQ_OPT_MAX = 6
};

/* Register modes (nmreq_register.nr_mode). */
enum {
    NR_REG_DEFAULT = 0,
    NR_REG_ALL_NIC = 1,
    NR_REG_SW = 2,
    NR_REG_NIC_SW = 3,
    NR_REG_ONE_NIC = 4,
    NR_REG_PIPE_MASTER = 5,
    NR_REG_PIPE_SLAVE = 6,
    NR_REG_NULL = 7,
    NR_REG_ONE_SW = 8
};
#define NR_REG_MASK 0xf

/* nmreq_register.nr_flags */
#define NR_MONITOR_TX 0x100
#define NR_MONITOR_RX 0x200
#define NR_ZCOPY_MON 0x400
#define NR_EXCLUSIVE 0x800
#define NR_PTNETMAP_HOST 0x1000
#define NR_RX_RINGS_ONLY 0x2000
#define NR_TX_RINGS_ONLY 0x4000
#define NR_ACCEPT_VNET_HDR 0x8000
#define NR_DO_RX_POLL 0x10000
#define NR_NO_TX_POLL 0x20000

/* netmap_slot.flags */
#define NS_BUF_CHANGED 0x0001
#define NS_REPORT 0x0002
#define NS_FORWARD 0x0004
#define NS_NO_LEARN 0x0008
#define NS_INDIRECT 0x0010
#define NS_MOREFRAG 0x0020
#define NS_TXMON 0x0040
#define NS_PORT_SHIFT 8
#define NS_PORT_MASK 0xff00

/* netmap_ring.flags */
#define NR_TIMESTAMP 0x0002
#define NR_FORWARD 0x0004

/* netmap_if.ni_flags */
#define NI_PRIV_MEM 0x1

/* Legacy struct nmreq: nr_ringid bits and nr_cmd values. */
#define NETMAP_RING_MASK 0x0fff
#define NETMAP_NO_TX_POLL 0x1000
#define NETMAP_SW_RING 0x2000
#define NETMAP_HW_RING 0x4000
#define NETMAP_DO_RX_POLL 0x8000
#define NETMAP_BDG_ATTACH 1
#define NETMAP_BDG_DETACH 2
#define NETMAP_BDG_REGOPS 3
#define NETMAP_BDG_LIST 4
#define NETMAP_BDG_VNET_HDR 5
#define NETMAP_BDG_NEWIF 6
#define NETMAP_BDG_DELIF 7
#define NETMAP_PT_HOST_CREATE 8
#define NETMAP_PT_HOST_DELETE 9
#define NETMAP_BDG_POLLING_ON 10
#define NETMAP_BDG_POLLING_OFF 11
#define NETMAP_VNET_HDR_GET 12
#define NETMAP_BDG_HOST 1

#define NETMAP_POLLING_MODE_SINGLE_CPU 1
#define NETMAP_POLLING_MODE_MULTI_CPU 2

/* ---- shared memory objects ---- */

struct netmap_slot {
    uint32_t buf_idx;
    uint16_t len;
    uint16_t flags;
    uint64_t ptr;
};

/* struct timeval on x86-64, named apart so it never clashes with <sys/time.h>. */
struct nm_timeval {
    int64_t tv_sec;
    int64_t tv_usec;
};

struct netmap_ring {
    int64_t buf_ofs;        /* buffer 0, relative to this ring */
    uint32_t num_slots;
    uint32_t nr_buf_size;
    uint16_t ringid;
    uint16_t dir;           /* 0: tx, 1: rx */
    uint32_t head;          /* (u) first slot owned by the user */
    uint32_t cur;           /* (u) wake-up point */
    uint32_t tail;          /* (k) first slot owned by the kernel */
    uint32_t flags;
    uint32_t _pad0;
    struct nm_timeval ts;   /* (k) time of the last sync */
    uint64_t offset_mask;
    uint64_t buf_align;
    uint8_t _pad1[56];      /* netmap aligns sem[] to NM_CACHE_ALIGN */
    uint8_t sem[128];
    struct netmap_slot slot[];
};

struct netmap_if {
    char ni_name[16];
    uint32_t ni_version;
    uint32_t ni_flags;
    uint32_t ni_tx_rings;
    uint32_t ni_rx_rings;
    uint32_t ni_bufs_head;  /* first extra buffer; linked through each buffer's first u32 */
    uint32_t ni_host_tx_rings;
    uint32_t ni_host_rx_rings;
    uint32_t ni_spare1[3];
    ssize_t ring_ofs[];     /* tx (hw, host) then rx (hw, host); 0 = not bound */
};

/* ---- control requests ---- */

struct nmreq_option {
    uint64_t nro_next;
    uint32_t nro_reqtype;
    uint32_t nro_status;
    uint64_t nro_size;
};

struct nmreq_header {
    uint16_t nr_version;
    uint16_t nr_reqtype;
    uint32_t nr_reserved;
    char nr_name[64];
    uint64_t nr_options;
    uint64_t nr_body;
};

struct nmreq_register {
    uint64_t nr_offset;
    uint64_t nr_memsize;
    uint32_t nr_tx_slots;
    uint32_t nr_rx_slots;
    uint16_t nr_tx_rings;
    uint16_t nr_rx_rings;
    uint16_t nr_host_tx_rings;
    uint16_t nr_host_rx_rings;
    uint16_t nr_mem_id;
    uint16_t nr_ringid;
    uint32_t nr_mode;
    uint32_t nr_extra_bufs;
    uint32_t _pad0;
    uint64_t nr_flags;
};

struct nmreq_port_info_get {
    uint64_t nr_memsize;
    uint32_t nr_tx_slots;
    uint32_t nr_rx_slots;
    uint16_t nr_tx_rings;
    uint16_t nr_rx_rings;
    uint16_t nr_host_tx_rings;
    uint16_t nr_host_rx_rings;
    uint16_t nr_mem_id;
    uint16_t pad[3];
};

struct nmreq_vale_attach {
    struct nmreq_register reg;
    uint32_t port_index;
    uint32_t pad1;
};

struct nmreq_vale_detach {
    uint32_t port_index;
    uint32_t pad1;
};

struct nmreq_vale_list {
    uint16_t nr_bridge_idx;
    uint16_t pad1;
    uint32_t nr_port_idx;
};

struct nmreq_port_hdr {
    uint32_t nr_hdr_len;
    uint32_t pad1;
};

struct nmreq_vale_newif {
    uint32_t nr_tx_slots;
    uint32_t nr_rx_slots;
    uint16_t nr_tx_rings;
    uint16_t nr_rx_rings;
    uint16_t nr_mem_id;
    uint16_t pad1;
};

struct nmreq_vale_polling {
    uint32_t nr_mode;
    uint32_t nr_first_cpu_id;
    uint32_t nr_num_polling_cpus;
    uint32_t pad1;
};

struct nmreq_pools_info {
    uint64_t nr_memsize;
    uint16_t nr_mem_id;
    uint16_t pad1[3];
    uint64_t nr_if_pool_offset;
    uint32_t nr_if_pool_objtotal;
    uint32_t nr_if_pool_objsize;
    uint64_t nr_ring_pool_offset;
    uint32_t nr_ring_pool_objtotal;
    uint32_t nr_ring_pool_objsize;
    uint64_t nr_buf_pool_offset;
    uint32_t nr_buf_pool_objtotal;
    uint32_t nr_buf_pool_objsize;
};

struct nmreq_sync_kloop_start {
    uint32_t sleep_us;
    uint32_t pad1;
};

struct nmreq_opt_extmem {
    struct nmreq_option nro_opt;
    uint64_t nro_usrptr;
    struct nmreq_pools_info nro_info;
};

struct nmreq_opt_csb {
    struct nmreq_option nro_opt;
    uint64_t csb_atok;
    uint64_t csb_ktoa;
};

/* NETMAP_REQ_OPT_SYNC_KLOOP_EVENTFDS: one pair per bound ring, TX rings
 * first; nro_size covers the header and every pair.  A negative fd: none. */
struct nmreq_opt_sync_kloop_eventfd {
    int32_t ioeventfd;  /* the application kicks the loop through it */
    int32_t irqfd;      /* the loop notifies the application through it */
};

struct nmreq_opt_sync_kloop_eventfds {
    struct nmreq_option nro_opt;
    struct nmreq_opt_sync_kloop_eventfd eventfds[];
};

/* nmreq_opt_sync_kloop_mode.mode bits. */
#define NM_OPT_SYNC_KLOOP_DIRECT_TX 0x1
#define NM_OPT_SYNC_KLOOP_DIRECT_RX 0x2

struct nmreq_opt_sync_kloop_mode {
    struct nmreq_option nro_opt;
    uint32_t mode;
};

struct nmreq_opt_offsets {
    struct nmreq_option nro_opt;
    uint64_t nro_max_offset;
    uint64_t nro_initial_offset;
    uint32_t nro_offset_bits;
    uint32_t nro_tx_align;
    uint64_t nro_min_gap;
};

/* CSB mode: one entry per bound ring in the application's memory, TX rings first. */
struct nm_csb_atok {
    uint32_t head;
    uint32_t cur;
    uint32_t appl_need_kick;
    uint32_t sync_flags;
    uint32_t pad[12];
};

struct nm_csb_ktoa {
    uint32_t hwcur;
    uint32_t hwtail;
    uint32_t kern_need_kick;
    uint32_t pad[13];
};

/* Legacy request of NIOCREGIF / NIOCGINFO. */
struct nmreq {
    char nr_name[16];
    uint32_t nr_version;
    uint32_t nr_offset;
    uint32_t nr_memsize;
    uint32_t nr_tx_slots;
    uint32_t nr_rx_slots;
    uint16_t nr_tx_rings;
    uint16_t nr_rx_rings;
    uint16_t nr_ringid;
    uint16_t nr_cmd;
    uint16_t nr_arg1;
    uint16_t nr_arg2;
    uint32_t nr_arg3;
    uint32_t nr_flags;
    uint32_t spare1[1];
};

#endif /* NMFUSE_NETMAP_ABI_H */
