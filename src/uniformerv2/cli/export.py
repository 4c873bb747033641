"""``uniformerv2 export {onnx,torch} MODEL --output OUT``: deployable graphs, verified against eager PyTorch."""
from __future__ import annotations

from ..errors import UserError
from .common import add_output, add_preset


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a model to ONNX or torch.export (.pt2), verified against eager",
        description="Export the forward pass (normalised video (B, 3, T, S, S) -> logits (B, classes), dynamic "
                    "batch) and check the exported file against eager fp32 on fixed inputs. Exit code 1 when "
                    "the difference exceeds the tolerance (the file is kept).")
    p.add_argument("format", choices=["onnx", "torch"], help="onnx (.onnx) or torch (torch.export, .pt2)")
    p.add_argument("model", metavar="MODEL", help="pretrained name, model directory, or a checkpoint file with --preset")
    add_output(p, required=True, metavar="OUT", positional="OUT", help="output file (.onnx or .pt2)")
    add_preset(p, help="preset of a checkpoint file, e.g. k400_b16_8x224")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    p.add_argument("--legacy", action="store_true", help="ONNX: use the TorchScript exporter instead of dynamo")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with eager PyTorch")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs logit difference (default: 1e-4)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..factory import load_model
    from ..inference.export import export_onnx, export_torch

    if args.legacy and args.format != "onnx":
        raise UserError("--legacy only applies to onnx")
    model = load_model(args.model, args.preset, need_recipe=True)
    if args.format == "onnx":
        report = export_onnx(model, args.output, opset=args.opset, legacy=args.legacy, check=not args.no_check,
                             tolerance=args.tolerance)
    else:
        report = export_torch(model, args.output, check=not args.no_check, tolerance=args.tolerance)
    print(report.summary())
    return 0 if report.ok else 1
