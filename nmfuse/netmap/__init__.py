"""The netmap core: requests (copyin/copyout, option chains), per-fd
bindings, ring state and the sync rules, poll, the port registry and the
driver contract (``driver``, ``adapter``).  It is handed its drivers by the
layer above and never imports them."""
