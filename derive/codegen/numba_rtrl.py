"""RTRL in the numba kernels: S_t = J_t S_(t-1) + V_t over the stacked sensitivities of all
parameters, as two compiled passes over (b, j) around one BLAS product per state column with
a dense block, printed from the Program's state Jacobian and V terms.

The terms the passes print are those of every classic cell: J blocks d(.)...d(.) W (a row
coefficient times a matrix) and d(.) (diagonal), V terms d(.)...d(.) d_2(z) and d(.)...d(.) of
a vector parameter. A cell with other terms (a product of two matrices in J, W_h d(.) W_f of the
minimal gated unit; a matrix in V) raises Unsupported here, and its numba module re-exports
the NumPy kernel's rtrl.
"""

from __future__ import annotations

from fractions import Fraction

from ..spec import Mul
from .ir import Column, Const, Expr, Matrix, Scaled, Signed, Var
from .lower import Program
from .numba_loops import LoopPrinter, block, indent, quote
from .numba_printer import Unsupported
from .numba_schedule import Assign, Loop
from .numba_steps import Steps


def _vec_params_in(prog: Program, steps: Steps, used: set[str]) -> list[str]:
    """The 1-D parameters among ``used``, in the order of PARAMS."""
    idents = [prog.names.cell(p) for p in prog.params]
    return [p for p in idents if p in steps.vec_params and p in used]


