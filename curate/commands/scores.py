"""`curate scores`: the registered risk scores, what each computes and costs."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("scores", help="list the registered risk scores (what each computes, its cost)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--markdown", action="store_true", help="print the markdown table of docs/scores.md")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from curate import scores

    if args.markdown:
        print(scores.markdown_table(), end="")
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title="curate risk scores (higher = more at risk); curate score --score NAME")
    for col in ("score", "what it stores", "defaults", "NFE/img (D=3072)", "source"):
        t.add_column(col)
    for r in scores.table():
        t.add_row(r["name"], r["summary"], ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "-",
                  f"{r['nfe']:g}", r["source"])
    Console().print(t)
    return 0
