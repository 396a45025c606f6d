"""Command line: ``fastbp demo``, ``fastbp train``, ``fastbp predict``, ``fastbp info``."""
import argparse
import os
import sys
import time

import numpy as np

from . import _cli_train, plots, schedules
from ._config import get_num_threads, show_config
from ._validation import check_number, check_positive_int
from ._version import __version__
from .datasets import load_digits, train_test_split
from .network import Network
from .trainer import Trainer


def _check_demo_args(args):
    """Report bad options by their command-line names before anything runs."""
    check_positive_int(args.epochs, "--epochs", minimum=1)
    for h in args.hidden:
        check_positive_int(h, "--hidden sizes")
    check_number(args.lr, "--lr", low=0.0, low_open=True)
    check_positive_int(args.batch_size, "--batch-size", minimum=1)
    check_positive_int(args.seed, "--seed", minimum=0)
    _cli_train.check_threads(args)


def _demo(args):
    _check_demo_args(args)
    X, y = load_digits(dtype=args.dtype)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_fraction=0.25, seed=args.seed)
    mean, std = X_train.mean(axis=0), X_train.std(axis=0) + 0.1   # LeCun: centre and scale
    X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    sizes = [X.shape[1], *args.hidden, 10]
    net = Network(sizes, activation=args.activation, output="softmax", init="he_normal",
                  dtype=args.dtype, seed=args.seed)
    trainer = Trainer(net, loss="cross_entropy", optimizer="sgd", lr=args.lr, momentum=0.9,
                      batch_size=args.batch_size, seed=args.seed, n_threads=args.threads,
                      lr_schedule=schedules.CosineLR(args.epochs))
    print(f"fastbp demo: UCI optical digits (8x8), {len(X_train)} train / {len(X_test)} test "
          f"samples; network {sizes} {args.activation}+softmax, {net.dtype.name}, "
          f"SGD lr={args.lr} (cosine) momentum=0.9, batch {args.batch_size}, "
          f"{args.threads or get_num_threads()} thread(s)")

    def report(epoch, logs):
        print(f"epoch {epoch + 1:3d}  loss {logs['loss']:.4f}  test loss {logs['val_loss']:.4f}  "
              f"test accuracy {100 * logs['val_accuracy']:6.2f}%  "
              f"{logs['samples_per_second']:>12,.0f} samples/s")

    t0 = time.perf_counter()
    history = trainer.fit(X_train, y_train, epochs=args.epochs, validation_data=(X_test, y_test),
                          callbacks=[report], verbose=args.verbose)
    elapsed = time.perf_counter() - t0
    acc = history.val_accuracy[-1]
    print(f"final test accuracy {100 * acc:.2f}% after {len(history)} epochs in {elapsed:.2f} s "
          f"(median {np.median(history.samples_per_second):,.0f} training samples/s)")
    if args.plots:
        for path in plots.demo_figures(net, history, X_test, y_test, args.plots):
            print(f"wrote {path}")
    return 0


def _info(args):
    show_config()
    return 0


def build_parser():
    """The ``argparse`` parser of the ``fastbp`` command and its subcommands."""
    p = argparse.ArgumentParser(prog="fastbp", description="Fast backpropagation for MLPs.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="train a network on the shipped digits data")
    d.add_argument("--epochs", type=int, default=40)
    d.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    d.add_argument("--activation", default="relu")
    d.add_argument("--lr", type=float, default=0.02)
    d.add_argument("--batch-size", type=int, default=32)
    d.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    d.add_argument("--threads", type=int, default=None)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--verbose", action="store_true", help="live progress bar")
    d.add_argument("--plots", metavar="DIR", default=None, help="write PNG figures to DIR")
    d.set_defaults(func=_demo)
    i = sub.add_parser("info", help="version, OpenMP, BLAS and threads")
    i.set_defaults(func=_info)
    _cli_train.add_commands(sub)
    return p


def _stdout_to_devnull():
    """After a broken pipe (``fastbp info | head -1``): point stdout at /dev/null, so that
    Python's flush at exit does not fail again, as the Python documentation recommends
    (``signal`` module, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (AttributeError, OSError, ValueError):   # stdout is not a file (captured)
        pass


def main(argv=None):
    """Run the ``fastbp`` command line with ``argv`` (default ``sys.argv[1:]``); returns the
    exit status (the console script ``fastbp`` and ``python -m fastbp`` call it)."""
    try:
        return _main(argv)
    except BrokenPipeError:   # the reader went away: nothing to say, and nowhere to say it
        _stdout_to_devnull()
        return 1              # as Python itself exits on EPIPE


def _main(argv):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:        # --help, --version or a usage error: flush while we can catch
        sys.stdout.flush()
        raise
    try:
        rc = args.func(args)
        sys.stdout.flush()    # a broken pipe shows here, not at exit
        return rc
    except BrokenPipeError:
        raise
    except (ValueError, TypeError, OSError) as e:
        print(f"fastbp {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ArithmeticError as e:      # TrainingDiverged
        print(f"fastbp {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
