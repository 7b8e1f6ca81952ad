"""Every public module, class and function of nmfuse says what it is for.

A method that overrides a documented one (a driver's ``txsync``, say)
inherits its contract's docstring, as ``inspect.getdoc`` reads it."""

import importlib
import inspect
import pkgutil

import nmfuse


def _modules():
    for info in pkgutil.walk_packages(nmfuse.__path__, "nmfuse."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        yield importlib.import_module(info.name)


def _undocumented():
    seen = set()
    for module in [nmfuse, *_modules()]:
        if not inspect.getdoc(module):
            yield module.__name__
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__ or id(obj) in seen:
                continue
            seen.add(id(obj))
            if inspect.isfunction(obj) and not inspect.getdoc(obj):
                yield f"{module.__name__}.{name}"
            if inspect.isclass(obj):
                if not inspect.getdoc(obj):
                    yield f"{module.__name__}.{name}"
                for attr, member in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    func = member.fget if isinstance(member, property) else member
                    if inspect.isfunction(func) and not inspect.getdoc(getattr(obj, attr, func)) \
                            and not (isinstance(member, property) and inspect.getdoc(member)):
                        yield f"{module.__name__}.{name}.{attr}"


def test_every_public_thing_has_a_docstring():
    missing = sorted(_undocumented())
    assert not missing, f"{len(missing)} without a docstring: {missing}"
