"""``python -m pipeline.run``: flags -> configs (:mod:`pipeline.cli`) -> :func:`create_pipeline` -> run.

Runs ExampleGen -> Transform -> Trainer -> Evaluator -> Pusher into
``--output_dir``, skipping stages already built from the same configs and
input files, and ends with the result table and the command that serves the
exported model. Flags no stage knows go to Beam's ``PipelineOptions``, so
``--runner=FlinkRunner`` (or Spark, Dataflow) switches engines with no code change.
"""

from __future__ import annotations

import sys
from typing import Sequence

from tfseq.runtime import exit_status_of, quiet_startup


def build_parser():
    from pipeline import artifacts, cli

    parser = cli.make_parser(
        "python -m pipeline.run",
        "tfseq pipeline: ExampleGen -> Transform -> Trainer -> Evaluator -> Pusher, then the result table.",
    )
    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", default=artifacts.DEFAULT_ROOT,
                     help=f"pipeline root (default {artifacts.DEFAULT_ROOT})")
    run.add_argument("--stop_after", default="Pusher", choices=artifacts.STAGES,
                     type=lambda s: {x.lower(): x for x in artifacts.STAGES}.get(s.lower(), s),
                     help="last stage to run (default Pusher: a SavedModel under <output_dir>/serving)")
    run.add_argument("--force", action="store_true", help="rebuild every stage")
    run.add_argument("--quiet", action="store_true", help="no per-epoch output (TensorFlow's and Beam's start-up "
                     "logs: --startup_logs)")
    cli.add_config_flags(parser)
    return parser


def run(argv: Sequence[str] | None = None):
    """Parses ``argv`` and runs the pipeline; returns its :class:`pipeline.pipeline.PipelineResult`.

    The flags are parsed and validated before TensorFlow and the stages' Beam
    code are imported, so ``--help`` and a bad flag answer at once.
    """
    from pipeline import cli

    argv = list(sys.argv[1:] if argv is None else argv)
    args, configs, beam_args = cli.parse(build_parser(), argv)
    quiet_startup(verbose=args.startup_logs)
    from pipeline.pipeline import create_pipeline

    progress = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    pipeline = create_pipeline(configs, root=args.output_dir, beam_options=beam_args, progress=progress)
    return pipeline.run(stop_after=args.stop_after, force=args.force)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        result = run(argv)
    except KeyboardInterrupt as e:  # Ctrl-C, first: the error check below may touch a half-imported TensorFlow
        print(str(e) or "interrupted", file=sys.stderr)  # one line; the Trainer's names the epoch to resume from
        return 130
    except Exception as e:  # noqa: BLE001  (a user error, maybe wrapped by the runner, is one line)
        return exit_status_of(e)
    print(result.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
