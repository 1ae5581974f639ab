# generated from numpy/runtime.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. The runtime shared by every kernel.
"""Cell-independent runtime of the generated NumPy kernels: input checks, initialisation, the
logistic function and the RTRL / state-Jacobian drivers around a cell's ``_local_step``.

numpy only. Every function takes the cell's ``PARAMS`` (name -> shape in n_hidden / n_in) and
``STATE`` (state names, output first) explicitly; the kernel modules wrap them.
"""

import _thread
import math
import os

import numpy as np


def sigmoid(z, out=None):
    """sigma(z) = (1 + tanh(z / 2)) / 2: no overflow for large |z|, keeps the dtype; in place
    into ``out`` when given (four passes, no temporaries)."""
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out



def init_params(PARAMS, n_in, n_hidden, *, seed=0, dtype=np.float64, n_out=None):
    """Parameters drawn uniform(-1/sqrt(n_hidden), 1/sqrt(n_hidden)), as torch initialises."""
    if int(n_in) < 1 or int(n_hidden) < 1 or (n_out is not None and int(n_out) < 1):
        raise ValueError(f"n_in, n_hidden and n_out must be positive, got n_in={n_in}, "
                         f"n_hidden={n_hidden}, n_out={n_out}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(n_hidden)
    sizes = {"n_in": int(n_in), "n_hidden": int(n_hidden), "n_out": int(n_out or 0)}
    return {name: rng.uniform(-k, k, size=tuple(sizes[s] for s in shape)).astype(dtype)
            for name, shape in PARAMS.items()}



def sizes(PARAMS, params, READOUT_PARAMS=None):
    """Validate a parameter dict; returns (n_hidden, n_in, dtype). Each size is read from the
    first parameter that has that dimension; n_in is None when no parameter has one (the
    cell never multiplies x by a matrix: xs then fixes it). The readout's parameters
    (READOUT_PARAMS) may be given all together, or not at all."""
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict of arrays, got {type(params).__name__}")
    if READOUT_PARAMS and any(p in params for p in READOUT_PARAMS):
        PARAMS = {**PARAMS, **READOUT_PARAMS}
    missing = [p for p in PARAMS if p not in params]
    extra = [p for p in params if p not in PARAMS]
    if missing or extra:
        also = f" (and optionally the readout's {list(READOUT_PARAMS)})" if READOUT_PARAMS \
            else ""
        raise ValueError(f"params: missing {missing}, unexpected {extra}; "
                         f"expected exactly {list(PARAMS)}{also}")
    found = {}
    dtype = None
    for name, shape in PARAMS.items():
        a = params[name]
        if not isinstance(a, np.ndarray):
            raise ValueError(f"params[{name!r}] must be a numpy array, got {type(a).__name__}")
        if dtype is None:
            dtype = a.dtype
        if a.dtype.kind != "f" or a.dtype != dtype:
            raise ValueError(f"params[{name!r}] has dtype {a.dtype}; expected {dtype} (all "
                             f"parameters must share one floating dtype)")
        if a.ndim != len(shape):
            raise ValueError(f"params[{name!r}] has shape {a.shape}; expected {shape}")
        for size, dim in zip(a.shape, shape):
            if found.setdefault(dim, size) != size:
                want = tuple(found.get(d, d) for d in shape)
                raise ValueError(f"params[{name!r}] has shape {a.shape}; expected {want} "
                                 f"for {shape} with " + ", ".join(
                                     f"{d}={v}" for d, v in found.items()))
    if dtype is None or "n_hidden" not in found:
        raise ValueError("the cell has no parameter with a hidden dimension")
    return found["n_hidden"], found.get("n_in"), dtype



def check_array(name, a, shape, dtype):
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise ValueError(f"{name} has dtype {a.dtype}; expected {dtype} (the parameters' dtype)")
    if a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape}; expected {tuple(shape)}")
    return a



def check_state(STATE, state, batch, n_hidden, dtype, what="state0"):
    if state is None:
        return {s: np.zeros((batch, n_hidden), dtype) for s in STATE}
    if not isinstance(state, dict) or set(state) != set(STATE):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{what} must map exactly the states {list(STATE)}, got {got}")
    return {s: check_array(f"{what}[{s!r}]", state[s], (batch, n_hidden), dtype) for s in STATE}



