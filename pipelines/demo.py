"""Serves the demo page, a tab each to generate, restyle, in-paint, denoise, upscale and classify
garments in a browser, from an exported SavedModel.

    python -m pipelines.demo --model saved_models/cvae [--version N] [--host 127.0.0.1] \
        [--port 7860]

Needs the `demo` extra (`pip install -e ".[demo]"`; `make demo` installs it and starts the page).
This file is intentionally short: the logic is in `cvae.demo`; what the page does is in
docs/demo.md.
"""

import argparse
import importlib.util
import signal
import socket
import sys

from cvae import cli, options


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.argument_parser(__doc__)
    parser.add_argument("--model", default="saved_models/cvae",
                        help="model base path (with version folders) or one version folder")
    parser.add_argument("--version", type=int, help="version to load (default: the newest)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    args = parser.parse_args(argv)
    if args.version is not None and args.version < 1:
        parser.error(f"--version must be >= 1, got {args.version}")
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be 1..65535, got {args.port}")
    try:  # before TensorFlow loads: a port in use fails at once
        family = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind((args.host, args.port))
    except OSError as e:
        parser.error(f"cannot listen on {args.host}:{args.port} ({e.strerror or e}); "
                     f"choose another --port or --host")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if importlib.util.find_spec("gradio") is None:  # before TensorFlow loads, so it fails fast
        raise RuntimeError('the demo page needs Gradio: pip install -e ".[demo]" (or make demo)')
    options.resolve_version(args.model, args.version)  # likewise
    # A SIGTERM (docker stop, a test ending the page) ends it as Ctrl+C does, cleaning up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from cvae import demo

    demo.serve(args.model, args.version, args.host, args.port)


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
