"""Port types.  Each module has one Adapter subclass and a module-level
``lookup(core, name, reg, create, mem_given)`` that returns None when the
request is not for it (netmap's netmap_get_*_na cascade).  ``mem_given`` is
the memory allocator the request names (EXTMEM option or nr_mem_id), None
when it names none: a port created for it lives there."""
