"""The memory layout and the buffer accounting."""

import errno

import pytest

from nmfuse.mem import MemoryAllocator, PoolConfig


@pytest.fixture
def mem():
    m = MemoryAllocator(PoolConfig(if_num=4, ring_num=4, buf_num=64))
    yield m
    m.close()


def test_default_geometry_is_netmaps_and_sparse():
    m = MemoryAllocator()
    try:
        info = m.pools_info()
        assert (info.if_pool_objtotal, info.if_pool_objsize) == (100, 1024)
        assert (info.ring_pool_objtotal, info.ring_pool_objsize) == (200, 9 * 4096)
        assert (info.buf_pool_objtotal, info.buf_pool_objsize) == (163840, 2048)
        assert info.if_pool_offset == 0 < info.ring_pool_offset < info.buf_pool_offset
        assert info.memsize == info.buf_pool_offset + 163840 * 2048
        with open(f"/proc/self/fdinfo/{m.region.fd}") as f:
            assert f.read()  # the memfd exists
        import os
        assert os.fstat(m.region.fd).st_blocks * 512 < 16 << 20, "untouched memory costs nothing"
    finally:
        m.close()


def test_reserved_buffers_never_handed_out(mem):
    got = list(mem.bufs.alloc(62))
    assert sorted(got) == list(range(2, 64))
    with pytest.raises(OSError) as e:
        mem.bufs.alloc(1)
    assert e.value.errno == errno.ENOMEM


def test_release_ignores_invalid_and_double_frees(mem):
    got = list(mem.bufs.alloc(3))
    mem.bufs.release([got[0], got[0], 0, 1, 9999])
    assert mem.bufs.ignored_frees == 4
    again = list(mem.bufs.alloc(62 - 2))
    assert len(set(again)) == len(again) and got[1] not in again and got[2] not in again


def test_ring_object_size_bounds_slots(mem):
    with pytest.raises(OSError) as e:
        mem.ring_alloc(100000)
    assert e.value.errno == errno.ENOMEM


def test_sweep_frees_what_no_live_holder_references(mem):
    off = mem.ring_alloc(8)
    ring = mem.region.ptr("struct netmap_ring *", off)
    bufs = mem.bufs.alloc(8)
    for k in range(8):
        ring.slot[k].buf_idx = bufs[k]
    stray = list(mem.bufs.alloc(5))  # held by nobody: leaked until the sweep
    ring.slot[0].buf_idx = ring.slot[1].buf_idx  # a client duplicated an index
    mem.sweep()
    assert mem.statistics()["buf"].used == 7
    assert not any(mem.bufs.in_use(i) for i in stray)
    mem.ring_free(off)
    mem.sweep()
    assert mem.statistics()["buf"].used == 0


def test_extra_list_is_bounded_against_cycles(mem):
    head, got = mem.extra_alloc(4)
    assert got == 4
    chain = mem.extra_walk(head, 100)
    link = mem.region.ptr("uint32_t *", mem.bufs.offset + chain[-1] * mem.buf_size)
    link[0] = head  # the client made a cycle
    assert mem.extra_walk(head, 100) == chain
    nifp_off = mem.ifs.alloc()
    mem.region.ptr("struct netmap_if *", nifp_off).ni_bufs_head = head
    mem.list_hold(nifp_off)
    mem.sweep()
    assert mem.statistics()["buf"].used == 4
    mem.list_drop(nifp_off)
    mem.sweep()
    assert mem.statistics()["buf"].used == 0


def test_extra_alloc_short_pool_gives_fewer(mem):
    head, got = mem.extra_alloc(1000)
    assert got == 62 and len(mem.extra_walk(head, 1000)) == 62


def test_bad_geometry_rejected():
    with pytest.raises(ValueError):
        PoolConfig(buf_size=100).validate()
    with pytest.raises(ValueError):
        PoolConfig(buf_num=2).validate()
