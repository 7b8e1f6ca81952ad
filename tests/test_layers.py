"""The layers import one way (DESIGN.md): wire formats at the bottom, the
device layer, memory and host plumbing beside the C helper, the netmap
core above them, drivers above the core, daemon and CLI on top.  This
walks every module's imports (module level and inside functions) and
fails on any import of a layer a module may not see."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nmfuse"

# layer -> the layers (besides itself) it may import
ALLOWED = {
    "abi": set(),
    "_helper": {"abi"},
    "_uring": set(),
    "dev": {"abi", "_uring"},
    "mem": {"abi", "_helper"},
    "host": {"abi", "_helper"},
    "netmap": {"abi", "_helper", "mem"},
    "drivers": {"abi", "_helper", "mem", "host", "netmap"},
    "top": {"abi", "_helper", "_uring", "dev", "mem", "host", "netmap", "drivers"},
}


def layer_of(module: str) -> str:
    """``nmfuse.netmap.core`` -> ``netmap``; modules right under the
    package (daemon, cli, ...) are the top."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ALLOWED:
        return parts[1]
    return "top"


def imports_of(path: Path, module: str) -> set[str]:
    """Every nmfuse module ``path`` imports, absolute or relative."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[:-node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{a.name}" for a in node.names)
    return {name for name in found if name == "nmfuse" or name.startswith("nmfuse.")}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _known(name: str) -> bool:
    # "from nmfuse.drivers import tap" names a module; "from nmfuse.abi.netmap
    # import ffi" names an attribute: only modules and packages count
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists() or name in ("nmfuse._helper", "nmfuse._uring")


@pytest.mark.parametrize("module,path", list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_run_downwards(module, path):
    mine = layer_of(module)
    bad = sorted(name for name in imports_of(path, module)
                 if _known(name) and name != "nmfuse"
                 and layer_of(name) != mine and layer_of(name) not in ALLOWED[mine])
    assert not bad, f"{module} ({mine}) imports {bad}, above or beside its layer"


def test_the_check_sees_an_upward_import(tmp_path):
    # the walker itself: a core module importing a driver is caught
    fake = tmp_path / "core.py"
    fake.write_text("def f():\n    from nmfuse.drivers import tap\n")
    names = imports_of(fake, "nmfuse.netmap.core")
    assert "nmfuse.drivers.tap" in names
    assert layer_of("nmfuse.drivers.tap") not in ALLOWED["netmap"]


def test_no_adapter_is_probed():
    # the driver contract has defaults for every capability: nothing in the
    # core or the drivers asks an object whether it has an attribute
    offenders = []
    for module, path in modules():
        if layer_of(module) not in ("netmap", "drivers"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            # asking an object for a capability by name; copying fields
            # through a table of names (getattr(info, field)) is not that
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2 \
                    and isinstance(node.args[1], ast.Constant):
                offenders.append(f"{module}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr == "__module__":
                offenders.append(f"{module}:{node.lineno}")
    assert not offenders, f"probing instead of the contract: {offenders}"