def check_xs(xs, n_in, dtype):
    """xs as (T, B, n_in); n_in None accepts any input size."""
    if not isinstance(xs, np.ndarray) or xs.ndim != 3:
        got = xs.shape if isinstance(xs, np.ndarray) else type(xs).__name__
        raise ValueError(f"xs must be an array of shape (T, B, n_in={n_in}), got {got}")
    if xs.shape[0] < 1 or xs.shape[1] < 1:
        raise ValueError(f"xs must have T >= 1 and B >= 1, got shape {xs.shape}")
    width = xs.shape[2] if n_in is None else n_in
    return check_array("xs", xs, (xs.shape[0], xs.shape[1], width), dtype)


def step_mask(lengths, mask, steps, batch):
    """The (T, B, 1) boolean mask of the steps each sequence takes (None: every step), from
    ``lengths`` (B,) integers in [0, T] (sequence b runs steps 0..lengths[b]-1, as in torch's
    packed sequences) or an explicit ``mask`` (T, B) or (T, B, 1) of booleans. Where the mask
    is False a state is carried unchanged and receives no gradient from that step."""
    if lengths is not None and mask is not None:
        raise ValueError("give lengths or mask, not both")
    if lengths is not None:
        arr = np.asarray(lengths)
        if arr.shape != (batch,) or arr.dtype.kind not in "iu":
            raise ValueError(f"lengths must be {batch} integers (one per sequence), got "
                             f"{arr.dtype} of shape {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() > steps):
            raise ValueError(f"lengths must lie in [0, T={steps}], got {arr.min()}..{arr.max()}")
        return (np.arange(steps)[:, None] < arr[None, :])[:, :, None]
    if mask is None:
        return None
    arr = np.asarray(mask)
    if arr.dtype != np.bool_ or arr.shape not in ((steps, batch), (steps, batch, 1)):
        raise ValueError(f"mask must be booleans of shape (T, B) = ({steps}, {batch}) or "
                         f"(T, B, 1), got {arr.dtype} of shape {arr.shape}")
    return arr.reshape(steps, batch, 1)



def flat(a):
    """(T, B, k) -> (T * B, k): every step and batch row as one row."""
    return a.reshape(-1, a.shape[-1])


def apply_block(JM, Jd, S):
    """(dense part) @ S + (diagonal part) * S of one state-Jacobian block."""
    out = None
    if JM is not None:
        out = JM @ S
    if Jd is not None:
        term = Jd[..., None] * S if isinstance(Jd, np.ndarray) else Jd * S
        out = term if out is None else out + term
    return out if out is not None else np.zeros_like(S)



def sens_layout(PARAMS, n_hidden, n_in):
    """Column offsets of every parameter in the stacked sensitivities, and the row length k of a
    matrix parameter (None for a vector one), which fixes where the diagonal structure of V lies:
    d(u) d_2(v) has entries only at (i, i*k + l), d(u) (a bias) only at (i, i)."""
    sizes = {"n_in": n_in, "n_hidden": n_hidden}
    off, kdim, at = {}, {}, 0
    for name, shape in PARAMS.items():
        dims = [sizes[s] for s in shape]
        size = math.prod(dims)  # not np.prod: ~5 µs a call, 12 calls per rtrl
        off[name] = (at, at + size)
        kdim[name] = dims[1] if len(dims) == 2 else None
        at += size
    return off, kdim, None, at


def diag_view(S, start, k):
    """A writable strided view of the entries of S (B, n, P) where a d(u) d_2(v) (k = len(v))
    or d(u) (k None) term of V lives: S[:, i, start + i*k + l] as (B, n, k), S[:, i, start + i]
    as (B, n). Adding into it is a plain in-place add, no fancy indexing."""
    s0, s1, s2 = S.strides
    base = S[:, :, start:]
    if k is None:
        return np.lib.stride_tricks.as_strided(base, shape=S.shape[:2], strides=(s0, s1 + s2))
    return np.lib.stride_tricks.as_strided(base, shape=(S.shape[0], S.shape[1], k),
                                           strides=(s0, s1 + k * s2, s2))


def check_step(PARAMS, STATE, params, x_t, state):
    n_hidden, n_in, dtype = sizes(PARAMS, params)
    if not isinstance(x_t, np.ndarray) or x_t.ndim != 2:
        got = x_t.shape if isinstance(x_t, np.ndarray) else type(x_t).__name__
        raise ValueError(f"x_t must be an array of shape (B, n_in={n_in}), got {got}")
    x_t = check_array("x_t", x_t, (x_t.shape[0], x_t.shape[1] if n_in is None else n_in),
                      dtype)
    n_in = x_t.shape[1]
    state = check_state(STATE, state, x_t.shape[0], n_hidden, dtype, "state")
    return n_hidden, n_in, dtype, x_t, state



def sens_buffers(PARAMS, STATE, batch, n_hidden, n_in, dtype, block=False):
    """Two zeroed sensitivity buffers (they take turns as S and out), each one array
    (B, states x n_hidden, P) whose row blocks are the states' S; the strided views of each
    buffer's diagonal structure (built once, not per step), and the offsets. Returns
    (per-state views, diagonal views, offsets, whole arrays).

    block=True allocates both in one array (2, B, states x n_hidden, P), for callers that copy
    their result out: two separate buffers, one freed and one kept by the result, let glibc's
    heap hand fresh pages to the next call (measured: rtrl at T=1, n=16 took 3x its T=2 time,
    page faults on the VM); one block is freed whole."""
    off, kdim, _, total = sens_layout(PARAMS, n_hidden, n_in)
    k = len(STATE)
    if block:
        whole = list(np.zeros((2, batch, k * n_hidden, total), dtype))
    else:
        whole = [np.zeros((batch, k * n_hidden, total), dtype) for _ in range(2)]
    bufs = [{s: w[:, i * n_hidden:(i + 1) * n_hidden] for i, s in enumerate(STATE)}
            for w in whole]
    views = [{s: {name: diag_view(buf[s], off[name][0], kdim[name]) for name in PARAMS}
              for s in STATE} for buf in bufs]
    return bufs, views, off, whole


def dense_jacobian(STATE, J, out):
    """The state-Jacobian blocks J[(u, v)] = (dense part, diagonal part) written into ``out``
    (B, S, S), states in STATE order: the matrix d(all states at t)/d(all states at t-1)."""
    out[...] = 0.0
    n = out.shape[1] // len(STATE)
    s0, s1, s2 = out.strides
    for a, u in enumerate(STATE):
        for b, v in enumerate(STATE):
            JM, Jd = J[(u, v)]
            block = out[:, a * n:(a + 1) * n, b * n:(b + 1) * n]
            if JM is not None:
                block += JM
            if Jd is not None:
                diag = np.lib.stride_tricks.as_strided(block, shape=(out.shape[0], n),
                                                       strides=(s0, s1 + s2))
                diag += Jd
    return out


def use_dense_product(dense_max, STATE, n_hidden):
    """Whether RTRL multiplies S by the whole dense state Jacobian (one matmul) rather than
    block by block: when the stacked state has at most ``dense_max`` entries (the kernel's
    RTRL_DENSE_MAX, chosen by the code generator from the cell's Jacobian structure and
    measured crossovers; the dense matrix is S x S, never a d(.) of a parameter's size)."""
    return len(STATE) * n_hidden <= dense_max


def split_sens(PARAMS, params, S, off, batch, n_hidden):
    """The per-parameter sensitivities (B, n_hidden, *A.shape): views of one state's rows of
    the stacked S (B, n_hidden, P), columns off[A]."""
    return {name: S[:, :, off[name][0]:off[name][1]].reshape(
        (batch, n_hidden) + tuple(params[name].shape)) for name in PARAMS}


def rtrl_step(PARAMS, STATE, local_step, params, x_t, state, sens=None, unpack=None,
              dense_max=0):
    """One step of real-time recurrent learning: d s_t/dA = sum_v J[s][v] d v_(t-1)/dA + V_s^A."""
    n_hidden, n_in, dtype, x_t, state = check_step(PARAMS, STATE, params, x_t, state)
    batch = x_t.shape[0]
    bufs, views, off, whole = sens_buffers(PARAMS, STATE, batch, n_hidden, n_in, dtype)
    S = bufs[0]
    if sens is not None:
        if not isinstance(sens, dict) or any(s not in sens for s in STATE):
            raise ValueError(f"sens must map each state in {list(STATE)} to a dict of "
                             f"per-parameter sensitivities")
        for s in STATE:
            for name in PARAMS:
                a, b = off[name]
                want = (batch, n_hidden) + tuple(params[name].shape)
                got = sens[s].get(name) if isinstance(sens[s], dict) else None
                if not isinstance(got, np.ndarray):
                    raise ValueError(f"sens[{s!r}] is missing {name!r} (expected shape {want})")
                arr = check_array(f"sens[{s!r}][{name!r}]", got, want, dtype)
                S[s][:, :, a:b] = arr.reshape(batch, n_hidden, -1)
    dense = None
    if use_dense_product(dense_max, STATE, n_hidden):
        k = len(STATE) * n_hidden
        dense = (np.empty((batch, k, k), dtype), whole[0], whole[1])
    new_state, _, out = local_step(params, x_t, state, S, bufs[1], views[1], off,
                                   P=unpack(params) if unpack else None, dense=dense)
    return new_state, {s: split_sens(PARAMS, params, out[s], off, batch, n_hidden) for s in STATE}


def rtrl(PARAMS, STATE, local_step, params, xs, state0=None, unpack=None, dense_max=0,
         lengths=None, mask=None):
    """Forward-mode gradients dh_T/dA for every parameter A: (B, n_hidden, *A.shape); with
    ``lengths`` or ``mask`` (:func:`step_mask`) a sequence's state and sensitivities are held
    where its mask is False (dh_T/dA is then d h_{length}/dA)."""
    n_hidden, n_in, dtype = sizes(PARAMS, params)
    xs = check_xs(xs, n_in, dtype)
    steps, batch, n_in = xs.shape
    mask = step_mask(lengths, mask, steps, batch)
    state = check_state(STATE, state0, batch, n_hidden, dtype)
    bufs, views, off, whole = sens_buffers(PARAMS, STATE, batch, n_hidden, n_in, dtype,
                                           block=True)
    P = unpack(params) if unpack else None  # the stacked blocks, once for all steps
    Jbuf = None
    if use_dense_product(dense_max, STATE, n_hidden):
        k = len(STATE) * n_hidden
        Jbuf = np.empty((batch, k, k), dtype)
    cur = 0
    for t in range(steps):
        dense = None if Jbuf is None else (Jbuf, whole[cur], whole[1 - cur])
        prev = state
        state, _, _ = local_step(params, xs[t], state, bufs[cur], bufs[1 - cur], views[1 - cur],
                                 off, P=P, dense=dense)
        if mask is not None and not mask[t].all():  # held sequences keep state and S
            state = {s: np.where(mask[t], state[s], prev[s]) for s in STATE}
            for s in STATE:
                np.copyto(bufs[1 - cur][s], bufs[cur][s], where=~mask[t][:, :, None])
        cur = 1 - cur
    # a compact copy of the output state's rows: the result keeps neither buffer alive
    return split_sens(PARAMS, params, bufs[cur][STATE[0]].copy(), off, batch, n_hidden)


def state_jacobian(PARAMS, STATE, local_step, params, x_t, state):
    """d(all states at t)/d(all states at t-1), shape (B, S, S), states in STATE order."""
    n_hidden, n_in, dtype, x_t, state = check_step(PARAMS, STATE, params, x_t, state)
    batch = x_t.shape[0]
    _, J, _ = local_step(params, x_t, state)
    k = len(STATE) * n_hidden
    return dense_jacobian(STATE, J, np.empty((batch, k, k), dtype))


# ------------------------------------------------------------------ threads (numba backend)
# The numba backend's whole-sequence kernels split the batch: batch rows never interact inside
# a step, so each thread runs every time step for its own rows, with no synchronisation until
# the end (the kernels release the GIL). Standard library only.
# (concurrent.futures is imported on first use: importing it cost the NumPy kernels, which
# never split, 4 ms of the import-time budget; _thread is built in)
_POOL = {"pid": None, "size": 0, "pool": None}
_POOL_LOCK = _thread.allocate_lock()


_LOCAL = _thread._local()  # the calling thread's chunk runner (chunk_runner), if any


class chunk_runner:
    """``with rt.chunk_runner(runner):`` the calling thread's whole-sequence kernels split and
    run their batch chunks through ``runner`` instead of this module's thread pool:
    ``runner.threads()`` is the number of chunks (in place of num_threads()), and
    ``runner.run(fn, chunks, args)`` runs fn(lo, hi, *args(i)) for every chunk i, returning
    False when it cannot (the pool runs them then). derive.torch hands the chunks to torch's
    own OpenMP threads this way (derive/torch/openmp.py says why)."""

    def __init__(self, runner):
        self.runner = runner

    def __enter__(self):
        self.outer = getattr(_LOCAL, "runner", None)
        _LOCAL.runner = self.runner
        return self.runner

    def __exit__(self, *exc):
        _LOCAL.runner = self.outer
        return False


def num_threads():
    """Threads for the batch split: the chunk runner's (chunk_runner) when one is set, else
    $DERIVE_NUM_THREADS if set, else the CPUs this process may run on."""
    runner = getattr(_LOCAL, "runner", None)
    if runner is not None:
        return max(1, int(runner.threads()))
    env = os.environ.get("DERIVE_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"DERIVE_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def row_chunks(batch, threads):
    """Rows 0..batch as at most ``threads`` contiguous (lo, hi) chunks of whole row pairs (the
    kernels' products take two rows at a time), sizes differing by at most one pair."""
    pairs = (batch + 1) // 2
    k = max(1, min(int(threads), pairs))
    ends = [min(batch, 2 * ((pairs * i) // k)) for i in range(k + 1)]
    return [(ends[i], ends[i + 1]) for i in range(k)]


def _pool(workers):
    from concurrent.futures import ThreadPoolExecutor

    with _POOL_LOCK:
        # a new pool after fork (the parent's threads do not exist in the child) or to grow
        if _POOL["pid"] != os.getpid() or _POOL["size"] < workers:
            _POOL.update(pid=os.getpid(), size=workers,
                         pool=ThreadPoolExecutor(workers, thread_name_prefix="derive"))
        return _POOL["pool"]


def run_chunks(fn, chunks, args):
    """fn(lo, hi, *args(i)) for every chunk i: chunk 0 on the calling thread, the others on a
    shared pool of worker threads (or through the calling thread's chunk_runner); returns when
    all are done (re-raising the first error)."""
    if len(chunks) == 1:
        fn(*chunks[0], *args(0))
        return
    runner = getattr(_LOCAL, "runner", None)
    if runner is not None and runner.run(fn, chunks, args) is not False:
        return
    pool = _pool(len(chunks) - 1)
    futures = [pool.submit(fn, *chunks[i], *args(i)) for i in range(1, len(chunks))]
    try:
        fn(*chunks[0], *args(0))
    finally:
        for f in futures:
            f.result()


# ---------------------------------------------------------------------------- stacks
# Layers and both directions of one cell, built on a kernel's own forward/backward/rtrl (each
# kernel module binds them: stack_forward, stack_backward, stack_rtrl). Layer l + 1 reads the
# concatenated outputs of layer l (directions in order), so the gradients compose through
# backward's input gradient; direction 1 runs each sequence reversed within its own length
# (Schuster and Paliwal 1997), as torch.nn.LSTM(bidirectional=True) does with packed input.


def reverse(xs, lengths=None):
    """Each sequence of xs (T, B, ...) reversed within its own length (all T steps when
    lengths is None); the padding after a sequence's end stays where it is."""
    if lengths is None:
        return xs[::-1]
    steps = xs.shape[0]
    lens = np.asarray(lengths)
    t = np.arange(steps)[:, None]
    idx = np.where(t < lens[None, :], lens[None, :] - 1 - t, t)
    return np.take_along_axis(xs, idx.reshape(idx.shape + (1,) * (xs.ndim - 2)), axis=0)


def _layers(layers):
    if not layers or any(len(dirs) not in (1, 2) for dirs in layers):
        raise ValueError("layers must be a non-empty list of layers, each a list of one "
                         "(forward) or two (forward, reverse) parameter dicts")
    if len({len(dirs) for dirs in layers}) != 1:
        raise ValueError("every layer must have the same number of directions")
    return len(layers[0])


def stack_forward(forward, layers, xs, state0=None, *, lengths=None):
    """Run the layers ``layers[l][d]`` (parameter dicts; d = 0 forward, 1 reverse) over xs
    (T, B, n_in). ``state0[l][d]`` optionally maps state names to initial states. Returns
    (out (T, B, dirs * n_hidden) of the last layer, cache); cache["state"][l][d] holds each
    layer's final states (with lengths: each sequence's last state)."""
    dirs = _layers(layers)
    caches, finals = [], []
    inp = xs
    for l_, layer in enumerate(layers):
        outs, cl, fl = [], [], []
        for d, params in enumerate(layer):
            s0 = None if state0 is None else state0[l_][d]
            x = inp if d == 0 else np.ascontiguousarray(reverse(inp, lengths))
            hs, cache = forward(params, x, s0, lengths=lengths)
            outs.append(hs if d == 0 else reverse(hs, lengths))
            cl.append(cache)
            fl.append(cache["state"])
        inp = outs[0] if dirs == 1 else np.concatenate(outs, axis=2)
        caches.append(cl)
        finals.append(fl)
    return inp, {"layers": caches, "state": finals, "lengths": lengths, "dirs": dirs}


def stack_backward(backward, input_key, state0_keys, layers, cache, douts, *, dstate=None,
                   input_grad=False):
    """BPTT through the layers: douts = dL/d(out) (T, B, dirs * n_hidden), dstate[l][d]
    optionally dL/d(final states). Returns (grads, dxs): grads[l][d] the gradients of layer l,
    direction d (every parameter, and the initial states under the kernel's STATE0_GRAD
    keys), dxs = dL/dxs when input_grad (else None)."""
    dirs = _layers(layers)
    if not isinstance(cache, dict) or "layers" not in cache:
        raise ValueError("cache must be the cache returned by stack_forward()")
    lengths = cache["lengths"]
    grads = [None] * len(layers)
    dout = douts
    for l_ in range(len(layers) - 1, -1, -1):
        n = dout.shape[2] // dirs
        need_input = input_grad or l_ > 0
        dinp, gl = None, []
        for d, params in enumerate(layers[l_]):
            dh = dout[:, :, d * n:(d + 1) * n]
            dh = np.ascontiguousarray(dh if d == 0 else reverse(dh, lengths))
            ds = None if dstate is None else dstate[l_][d]
            g = backward(params, cache["layers"][l_][d], dh, dstate=ds, input_grad=need_input)
            if need_input:
                dx = g.pop(input_key)
                dx = dx if d == 0 else reverse(dx, lengths)
                dinp = dx if dinp is None else dinp + dx
            gl.append(g)
        grads[l_] = gl
        dout = dinp
    return grads, (dout if input_grad else None)


def stack_rtrl(forward, rtrl, layers, xs, state0=None, *, lengths=None):
    """Forward mode for a stack, per layer: sens[l][d][A] = d s^{l,d}_T / dA for every
    parameter A of layer l, direction d, with that layer's input sequence held at the values
    the layers below give it (the RTRL recursion of each layer, as rtrl()). The cross-layer
    sensitivities (the last layer's state with respect to a lower layer's parameters) need the
    input's own tangents at every step; stack_backward gives those gradients exactly. The
    reverse direction's 'last' state is the one after its reversed pass (at t = 0)."""
    _layers(layers)
    sens = []
    inp = xs
    for l_, layer in enumerate(layers):
        outs, sl = [], []
        for d, params in enumerate(layer):
            s0 = None if state0 is None else state0[l_][d]
            x = inp if d == 0 else np.ascontiguousarray(reverse(inp, lengths))
            sl.append(rtrl(params, x, s0, lengths=lengths))
            hs, _ = forward(params, x, s0, lengths=lengths)
            outs.append(hs if d == 0 else reverse(hs, lengths))
        inp = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=2)
        sens.append(sl)
    return sens
