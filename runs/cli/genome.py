"""``evograph genome sample | check | draw``: work with single genome files (the genome modules
are imported by the handlers, so that building the parser stays quick)."""

from __future__ import annotations

import argparse

from ...errors import EvographError


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("genome", help="sample, check or draw a genome")
    gsub = group.add_subparsers(dest="genome_command", required=True, metavar="ACTION")

    sample = gsub.add_parser("sample", help="print a random genome of a space as JSON")
    sample.add_argument("--space", default="lse-conv")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--input-shape", default="1,8,8",
                        help="per-sample input shape, comma separated (default 1,8,8: digits)")
    sample.add_argument("--classes", type=int, default=10)
    sample.add_argument("--initial", action="store_true",
                        help="the space's initial genome instead of a random one")
    sample.add_argument("--arch", default=None, metavar="STRING",
                        help="nb201: the cell of this NAS-Bench-201 architecture string")
    sample.set_defaults(handler=cmd_sample)

    check = gsub.add_parser("check", help="validate a genome file (exit 2 if invalid)")
    check.add_argument("path")
    check.add_argument("--space", default=None, help="also check against this search space")
    check.set_defaults(handler=cmd_check)

    drawp = gsub.add_parser("draw", help="draw a genome with graphviz")
    drawp.add_argument("path")
    drawp.add_argument("-o", "--output", required=True, help="FILE.svg or FILE.png")
    drawp.set_defaults(handler=cmd_draw)


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise EvographError(f"--input-shape {text!r} must be integers separated by commas") from None


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from ...genome import get_space, to_json
    space = get_space(args.space)
    rng = np.random.default_rng(args.seed)
    if args.arch is not None:
        print(to_json(_from_arch(space, args.arch, _shape(args.input_shape), args.classes)))
        return 0
    make = space.initial_genome if args.initial else space.sample
    print(to_json(make(rng, _shape(args.input_shape), args.classes)))
    return 0


def _from_arch(space, text: str, shape: tuple[int, ...], classes: int):
    from ...genome import analyze
    from ...genome.cells.nb201 import nb201_genome, parse_arch_string
    if space.name != "nb201":
        raise EvographError(f"--arch: architecture strings are nb201's, not {space.name}'s "
                            "(add --space nb201)")
    try:
        ops = parse_arch_string(text)
    except ValueError as error:
        raise EvographError(f"--arch: {error}") from None
    genome = nb201_genome(ops, shape, classes, space.cell_channels, space.cells, space.stages,
                          dict(space.initial_genes))
    analyze(genome, space)
    return genome


def cmd_check(args: argparse.Namespace) -> int:
    from ...genome import analyze, get_space, load
    genome = load(args.path)
    space = get_space(args.space) if args.space else None
    info = analyze(genome, space)
    print(f"{args.path}: valid genome {genome.hash}: {info.summary()}")
    if cell_name(genome) == "nb201":
        from ...genome.cells.nb201 import arch_string
        print(f"nb201 cell: {arch_string(genome)}")
    return 0


def cell_name(genome) -> str | None:
    """The skeleton a cell genome is stacked in (None: a plain network genome)."""
    from ...genome.cells.skeleton import skeleton_node
    node = skeleton_node(genome)
    return None if node is None else node.get("name")


def cmd_draw(args: argparse.Namespace) -> int:
    from ...genome import load
    from ...genome.draw import draw
    genome = load(args.path)
    path = draw(genome, args.output, title=f"genome {genome.hash}")
    print(f"wrote {path}")
    return 0
