"""The ``cogway`` command line: serve, tokens, push, rollback, usage, webhooks."""

import argparse

from server.cli import demo, remote, serve, usage, webhooks


def _remote_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="gateway base URL (default: COGWAY_URL)")
    parser.add_argument("--token", default=None, help="API token (default: REPLICATE_API_TOKEN)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cogway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_serve = sub.add_parser("serve", help="run the gateway and serve predictor directories")
    p_serve.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="OWNER/NAME=DIR",
        help="serve this predictor directory (repeatable; default: COGWAY_MODEL_NAME=.)",
    )
    p_serve.add_argument("--host", default=None)
    p_serve.add_argument("--port", type=int, default=None)
    p_serve.add_argument("--no-warm", action="store_true", help="boot instances on first use")
    p_serve.set_defaults(func=serve.serve)

    p_tokens = sub.add_parser("tokens", help="manage API tokens")
    tsub = p_tokens.add_subparsers(dest="tokens_command", required=True)
    p_create = tsub.add_parser("create", help="create an account (if needed) and a token for it")
    p_create.add_argument("--username", required=True)
    p_create.add_argument("--name", default="", help="a label for the token")
    p_create.set_defaults(func=serve.tokens_create)

    p_push = sub.add_parser("push", help="push a predictor directory as a new version")
    p_push.add_argument("path", help="the predictor directory (with cog.yaml)")
    p_push.add_argument("--model", required=True, metavar="OWNER/NAME")
    p_push.add_argument(
        "--visibility",
        default="private",
        choices=["public", "private"],
        help="when the model has to be created (default: private)",
    )
    _remote_args(p_push)
    p_push.set_defaults(func=lambda a: remote.run(remote.push, a))

    p_rollback = sub.add_parser("rollback", help="move a deployment back to an earlier release")
    p_rollback.add_argument("deployment", metavar="OWNER/NAME")
    p_rollback.add_argument(
        "--to", type=int, default=None, help="release number (default: previous)"
    )
    _remote_args(p_rollback)
    p_rollback.set_defaults(func=lambda a: remote.run(remote.rollback, a))

    p_demo = sub.add_parser("demo", help="push every example predictor and run each once")
    p_demo.add_argument("--predictors", default="predictors", help="where the examples live")
    _remote_args(p_demo)
    p_demo.set_defaults(func=lambda a: remote.run(demo.demo, a))

    p_usage = sub.add_parser("usage", help="totals of the usage records (local dir or S3)")
    p_usage.add_argument("--by", default="model", choices=["account", "model", "hardware", "day"])
    p_usage.add_argument("--format", default="table", choices=["table", "csv", "json"])
    p_usage.set_defaults(func=usage.usage)

    p_webhooks = sub.add_parser(
        "webhooks", help="delivery attempts of a prediction's webhooks (admin token)"
    )
    p_webhooks.add_argument("prediction_id")
    p_webhooks.add_argument("--format", default="table", choices=["table", "json"])
    _remote_args(p_webhooks)
    p_webhooks.set_defaults(func=lambda a: remote.run(webhooks.attempts, a))

    args = parser.parse_args(argv)
    args.func(args)
