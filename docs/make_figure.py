"""Render the README's figure from derive's own LaTeX output.

    python docs/make_figure.py      # needs pdflatex and pdftoppm (texlive, poppler-utils)

It runs the command shown in the README,

    derive latex sigmoid_lstm --mode forward --param W_f --steps

\\inputs the fragment into a minimal article (\\usepackage{amsmath}, as a paper would), compiles
it with pdflatex and writes the equations, cropped, to docs/forward_W_f.png.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

COMMAND = ["derive", "latex", "sigmoid_lstm", "--mode", "forward", "--param", "W_f", "--steps"]
OUT = Path(__file__).resolve().parent / "forward_W_f.png"
DPI = 180
MARGIN = 12  # pixels of white around the equations


def _pgm(path: Path) -> np.ndarray:
    data = path.read_bytes()
    fields, pos = [], 0
    while len(fields) < 4:  # magic, width, height, maxval
        while data[pos:pos + 1].isspace():
            pos += 1
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    w, h = int(fields[1]), int(fields[2])
    return np.frombuffer(data[pos + 1:pos + 1 + w * h], dtype=np.uint8).reshape(h, w)


def main() -> int:
    exe = shutil.which("derive") or str(Path(sys.executable).parent / "derive")
    fragment = subprocess.run([exe, *COMMAND[1:]], check=True, capture_output=True,
                              text=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "fragment.tex").write_text(fragment, encoding="utf-8")
        (work / "paper.tex").write_text(
            "\\documentclass{article}\n\\usepackage{amsmath}\n\\pagestyle{empty}\n"
            "\\begin{document}\n\\input{fragment}\n\\end{document}\n", encoding="utf-8")
        subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
                       cwd=work, check=True, capture_output=True)
        subprocess.run(["pdftoppm", "-gray", "-r", str(DPI), "-f", "1", "-l", "1",
                        "-singlefile", "paper.pdf", "page"], cwd=work, check=True)
        ink = _pgm(work / "page.pgm") < 250
        rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
        x, y = int(cols[0]) - MARGIN, int(rows[0]) - MARGIN
        w, h = int(cols[-1]) - x + 1 + MARGIN, int(rows[-1]) - y + 1 + MARGIN
        subprocess.run(["pdftoppm", "-png", "-r", str(DPI), "-f", "1", "-l", "1", "-singlefile",
                        "-x", str(x), "-y", str(y), "-W", str(w), "-H", str(h), "paper.pdf",
                        str(OUT.with_suffix(""))], cwd=work, check=True)
    print(f"wrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT} "
          f"({w}x{h} px) from: {' '.join(COMMAND)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
