"""generated/ is output: regenerating it must reproduce the checked-in files exactly."""

from __future__ import annotations

from derive.tools.generate import GENERATED, outputs, stale


def test_generated_is_up_to_date():
    files = outputs()
    diffs = stale(files, GENERATED)
    report = "\n".join(diffs[k][:2000] for k in sorted(diffs))
    assert not diffs, (f"generated/ is stale in {sorted(diffs)}; run `derive generate` and commit."
                       f"\n{report}")


def test_generated_holds_nothing_else():
    files = set(outputs())
    on_disk = {str(p.relative_to(GENERATED)) for p in GENERATED.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert on_disk <= files, f"files in generated/ that derive does not generate: " \
                             f"{sorted(on_disk - files)}"


def test_every_generated_file_carries_the_do_not_edit_header():
    for rel, text in outputs().items():
        head = "\n".join(text.splitlines()[:6])
        assert "generated from" in head and "do not edit" in head, rel
