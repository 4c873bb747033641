"""Data-pipeline benchmark: sparse clip reading vs. decoding every frame (one worker, one core).

    python benchmarks/data.py [--repeats 5] [--json out.json]

Same as ``uniformerv2 bench --data``; see ``uniformerv2.data.benchmark``.
"""
import argparse
import json

from uniformerv2.data.benchmark import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    result = run(repeats=args.repeats, num_frames=args.frames)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