def rtrl_context(prog: Program, steps: Steps, lp: LoopPrinter) -> dict:
    """RTRL, S_t = J_t S_(t-1) + V_t over the stacked sensitivities of all parameters, as
    two compiled passes around one BLAS product per state column with a dense block.

    ``_rtrl_coef`` (one pass over (b, j)) writes row j of J_t's dense column blocks
    J[:, v] (terms d(.)...d(.) W; a diagonal block of the same column folded into its
    diagonal), the other diagonal blocks, and V_t's coefficients (one array per distinct
    d(.) product); then ``out = J[:, v] S_v`` (BLAS); then ``_rtrl_post`` adds the other
    diagonal blocks times S and V_t on its diagonal structure: entries (j, j k + l) of
    A d_2(z), (j, j) of a vector parameter. Raises Unsupported for other terms."""
    nm = prog.names
    row = {u: k for k, u in enumerate(prog.states)}
    places = steps.common_places(prog)
    coefs: dict[Expr, str] = {}

    def coef(e: Expr) -> str:
        if e not in coefs:
            coefs[e] = nm.fresh(f"k{len(coefs)}")
        return coefs[e]

    dense: dict[str, dict[str, list[tuple[str | None, Matrix]]]] = {}
    diag: dict[tuple[str, str], list[Expr]] = {}
    for u, v, dg, dn in prog.jacobian:
        for _, e in dg:
            diag.setdefault((u, v), []).append(e)
        for e in dn:
            c, m = _dense_term(e)
            dense.setdefault(v, {}).setdefault(u, []).append((coef(c) if c else None, m))
    J = {v: nm.once(f"J:{v}", f"J_{nm.cell(v)}") for v in dense}
    coef_lines: list[str] = []
    mats: list[str] = []
    for v in prog.states:
        for u, terms in dense.get(v, {}).items():
            parts = []
            for k, m in terms:
                mats += [] if m.ident in mats else [m.ident]
                el = f"{m.ident}[m, j]" if m.transposed else f"{m.ident}[j, m]"
                parts.append(f"{k} * {el}" if k else el)
            coef_lines += [f"# d {u}_t / d {v}_(t-1), row j: the dense part",
                           "for m in range(n_hidden):",
                           f"    {J[v]}[b, {row[u]} * n_hidden + j, m] = "
                           + " + ".join(parts)]
    left: dict[str, list[tuple[str, str]]] = {}
    for (u, v), es in diag.items():
        k = coef(es[0] if len(es) == 1 else Signed(tuple((1, e) for e in es)))
        if v in dense:
            op = "+=" if u in dense[v] else "="
            coef_lines.append(f"{J[v]}[b, {row[u]} * n_hidden + j, j] {op} {k}")
        else:
            d = nm.once(f"D:{u}:{v}", f"D_{nm.cell(u)}_{nm.cell(v)}")
            left.setdefault(v, []).append((u, d))
            coef_lines.append(f"{d}[b, j] = {k}")
    # V_t: per state u and parameter A, its terms grouped by the z of d_2(z)
    groups: dict[tuple[str, str], dict[Expr | None, list[Expr]]] = {}
    for u, p, kind, last, pre, vec, _ in prog.rtrl_v:
        if kind != "diag":
            raise Unsupported(f"a term of V_{u}^{p} that is not diagonal")
        g = groups.setdefault((u, p), {})
        pre = _flat(pre)
        if last == "d2":
            if not isinstance(vec, Var) or vec.ident not in places or \
                    not places[vec.ident].batched:
                raise Unsupported(f"V_{u}^{p}: d_2 of a vector the loops do not keep")
            g.setdefault(vec, []).append(pre)
        elif last == "d":
            g.setdefault(None, []).append(_flat(Mul((pre, vec))))
        else:
            g.setdefault(None, []).append(pre)
    ubuf: dict[Expr, str] = {}
    post_v: list[str] = []
    by_z: dict[str, list[tuple[str, str, str, int]]] = {}  # z -> (state, param, U, index)
    zplace = {}
    for (u, p), terms in groups.items():
        i = prog.params.index(p)
        for z, cs in terms.items():
            e = cs[0] if len(cs) == 1 else Signed(tuple((1, c) for c in cs))
            if e not in ubuf:
                ubuf[e] = nm.once(f"U:{e!r}", f"U{len(ubuf)}")
                coef(e)
            if z is None:  # a vector parameter: entry (j, j)
                post_v += [f"# V_{u}^{p}",
                           f"out[b, {row[u]} * n_hidden + j, OFF[{i}] + j] += {ubuf[e]}[b, j]"]
            else:
                by_z.setdefault(z.ident, []).append((u, p, ubuf[e], i))
                zplace[z.ident] = places[z.ident]
    for z, terms in by_z.items():  # A d_2(z): entries (j, j k + l), one pass over z's row
        pl = zplace[z]
        k = f"{pl.array}.shape[-1]"
        us = [nm.once(f"post:u:{z}:{n}", f"u{n}") for n in range(len(terms))]
        os_ = [nm.once(f"post:o:{z}:{n}", f"o{n}") for n in range(len(terms))]
        zl = nm.once("post:zl", "zl")
        post_v.append(f"# V_u^A = ... d_2({z}) for " + ", ".join(f"V_{u}^{p}" for u, p, _, _
                                                               in terms))
        post_v += [f"{us[n]} = {U}[b, j]" for n, (_, _, U, _) in enumerate(terms)]
        post_v += [f"{os_[n]} = OFF[{i}] + j * {k}" for n, (_, _, _, i) in enumerate(terms)]
        post_v.append(f"for l in range({k}):")
        post_v.append(f"    {zl} = {pl.array}[{pl.time}, b, "
                      + (f"{pl.lo} + l]" if pl.lo else "l]"))
        post_v += [f"    out[b, {row[u]} * n_hidden + j, {os_[n]} + l] += {us[n]} * {zl}"
                   for n, (u, _, _, _) in enumerate(terms)]
    # the coefficient pass: its scalars printed by the numba printer
    loop = Loop("n_hidden", tuple(Assign(k, e, "n_hidden") for e, k in coefs.items()))
    crec = lp.record()
    views, body = lp.loop(loop, places, crec, keep=True)
    body += coef_lines + [f"{name}[b, j] = {coefs[e]}" for e, name in ubuf.items()]
    arrays = [d for bl in left.values() for _, d in bl] + list(ubuf.values())
    crec.use(*mats, *J.values(), *arrays)
    cargs = lp.args(crec, ["t"])
    csize = lp.size_line(cargs, ["batch", "n_hidden"], steps.S[prog.states[0]])
    coef_fn = {"decorator": "@njit(cache=True)", "name": "_rtrl_coef", "args": cargs,
               "doc": "RTRL step t, first pass over (batch, unit): row j of the state "
                      "Jacobian's dense column blocks (diagonal blocks of the same column "
                      "folded in), the other diagonal blocks, and V_t's coefficients.",
               "lines": [csize, "for b in range(batch):"] + indent(views, 4)
               + ["    for j in range(n_hidden):"] + indent(block(body), 8)}
    post: list[str] = []
    for v, blocks in left.items():
        d = [nm.once(f"d:{v}:{k}", f"d{k}") for k in range(len(blocks))]
        rr = [nm.once(f"r:{v}:{k}", f"r{k}") for k in range(len(blocks))]
        post.append(f"# out_u += d(D_u{v}) S_{v}: the diagonal blocks, one pass over S_{v}")
        post += [f"{d[k]} = {D}[b, j]" for k, (_, D) in enumerate(blocks)]
        post.append(f"s = S[b, {row[v]} * n_hidden + j]")
        post += [f"{rr[k]} = out[b, {row[u]} * n_hidden + j]"
                 for k, (u, _) in enumerate(blocks)]
        post.append("for p in range(width):")
        post += [f"    {rr[k]}[p] += {d[k]} * s[p]" for k in range(len(blocks))]
    post += ["# V_t on its diagonal structure"] + post_v
    zs = [zplace[z].array for z in by_z]
    pargs = list(dict.fromkeys(["t", "out", "S", "OFF", *zs, *arrays]))
    psize = [f"batch, n_hidden = out.shape[0], out.shape[1] // {len(prog.states)}"]
    if left:
        psize.append("width = out.shape[2]")
    post_fn = {"decorator": "@njit(cache=True)", "name": "_rtrl_post", "args": pargs,
               "doc": "RTRL step t, after out = J S (BLAS): out += the diagonal blocks times S "
                      "and V_t, whose entries lie at out[b, u_j, OFF[A] + j k + l] (A d_2(z)) or "
                      "out[b, u_j, OFF[A] + j] (a vector parameter A).",
               "lines": psize + ["for b in range(batch):", "    for j in range(n_hidden):"]
               + indent(block(post), 8)}
    used = set(cargs) | set(pargs)
    lines = [f"{steps.S[s]} = cache[{quote(steps.S[s])}]" for s in prog.states
             if steps.S[s] in used]
    lines += [f"{steps.C[v]} = cache[{quote(steps.C[v])}]" for v in steps.cached
              if steps.C[v] in used]
    params = [f"{p} = np.ascontiguousarray(P[{quote(steps.keys[p])}])"
              for p in _vec_params_in(prog, steps, used)]
    params += [f"{m} = np.ascontiguousarray(P[{quote(steps.keys[m])}])" for m in mats]
    lines += ["P = _unpack(params)"] + params if params else []
    lines += [f"{c} = dtype.type({lp.consts.literal(c)})  # in the arrays' dtype"
              for c in crec.constants]
    lines += ["off, _, _, width = rt.sens_layout(PARAMS, n_hidden, n_in)",
              "OFF = np.array([off[p][0] for p in PARAMS], np.int64)",
              "rows = len(STATE) * n_hidden",
              "# S_0 = 0; one block for both buffers, freed whole (see rt.sens_buffers)",
              "whole = list(np.zeros((2, batch, rows, width), dtype))"]
    lines += [f"{J[v]} = np.zeros((batch, rows, n_hidden), dtype)  # d(all states)/d "
              f"{v}_(t-1)" for v in J]
    lines += [f"{a} = np.empty((batch, n_hidden), dtype)" for a in arrays]
    lines += ["for t in range(steps):", "    S, out = whole[t % 2], whole[1 - t % 2]",
              f"    _rtrl_coef({', '.join(cargs)})"]
    first = True
    for v in prog.states:
        if v in J:
            cols = f"S[:, {row[v]} * n_hidden:{row[v] + 1} * n_hidden]"
            lines.append(f"    np.matmul({J[v]}, {cols}, out=out)" if first else
                         f"    out += {J[v]} @ {cols}")
            first = False
    if first:
        lines.append("    out[...] = 0.0")
    lines.append(f"    _rtrl_post({', '.join(pargs)})")
    return {"functions": [coef_fn, post_fn], "lines": lines}


def _flat(e: Expr) -> Expr:
    """A product with its nested products spliced in (one form for one product)."""
    if isinstance(e, Mul):
        out: list[Expr] = []
        for f in e.factors:
            f = _flat(f)
            out += list(f.factors) if isinstance(f, Mul) else [f]
        return Mul(tuple(out))
    return e


def _dense_term(e: Expr) -> tuple[Expr | None, Matrix]:
    """A dense Jacobian term d(a) ... W as (the row coefficient a ..., or None, W)."""
    if isinstance(e, Matrix):
        return None, e
    if isinstance(e, Scaled):
        c, m = _dense_term(e.e)
        return Scaled(e.coef, c if c is not None else Const(Fraction(1))), m
    if isinstance(e, Mul) and len(e.factors) == 2 and isinstance(e.factors[0], Column):
        c, m = _dense_term(e.factors[1])
        return (e.factors[0].v if c is None else Mul((e.factors[0].v, c))), m
    raise Unsupported(f"a state Jacobian term the RTRL loops do not print "
                      f"({type(e).__name__})")


__all__ = ["rtrl_context"]
