"""``python -m chatapp [--host HOST] [--port PORT]``: serve on gevent."""

from gevent import monkey

monkey.patch_all()

import argparse
import logging
import os

from chatapp import create_app
from chatapp.engine.serving import serve


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve the app until stopped."""
    parser = argparse.ArgumentParser(prog="python -m chatapp", description=__doc__)
    parser.add_argument(
        "--host",
        default=os.environ.get("CHATAPP_HOST", "127.0.0.1"),
        help="address to listen on (default: $CHATAPP_HOST or 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("CHATAPP_PORT") or os.environ.get("PORT") or 5000),
        help="port to listen on (default: $CHATAPP_PORT, $PORT or 5000)",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("CHATAPP_CONFIG", "config.ProductionConfig"),
        help="configuration class (default: config.ProductionConfig)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve(create_app(args.config), args.host, args.port)


if __name__ == "__main__":
    main()
