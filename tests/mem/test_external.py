"""External memory: the layout netmap_mem_ext_create gives, an allocator over
memory handed in, and the table of allocators by mem_id."""

import errno
import mmap

import pytest

from nmfuse.mem import ExternalRegion, MemoryAllocator, MemoryTable, PoolConfig
from nmfuse.mem.external import MAX_BUFFERS, PoolsRequest, plan
from nmfuse.abi.netmap import ffi

PAGE = 4096


def test_zero_fields_take_netmaps_private_defaults():
    r = PoolsRequest(memsize=1 << 20, ring_num=8).with_defaults()
    assert (r.if_num, r.if_size, r.ring_num, r.ring_size, r.buf_num, r.buf_size) == \
        (2, 1024, 8, 5 * PAGE, 4098, 2048)


def test_pools_start_on_pages_and_the_rest_becomes_buffers():
    lay = plan(PoolsRequest(memsize=64 * PAGE, if_num=3, if_size=1024, ring_num=2, ring_size=5 * PAGE,
                            buf_num=10, buf_size=2048))
    assert (lay.ifs.offset, lay.ifs.objtotal) == (0, 3)
    assert (lay.rings.offset, lay.rings.objtotal) == (PAGE, 2)          # 3 KiB of netmap_if -> one page
    assert lay.bufs.offset == PAGE + 10 * PAGE
    # asked 10; the bytes left after the asked pools (counted unrounded) add
    # ceil(left / 2048) more; the pages actually left hold fewer than that
    left = 64 * PAGE - 3 * 1024 - 2 * 5 * PAGE - 10 * 2048
    asked = 10 + (left + 2047) // 2048
    room = (64 * PAGE - lay.bufs.offset) // 2048
    assert room < asked and lay.bufs.objtotal == lay.bufs.usable == room
    assert lay.memsize == 64 * PAGE


def test_a_last_object_overrunning_the_memory_is_counted_but_unusable():
    # if 2 x 1024 (one page), ring 1 x 4096, then buffers of 3000 from 8192 in 4 pages
    lay = plan(PoolsRequest(memsize=3 * PAGE + 1000, if_num=2, if_size=1024, ring_num=1, ring_size=PAGE,
                            buf_num=1, buf_size=3000))
    assert lay.bufs.offset == 2 * PAGE
    assert (lay.bufs.objtotal, lay.bufs.usable) == (3, 2)
    assert lay.memsize == 2 * PAGE + 3 * PAGE    # 9000 bytes of buffers, rounded to pages


def test_pools_that_do_not_fit_are_enomem_in_netmaps_order():
    with pytest.raises(OSError) as e:
        plan(PoolsRequest(memsize=PAGE, if_num=2, if_size=1024, ring_num=1, ring_size=PAGE,
                          buf_num=1, buf_size=2048))
    assert e.value.errno == errno.ENOMEM and "ring" in str(e.value)
    with pytest.raises(OSError) as e:
        plan(PoolsRequest(memsize=PAGE, if_num=8, if_size=1024, ring_num=1, ring_size=PAGE,
                          buf_num=1, buf_size=2048))
    assert e.value.errno == errno.ENOMEM and "netmap_if" in str(e.value)


def test_buffers_smaller_than_served_are_einval():
    with pytest.raises(OSError) as e:
        plan(PoolsRequest(memsize=1 << 20, buf_size=32).with_defaults())
    assert e.value.errno == errno.EINVAL


def test_buffers_stop_at_what_the_daemon_counts():
    lay = plan(PoolsRequest(memsize=1 << 40, buf_size=64).with_defaults())
    assert lay.bufs.objtotal == lay.bufs.usable == MAX_BUFFERS


def test_no_memory_gives_empty_pools():
    lay = plan(PoolsRequest(memsize=0).with_defaults())
    assert lay.ifs.objtotal == lay.rings.objtotal == lay.bufs.objtotal == 0 and lay.memsize == 0


@pytest.fixture
def external():
    """An allocator over a local mapping, as the device layer hands one in."""
    backing = mmap.mmap(-1, 32 * PAGE)
    address = int(ffi.cast("uintptr_t", ffi.from_buffer(backing)))
    released = []
    lay = plan(PoolsRequest(memsize=32 * PAGE, if_num=2, if_size=1024, ring_num=2, ring_size=PAGE,
                            buf_num=3, buf_size=2000))
    mem = MemoryAllocator.over(ExternalRegion(address, 32 * PAGE, lambda: released.append(1)), lay)
    yield mem, backing, released, lay
    mem.close()


def test_allocator_over_external_memory_writes_in_it(external):
    mem, backing, released, lay = external
    off = mem.ring_alloc(8)
    ring = mem.region.ptr("struct netmap_ring *", off)
    ring.num_slots = 8
    assert int.from_bytes(backing[off + 8:off + 12], "little") == 8
    info = mem.pools_info()
    assert (info.buf_pool_offset, info.buf_pool_objtotal, info.buf_pool_objsize) == \
        (lay.bufs.offset, lay.bufs.objtotal, 2000)
    assert mem.memsize == lay.memsize and mem.mem_id == 1 and not mem.private


def test_the_unusable_last_buffer_is_never_handed_out_nor_accepted(external):
    mem, _, _, lay = external
    assert lay.bufs.usable == lay.bufs.objtotal - 1
    got = list(mem.bufs.alloc(mem.bufs.free_count()))
    assert max(got) == lay.bufs.usable - 1
    assert not mem.bufs.valid(lay.bufs.objtotal - 1)


def test_closing_releases_the_mapping_once(external):
    mem, _, released, _ = external
    mem.close()
    mem.close()
    assert released == [1]


def test_object_pools_cost_nothing_until_used():
    m = MemoryAllocator(PoolConfig(if_num=4, ring_num=4, buf_num=64))
    try:
        offs = [m.ifs.alloc() for _ in range(4)]
        assert offs == [0, 1024, 2048, 3072]
        with pytest.raises(OSError):
            m.ifs.alloc()
        m.ifs.free(offs[1])
        assert m.ifs.alloc() == offs[1]          # a returned object is reused first
    finally:
        m.close()


def _ext(table, key):
    mem = MemoryAllocator.over(ExternalRegion(0, 0, lambda: None),
                               plan(PoolsRequest(memsize=0).with_defaults()))
    return table.add_external(key, mem)


def test_table_gives_ids_after_the_last_and_frees_them_with_the_last_user():
    glob = MemoryAllocator(PoolConfig(if_num=2, ring_num=2, buf_num=8))
    table = MemoryTable(glob)
    try:
        a = _ext(table, "a")
        b = _ext(table, "b")
        assert (a.mem_id, b.mem_id) == (2, 3) and table.find(2) is a
        again = table.find_external("a")
        assert again is a and a.users == 2
        a.drop()
        assert table.find(2) is a
        a.drop()
        assert table.find(2) is None and table.find_external("a") is None and a.region.base is None
        c = _ext(table, "a")
        assert c.mem_id == 4, "ids go on after the last one given, as netmap's"
        assert table.find(1) is glob and table.externals() == [b, c]
    finally:
        glob.close()


def test_table_ids_wrap_and_skip_those_in_use():
    glob = MemoryAllocator(PoolConfig(if_num=2, ring_num=2, buf_num=8))
    table = MemoryTable(glob)
    try:
        table._last_id = 0xFFFE
        assert [_ext(table, k).mem_id for k in "xyz"] == [0xFFFF, 2, 3]
    finally:
        glob.close()
