"""`python -m fusedrnn train ...` / `python -m fusedrnn bench ...` (also the `fusedrnn` console script)."""
import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": "fusedrnn.train", "bench": "fusedrnn.bench"}
    if not argv or argv[0] not in commands:
        print("usage: fusedrnn {train,bench} ...   (fusedrnn train --help, fusedrnn bench --help)")
        return 2
    import importlib

    importlib.import_module(commands[argv[0]]).main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
