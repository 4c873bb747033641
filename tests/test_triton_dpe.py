"""The Triton DPE kernel (``accel.dpe.TritonDPE``) against the reference Conv3d DPE: forward and all gradients.

Where Triton is installed without a GPU, the kernel runs in Triton's interpreter (a subprocess with
``TRITON_INTERPRET=1``, which must be set before Triton is imported); on a CUDA machine it runs natively.
Both are skipped where Triton is absent (the CPU-only install CI uses).
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

triton = pytest.importorskip("triton", reason="Triton is not installed (CUDA builds of PyTorch ship it)")

CHECK = textwrap.dedent("""
    import sys, torch
    from uniformerv2.accel import swap
    from uniformerv2.accel.dpe import TritonDPE
    from uniformerv2.model.layers import DPE
    device, dtype = sys.argv[1], getattr(torch, sys.argv[2])
    torch.manual_seed(0)
    worst = 0.0
    # (B, T, grid, C): odd sizes, a channel count over one 128-wide block, a single frame
    for b, t, g, c in [(2, 4, 5, 24), (1, 3, 4, 130), (2, 1, 3, 8)]:
        ref = DPE(c).to(device, dtype)
        with torch.no_grad():
            ref.conv.bias.normal_()
        tri = swap(DPE(c).to(device, dtype), TritonDPE)
        tri.load_state_dict(ref.state_dict())
        x = torch.randn(b * t, 1 + g * g, c, device=device, dtype=dtype)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ref(xa, t), tri(xb, t)
        go = torch.randn_like(ya)
        ga = torch.autograd.grad(ya, (xa, ref.conv.weight, ref.conv.bias), go)
        gb = torch.autograd.grad(yb, (xb, tri.conv.weight, tri.conv.bias), go)
        for u, v in zip((ya, *ga), (yb, *gb)):
            worst = max(worst, ((u - v).abs().max() / u.abs().max()).item())
    print(worst)
""")


def _run(device: str, dtype: str, interpret: bool) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(["src", os.environ.get("PYTHONPATH", "")]))
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", CHECK, device, dtype], cwd=root, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return float(out.stdout.strip().splitlines()[-1])


def test_triton_dpe_matches_conv3d_in_the_interpreter():
    assert _run("cpu", "float64", interpret=True) < 1e-5  # the kernel accumulates in fp32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triton_dpe_matches_conv3d_on_the_gpu():
    assert _run("cuda", "float32", interpret=False) < 1e-4  # cuDNN may use TF32-free fp32 paths; both fp32


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_triton_dpe_kernels_compile_for_hopper(dtype):
    """The real Triton compiler (to PTX and, with the bundled ptxas, a cubin) for an H100, no GPU needed:
    catches what the interpreter lets through (types, layouts, register spills)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from uniformerv2.accel import kernels

    target = GPUTarget("cuda", 90, 32)
    fwd = ASTSource(fn=kernels._dpe_tokens_kernel, constexprs={"K": 3, "HAS_BIAS": True, "BLOCK_W": 16, "BLOCK_C": 128},
                    signature={"x_ptr": f"*{dtype}", "w_ptr": "*fp32", "b_ptr": "*fp32", "out_ptr": f"*{dtype}",
                               "T": "i32", "L": "i32", "H": "i32", "W": "i32", "C": "i32", "K": "constexpr",
                               "HAS_BIAS": "constexpr", "BLOCK_W": "constexpr", "BLOCK_C": "constexpr"})
    wgrad = ASTSource(fn=kernels._dpe_wgrad_kernel, constexprs={"H": 14, "K": 3, "BLOCK_W": 16, "BLOCK_C": 128},
                      signature={"x_ptr": f"*{dtype}", "g_ptr": f"*{dtype}", "part_ptr": "*fp32", "T": "i32",
                                 "L": "i32", "H": "constexpr", "W": "i32", "C": "i32", "K": "constexpr",
                                 "BLOCK_W": "constexpr", "BLOCK_C": "constexpr"})
    for src in (fwd, wgrad):
        compiled = triton.compile(src, target=target, options={"num_warps": 4})
        ptx = compiled.asm["ptx"]
        assert ".target sm_90" in ptx and "ld.global" in ptx and "st.global" in ptx
        assert ".local" not in ptx  # no register spills to local memory
