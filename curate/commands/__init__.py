"""Sub-commands of the `curate` CLI: one module each, with ``register(subparsers)``.

Sub-parsers should use ``formatter_class=argparse.ArgumentDefaultsHelpFormatter`` so
that ``--help`` shows every default. Import heavy modules inside ``func``, not at
module level, so ``curate --help`` stays fast.
"""
