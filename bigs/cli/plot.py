"""`bigs plot`: pictures from any run's logs or any BiGS checkpoint (bigs.plot).

    bigs plot curves pretrained_bigs pretrained_bert --x tokens --output curves.png
    bigs plot kernels JunxiongWang/BiGS_512 --output kernels.png --compare_init

Needs matplotlib (pip install "bigs[plot]").
"""

from __future__ import annotations

import argparse
import sys

from ..errors import BiGSError
from .common import ArgumentParser, HelpFormatter, add_overwrite_flag, interrupted, report, setup_logging

PROG = "bigs plot"


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `bigs plot` (documents every flag; used by --help and the docs tests)."""
    parser = ArgumentParser(prog=PROG, allow_abbrev=False, formatter_class=HelpFormatter,
                                     description="draw training curves of runs, or the SSM kernels of a checkpoint")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="{curves,kernels}")
    curves = kinds.add_parser("curves", formatter_class=HelpFormatter, allow_abbrev=False,
                              help="training loss and evaluation curves of bigs pretrain / bigs glue folders",
                              description="training loss and evaluation curves (held-out MLM loss, or the "
                                          "task's metric) of one or more run folders, read from metrics.jsonl")
    curves.add_argument("runs", nargs="+", metavar="RUN_DIR", help="output_dir of bigs pretrain or bigs glue")
    curves.add_argument("--x", choices=("step", "tokens", "examples", "seconds"), default="step",
                        help="x axis: optimizer step, tokens or examples seen, or training wall time "
                             "(evaluation excluded)")
    curves.add_argument("--names", nargs="+", help="legend names, one per RUN_DIR (default: the folder names)")
    kernels = kinds.add_parser("kernels", formatter_class=HelpFormatter, allow_abbrev=False,
                               help="learned forward/backward SSM kernels of a BiGS checkpoint, per layer",
                               description="|K| against distance for each layer's forward and backward SSM, "
                                           "with the distance holding 90 percent of each kernel's mass")
    kernels.add_argument("model", metavar="MODEL", help="checkpoint folder or hub id (any BiGS head)")
    kernels.add_argument("--length", type=int,
                         help="longest distance drawn, in tokens (default: the model's max_position_embeddings)")
    kernels.add_argument("--compare_init", action="store_true",
                         help="also draw the kernels at initialisation (a fresh model of the same config, --seed)")
    kernels.add_argument("--seed", type=int, help="seed of the initialisation drawn by --compare_init (default: "
                                                 "the seed in the checkpoint's run_settings.json, else 0)")
    kernels.add_argument("--json", metavar="FILE", help="also write each layer's reach (tokens) as JSON")
    for sub in (curves, kernels):
        sub.add_argument("--output", required=True, help="PNG file to write")
        sub.add_argument("--title", help="figure title")
        add_overwrite_flag(sub, help="replace --output (and --json) if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `bigs plot` with `argv` (default sys.argv[1:]); returns the exit status: 0 done, 2 a
    refused input (one `error:` line on stderr), 1 training diverged (non-finite loss), 130
    interrupted (Ctrl-C)."""
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:  # argparse has printed the message
        return int(exit_.code or 0)
    setup_logging()
    from ..runtime import ctrl_c_noted

    try:
        with ctrl_c_noted() as ctrl_c:      # a Ctrl-C Python drops (in a jax callback) still stops it
            return _run(args, ctrl_c)
    except BiGSError as error:
        return report(PROG, error)
    except KeyboardInterrupt:
        return interrupted(PROG, "nothing was written; run the command again")


def _run(args: argparse.Namespace, ctrl_c: list) -> int:
    from .. import plot
    from ..errors import ConfigError
    from ..files import check_output_file, write_json

    check_output_file(args.output, "--output", args.overwrite)
    if args.kind == "curves":
        if args.names is not None and len(args.names) != len(args.runs):
            raise ConfigError(f"--names has {len(args.names)} names for {len(args.runs)} run folders")
        runs = [plot.read_run(folder, name) for folder, name in zip(args.runs, args.names or [None] * len(args.runs))]
        plot.save_figure(plot.plot_curves(runs, x=args.x, title=args.title), args.output)
        print(f"wrote {args.output} ({len(runs)} run{'s' * (len(runs) > 1)}, x = {args.x})")
        return 0
    if args.length is not None and args.length < 1:
        raise ConfigError(f"--length={args.length}; expected a positive number of tokens")
    if args.json:
        check_output_file(args.json, "--json", args.overwrite)
    length, seed = _defaults(args)
    profiles, initial = kernels_of(args.model, length, seed if args.compare_init else None)
    if ctrl_c:
        raise KeyboardInterrupt
    plot.save_figure(plot.plot_kernels(profiles, initial, title=args.title), args.output)
    if args.json:
        write_json(args.json, {"model": args.model, "length": length, "mass": plot.REACH_MASS,
                               "layers": plot.profiles_json(profiles),
                               "initial": plot.profiles_json(initial) if initial else None})
    reaches = ", ".join(f"{p.forward_reach}/{p.backward_reach}" for p in profiles)
    print(f"wrote {args.output}; 90%-mass reach per layer (forward/backward, tokens): {reaches}")
    return 0


def _defaults(args: argparse.Namespace) -> tuple[int, int]:
    """(--length, --seed), each defaulting to the checkpoint's: its max_position_embeddings, and
    the seed in run_settings.json beside it (the run that trained it), else 0."""
    import os

    from ..config import BiGSConfig
    from ..files import read_json_object

    length = args.length or BiGSConfig.from_pretrained(args.model).max_position_embeddings
    seed = args.seed
    settings = os.path.join(args.model, "run_settings.json")
    if seed is None and os.path.isfile(settings):
        seed = read_json_object(settings, "the settings a run writes").get("seed")
    return length, 0 if seed is None else int(seed)


def kernels_of(model: str, length: int, init_seed: int | None):
    """(profiles, initial profiles or None) of checkpoint `model`; the initial ones are those of
    FlaxBiGSForMaskedLM(config).init_weights(PRNGKey(init_seed)), the draw `bigs pretrain
    --seed init_seed` starts from."""
    from ..config import BiGSConfig
    from ..plot import kernel_profiles
    from ..weights import read_params

    profiles = kernel_profiles(read_params(model), length)
    if init_seed is None:
        return profiles, None
    import jax

    from ..modeling import FlaxBiGSForMaskedLM

    fresh = FlaxBiGSForMaskedLM(BiGSConfig.from_pretrained(model), _do_init=False)
    return profiles, kernel_profiles(fresh.init_weights(jax.random.PRNGKey(init_seed)), length)


if __name__ == "__main__":
    sys.exit(main())
