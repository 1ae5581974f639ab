"""The numba kernels' batch chunks run on torch's own OpenMP threads.

Why: torch runs its CPU operators on an OpenMP team, and after each parallel operator the
team's idle worker spins for a while before it sleeps (libgomp's GOMP_SPINCOUNT; measured on a
2-core AMD EPYC: 10 ms of CPU after one elementwise op on 200k floats). A numba kernel that
split its batch over threads of its own then shared the cores with that spinner: the LSTM's
whole-sequence forward at B=16, H=128 (float32) took 12.4 ms right after a torch op against
6.4 ms without one, and inside ``derive.torch.RNN`` every forward and backward follows torch
ops (the loss, the optimiser). Handing the chunks to the same OpenMP team (``GOMP_parallel``
through ctypes) lets the spinning worker take one: 6.3 ms after a torch op. Waking the
spinner is free; releasing it (``omp_pause_resource_all``) instead cost torch's next LSTM
3.7 ms to rebuild its team, and ``GOMP_SPINCOUNT`` is read once, before anyone can set it.

How: a numba ``cfunc`` trampoline per list of argument kinds (printed by :func:`_source`,
compiled once and kept in numba's disk cache under ``~/.cache/derive/openmp``) reads a table of
int64 words: an atomic chunk counter, the number of chunks, the kernel function's native
address, and per chunk its rows and each argument's address and shape. Every thread of the team
takes chunks from the counter until none are left and calls the kernel function on them
through its address (numba's calling convention, :func:`_call`), so the split also balances
when a thread starts late. No GIL, no Python objects; and since the kernel function is called,
not compiled in, a trampoline serves every cell with the same argument kinds and no change of
a kernel can leave a stale one in the cache.

:func:`runner` gives None (the kernels then use their own thread pool) where torch's ATen
backend is not OpenMP or no loaded OpenMP library exports ``GOMP_parallel`` (libgomp, and the
GNU entry points of LLVM's libomp and Intel's libiomp5).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# bump when the printed trampoline changes: the file name carries it
_VERSION = 1
_LOCK = threading.Lock()
_TRAMPOLINES: dict[tuple, Any] = {}


def _openmp_path() -> str | None:
    """The OpenMP runtime torch runs on: a loaded libgomp / libomp / libiomp5, preferring one
    inside torch's own folder."""
    if "ATen parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:  # not Linux
        return None
    found: list[str] = []
    for line in maps:
        fields = line.split(maxsplit=5)  # address perms offset device inode path
        name = os.path.basename(fields[5]) if len(fields) == 6 else ""
        if name.startswith(("libgomp", "libomp", "libiomp5")) and ".so" in name \
                and fields[5] not in found:
            found.append(fields[5])
    own = os.path.dirname(torch.__file__)
    found.sort(key=lambda path: not path.startswith(own))
    return found[0] if found else None


@functools.cache
def _gomp_parallel() -> Callable[..., None] | None:
    path = _openmp_path()
    if path is None:
        return None
    try:
        fn = ctypes.CDLL(path).GOMP_parallel
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    fn.restype = None
    return fn


# ---------------------------------------------------------------------------- the trampoline
def _kind(a: Any) -> tuple | None:
    """('a', ndim, dtype) for a C-contiguous array, ('s', dtype) for a scalar; None when the
    argument cannot be passed as an address (the thread pool runs the call then)."""
    if isinstance(a, np.ndarray):
        if a.ndim == 0:
            return ("s", a.dtype.name)
        return ("a", a.ndim, a.dtype.name) if a.flags.c_contiguous and a.flags.writeable \
            else None
    if isinstance(a, (bool, np.bool_)):
        return ("s", "bool_")
    if isinstance(a, np.generic):
        return ("s", a.dtype.name)
    if isinstance(a, float):
        return ("s", "float64")
    if isinstance(a, int):
        return ("s", "int64")
    return None


