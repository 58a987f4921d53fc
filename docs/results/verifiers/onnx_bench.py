"""ONNX Runtime against torch eager for the bundled PRM's forward pass, one thread, shapes a request's scoring makes.

Run from the repository root (ONNX Runtime is not a dependency of Ponder):
    .venv/bin/pip install onnxruntime onnx
    python docs/results/verifiers/onnx_bench.py /tmp/prm.onnx
The question of a request is about 87 tokens, the distinct answers after it about 5 rows of 30 (verifiers.md).
"""

import sys
import time

import numpy as np
import onnxruntime as ort
import torch
from transformers import AutoModelForCausalLM

SHAPES = [(1, 1), (1, 87), (1, 300), (6, 40), (6, 60), (16, 40)]


class Logits(torch.nn.Module):
    """The model as a function of ids and mask to logits, for the exporter."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def timed(fn, reps: int = 50) -> float:
    for _ in range(5):
        fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1000


def main(onnx_path: str) -> None:
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained("ponder/models/prm", dtype="float32").eval()
    ids = torch.randint(3, 50, (2, 40))
    axes = {"b": 0, "t": 1}
    torch.onnx.export(
        Logits(model),
        (ids, torch.ones_like(ids)),
        onnx_path,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={name: {v: k for k, v in axes.items()} for name in ("input_ids", "attention_mask", "logits")},
        opset_version=17,
        dynamo=False,
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    print("| batch x tokens | torch eager, ms | ONNX Runtime, ms | torch / ORT | max logit difference |")
    print("|---|---|---|---|---|")
    for shape in SHAPES:
        x = torch.randint(3, 50, shape)
        mask = torch.ones_like(x)
        feed = {"input_ids": x.numpy(), "attention_mask": mask.numpy()}
        with torch.inference_mode():
            reference = model(input_ids=x, attention_mask=mask).logits.numpy()
            eager = timed(lambda x=x, mask=mask: model(input_ids=x, attention_mask=mask))
        onnx = timed(lambda feed=feed: session.run(None, feed))
        diff = np.abs(session.run(None, feed)[0] - reference).max()
        print(f"| {shape[0]} x {shape[1]} | {eager:.2f} | {onnx:.2f} | {eager / onnx:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main(sys.argv[1])