def _source(kinds: Sequence[tuple]) -> str:
    """The trampoline's text for kernel functions fn(lo, hi, *args) with args of these kinds.

    The table it reads (int64 words): [counter, chunks, words per chunk, fn's address, then
    per chunk: lo, hi, and per argument its address (an array's data, a scalar's one-element
    array) and an array's shape]."""
    lines, names, k = [], [], 2
    for j, kind in enumerate(kinds):
        if kind[0] == "a":
            shape = ", ".join(f"tab[base + {k + 1 + d}]" for d in range(kind[1])) + ","
            lines.append(f"        a{j} = carray(_voidptr(tab[base + {k}]), ({shape}), "
                         f"np.{kind[2]})")
            k += 1 + kind[1]
        else:
            lines.append(f"        a{j} = carray(_voidptr(tab[base + {k}]), (1,), "
                         f"np.{kind[1]})[0]")
            k += 1
        names.append(f"a{j}")
    return "\n".join([
        '"""A trampoline of derive.torch.openmp (printed; do not edit)."""',
        "",
        "import numpy as np",
        "from numba import carray",
        "",
        "from derive.torch.openmp import _call, _fetch_add, _voidptr",
        "",
        "",
        "def trampoline(p):",
        "    head = carray(p, (4,), np.int64)",
        "    tab = carray(p, (4 + head[1] * head[2],), np.int64)",
        "    while True:",
        "        i = _fetch_add(p, 1)",
        "        if i >= tab[1]:",
        "            break",
        "        base = 4 + i * tab[2]",
        *lines,
        f"        _call(tab[3], (tab[base], tab[base + 1], {', '.join(names)}))",
        "",
    ])


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for folder in (Path(base) / "derive" / "openmp",
                   Path(tempfile.gettempdir()) / f"derive-openmp-{os.getuid()}"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
            return folder
        except OSError:
            continue
    raise OSError("no writable folder for derive's OpenMP trampolines")


def _trampoline(kinds: tuple) -> Any:
    """The compiled trampoline for kernel functions whose arguments after (lo, hi) are of these
    kinds: one per kinds, whatever the cell, kept in numba's disk cache (the kernel function
    is called through its address, not compiled in, so no kernel change can make it stale)."""
    with _LOCK:
        if kinds in _TRAMPOLINES:
            return _TRAMPOLINES[kinds]
        from numba import cfunc, types

        text = _source(kinds)
        digest = hashlib.sha256(f"{_VERSION}\0{text}".encode()).hexdigest()[:24]
        path = _cache_dir() / f"derive_openmp_{digest}.py"
        if not path.is_file() or path.read_text() != text:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        # registered, so that numba's cache can name the module again when it loads
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        _TRAMPOLINES[kinds] = cfunc(types.void(types.voidptr), cache=True)(module.trampoline)
        return _TRAMPOLINES[kinds]


def _address(fn: Any, args: tuple) -> int:
    """The native entry of the numba function ``fn`` compiled for ``args`` (compiled now, or
    loaded from its disk cache, when it was not yet)."""
    from numba import typeof

    sig = tuple(typeof(a) for a in args)
    cres = fn.overloads.get(sig)
    if cres is None:
        fn.compile(sig)
        cres = fn.overloads[sig]
    return cres.library.get_pointer_to_function(cres.fndesc.mangled_name)


class TorchOpenMP:
    """A chunk runner (the kernels' ``rt.chunk_runner``) on torch's OpenMP team."""

    def __init__(self, gomp_parallel: Callable[..., None]) -> None:
        self._parallel = gomp_parallel

    def threads(self) -> int:
        return torch.get_num_threads()

    def run(self, fn: Any, chunks: Sequence[tuple[int, int]],
            args: Callable[[int], tuple]) -> bool:
        every = [args(i) for i in range(len(chunks))]
        kinds = tuple(_kind(a) for a in every[0])
        if None in kinds or not hasattr(fn, "py_func") or any(
                tuple(_kind(a) for a in row) != kinds for row in every[1:]):
            return False
        compiled = _trampoline(kinds)
        address = _address(fn, (*chunks[0], *every[0]))
        keep: list[np.ndarray] = []  # the scalars' one-element arrays, alive during the call
        words: list[int] = []
        for (lo, hi), row in zip(chunks, every, strict=True):
            block = [lo, hi]
            for a, kind in zip(row, kinds, strict=True):
                if kind[0] == "a":
                    block += [a.ctypes.data, *a.shape]
                else:
                    one = np.array([a], dtype=kind[1])
                    keep.append(one)
                    block.append(one.ctypes.data)
            words += block
        table = np.array([0, len(chunks), len(words) // len(chunks), address, *words],
                         np.int64)
        self._parallel(compiled.address, table.ctypes.data, 0, 0)
        return True


@functools.cache
def runner() -> TorchOpenMP | None:
    """The runner on torch's OpenMP team, or None where there is none to share."""
    if os.environ.get("DERIVE_TORCH_OPENMP", "1") == "0":
        return None
    parallel = _gomp_parallel()
    return None if parallel is None else TorchOpenMP(parallel)


# ---------------------------------------------------------------------------- intrinsics
def _intrinsics() -> tuple[Any, Any, Any]:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def _voidptr(typingctx, address):
        """The int64 ``address`` as a pointer."""
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], ir.IntType(8).as_pointer())
        return types.voidptr(types.int64), codegen

    @intrinsic
    def _fetch_add(typingctx, p, delta):
        """Atomically add ``delta`` to the int64 at ``p``; the value before."""
        def codegen(context, builder, signature, args):
            ptr = builder.bitcast(args[0], ir.IntType(64).as_pointer())
            return builder.atomic_rmw("add", ptr, args[1], "monotonic")
        return types.int64(types.voidptr, types.int64), codegen

    @intrinsic
    def _call(typingctx, address, args):
        """Call the numba function at ``address`` (compiled for the types of the tuple
        ``args``, returning None) with ``args``, in numba's own calling convention."""
        types_ = tuple(args.types)

        def codegen(context, builder, signature, llargs):
            fnty = context.call_conv.get_function_type(types.none, types_)
            callee = builder.inttoptr(llargs[0], fnty.as_pointer())
            values = cgutils.unpack_tuple(builder, llargs[1], len(types_))
            context.call_conv.call_function(builder, callee, types.none, types_, values)
            return context.get_dummy_value()
        return types.none(types.int64, args), codegen

    return _voidptr, _fetch_add, _call


try:
    _voidptr, _fetch_add, _call = _intrinsics()
except ImportError:  # numba not installed: runner() is never asked for
    pass
